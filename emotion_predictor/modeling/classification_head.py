"""The classification head a fine-tuning run adds on top of the encoder, and the two recipe levers
that act on it alone.

- `head_parameter_names`: the parameters that only the head reads: the head modules outside the
  encoder and, for BERT-like encoders, the pooler (its dense + tanh feeds nothing else). Under
  PEFT they are the `modules_to_save` copies.
- `head_learning_rate` (see `split_head_param_groups`): the head learns at its own rate, since a
  new head starts from random weights while the encoder (or its LoRA adapters) only needs to move
  a little.
- `head_warm_start: "logistic_regression"` (see `warm_start_head`): linear probing, then fine-tuning
  (Kumar et al., 2022). The head's output layer is set to a logistic regression fitted on the
  frozen encoder's features of the train rows, weighted like the training loss, so fine-tuning
  starts from a head that already separates the classes instead of distorting the features to fit
  a random one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.modeling.sequence_classifier import output_layer, pooler_name

logger = logging.getLogger(__name__)


def unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in `model.named_parameters()`) of the trainable parameters only the head uses."""
    inner = unwrapped(model)
    prefix = getattr(inner, "base_model_prefix", "")
    head_roots = {name for name, _ in inner.named_children() if name != prefix}
    pooler = pooler_name(inner)
    names = set()
    for name, param in model.named_parameters():
        parts = name.split(".")
        if not param.requires_grad:
            continue
        # Under PEFT, names are prefixed with base_model.model.; look for the module path inside.
        if any(p in head_roots for p in parts) or (pooler is not None and prefix in parts and pooler in parts):
            names.add(name)
    return names


def split_head_param_groups(optimizer: torch.optim.Optimizer, model: nn.Module, head_lr: float) -> int:
    """Move the head's parameters into their own param groups at `head_lr` (same weight decay).

    Called before the learning-rate scheduler is built, so the schedule scales every group alike.
    Returns how many parameter tensors moved.
    """
    head_ids = {id(p) for n, p in model.named_parameters() if n in head_parameter_names(model)}
    moved = 0
    for group in list(optimizer.param_groups):
        head = [p for p in group["params"] if id(p) in head_ids]
        if not head:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in head_ids]
        optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": head, "lr": head_lr})
        moved += len(head)
    return moved


@torch.no_grad()
def frozen_features(model: nn.Module, dataset: Any, collator: Any, batch_size: int) -> np.ndarray:
    """The inputs of the head's output layer for every row of a tokenized dataset (eval mode)."""
    layer = output_layer(model, NUM_LABELS)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    try:
        for start in range(0, len(order), batch_size):
            rows = dataset.select(order[start : start + batch_size]).select_columns(columns)
            batch = collator([dict(r) for r in rows])
            model(**{k: v.to(device) for k, v in batch.items()})
    finally:
        hook.remove()
        model.train(was_training)
    features = np.empty((len(order), captured[0].shape[-1]), dtype=np.float32)
    features[order] = torch.cat(captured).numpy()
    return features


def warm_start_head(
    model: nn.Module, dataset: Any, labels: np.ndarray, class_weights: list[float], collator: Any, batch_size: int
) -> dict[str, float]:
    """Set the output layer to a logistic regression fitted on frozen features; returns its fit facts.

    Each row is weighted by its class weight, as in the training loss, so the head starts at the
    optimum of that loss for the frozen encoder. Classes absent from train keep their initial rows.
    """
    from sklearn.linear_model import LogisticRegression

    started = time.time()
    features = frozen_features(model, dataset, collator, batch_size)
    weights = np.asarray(class_weights, dtype=np.float64)[labels]
    probe = LogisticRegression(max_iter=1000)
    probe.fit(features, labels, sample_weight=weights)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # scikit-learn keeps one row for two classes: logit(1) - logit(0)
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    layer = output_layer(model, NUM_LABELS)
    with torch.no_grad():
        for row, cls in enumerate(probe.classes_):
            layer.weight[int(cls)] = torch.as_tensor(coef[row], dtype=layer.weight.dtype)
            if layer.bias is not None:
                layer.bias[int(cls)] = float(intercept[row])
    accuracy = float((probe.predict(features) == labels).mean())
    facts = {"rows": len(labels), "train_accuracy": round(accuracy, 4), "seconds": round(time.time() - started, 1)}
    logger.info(
        "Head warm start: logistic regression on frozen features of %d train rows (train accuracy %.3f, %.1f s)",
        facts["rows"],
        accuracy,
        facts["seconds"],
    )
    return facts
