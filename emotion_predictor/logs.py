"""What the scripts' log shows: progress, the decisions taken and the results, without library
messages a user cannot act on.

Each entry script calls `setup_logging` first, before the libraries are imported. It quietens,
each for a stated reason and nothing more (a message that differs is shown as usual):

- bitsandbytes' import-time "Failed to load CPU gemm_4bit_forward ... No module named 'kernels'"
  (on CPUs with AVX512-BF16): the optional `kernels` package serves 4-bit inference on CPU, which
  this project never runs;
- torcheval's "Some classes do not exist in the target", once per metric call: the F1 of a class
  absent from the labels is 0 by definition, and the per-class F1 are reported;
- transformers' load report when its only news is a newly initialised classification head: the
  run logs that decision itself (modeling.py), in words;
- while exporting to ONNX (onnx_export.py): ONNX Runtime's transformer optimizer's notes on each
  fusion (INFO records from `onnxruntime/transformers/`), its quantizer's notes on each tensor
  ("Quantization parameters for tensor", "Ignore MatMul due to non constant B", "get_tensor_type
  returns DefaultTensorType"): the export logs one line of its own and is checked against torch;
  and the quantizer's advice to pre-process the model first, which changed neither the speed nor
  the outputs of the int8 MiniLM (measured);
- when stderr is not a terminal (a log file, a pipe), the libraries' progress bars, which are
  unreadable there: the run logs its own plain progress lines instead (progress.py). An
  environment variable set by the user wins.
"""

from __future__ import annotations

import logging
import os
import re
import sys

FORMAT = "%(levelname)s %(name)s: %(message)s"
# Parameter names of the classification heads transformers creates (BERT, RoBERTa, DistilBERT, ...).
HEAD_KEY = re.compile(r"^(classifier|score|pre_classifier)\.")


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class DropInfoFromPackage(logging.Filter):
    """Drops records below WARNING logged from files under `folder` (a path fragment)."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or self.folder not in record.pathname.replace(os.sep, "/")


class DropNewHeadReport(logging.Filter):
    """Drops a transformers load report that lists only missing classification-head weights."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line.split("|") for line in message.splitlines() if line.count("|") >= 2]
        entries = [(key.strip(), status.strip()) for key, status, *_ in rows if key.strip() not in ("", "Key")]
        return not entries or not all(status == "MISSING" and HEAD_KEY.match(key) for key, status in entries)


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger for an entry script and quieten the messages listed above."""
    logging.basicConfig(format=FORMAT, level=level)
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(DropMessages("Failed to load CPU gemm_4bit_forward"))
    logging.getLogger().addFilter(DropMessages("Warning: Some classes do not exist in the target"))
    logging.getLogger("transformers.modeling_utils").addFilter(DropNewHeadReport())
    # The optimizer's modules log under bare names (fusion_base, onnx_model, ...), one per fusion
    # pass: the records are told apart by the file they come from, on the handler they reach.
    for handler in logging.getLogger().handlers:
        handler.addFilter(DropInfoFromPackage("onnxruntime/transformers/"))
    logging.getLogger().addFilter(
        DropMessages(
            "Quantization parameters for tensor",
            "Ignore MatMul due to non constant B",
            "Please consider to run pre-processing before quantization",
            "get_tensor_type returns DefaultTensorType",
        )
    )
    if not sys.stderr.isatty():
        # Read by datasets, huggingface_hub and transformers when they are imported (after this).
        for variable in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(variable, "1")
