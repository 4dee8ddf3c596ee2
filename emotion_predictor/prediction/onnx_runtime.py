"""ONNX Runtime as the encoder runner: `runtime: "onnx"` runs `model/model.onnx`, `"onnx_int8"` its
int8 copy `model/model.int8.onnx` (dynamic quantization), both written by `modeling/onnx_export.py`.

The graph is `encoder_runners.LogitsAndEmbedding` exported: inputs `input_ids` and `attention_mask`
(int64, any batch size and length), outputs `logits` and `mean_embedding`. It runs on the CPU
execution provider with as many intra-op threads as torch uses (one per physical core, or what
`torch.set_num_threads` / OMP_NUM_THREADS say), which spin briefly between operators and not
between runs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from emotion_predictor.errors import UserError, first_line

ONNX_FILES = {"onnx": "model.onnx", "onnx_int8": "model.int8.onnx"}
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("logits", "mean_embedding")
SPIN_MICROSECONDS = 100


def export_command(folder: str, runtime: str) -> str:
    return f"uv run ep-export-onnx --model {folder}" + (" --int8" if runtime == "onnx_int8" else "")


def open_session(path: str) -> Any:
    """An ONNX Runtime session on the CPU for the exported classifier at `path`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1  # the graph is one chain of layers: nothing to run side by side
    # Threads spin for at most SPIN_MICROSECONDS between operators (microseconds apart), then sleep,
    # and stop spinning when a run ends. Unbounded spinning (ORT's default) slowed forecasts (the
    # threads kept spinning through the memory search that follows each run, which torch runs on
    # the same cores); no spinning paid a wake-up per operator (conversation p50 about 1.5x).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_MICROSECONDS))
    options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's load errors share no base class below Exception
        raise UserError(f"{path} is not a readable ONNX model ({first_line(err)}); export it again") from None
    inputs = sorted(i.name for i in session.get_inputs())
    outputs = {o.name for o in session.get_outputs()}
    if inputs != sorted(INPUT_NAMES) or not outputs >= set(OUTPUT_NAMES):
        raise UserError(
            f"{path} takes {', '.join(inputs)} and gives {', '.join(sorted(outputs))}, not this project's "
            f"{', '.join(INPUT_NAMES)} -> {', '.join(OUTPUT_NAMES)}; export it again"
        )
    return session


class OnnxRunner:
    """An exported classifier in an ONNX Runtime session."""

    device = torch.device("cpu")

    def __init__(self, session: Any, config: Any, runtime: str) -> None:
        self.session = session
        self.config = config
        self.runtime = runtime

    def __call__(self, batch: dict[str, np.ndarray], embed: bool) -> tuple[np.ndarray, np.ndarray | None]:
        wanted = list(OUTPUT_NAMES) if embed else [OUTPUT_NAMES[0]]
        outputs = self.session.run(wanted, {name: np.asarray(batch[name], dtype=np.int64) for name in INPUT_NAMES})
        return outputs[0], outputs[1] if embed else None


def load_onnx_runner(folder: str, runtime: str, config: Any) -> OnnxRunner:
    """The runner for `runtime` ("onnx" or "onnx_int8") from a model folder, or one UserError line
    saying how to export the file it lacks."""
    path = os.path.join(folder, ONNX_FILES[runtime])
    if not os.path.isfile(path):
        raise UserError(
            f"runtime {runtime!r} needs {path}, which is not there: export it with "
            f"`{export_command(folder, runtime)}` (needs the [train] extra), or use runtime 'torch'"
        )
    return OnnxRunner(open_session(path), config, runtime)
