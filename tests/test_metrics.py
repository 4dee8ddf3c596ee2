"""metrics.py against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emotion_predictor.evaluation.metrics import (
    balanced_class_weights,
    classification_metrics,
    format_report,
    headline_metrics,
    subset_figures,
)


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 7, 500))
    weights = rng.uniform(0.1, 5, 7)
    result = classification_metrics(y_true, y_pred, weights)
    per_class = f1_score(y_true, y_pred, labels=range(7), average=None)
    assert np.isclose(result["Accuracy"], accuracy_score(y_true, y_pred))
    assert np.isclose(result["Balanced_Accuracy"], balanced_accuracy_score(y_true, y_pred))
    assert np.isclose(result["F1-score"], f1_score(y_true, y_pred, average="weighted"))
    assert np.isclose(result["Macro_F1"], f1_score(y_true, y_pred, average="macro"))
    assert np.isclose(result["F1-all-class"], np.mean(per_class * weights), atol=1e-6)
    assert result["Classes-with-value"] == 7
    assert np.allclose(
        [result[f"F1_{n}"] for n in ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")],
        per_class,
        atol=1e-6,
    )


def test_always_neutral_baseline_and_classes_with_value():
    y_true = np.array([0] * 8 + [1, 4])
    y_pred = np.zeros(10, dtype=int)
    result = classification_metrics(y_true, y_pred)
    assert result["Classes-with-value"] == 1
    assert np.isclose(result["Balanced_Accuracy"], 1 / 3)  # recall 1, 0, 0 over the classes present
    assert np.isclose(result["Macro_F1"], (2 * 0.8 / 1.8) / 7)


def test_report_has_class_names_and_headline_lines():
    report = format_report([0, 1, 4], [0, 1, 0], classification_metrics([0, 1, 4], [0, 1, 0]))
    for name in ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"):
        assert name in report
    for line in (
        "Accuracy: 0.6667",
        "Balanced_Accuracy:",
        "F1-score:",
        "Macro_F1:",
        "F1-all-class:",
        "Classes-with-value: 2",
    ):
        assert line in report


def test_balanced_class_weights_are_n_over_k_counts_and_zero_for_absent_classes():
    labels = np.array([0] * 6 + [1] * 3 + [4] * 1)  # classes 2, 3, 5, 6 absent: k = 3
    weights = balanced_class_weights(labels)
    assert weights == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 0, 0, 10 / 3, 0, 0])
    # With these weights F1-all-class differs from Macro_F1 (it equals it only for all-ones weights).
    result = classification_metrics(labels, labels, weights)
    assert result["Macro_F1"] == pytest.approx(3 / 7)
    assert result["F1-all-class"] == pytest.approx(sum(weights) / 7)


def test_subset_figures_count_rows_and_have_no_metrics_when_empty():
    y_true, y_pred = np.array([0, 1, 1, 4]), np.array([0, 1, 0, 4])
    rows = np.array([True, True, False, False])
    entry = subset_figures(y_true, y_pred, rows, [1.0] * 7)
    assert entry["rows"] == 2 and entry["metrics"]["Accuracy"] == 1.0
    assert subset_figures(y_true, y_pred, np.zeros(4, dtype=bool), [1.0] * 7) == {"rows": 0, "metrics": None}


def test_report_lists_the_f1_all_class_weights():
    report = format_report([0, 1], [0, 1], classification_metrics([0, 1], [0, 1]), "argmax", [0.5, 2, 0, 0, 0, 0, 0])
    assert "F1-all-class weights: neutral 0.5, anger 2, disgust 0, fear 0, happiness 0, sadness 0, surprise 0" in report


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_headline_metrics_from_the_confusion_matrix_equal_classification_metrics(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(7, 200, p=[0.6, 0.1, 0.0, 0.05, 0.15, 0.05, 0.05])  # disgust absent from the labels
    predictions = np.where(rng.random(200) < 0.5, labels, rng.choice([0, 1, 2, 4], 200))  # fear never predicted
    weights = rng.uniform(0.5, 5, 7)
    full = classification_metrics(labels, predictions, weights)
    fast = headline_metrics(labels, predictions, weights)
    assert fast == pytest.approx({k: full[k] for k in fast}, abs=1e-6)
    assert set(fast) == {"Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1", "F1-all-class"}
