"""F1-all-class per the reference: per-class F1 x the balanced class weights of the train labels
the run trains on (after neutral downsampling), whatever the loss's class weights, in training
and in evaluation alike."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import tiny_config
from emotion_predictor.labels import EMOTIONS


@pytest.fixture(scope="module")
def cross_entropy_run(tmp_path_factory, tiny_model_dir, tiny_dataset_dir) -> str:
    """A tiny cross-entropy run without class weights, on half the neutral train rows."""
    from emotion_predictor.training.recipe import run_fine_tuning

    out = str(tmp_path_factory.mktemp("ce_run"))
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            out,
            loss="cross_entropy",
            class_weights="none",
            neutral_keep_ratio=0.5,
            num_train_epochs=1,
        )
    )
    return out


def read_json(*parts: str) -> dict:
    with open(os.path.join(*parts), encoding="utf-8") as handle:
        return json.load(handle)


def balanced_from_counts(counts: dict[str, int]) -> np.ndarray:
    """scikit-learn's "balanced" weights n / (k * count_c) from class counts, 0 for absent classes."""
    values = np.array([counts[name] for name in EMOTIONS], dtype=float)
    present = values > 0
    return np.where(present, values.sum() / (present.sum() * np.maximum(values, 1)), 0.0)


def test_unweighted_cross_entropy_run_uses_balanced_weights_of_its_train_labels(cross_entropy_run):
    results = read_json(cross_entropy_run, "metrics.json")
    stats = read_json(cross_entropy_run, "data_stats.json")["splits"]["train"]
    expected = balanced_from_counts(stats["counts_after_downsampling"])
    assert stats["neutral_keep_ratio"] == 0.5
    assert results["class_weights"] == [1.0] * 7  # the loss is unweighted ...
    assert results["f1_all_class_weights"] == pytest.approx(expected)  # ... F1-all-class is not
    metadata = read_json(cross_entropy_run, "model", "emotion_predictor.json")
    assert metadata["f1_all_class_weights"] == pytest.approx(expected)
    for split in ("validation", "test"):
        metrics = results[split]
        per_class = np.array([metrics[f"F1_{name}"] for name in EMOTIONS])
        assert metrics["F1-all-class"] == pytest.approx(float(np.mean(per_class * expected)), abs=1e-6)
        assert abs(metrics["F1-all-class"] - metrics["Macro_F1"]) > 1e-3
    with open(os.path.join(cross_entropy_run, "report.txt"), encoding="utf-8") as handle:
        assert f"F1-all-class weights: neutral {expected[0]:.4g}, anger {expected[1]:.4g}" in handle.read()


def test_evaluation_reproduces_the_runs_f1_all_class_with_its_saved_weights(
    tmp_path, cross_entropy_run, tiny_dataset_dir
):
    from emotion_predictor.arguments import EvaluateArguments
    from emotion_predictor.config import build_instances
    from emotion_predictor.evaluation.evaluate import run_evaluation

    values = {
        "models": cross_entropy_run,
        "dataset": tiny_dataset_dir,
        "output_dir": str(tmp_path),
        "baselines": [],
        "device": "cpu",
        "disable_tqdm": True,
    }
    (args,), _ = build_instances(values, (EvaluateArguments,), "test", set())
    (result,) = run_evaluation(args)
    trained = read_json(cross_entropy_run, "metrics.json")["test"]
    assert result.record["f1_all_class_weights_source"].startswith("saved with the model")
    assert result.record["metrics"]["F1-all-class"] == pytest.approx(trained["F1-all-class"], abs=1e-6)
    assert result.record["metrics"]["Macro_F1"] == pytest.approx(trained["Macro_F1"], abs=1e-6)
