"""Exporting a saved classifier to ONNX for `runtime: "onnx"` / `"onnx_int8"` (`prediction/onnx_runtime.py`).

`export_model_folder` loads a model folder on the CPU in float32 and writes, atomically, into it:
`model.onnx`, the graph of `encoder_runners.LogitsAndEmbedding` (the logits and the mean-pooled
last-layer embedding, dynamic batch and sequence axes, weights inside the file) with ONNX Runtime's
transformer fusions applied (each layer's attention one `Attention` operator, layer norms and GELU
fused), checked against torch on sample batches; with `int8`, also `model.int8.onnx`, its dynamic
int8 quantization (weights int8 with a scale per output channel, activations quantized per batch,
attention as `QAttention`), about a quarter of the size. `ep_fine_tune.py` calls it at the end of a
run (`export_onnx`), `ep-export-onnx` for an existing model.
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
# Two rows of different lengths, so the exporter sees neither axis as a constant 1 and the check
# covers padding; the checks also run the first row alone, as a conversation's forecast does.
SAMPLE_TEXTS = ("hello, how are you doing today?", "fine")
# The largest difference from torch an exported graph may show on the sample batch (float32 rounding).
TOLERANCE = 1e-4
# The TorchScript exporter's opset (transformers' BERT-family graphs need 14 or later).
OPSET = 17


def sample_batches(tokenizer: object) -> list[dict[str, torch.Tensor]]:
    pair = tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
    alone = tokenizer(list(SAMPLE_TEXTS[:1]), return_tensors="pt")
    return [{name: batch[name] for name in INPUT_NAMES} for batch in (pair, alone)]


def export_graph(module: LogitsAndEmbedding, batch: dict[str, torch.Tensor], path: str, model_type: str) -> None:
    """Write `module`'s graph to `path` with dynamic batch and sequence axes, or one UserError line.

    It uses the TorchScript exporter: ONNX Runtime's transformer optimizer recognises the attention
    of its BERT-family graphs and fuses it (int8 then quantizes it as QAttention), which it does not
    in the dynamo exporter's graphs. On the quickstart model a one-utterance forward took, in int8,
    1.84 ms fused against 2.26 ms from the dynamo graph, and 3.9 against 4.9 ms in float32."""
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation (and calls deprecated helpers of its
            # own); the tracer warns about Python branches on shapes in transformers' mask code,
            # which the sample batches check; that code's advanced indexing becomes a Gather that
            # would be wrong for negative indices, and its indices are aranges over batch and tokens.
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
            torch.onnx.export(
                module,
                tuple(batch[name] for name in INPUT_NAMES),
                path,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as err:  # the exporter fails in many ways, each meaning "this model does not export"
        raise UserError(
            f"model type {model_type!r} ({type(module.model).__name__}) cannot be exported to ONNX: "
            f"{first_line(err, with_type=True)}; use runtime 'torch' for it"
        ) from None


def difference_from_torch(module: LogitsAndEmbedding, batches: list[dict[str, torch.Tensor]], path: str) -> float:
    """The largest difference between the graph at `path` and torch in logits and embeddings."""
    session = open_session(path)
    difference = 0.0
    for batch in batches:
        with torch.inference_mode():
            expected = [t.numpy() for t in module(*(batch[name] for name in INPUT_NAMES))]
        got = session.run(list(OUTPUT_NAMES), {name: batch[name].numpy() for name in INPUT_NAMES})
        difference = max([difference] + [float(np.abs(g - e).max()) for g, e in zip(got, expected)])
    return difference


def check_against_torch(module: LogitsAndEmbedding, batches: list[dict[str, torch.Tensor]], path: str) -> None:
    """The exported graph must give torch's logits and embeddings on the sample batches."""
    difference = difference_from_torch(module, batches, path)
    if difference > TOLERANCE:
        raise UserError(
            f"the ONNX export of {type(module.model).__name__} differs from torch by {difference:.1e} "
            f"(more than {TOLERANCE:.0e}); use runtime 'torch' for this model"
        )


def fuse_transformer_operators(module: LogitsAndEmbedding, batches: list[dict[str, torch.Tensor]], path: str) -> None:
    """Replace the graph at `path` by ONNX Runtime's fusion of it (attention, layer norms, GELU) when
    the fused graph still gives torch's outputs; otherwise keep it as it is, with a warning."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = module.model.config
    fused = f"{path}.fused"
    try:
        # model_type "bert" covers the encoders this project fine-tunes (BERT, RoBERTa, MiniLM);
        # 0 heads / hidden size lets the optimizer read them from the graph.
        optimize_model(
            path,
            model_type="bert",
            num_heads=getattr(config, "num_attention_heads", 0),
            hidden_size=getattr(config, "hidden_size", 0),
        ).save_model_to_file(fused)
        difference = difference_from_torch(module, batches, fused)
        problem = f"its graph differs from torch by {difference:.1e}" if difference > TOLERANCE else ""
    except Exception as err:  # the optimizer's pattern matchers fail in many ways on unfamiliar graphs
        problem = f"they failed ({first_line(err)})"
    if not problem:
        os.replace(fused, path)
        return
    if os.path.exists(fused):
        os.remove(fused)
    logger.warning("ONNX Runtime's transformer fusions not applied: %s; kept the unfused graph", problem)


def quantize_int8(source: str, target: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # A scale per output channel: on the quickstart model half the labels changed against one scale
    # per tensor (2.1% of test rows against 4.2%, Macro_F1 -0.008 against -0.015; unfused graph), at
    # the same speed.
    # Float is the type of the fused operators' outputs, which ONNX's shape inference cannot see.
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


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
    # Eager attention traces to the MatMul-Softmax-MatMul pattern that ONNX Runtime fuses; SDPA's
    # graph it does not recognise. The two give the same outputs (checked below against torch).
    model.set_attn_implementation("eager")
    module = LogitsAndEmbedding(model.float().eval())
    batches = sample_batches(tokenizer)
    fp32 = os.path.join(folder, ONNX_FILES["onnx"])
    with atomic_path(fp32) as tmp:
        export_graph(module, batches[0], tmp, model.config.model_type)
        check_against_torch(module, batches, tmp)
        fuse_transformer_operators(module, batches, tmp)
    written = [fp32]
    if int8:
        written.append(os.path.join(folder, ONNX_FILES["onnx_int8"]))
        with atomic_path(written[-1]) as tmp:
            quantize_int8(fp32, tmp)
    logger.info("Exported %s in %.1f s", " and ".join(written), time.perf_counter() - started)
    return written
