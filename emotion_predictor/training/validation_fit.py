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
from emotion_predictor.modeling.knn_memory import KnnMemory, fit_given_emotion_weight, fit_memory
from emotion_predictor.prediction.decision import fit_tau
from emotion_predictor.prediction.forecast import Trajectory, classifier_and_queries, emotion_distributions
from emotion_predictor.prediction.inference import Classifier, model_outputs

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


@dataclasses.dataclass
class MemoryKey:
    """What keys the memory's rows: the previous utterance (`key_turns` 2) and the emotions of the
    last `trajectory_turns` turns."""

    key_turns: int = 1
    trajectory_turns: int = 0


def gold_trajectories(frame: Any, turns: int) -> np.ndarray:
    """(rows, turns) gold emotion codes of each row's last turns, current first; -1 where the
    dialogue has no such turn or the source gives no emotion."""
    codes = np.full((len(frame), turns), -1, dtype=np.int64)
    for row, (label, history) in enumerate(zip(frame["current_label"], frame["history_labels"])):
        values = [label, *reversed(history)][:turns]
        codes[row, : len(values)] = values
    return codes


def build_memory(trained: Classifier, frame: Any, prior: list[float], key: MemoryKey, batch_size: int) -> KnnMemory:
    """The memory of `frame`'s rows: each distinct input (and previous utterance) embedded once,
    rows keyed on them and on their gold trajectory."""
    inputs = [tuple(row) for row in frame["turns"]]
    previous = frame["previous_text"].tolist() if key.key_turns == 2 else []
    distinct = list(dict.fromkeys([*inputs, *((text,) for text in previous if text)]))
    index = {text: i for i, text in enumerate(distinct)}
    _, embedded = model_outputs(trained, [list(text) for text in distinct], batch_size, True, True)
    return KnnMemory(
        torch.from_numpy(embedded),
        torch.tensor([index[text] for text in inputs]),
        torch.tensor([index[(text,)] if text else -1 for text in previous] or [-1] * len(inputs)),
        torch.tensor(frame["label"].to_numpy()),
        np.asarray(prior, dtype=np.float64),
        torch.from_numpy(gold_trajectories(frame, key.trajectory_turns)) if key.trajectory_turns else None,
        key_turns=key.key_turns,
    )


def final_forecasts(
    trained: Classifier,
    frames: dict[str, Any],
    memory_frame: Any,
    prior: list[float],
    batch_size: int,
    fit: Callable[[np.ndarray], tuple[dict[str, Any], tuple[bool, float]]],
    key: MemoryKey | None = None,
) -> FinalForecasts:
    """Score `frames` (validation, maybe test) through the same inference code as evaluation and
    prediction (recognising their trajectories' emotions, never reading their gold ones), then fit
    the decision rule with `fit`, and the memory of `memory_frame`'s rows, keyed per `key`, if given."""
    key = key or MemoryKey()
    outputs = {
        split: classifier_and_queries(
            trained,
            key.key_turns if memory_frame is not None else 1,
            key.trajectory_turns if memory_frame is not None else 0,
            rows["turns"].tolist(),
            rows["previous_text"].tolist(),
            Trajectory.of_rows(rows),
            batch_size,
            True,
        )
        for split, rows in frames.items()
    }
    probs = {split: p for split, (p, _) in outputs.items()}
    decision, score = fit(probs["validation"])
    forecasts = FinalForecasts(probs, decision, None, probs, decision)
    if memory_frame is not None:
        memory = build_memory(trained, memory_frame, prior, key, batch_size)
        forecasts.decision, score = fit_memory(memory, probs["validation"], outputs["validation"][1], fit)
        if key.trajectory_turns:
            given = dataclasses.replace(outputs["validation"][1])
            given.emotions, given.given = emotion_distributions(
                trained,
                Trajectory.of_rows(frames["validation"], given=True),
                key.trajectory_turns,
                len(given),
                batch_size,
            )
            fit_given_emotion_weight(memory, probs["validation"], given, fit)
        forecasts.memory = memory
        forecasts.probs = {split: memory.mix(probs[split], queries) for split, (_, queries) in outputs.items()}
        logger.info(
            "knn_memory: %d rows (%d distinct texts) keyed on %d turn(s) and %d turns' emotions (weight %g "
            "recognised, %g given), neighbours %d, temperature %g, weight %g (0: the classifier alone)",
            len(memory.labels),
            len(memory.texts),
            memory.key_turns,
            memory.trajectory_turns,
            memory.emotion_weight,
            memory.given_emotion_weight,
            memory.neighbours,
            memory.temperature,
            memory.weight,
        )
    log_decision(forecasts.decision, score)
    return forecasts
