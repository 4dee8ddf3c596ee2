"""Turning next-turn probabilities into one predicted emotion.

Two rules, stored in a fine-tuned model's metadata (`emotion_predictor.json`) and applied alike
by training, evaluation and prediction:

- `argmax`: the most probable class.
- `prior_corrected`: argmax_c(log p_c - tau * log prior_c), where `prior` is the class
  distribution of the training labels the model saw. tau = 0 is argmax; tau = 1 divides out the
  prior entirely (a balanced decision); tau < 0 leans further towards frequent classes, which
  helps a model trained with balanced class weights recover accuracy. `fit_tau` picks tau in
  [-1, 1.5] (steps of 0.05) on the validation split, never on test, to maximise a metric
  (default `Macro_F1`), optionally only among the taus that keep validation accuracy at or above
  a floor (`decision_min_accuracy`): a chatbot can ask for rarer emotions to be found without
  the forecast being wrong more often than it can afford.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.metrics import headline_metrics
from emotion_predictor.labels import NUM_LABELS

DECISION_RULES = ("argmax", "prior_corrected")
TAU_GRID = np.round(np.arange(-1.0, 1.51, 0.05), 2)
PRIOR_FLOOR = 1e-6  # a class absent from train gets this prior instead of log(0)


def train_prior(labels: Sequence[int] | np.ndarray) -> list[float]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_LABELS).astype(np.float64)
    return (counts / counts.sum()).tolist()


def decide(
    probs: np.ndarray, rule: str = "argmax", tau: float = 0.0, prior: Sequence[float] | None = None
) -> np.ndarray:
    """Predicted class per row of `probs` under `rule`."""
    if rule == "argmax":
        return np.argmax(probs, axis=-1)
    if rule != "prior_corrected":
        raise ValueError(f"unknown decision rule {rule!r}; expected one of {', '.join(DECISION_RULES)}")
    if prior is None:
        raise ValueError("the prior_corrected rule needs the train prior")
    log_prior = np.log(np.maximum(np.asarray(prior, dtype=np.float64), PRIOR_FLOOR))
    scores = np.log(np.maximum(probs.astype(np.float64), 1e-12)) - tau * log_prior
    return np.argmax(scores, axis=-1)


def decide_with_metadata(probs: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Apply the decision rule saved with a model (argmax when it has none)."""
    return decide(probs, metadata.get("decision_rule", "argmax"), metadata.get("tau", 0.0), metadata.get("train_prior"))


def fit_tau(
    probs: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    prior: Sequence[float],
    metric: str = "Macro_F1",
    class_weights: Sequence[float] | None = None,
    min_accuracy: float | None = None,
) -> tuple[float, float, bool]:
    """The tau in `TAU_GRID` that maximises `metric` on (validation) `probs`, its value, and
    whether `min_accuracy` was met.

    With `min_accuracy`, only taus whose accuracy reaches it compete; when none does, the tau
    with the highest accuracy is returned (and the flag is False). Ties go to the tau closest to
    0, the rule closest to argmax.
    """
    scored = []
    for tau in sorted(TAU_GRID, key=abs):
        values = headline_metrics(labels, decide(probs, "prior_corrected", float(tau), prior), class_weights)
        scored.append((float(tau), float(values[metric]), float(values["Accuracy"])))
    eligible = [row for row in scored if min_accuracy is None or row[2] >= min_accuracy]
    if not eligible:
        tau, score, _ = max(scored, key=lambda row: row[2])
        return tau, score, False
    tau, score, _ = max(eligible, key=lambda row: row[1])  # max keeps the first of equal scores
    return tau, score, True


def check_decision(metadata: dict[str, Any], where: str) -> None:
    """A saved decision rule that `decide_with_metadata` can apply, else one UserError line."""
    rule = metadata.get("decision_rule", "argmax")
    fix = 'fine-tune the model again, or set decision_rule to "argmax" in that file'
    if rule not in DECISION_RULES:
        raise UserError(
            f"{where}: decision_rule has value {json.dumps(rule)}; expected one of "
            f"{', '.join(json.dumps(r) for r in DECISION_RULES)} ({fix})"
        )
    if rule != "prior_corrected":
        return
    tau, prior = metadata.get("tau"), metadata.get("train_prior")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise UserError(f"{where}: the prior_corrected rule needs a number tau, found {json.dumps(tau)} ({fix})")
    if not (
        isinstance(prior, list)
        and len(prior) == NUM_LABELS
        and all(isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 for p in prior)
    ):
        raise UserError(
            f"{where}: the prior_corrected rule needs train_prior, {NUM_LABELS} numbers >= 0, found "
            f"{json.dumps(prior)} ({fix})"
        )


def describe_decision(metadata: dict[str, Any]) -> str:
    """The decision rule in words, as `report.txt` states it, with the knn memory it reads if any."""
    memory = metadata.get("knn_memory") or {}
    mixed = (
        f" on probabilities mixed with a knn memory of {memory['size']:,} {memory['rows']} rows keyed on "
        f"{memory.get('key_turns', 1)} turn(s) (weight {memory['weight']:g}, {memory['neighbours']} neighbours, "
        f"temperature {memory['temperature']:g})"
        if memory.get("weight")
        else ""
    )
    if metadata.get("decision_rule", "argmax") == "argmax":
        return "argmax" + mixed
    floor = metadata.get("decision_min_accuracy")
    subject = f" subject to validation accuracy >= {floor:g}" if floor is not None else ""
    return (
        f"prior_corrected (tau {metadata['tau']:.2f}, fitted on validation "
        f"{metadata.get('decision_metric', 'Macro_F1')}{subject})" + mixed
    )
