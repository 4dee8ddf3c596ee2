"""Decision rules: argmax and prior-corrected, tau fitted on validation and saved with the model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import tiny_config
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.evaluation.metrics import classification_metrics
from emotion_predictor.prediction.decision import (
    TAU_GRID,
    decide,
    decide_with_metadata,
    describe_decision,
    fit_tau,
    train_prior,
)
from emotion_predictor.prediction.forecast import predict_proba
from emotion_predictor.prediction.inference import load_classifier
from emotion_predictor.training.recipe import run_fine_tuning


def test_prior_corrected_with_tau_zero_is_argmax_and_tau_one_divides_the_prior():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=200)
    prior = [0.8, 0.02, 0.01, 0.01, 0.12, 0.02, 0.02]
    assert (decide(probs, "prior_corrected", 0.0, prior) == probs.argmax(-1)).all()
    assert (decide(probs, "prior_corrected", 1.0, prior) == (probs / np.array(prior)).argmax(-1)).all()
    with pytest.raises(ValueError, match="unknown decision rule"):
        decide(probs, "vote")


def test_fit_tau_maximises_the_metric_over_the_grid():
    rng = np.random.default_rng(1)
    labels = rng.choice(7, size=400, p=[0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    probs = rng.dirichlet(np.ones(7), size=400) * 0.3
    probs[np.arange(400), labels] += 0.2
    probs[:, 0] += 0.5
    probs /= probs.sum(1, keepdims=True)
    prior = train_prior(labels)
    tau, score, floor_met = fit_tau(probs, labels, prior, "Macro_F1")
    scores = [classification_metrics(labels, decide(probs, "prior_corrected", t, prior))["Macro_F1"] for t in TAU_GRID]
    best = [t for t, sc in zip(TAU_GRID, scores) if sc == max(scores)]
    assert score == pytest.approx(max(scores)) and tau == min(best, key=abs)
    assert tau > 0 and score > classification_metrics(labels, probs.argmax(-1))["Macro_F1"] and floor_met


def test_fit_tau_with_an_accuracy_floor_keeps_only_taus_that_reach_it():
    rng = np.random.default_rng(1)
    labels = rng.choice(7, size=400, p=[0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    probs = rng.dirichlet(np.ones(7), size=400) * 0.3
    probs[np.arange(400), labels] += 0.08  # weak signal: the best Macro_F1 costs accuracy
    probs[:, 0] += 0.5
    probs /= probs.sum(1, keepdims=True)
    prior = train_prior(labels)
    rows = []
    for t in TAU_GRID:
        values = classification_metrics(labels, decide(probs, "prior_corrected", t, prior))
        rows.append((float(t), values["Macro_F1"], values["Accuracy"]))
    free_tau, free_score, _ = fit_tau(probs, labels, prior, "Macro_F1")
    free_accuracy = next(a for t, _, a in rows if t == free_tau)
    floor = (free_accuracy + max(a for _, _, a in rows)) / 2
    assert floor > free_accuracy
    tau, score, floor_met = fit_tau(probs, labels, prior, "Macro_F1", min_accuracy=floor)
    eligible = [(t, f) for t, f, a in rows if a >= floor]
    assert floor_met and eligible
    assert score == max(f for _, f in eligible) and score < free_score
    assert next(a for t, _, a in rows if t == tau) >= floor
    tau, _, floor_met = fit_tau(probs, labels, prior, "Macro_F1", min_accuracy=1.0)
    assert not floor_met and next(a for t, _, a in rows if t == tau) == max(a for _, _, a in rows)


def test_prior_corrected_run_saves_tau_and_applies_it_everywhere(tmp_path, tiny_model_dir, tiny_dataset_dir):
    out = str(tmp_path / "run")
    result = run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            out,
            decision_rule="prior_corrected",
            decision_min_accuracy=0.2,
            max_steps=6,
        )
    )
    with open(os.path.join(out, "model", "emotion_predictor.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)
    assert metadata["decision_rule"] == "prior_corrected" and metadata["tau"] in TAU_GRID
    data = prepare_splits(tiny_dataset_dir)
    assert metadata["train_prior"] == pytest.approx(train_prior(data.splits["train"]["label"]))
    with open(os.path.join(out, "report.txt"), encoding="utf-8") as handle:
        assert f"Decision rule: prior_corrected (tau {metadata['tau']:.2f}" in handle.read()
    assert metadata["decision_min_accuracy"] == 0.2
    assert describe_decision(metadata).endswith("Macro_F1 subject to validation accuracy >= 0.2)")
    classifier = load_classifier(out)
    for split in ("validation", "test"):
        probs = predict_proba(classifier, data.splits[split]["turns"].tolist())
        recomputed = classification_metrics(
            data.splits[split]["label"], decide_with_metadata(probs, metadata), metadata["f1_all_class_weights"]
        )
        assert recomputed == pytest.approx(result.metrics[split])
        argmax = classification_metrics(data.splits[split]["label"], probs.argmax(-1), metadata["f1_all_class_weights"])
        assert argmax == pytest.approx(result.metrics[f"{split}_argmax"])
