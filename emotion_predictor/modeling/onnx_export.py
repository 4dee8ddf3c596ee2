"""Exporting a saved classifier to ONNX for `runtime: "onnx"` / `"onnx_int8"` (`prediction/onnx_runtime.py`).

`export_model_folder` loads a model folder on the CPU in float32 and writes, atomically, into it:
`model.onnx`, the graph of `encoder_runners.LogitsAndEmbedding` (the logits and the mean-pooled
last-layer embedding, dynamic batch and sequence axes, weights inside the file), checked against
torch on a sample batch; with `int8`, also `model.int8.onnx`, its dynamic int8 quantization
(weights int8 with a scale per output channel, activations quantized per batch), about a quarter
of the size. `ep_fine_tune.py` calls it at the end of a run (`export_onnx`), `ep-export-onnx` for
an existing model.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

import numpy as np
import torch

from emotion_predictor.errors import UserError, first_line
from emotion_predictor.extras import require_extra
from emotion_predictor.modeling.model_folder import RECOGNISER_FOLDER
from emotion_predictor.output_files import atomic_path
from emotion_predictor.prediction.encoder_runners import LogitsAndEmbedding
from emotion_predictor.prediction.inference import load_model_and_tokenizer
from emotion_predictor.prediction.onnx_runtime import INPUT_NAMES, ONNX_FILES, OUTPUT_NAMES, open_session

logger = logging.getLogger(__name__)
# Two rows of different lengths: the exporter then sees neither axis as a constant 1.
SAMPLE_TEXTS = ("hello, how are you doing today?", "fine")
# The largest difference from torch an exported graph may show on the sample batch (float32 rounding).
TOLERANCE = 1e-4


def sample_batch(tokenizer: object) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
    return {name: batch[name] for name in INPUT_NAMES}


def export_graph(module: LogitsAndEmbedding, batch: dict[str, torch.Tensor], path: str, model_type: str) -> None:
    """Write `module`'s graph to `path` with dynamic batch and sequence axes, or one UserError line."""
    batch_axis, sequence_axis = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {name: {0: batch_axis, 1: sequence_axis} for name in INPUT_NAMES}
    try:
        with warnings.catch_warnings():
            # The exporter notes that the two inputs share their axes, which they are meant to.
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            torch.onnx.export(
                module,
                tuple(batch[name] for name in INPUT_NAMES),
                path,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=axes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as err:  # the exporter fails in many ways, each meaning "this model does not export"
        raise UserError(
            f"model type {model_type!r} ({type(module.model).__name__}) cannot be exported to ONNX: "
            f"{first_line(err, with_type=True)}; use runtime 'torch' for it"
        ) from None


def check_against_torch(module: LogitsAndEmbedding, batch: dict[str, torch.Tensor], path: str) -> None:
    """The exported graph must give torch's logits and embeddings on the sample batch."""
    with torch.inference_mode():
        expected = [t.numpy() for t in module(*(batch[name] for name in INPUT_NAMES))]
    got = open_session(path).run(list(OUTPUT_NAMES), {name: batch[name].numpy() for name in INPUT_NAMES})
    difference = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    if difference > TOLERANCE:
        raise UserError(
            f"the ONNX export of {type(module.model).__name__} differs from torch by {difference:.1e} "
            f"(more than {TOLERANCE:.0e}); use runtime 'torch' for this model"
        )


def quantize_int8(source: str, target: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # A scale per output channel: on the quickstart model half the labels changed against one scale
    # per tensor (2.1% of test rows against 4.2%, Macro_F1 -0.008 against -0.015), at the same speed.
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)


def export_model_folder(folder: str, int8: bool = False) -> list[str]:
    """Export the classifier saved in `folder` to `folder/model.onnx` (and `model.int8.onnx` with
    `int8`), and its emotion recogniser (`recogniser/`) the same way when it has one, since a
    model on ONNX Runtime runs its recogniser there too; returns the paths written."""
    require_extra("onnx_export", "ONNX export")
    written = export_classifier(folder, int8)
    recogniser = os.path.join(folder, RECOGNISER_FOLDER)
    if os.path.isfile(os.path.join(recogniser, "config.json")):
        written += export_classifier(recogniser, int8)
    return written


def export_classifier(folder: str, int8: bool) -> list[str]:
    """`export_model_folder` for one classifier's folder."""
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(folder)
    module = LogitsAndEmbedding(model.float().eval())
    batch = sample_batch(tokenizer)
    fp32 = os.path.join(folder, ONNX_FILES["onnx"])
    with atomic_path(fp32) as tmp:
        export_graph(module, batch, tmp, model.config.model_type)
        check_against_torch(module, batch, tmp)
    written = [fp32]
    if int8:
        written.append(os.path.join(folder, ONNX_FILES["onnx_int8"]))
        with atomic_path(written[-1]) as tmp:
            quantize_int8(fp32, tmp)
    logger.info("Exported %s in %.1f s", " and ".join(written), time.perf_counter() - started)
    return written
