"""Classification metrics for next-turn emotion forecasts, and the text report.

Headline figures (names as logged during training and written to `metrics.json`):
- `Accuracy`, `Balanced_Accuracy` (mean per-class recall), `F1-score` (support-weighted F1) and
  `Macro_F1` (unweighted mean of the 7 per-class F1 scores), from scikit-learn;
- `F1-all-class`: per-class F1 from torcheval's `multiclass_f1_score(average=None)` multiplied
  by the F1-all-class weights and averaged over the 7 classes (the reference's model-selection
  metric). The weights are always `balanced_class_weights` of the train labels the model was
  trained on (after neutral downsampling), whatever weights its loss used;
- `Classes-with-value`: how many classes have a non-zero weighted F1.

`subset_figures` gives the headline metrics of a subset of rows (the seen / unseen breakdown).
`headline_metrics` computes the same float figures from one confusion matrix, many times faster,
for fits that score thousands of candidate decisions (`decision.fit_tau`, `knn_memory.fit_memory`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import accuracy_score, classification_report, f1_score, recall_score
from sklearn.utils.class_weight import compute_class_weight

from emotion_predictor.labels import EMOTIONS, NUM_LABELS

HEADLINE = ["Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1", "F1-all-class", "Classes-with-value"]


def balanced_class_weights(train_labels: Sequence[int] | np.ndarray) -> list[float]:
    """scikit-learn's "balanced" weights n / (k * count_c) over the k classes present in
    `train_labels`; a class absent from them gets 0."""
    labels = np.asarray(train_labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.zeros(NUM_LABELS)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights.tolist()


def torcheval_per_class_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-class F1 from torcheval, the reference's implementation. Imported here, not at the top:
    torcheval comes with the [train] extra, and forecasting (decision rules) reads this module too."""
    with warnings.catch_warnings():
        # torcheval's import uses the deprecated torch.jit.script; the warning is noise for our users.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        from torcheval.metrics.functional import multiclass_f1_score

    return multiclass_f1_score(torch.tensor(y_pred), torch.tensor(y_true), num_classes=NUM_LABELS, average=None).numpy()


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    class_weights: Sequence[float] | None = None,
) -> dict[str, float]:
    """Headline metrics plus `F1_<class>` for each class; `class_weights` are the F1-all-class
    weights (all ones when not given, which makes F1-all-class equal Macro_F1)."""
    y_true = np.asarray(labels, dtype=np.int64)
    y_pred = np.asarray(predictions, dtype=np.int64)
    classes = list(range(NUM_LABELS))
    per_class = torcheval_per_class_f1(y_true, y_pred)
    weights = np.ones(NUM_LABELS) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    weighted = per_class * weights
    result = {
        "Accuracy": float(accuracy_score(y_true, y_pred)),
        # balanced_accuracy_score, without its warning each time a class is predicted but absent:
        # the mean recall over the classes present in y_true.
        "Balanced_Accuracy": float(
            recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
        ),
        "F1-score": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
        "Macro_F1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "F1-all-class": float(weighted.mean()),
        "Classes-with-value": int(np.count_nonzero(weighted)),
    }
    result.update({f"F1_{name}": float(per_class[i]) for i, name in enumerate(EMOTIONS)})
    return result


def headline_metrics(
    labels: np.ndarray, predictions: np.ndarray, class_weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Accuracy, Balanced_Accuracy, F1-score, Macro_F1 and F1-all-class as `classification_metrics`
    gives them, from one confusion matrix."""
    confusion = np.bincount(
        np.asarray(labels, dtype=np.int64) * NUM_LABELS + np.asarray(predictions, dtype=np.int64),
        minlength=NUM_LABELS * NUM_LABELS,
    ).reshape(NUM_LABELS, NUM_LABELS)
    hits, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    present = support > 0
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(NUM_LABELS), where=support + predicted > 0)
    weights = np.ones(NUM_LABELS) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    return {
        "Accuracy": float(hits.sum() / support.sum()),
        "Balanced_Accuracy": float((hits[present] / support[present]).mean()),
        "F1-score": float((f1 * support).sum() / support.sum()),
        "Macro_F1": float(f1.mean()),
        "F1-all-class": float((f1 * weights).mean()),
    }


def subset_figures(
    labels: np.ndarray, predictions: np.ndarray, rows: np.ndarray, class_weights: Sequence[float]
) -> dict:
    """`rows` (a boolean mask) counted, with their headline metrics (None when there are none)."""
    count = int(np.count_nonzero(rows))
    metrics = classification_metrics(labels[rows], predictions[rows], class_weights) if count else None
    return {"rows": count, "metrics": metrics}


def format_report(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    metrics: dict,
    decision: str | None = None,
    f1_weights: Sequence[float] | None = None,
) -> str:
    """scikit-learn's classification report, the headline metrics one per line, the
    F1-all-class weights (when given) and the decision rule."""
    table = classification_report(
        labels, predictions, labels=list(range(NUM_LABELS)), target_names=EMOTIONS, digits=4, zero_division=0
    )
    lines = [table.rstrip(), ""]
    for name in HEADLINE:
        value = metrics[name]
        lines.append(f"{name}: {value}" if isinstance(value, int) else f"{name}: {value:.4f}")
    if f1_weights is not None:
        lines.append("F1-all-class weights: " + ", ".join(f"{n} {w:.4g}" for n, w in zip(EMOTIONS, f1_weights)))
    if decision:
        lines.append(f"Decision rule: {decision}")
    return "\n".join(lines) + "\n"
