"""metrics.py against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from metrics import classification_metrics, format_report


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
    assert np.allclose([result[f"F1_{n}"] for n in ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")], per_class, atol=1e-6)


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
    for line in ("Accuracy: 0.6667", "Balanced_Accuracy:", "F1-score:", "Macro_F1:", "F1-all-class:", "Classes-with-value: 2"):
        assert line in report
