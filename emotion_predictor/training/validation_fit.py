"""What a fine-tuning run fits on validation once training ends: the trained classifier's
probabilities on validation (and test), the decision rule (`fit_decision`) and, with
`knn_memory`, the nearest-neighbour memory and its mix (`final_forecasts`). `bench/recipe_study.py`
runs the same code on saved classifiers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from emotion_predictor.arguments import DataArguments, TrainingConfig
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.evaluation.metrics import headline_metrics
from emotion_predictor.modeling.knn_memory import KnnMemory, fit_memory
from emotion_predictor.prediction.decision import fit_tau
from emotion_predictor.prediction.inference import Classifier, memory_queries, model_outputs

logger = logging.getLogger(__name__)


def fit_decision(
    cfg: TrainingConfig, val_probs: np.ndarray, val_labels: np.ndarray, prior: list[float], weights: list[float]
) -> tuple[dict[str, Any], tuple[bool, float]]:
    """The decision rule and its parameters, saved with the model (tau fitted on validation), and
    its validation score as (accuracy floor met, decision_metric) so that fits compare."""
    if cfg.decision_rule == "argmax":
        score = headline_metrics(val_labels, val_probs.argmax(-1), weights)[cfg.decision_metric]
        return {"decision_rule": "argmax"}, (True, score)
    floor = cfg.decision_min_accuracy
    tau, score, floor_met = fit_tau(val_probs, val_labels, prior, cfg.decision_metric, weights, floor)
    decision = {
        "decision_rule": "prior_corrected",
        "tau": tau,
        "train_prior": prior,
        "decision_metric": cfg.decision_metric,
        "decision_min_accuracy": floor,
    }
    return decision, (floor_met, score)


def log_decision(decision: dict[str, Any], score: tuple[bool, float]) -> None:
    if decision["decision_rule"] == "argmax":
        return
    tau, metric, floor = decision["tau"], decision["decision_metric"], decision["decision_min_accuracy"]
    if score[0]:
        logger.info("prior_corrected: tau %.2f maximises validation %s (%.4f)", tau, metric, score[1])
    else:
        logger.warning(
            "prior_corrected: no tau reaches validation accuracy %g (decision_min_accuracy); using tau %.2f, "
            "the most accurate",
            floor,
            tau,
        )


def memory_rows(cfg: TrainingConfig, data_args: DataArguments, trained_rows: Any) -> Any:
    """The rows `knn_memory` remembers: those the model trained on, or every train split row."""
    if cfg.knn_memory == "trained_rows":
        return trained_rows
    return prepare_splits(
        data_args.dataset,
        ["train"],
        context_turns=data_args.context_turns,
        neutral_keep_ratio=1.0,
        seed=cfg.seed,
        dataset_config=data_args.dataset_config,
    ).splits["train"]


@dataclasses.dataclass
class FinalForecasts:
    """The trained model's validation (and test) probabilities, memory mixed in when there is one."""

    probs: dict[str, np.ndarray]
    decision: dict[str, Any]
    memory: KnnMemory | None
    classifier_probs: dict[str, np.ndarray]
    classifier_decision: dict[str, Any]


def final_forecasts(
    trained: Classifier,
    frames: dict[str, Any],
    memory_frame: Any,
    prior: list[float],
    batch_size: int,
    fit: Callable[[np.ndarray], tuple[dict[str, Any], tuple[bool, float]]],
    key_turns: int = 1,
) -> FinalForecasts:
    """Score `frames` (validation, maybe test) through the same inference code as evaluation and
    prediction (Trainer.predict returns rows in length-grouped order when group_by_length is on),
    then fit the decision rule with `fit`, and the memory of `memory_frame`'s rows, keyed on
    `key_turns` turns, if given."""
    embed = memory_frame is not None
    outputs = {
        split: model_outputs(trained, rows["turns"].tolist(), batch_size, True, embed) for split, rows in frames.items()
    }
    probs = {split: p for split, (p, _) in outputs.items()}
    decision, score = fit(probs["validation"])
    forecasts = FinalForecasts(probs, decision, None, probs, decision)
    if embed:

        def keys(rows: Any, embeddings: np.ndarray) -> np.ndarray:
            turns, previous = rows["turns"].tolist(), rows["previous_text"].tolist()
            return memory_queries(trained, key_turns, turns, previous, embeddings, batch_size, True)

        queries = {split: keys(frames[split], embeddings) for split, (_, embeddings) in outputs.items()}
        embedded = model_outputs(trained, memory_frame["turns"].tolist(), batch_size, True, True)[1]
        memory = KnnMemory(
            torch.from_numpy(keys(memory_frame, embedded)),
            torch.tensor(memory_frame["label"].to_numpy()),
            prior,
            key_turns=key_turns,
        )
        forecasts.decision, score = fit_memory(memory, probs["validation"], queries["validation"], fit)
        forecasts.memory = memory
        forecasts.probs = {split: memory.mix(probs[split], queries[split]) for split in outputs}
        logger.info(
            "knn_memory: %d rows keyed on %d turn(s), neighbours %d, temperature %g, weight %g "
            "(0: the classifier alone)",
            len(memory.labels),
            memory.key_turns,
            memory.neighbours,
            memory.temperature,
            memory.weight,
        )
    log_decision(forecasts.decision, score)
    return forecasts
