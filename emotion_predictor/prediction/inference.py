"""Loading a trained (or zero-shot) emotion classifier and scoring dialogue turns in batches.

`load_classifier` accepts a fine-tuning `output_dir`, its `model/` or `adapter/` folder, any local
model folder or a Hub id. Fine-tuned models bring their input settings (`context_turns`,
separator, `max_length`) from `emotion_predictor.json`; other models get the defaults. A model
whose labels are our 7 emotions under other names or in another order is mapped by name.

The forward pass runs on a `runtime`: torch (fp16 on CUDA), or ONNX Runtime on the CPU with the
model exported to `model.onnx` (`onnx`) or its int8 copy (`onnx_int8`); `encoder_runners.py` and
`onnx_runtime.py` hold the runners, and a Classifier holds one.

`model_outputs` builds inputs exactly as training does (`inputs.encode_turns`), sorts them by
length, pads each batch dynamically and runs the runner on it, returning the classifier's
probabilities in our label order and, when asked, each row's embedding; `forecast.py` mixes in
the model's nearest-neighbour memory (`knn_memory.py`) when it was saved with one. A model saved
with an emotion recogniser (`recogniser/` in its folder) loads it too, on the same runtime: it
recognises history turns' emotions for a memory keyed on the conversation's trajectory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from emotion_predictor.data.inputs import default_separator, encode_turns
from emotion_predictor.errors import UserError
from emotion_predictor.hub import hub_load_error, resolve_model_path
from emotion_predictor.labels import EMOTIONS, NUM_LABELS, map_head_to_emotions
from emotion_predictor.modeling.knn_memory import KnnMemory, load_memory
from emotion_predictor.modeling.memory_index import use_approximate_search
from emotion_predictor.modeling.model_folder import RECOGNISER_FOLDER, companion_path
from emotion_predictor.modeling.sequence_classifier import read_metadata
from emotion_predictor.prediction.encoder_runners import RUNTIMES, EncoderRunner, TorchRunner
from emotion_predictor.prediction.onnx_runtime import load_onnx_runner
from emotion_predictor.progress import track

logger = logging.getLogger(__name__)
DEFAULT_MAX_LENGTH = 256


@dataclass
class Classifier:
    """A model ready for inference plus the settings that rebuild its inputs. `model` is the torch
    model (None when ONNX Runtime runs it); `runner` runs the forward pass (default: torch on `model`)."""

    model: Any
    tokenizer: Any
    name: str
    context_turns: int
    separator: str
    max_length: int
    output_order: list[int]
    device: torch.device
    metadata: dict[str, Any] = field(default_factory=dict)
    memory: KnnMemory | None = None
    recogniser: Classifier | None = None  # recognises history turns' emotions for the memory's trajectory
    # Embeddings and recognitions of recently seen texts (forecast.py keeps them bounded).
    recent_utterances: dict[str, np.ndarray] = field(default_factory=dict)
    recent_recognitions: dict[str, np.ndarray] = field(default_factory=dict)
    runner: EncoderRunner | None = None

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = TorchRunner(self.model, self.device)

    @property
    def config(self) -> Any:
        """The model's transformers config (labels, hidden_size), whatever the runtime."""
        return self.runner.config

    def clear_recent(self) -> None:
        """Forget the embeddings and recognitions of recently seen texts (a cold start)."""
        self.recent_utterances.clear()
        self.recent_recognitions.clear()


def locate_model_folder(path: str) -> str:
    """A fine-tuning output_dir means its merged `model/` folder."""
    merged = os.path.join(path, "model")
    return merged if os.path.isdir(merged) and not os.path.isfile(os.path.join(path, "config.json")) else path


def model_source(name: str) -> str:
    """Where `name`'s model is loaded from: a model folder (an output_dir's `model/`) or a Hub id."""
    path = resolve_model_path(name)
    source = locate_model_folder(path) if os.path.isdir(path) else path
    if os.path.isdir(source) and not any(
        os.path.isfile(os.path.join(source, f)) for f in ("config.json", "adapter_config.json")
    ):
        raise UserError(
            f"{name!r} is not a model folder (no config.json or adapter_config.json); give a fine-tuning "
            "output_dir, its model/ or adapter/ folder, a model folder or a Hub id"
        )
    return source


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use cpu or auto")
    return torch.device(device)


def load_model_and_tokenizer(source: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        if os.path.isfile(os.path.join(source, "adapter_config.json")):
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(source).merge_and_unload()
        else:
            model = AutoModelForSequenceClassification.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise hub_load_error(source, "classifier", err) from None
    return model, tokenizer


def load_config_and_tokenizer(source: str) -> tuple[Any, Any]:
    """What an exported model needs besides its ONNX file: labels, sizes and the tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        return AutoConfig.from_pretrained(source), AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise hub_load_error(source, "classifier", err) from None


def load_runner(name: str, source: str, device: str | None, runtime: str) -> tuple[Any, Any, EncoderRunner]:
    """The torch model (None under ONNX Runtime), the tokenizer and the runner for `runtime`."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        model, tokenizer = load_model_and_tokenizer(source)
        chosen = pick_device(device)
        model.to(chosen).eval()
        if chosen.type == "cuda":
            model.half()
        return model, tokenizer, TorchRunner(model, chosen)
    if device not in (None, "auto", "cpu"):
        raise UserError(f"runtime {runtime!r} runs on the CPU, not device {device!r}; use device cpu or runtime torch")
    if not os.path.isdir(source):
        raise UserError(f"runtime {runtime!r} needs a local model folder with an exported model, not {name!r}")
    config, tokenizer = load_config_and_tokenizer(source)
    return None, tokenizer, load_onnx_runner(source, runtime, config)


def label_order(name: str, config: Any) -> list[int]:
    """For each of our emotions, the model's output that scores it (mapped by label name)."""
    labels = {int(k): v for k, v in (config.id2label or {}).items()}
    if len(labels) != NUM_LABELS:
        raise UserError(
            f"model {name!r} has {len(labels)} output labels ({', '.join(labels.values())}); "
            f"an emotion forecaster needs {NUM_LABELS}: {', '.join(EMOTIONS)}"
        )
    order = map_head_to_emotions(labels)
    if order is None:
        raise UserError(
            f"model {name!r} labels ({', '.join(labels[i] for i in sorted(labels))}) cannot be mapped by name "
            f"to ours ({', '.join(EMOTIONS)})"
        )
    return order


def load_classifier(
    name: str,
    device: str | None = None,
    context_turns: int | None = None,
    separator: str | None = None,
    max_length: int | None = None,
    runtime: str = "torch",
    knn_search: str = "auto",
) -> Classifier:
    """Load `name` for inference on `runtime` (torch, onnx or onnx_int8); explicit settings
    override the model's saved ones. `knn_search`: how the memory finds neighbours
    (`memory_index.py`: exact, approximate, or auto by its size)."""
    source = model_source(name)
    model, tokenizer, runner = load_runner(name, source, device, runtime)
    order = label_order(name, runner.config)
    metadata = (read_metadata(source) if os.path.isdir(source) else None) or {}
    memory = load_memory(source, metadata) if metadata else None
    hidden_size = runner.config.hidden_size
    if memory is not None and memory.texts.shape[1] != hidden_size:
        raise UserError(
            f"{source}: knn memory embeddings have {memory.texts.shape[1]} values, the model's hidden size is "
            f"{hidden_size} (copy the whole model folder, or fine-tune the model again)"
        )
    if memory is not None:
        use_approximate_search(memory, knn_search)
    saved_max = metadata.get("max_length", min(DEFAULT_MAX_LENGTH, getattr(tokenizer, "model_max_length", 512)))
    return Classifier(
        model=model,
        tokenizer=tokenizer,
        name=name,
        context_turns=context_turns if context_turns is not None else metadata.get("context_turns", 0),
        separator=separator
        if separator is not None
        else metadata.get("context_separator", default_separator(tokenizer)),
        max_length=max_length if max_length is not None else saved_max,
        output_order=order,
        device=runner.device,
        metadata=metadata,
        memory=memory,
        runner=runner,
        recogniser=load_recogniser(source, metadata, device, runtime),
    )


def load_recogniser(source: str, metadata: dict[str, Any], device: str | None, runtime: str) -> Classifier | None:
    """The emotion recogniser a model folder was saved with (in `recogniser/`), or None."""
    if not metadata.get("emotion_recogniser"):
        return None
    folder = companion_path(source, RECOGNISER_FOLDER)
    if not os.path.isdir(folder):
        raise UserError(
            f"{source}: emotion_predictor.json names an emotion recogniser but {RECOGNISER_FOLDER}/ is missing "
            "(copy the whole model folder, or fine-tune the model again)"
        )
    return load_classifier(folder, device, context_turns=0, runtime=runtime)


def window(history: Sequence[str], context_turns: int) -> list[str]:
    """The turns a model sees for a dialogue so far: the last `context_turns` + 1 utterances."""
    return list(history[-(context_turns + 1) :])


def model_outputs(
    classifier: Classifier,
    turns: Sequence[Sequence[str]],
    batch_size: int = 64,
    progress: bool = False,
    embed: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's probabilities and, with `embed`, each row's embedding: the mean of the
    encoder's last-layer states over real tokens (what `knn_memory` compares), in row order."""
    ids = encode_turns(classifier.tokenizer, turns, classifier.separator, classifier.max_length)
    order = np.argsort([len(i) for i in ids], kind="stable")
    result = np.zeros((len(ids), NUM_LABELS), dtype=np.float32)
    embeddings = np.zeros((len(ids), classifier.config.hidden_size), dtype=np.float32) if embed else None
    starts = range(0, len(ids), batch_size)
    if progress:
        label = f"scoring {os.path.basename(classifier.name.rstrip('/')) or classifier.name}"
        starts = track(starts, len(starts), label)
    for start in starts:
        rows = order[start : start + batch_size]
        batch = classifier.tokenizer.pad({"input_ids": [ids[r] for r in rows]}, return_tensors="np")
        logits, pooled = classifier.runner(dict(batch), embed)
        result[rows] = softmax(logits[:, classifier.output_order], axis=-1)
        if embed:
            embeddings[rows] = pooled
    return result, embeddings
