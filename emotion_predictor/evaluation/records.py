"""What an evaluation writes for one model or baseline: its figures (headline, per class,
confusion matrix, seen / unseen rows), its report text, its predictions table and its
confusion-matrix plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from emotion_predictor.data.train_split import SEEN_DEFINITION
from emotion_predictor.evaluation.comparison import GROUPS, ModelResult
from emotion_predictor.evaluation.metrics import HEADLINE, classification_metrics, format_report, subset_figures
from emotion_predictor.labels import EMOTIONS, NUM_LABELS
from emotion_predictor.output_files import atomic_path
from emotion_predictor.tables import text_table

PROB_COLUMNS = [f"prob_{name}" for name in EMOTIONS]
VERSUS_BASELINE = ["Balanced_Accuracy", "Macro_F1"]


def figures(labels: np.ndarray, predicted: np.ndarray, weights: Sequence[float], seen: np.ndarray) -> dict[str, Any]:
    """Every figure of the evaluation (all recomputable from predictions.csv)."""
    report = classification_report(
        labels, predicted, labels=list(range(NUM_LABELS)), target_names=EMOTIONS, output_dict=True, zero_division=0
    )
    for entry in report.values():
        if isinstance(entry, dict):
            entry["support"] = int(entry["support"])
    return {
        "metrics": classification_metrics(labels, predicted, weights),
        "per_class": {name: report[name] for name in EMOTIONS},
        "averages": {avg: report[avg] for avg in ("macro avg", "weighted avg")},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(NUM_LABELS))).tolist(),
        "seen_unseen": {
            "definition": SEEN_DEFINITION,
            "seen": subset_figures(labels, predicted, seen, weights),
            "unseen": subset_figures(labels, predicted, ~seen, weights),
        },
    }


def predictions_table(frame: pd.DataFrame, probs: np.ndarray, predicted: np.ndarray, seen: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "row_id": np.arange(len(frame)),
            "dialog_id": frame["dialog_id"].to_numpy(),
            "turn": frame["turn"].to_numpy(),
            "text": frame["text"].to_numpy(),
            "label": [EMOTIONS[i] for i in frame["label"]],
            "predicted": [EMOTIONS[i] for i in predicted],
            "seen": seen,
        }
    )
    for i, column in enumerate(PROB_COLUMNS):
        table[column] = probs[:, i]
    return table


# --------------------------------------------------------------------------- report sections


def seen_unseen_text(breakdown: dict[str, Any]) -> str:
    """The headline metrics of the seen and unseen rows as a small table."""
    rows = [["", "rows", *HEADLINE]]
    for group in GROUPS:
        entry = breakdown[group]
        values = entry["metrics"] or {}
        cells = [
            "-" if name not in values else str(values[name]) if name == "Classes-with-value" else f"{values[name]:.4f}"
            for name in HEADLINE
        ]
        rows.append([group, entry["rows"], *cells])
    table = text_table(rows, [8, 7] + [20] * len(HEADLINE))
    return f"Seen / unseen rows ({breakdown['definition']}):\n{table}\n"


def versus_baselines(metrics: dict[str, float], baselines: Sequence[ModelResult]) -> dict[str, Any]:
    """Per metric of `VERSUS_BASELINE`: the best baseline, its value and the model's margin over it."""
    result = {}
    for metric in VERSUS_BASELINE:
        best = max(baselines, key=lambda b: b.record["metrics"][metric])
        value = best.record["metrics"][metric]
        result[metric] = {"baseline": best.name, "baseline_value": value, "margin": metrics[metric] - value}
    return result


def versus_text(versus: dict[str, Any]) -> str:
    lines = ["Versus the best baseline:"]
    for metric, entry in versus.items():
        verb = "beats" if entry["margin"] > 0 else "trails" if entry["margin"] < 0 else "ties"
        lines.append(
            f"  {metric}: {verb} {entry['baseline']} ({entry['baseline_value']:.4f}) by {abs(entry['margin']):.4f}"
        )
    return "\n".join(lines) + "\n"


def full_report(labels: np.ndarray, predicted: np.ndarray, record: dict[str, Any], decision: str) -> str:
    """report.txt: the classification report and headline metrics, then the F1-all-class
    weights' source, the seen / unseen breakdown and the comparison with the baselines."""
    text = format_report(labels, predicted, record["metrics"], decision, record["f1_all_class_weights"])
    text += f"F1-all-class weights source: {record['f1_all_class_weights_source']}\n\n"
    text += seen_unseen_text(record["seen_unseen"])
    if record.get("versus_best_baseline"):
        text += "\n" + versus_text(record["versus_best_baseline"])
    return text


# --------------------------------------------------------------------------- plots


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], path: str, title: str) -> None:
    """Counts and row-normalised rates side by side, class names on both axes."""
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(14, 6.2), layout="constrained")
    for ax, values, sub, fmt in zip(
        fig.subplots(1, 2), (counts, rates), ("counts", "row-normalised (recall on the diagonal)"), ("{:d}", "{:.2f}")
    ):
        shown = values / max(values.max(), 1) if values is counts else values
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(NUM_LABELS), EMOTIONS, rotation=35, ha="right")
        ax.set_yticks(range(NUM_LABELS), EMOTIONS)
        ax.set_xlabel("predicted next-turn emotion")
        ax.set_ylabel("true next-turn emotion")
        ax.set_title(sub)
        for r in range(NUM_LABELS):
            for c in range(NUM_LABELS):
                value = values[r, c]
                ax.text(
                    c,
                    r,
                    fmt.format(value),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if shown[r, c] > 0.5 else "black",
                )
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
