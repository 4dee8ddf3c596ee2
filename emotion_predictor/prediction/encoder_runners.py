"""The forward pass behind `inference.model_outputs`, on torch or on ONNX Runtime.

An encoder runner takes one padded batch (`input_ids`, `attention_mask` as NumPy int64 arrays)
and returns the classifier's logits in the model's own label order and, when asked, each row's
embedding: the mean of the encoder's last-layer states over real tokens (what the knn memory
compares). `LogitsAndEmbedding` is that computation as one torch module: `TorchRunner` runs it,
and `modeling/onnx_export.py` exports it, so the two runtimes compute the same graph.
`onnx_runtime.py` holds the ONNX Runtime runner.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

RUNTIMES = ("torch", "onnx", "onnx_int8")


class EncoderRunner(Protocol):
    """What `model_outputs` needs from a runtime."""

    runtime: str
    config: Any  # the transformers config: labels, hidden_size
    device: torch.device  # where the forward pass runs

    def __call__(self, batch: dict[str, np.ndarray], embed: bool) -> tuple[np.ndarray, np.ndarray | None]: ...


def encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder inside a sequence classifier, whatever head reads it. A PEFT model's `base_model`
    is its LoRA wrapper, whose output is the classifier's, so the wrapped model is asked instead."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model


class LogitsAndEmbedding(torch.nn.Module):
    """A sequence classifier's logits and the mean of its encoder's last-layer states over real tokens,
    from one forward pass (float32 both)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.training = model.training  # the caller chose the model's mode; train() would impose one on every layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states: list[torch.Tensor] = []
        # The encoder's output, whatever the head makes of it: the hook sees the one encoder pass.
        hook = encoder_of(self.model).register_forward_hook(lambda _m, _i, out: states.append(out[0]))
        try:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            hook.remove()
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (states[-1].float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return logits.float(), pooled


class TorchRunner:
    """The torch model on its device (fp16 on CUDA when the loader made it so), under inference mode."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.config = model.config
        self.device = device
        self.module = LogitsAndEmbedding(model)

    def __call__(self, batch: dict[str, np.ndarray], embed: bool) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            ids, mask = (torch.from_numpy(batch[name]).to(self.device) for name in ("input_ids", "attention_mask"))
            logits, pooled = self.module(ids, mask)
        return logits.cpu().numpy(), pooled.cpu().numpy() if embed else None
