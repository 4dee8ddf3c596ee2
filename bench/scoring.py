"""What the quality benchmarks share: the decision rules every model is scored with, and the
markdown table they print.

Every model (baseline or fine-tuned) gets the same three decisions from its validation and test
probabilities, the prior_corrected ones fitted on validation only:
- argmax;
- prior_corrected, tau maximising validation Macro_F1;
- prior_corrected, tau maximising validation Macro_F1 among those keeping validation accuracy
  >= ACCURACY_FLOOR (`decision_min_accuracy`). The floor was fixed before any test figure of
  the quality runs was seen: 0.85 is 2.5 points under always-neutral on validation (0.875).
"""

from __future__ import annotations

import numpy as np

from emotion_predictor.evaluation.metrics import classification_metrics
from emotion_predictor.prediction.decision import decide, fit_tau
from emotion_predictor.tables import markdown_table as render_markdown

COLUMNS = ["Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1"]
PER_CLASS = ["F1_neutral", "F1_anger", "F1_disgust", "F1_fear", "F1_happiness", "F1_sadness", "F1_surprise"]
ACCURACY_FLOOR = 0.85


def decision_rows(
    name: str, probs: dict[str, np.ndarray], labels: dict[str, np.ndarray], prior: list[float]
) -> list[tuple[str, dict]]:
    """Test metrics of `name` under each decision rule, tau fitted on the validation split."""
    rows = [(f"{name}, argmax", classification_metrics(labels["test"], probs["test"].argmax(-1)))]
    for floor in (None, ACCURACY_FLOOR):
        tau, _, floor_met = fit_tau(probs["validation"], labels["validation"], prior, "Macro_F1", min_accuracy=floor)
        rule = f"prior_corrected tau {tau:.2f}"
        if floor is not None:
            rule += f", val acc >= {floor}" + ("" if floor_met else " (not reached)")
        predictions = decide(probs["test"], "prior_corrected", tau, prior)
        rows.append((f"{name}, {rule}", classification_metrics(labels["test"], predictions)))
    return rows


def markdown_table(first_column: str, rows: list[tuple[str, dict]], goal: dict[str, float] | None = None) -> str:
    """One row per model: the headline metrics, per-class F1 and, with `goal`, whether it meets it."""
    header = [first_column, *COLUMNS, *PER_CLASS] + (["meets every goal"] if goal else [])
    cells = []
    for name, m in rows:
        cells.append([name] + [f"{m[c]:.3f}" if c in m else "" for c in COLUMNS + PER_CLASS])
        if goal:
            cells[-1].append("yes" if all(m[c] >= v for c, v in goal.items()) else "")
    return render_markdown(header, cells)
