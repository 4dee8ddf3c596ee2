"""Scoring next-turn emotion forecasters on a dataset split, and comparing them with each other
and with built-in baselines.

`run_evaluation` is the one code path behind `ep_evaluate.py`. It loads the split once, fits the
baselines (`baselines.py`: always-majority and TF-IDF + logistic regression, on the train rows
the first fine-tuned model was trained on, with its context and decision rule), then for each
model (a fine-tuning `output_dir`, its `model/` or `adapter/`, a local folder, `package:<module>`
or a Hub id) scores every row with `inference.predict_proba`, turns the probabilities into a
class with `decide`, and writes, atomically, into the output folder (one subfolder per model
when there are several):

- `report.txt`: scikit-learn's classification report, the headline metrics, the F1-all-class
  weights and where they come from, the decision rule, the seen / unseen breakdown and the
  margin over the best baseline (also printed);
- `metrics.json`: every figure (headline, per class, averages, confusion matrix, seen / unseen,
  versus the best baseline) and how it was obtained (input settings, label mapping, F1-all-class
  weights, decision rule, timing);
- `predictions.csv`: one row per example with the true and predicted class, whether the row is
  seen, and the 7 probabilities;
- `confusion_matrix.png`: counts and row-normalised rates.

Every row is "seen" or "unseen" (`train_split.SEEN_DEFINITION`: its current utterance occurs
verbatim in the train split) and the headline metrics are also given for each group.
F1-all-class uses the balanced class weights of the model's train labels: the ones saved with
the model, else recomputed from the train split (and the report says so).

With several models, or any baseline, it also writes `baselines.json` (the baselines' records),
`comparison.md`, `comparison.csv` (`comparison.py`: one row per model and baseline, the best value per metric
marked) and `comparison.png` (per-class F1 as grouped bars). Each model's outputs are complete on
disk before the next model starts, so a failure on a later model keeps the earlier results.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emotion_predictor.arguments import EvaluateArguments
from emotion_predictor.data.train_split import TrainRecipe, TrainSplit, recipe_of
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.baselines import (
    BASELINES,
    GIVEN,
    MAJORITY_DECISION,
    BaselineRows,
    baseline_decision,
    cached_probabilities,
)
from emotion_predictor.evaluation.comparison import ModelResult, write_comparison
from emotion_predictor.evaluation.metrics import (
    balanced_class_weights,
)
from emotion_predictor.evaluation.records import (
    figures,
    full_report,
    plot_confusion_matrix,
    predictions_table,
    versus_baselines,
)
from emotion_predictor.hub import PACKAGE_PREFIX, is_local_path, resolve_model_path
from emotion_predictor.labels import EMOTIONS, NUM_LABELS
from emotion_predictor.modeling.sequence_classifier import read_metadata
from emotion_predictor.output_files import write_csv, write_json, write_text
from emotion_predictor.prediction.decision import decide_with_metadata, describe_decision
from emotion_predictor.prediction.forecast import Trajectory, predict_proba
from emotion_predictor.prediction.inference import Classifier, load_classifier, locate_model_folder, window

GIVEN_FOLDER = "given_emotions"  # a model's given-emotions outputs, inside its own folder
DEFAULT_TRAJECTORY_TURNS = 2  # tfidf_history's turns when no evaluated model reads a trajectory


@dataclass
class SavedModel:
    """What a model brings before it is loaded: its fine-tuning metadata ({} if none) and the
    train rows it was fine-tuned on."""

    metadata: dict[str, Any] = field(default_factory=dict)
    recipe: TrainRecipe = field(default_factory=TrainRecipe)


@dataclass
class Reference:
    """What every model of one evaluation is scored against: the split's rows, which of them are
    seen, the train split, and the baselines (scored before the models)."""

    frame: pd.DataFrame
    seen: np.ndarray
    train: TrainSplit
    baselines: list[ModelResult] = field(default_factory=list)


# --------------------------------------------------------------------------- names and inputs


def default_name(model: str) -> str:
    """A short display name from a model path or id (`runs/x` -> x, `runs/x/adapter` -> x-adapter)."""
    text = model.removeprefix(PACKAGE_PREFIX).rstrip("/\\") or model
    base = os.path.basename(text) or text
    if base in ("model", "adapter"):
        parent = os.path.basename(os.path.dirname(os.path.abspath(os.path.expanduser(text))))
        base = f"{parent}-{base}" if parent else base
    return base


def display_names(models: Sequence[str], names: Sequence[str] | None = None) -> list[str]:
    """The given names, or names derived from the models, made unique with -2, -3, ..."""
    if names is not None:
        return list(names)
    result: list[str] = []
    for model in models:
        name, count = default_name(model), 2
        while name in result:
            name, count = f"{default_name(model)}-{count}", count + 1
        result.append(name)
    return result


def folder_name(name: str) -> str:
    """A safe subfolder name for a display name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return safe


def saved_model(model: str) -> SavedModel:
    """The metadata and train recipe of a fine-tuned local model (empty for any other model)."""
    if not (is_local_path(model) or model.startswith(PACKAGE_PREFIX)):
        return SavedModel()  # Hub models carry no emotion_predictor.json
    path = resolve_model_path(model)
    if not os.path.isdir(path):
        return SavedModel()
    folder = locate_model_folder(path)
    metadata = read_metadata(folder) or {}
    return SavedModel(metadata, recipe_of(folder)) if metadata else SavedModel()


# --------------------------------------------------------------------------- deciding and scoring


def f1_weights_of(saved: SavedModel, train: TrainSplit) -> tuple[list[float], str]:
    """F1-all-class weights: the ones saved with the model, else the balanced weights of its
    train labels recomputed from the train split; and a sentence saying which."""
    weights = saved.metadata.get("f1_all_class_weights")
    if isinstance(weights, list) and len(weights) == NUM_LABELS:
        return [float(w) for w in weights], "saved with the model (balanced weights of its train labels)"
    weights = balanced_class_weights(train.labels(saved.recipe))
    why = "the model was fine-tuned before they were saved with it" if saved.metadata else "not a fine-tuned model"
    return weights, f"recomputed from the {saved.recipe.describe()}: {why}"


def head_description(classifier: Classifier) -> dict[str, Any]:
    """The model's own labels and which of them feeds each of our classes."""
    labels = {int(k): v for k, v in classifier.config.id2label.items()}
    mapping = {ours: labels[index] for ours, index in zip(EMOTIONS, classifier.output_order)}
    return {
        "model_labels": [labels[i] for i in sorted(labels)],
        "label_mapping": mapping,
        "mapped_by_name": classifier.output_order != list(range(NUM_LABELS)) or list(mapping.values()) != EMOTIONS,
    }


# --------------------------------------------------------------------------- baselines


def baseline_rows(frame: pd.DataFrame, context: int, turns: int) -> BaselineRows:
    """What the baselines read of `frame`'s rows (`baselines.BaselineRows`), `turns` trajectory turns."""
    trajectory = Trajectory.of_rows(frame, given=True)
    texts = [(row + [""] * turns)[:turns] for row in trajectory.texts]
    codes = np.full((len(frame), turns), -1, dtype=np.int64)
    width = min(turns, trajectory.given.shape[1])
    codes[:, :width] = trajectory.given[:, :width]
    return BaselineRows(
        [" ".join(window(t, context)) for t in frame["turns"]], texts, codes, frame["dialog_id"].to_numpy()
    )


def score_baselines(
    args: EvaluateArguments, reference: Reference, saved: SavedModel, context: int
) -> list[ModelResult]:
    """Fit and score each baseline of `args` on the train rows and decision rule of `saved` (the
    first fine-tuned model), with `context` turns; see `baselines.py`. `tfidf_history` gives two
    rows: recognised emotions, then given ones."""
    train, validation = reference.train.rows(saved.recipe, context)
    train_labels = train["label"].to_numpy()
    weights = balanced_class_weights(train_labels)
    turns = (saved.metadata.get("knn_memory") or {}).get("trajectory_turns") or DEFAULT_TRAJECTORY_TURNS
    rows = {
        "train": baseline_rows(train, context, turns),
        "validation": baseline_rows(validation, context, turns),
        "evaluated": baseline_rows(reference.frame, context, turns),
    }
    results = []
    for name in args.baselines:
        started = time.perf_counter()
        probs, cached = cached_probabilities(
            name,
            rows["train"],
            train_labels,
            {s: rows[s] for s in ("validation", "evaluated")},
            args.baseline_cache_dir,
        )
        seconds = time.perf_counter() - started
        for suffix in ("", GIVEN) if name == "tfidf_history" else ("",):
            validation_probs = probs[f"validation{suffix}"]
            decision = baseline_decision(
                name, saved.metadata, validation_probs, validation["label"].to_numpy(), train_labels, weights
            )
            display = f"baseline: {name}" + (" (given emotions)" if suffix else "")
            facts = BaselineFacts(display, name, decision, context, len(train), len(validation), seconds, cached)
            results.append(baseline_result(facts, probs[f"evaluated{suffix}"], args, reference, saved, weights))
    return results


@dataclass
class BaselineFacts:
    """How one baseline row was obtained."""

    display: str
    name: str
    decision: dict[str, Any]
    context: int
    train_rows: int
    validation_rows: int
    seconds: float
    cached: bool


def baseline_result(
    facts: BaselineFacts,
    probs: np.ndarray,
    args: EvaluateArguments,
    reference: Reference,
    saved: SavedModel,
    weights: list[float],
) -> ModelResult:
    """One baseline's record (as a model's metrics.json holds it), printed with its report."""
    labels = reference.frame["label"].to_numpy(dtype=np.int64)
    predicted = decide_with_metadata(probs, facts.decision)
    decision = MAJORITY_DECISION if facts.name == "majority" else describe_decision(facts.decision)
    record = {
        "model": facts.display,
        "model_source": BASELINES[facts.name],
        "baseline": True,
        "dataset": args.dataset,
        "split": args.split,
        "rows": int(len(reference.frame)),
        "inputs": {"context_turns": facts.context},
        "emotions": "given" if facts.display.endswith("(given emotions)") else "recognised",
        "train_rows": facts.train_rows,
        "train_recipe": saved.recipe.describe(),
        "validation_rows": facts.validation_rows,
        "decision_rule": facts.decision["decision_rule"],
        "tau": facts.decision.get("tau"),
        "decision": decision,
        "f1_all_class_weights": weights,
        "f1_all_class_weights_source": f"balanced weights of its train labels ({saved.recipe.describe()})",
        **figures(labels, predicted, weights, reference.seen),
        "timing": {"seconds": round(facts.seconds, 3), "cached": facts.cached},
    }
    fitted = "cached" if facts.cached else f"fitted in {facts.seconds:.1f} s"
    print(
        f"\n== {facts.display} ({BASELINES[facts.name]}; {decision}; {facts.train_rows} train rows, {fitted}) ==\n"
        f"{full_report(labels, predicted, record, decision)}",
        flush=True,
    )
    return ModelResult(facts.display, None, record, baseline=True)


# --------------------------------------------------------------------------- one model


def evaluate_model(
    classifier: Classifier,
    saved: SavedModel,
    reference: Reference,
    args: EvaluateArguments,
    name: str,
    folder: str,
    given: bool = False,
) -> ModelResult:
    """Score the reference rows with `classifier` and write the model's four output files into
    `folder`. The trajectory's emotions are recognised from the text, or, with `given`, read from
    the split's gold emotions of the history turns (the upper bound a chatbot that knows them gets)."""
    frame = reference.frame
    turns = [window(t, classifier.context_turns) for t in frame["turns"]]
    started = time.perf_counter()
    previous = frame["previous_text"].tolist()
    trajectory = Trajectory.of_rows(frame, given=given)
    probs = predict_proba(classifier, turns, args.batch_size, not args.disable_tqdm, previous, trajectory)
    seconds = time.perf_counter() - started
    predicted = decide_with_metadata(probs, classifier.metadata)
    labels = frame["label"].to_numpy(dtype=np.int64)
    weights, weights_source = f1_weights_of(saved, reference.train)
    scored = figures(labels, predicted, weights, reference.seen)
    # Recognised-mode forecasts are compared with recognised-mode baselines, given with given.
    mode = "given" if given else "recognised"
    same_mode = [b for b in reference.baselines if b.record["emotions"] == mode]
    record = {
        "model": name,
        "model_source": classifier.name,
        "dataset": args.dataset,
        "dataset_config": args.dataset_config,
        "split": args.split,
        "rows": int(len(frame)),
        "max_eval_samples": args.max_eval_samples,
        "seed": args.seed,
        "inputs": {
            "context_turns": classifier.context_turns,
            "context_separator": classifier.separator,
            "max_length": classifier.max_length,
        },
        "fine_tuned": bool(classifier.metadata),
        "emotions": mode,
        "head": head_description(classifier),
        "decision_rule": classifier.metadata.get("decision_rule", "argmax"),
        "tau": classifier.metadata.get("tau"),
        "f1_all_class_weights": weights,
        "f1_all_class_weights_source": weights_source,
        **scored,
        "versus_best_baseline": versus_baselines(scored["metrics"], same_mode) if same_mode else None,
        "class_names": EMOTIONS,
        "timing": {
            "device": str(classifier.device),
            "runtime": classifier.runner.runtime,
            "batch_size": args.batch_size,
            "inference_seconds": round(seconds, 3),
            "rows_per_second": round(len(frame) / seconds, 1) if seconds > 0 else None,
        },
    }
    report = full_report(labels, predicted, record, describe_decision(classifier.metadata))
    os.makedirs(folder, exist_ok=True)
    write_csv(os.path.join(folder, "predictions.csv"), predictions_table(frame, probs, predicted, reference.seen))
    plot_confusion_matrix(
        scored["confusion_matrix"],
        os.path.join(folder, "confusion_matrix.png"),
        f"{name} on {args.dataset} [{args.split}], {len(frame)} rows",
    )
    write_text(os.path.join(folder, "report.txt"), report)
    write_json(os.path.join(folder, "metrics.json"), record)
    print(
        f"\n== {name} ({classifier.name}) on {args.split}: {len(frame)} rows scored in {seconds:.1f} s "
        f"on {classifier.device} ==\n{report}",
        flush=True,
    )
    return ModelResult(name, folder, record)


# --------------------------------------------------------------------------- comparison


# --------------------------------------------------------------------------- the run


def run_evaluation(args: EvaluateArguments) -> list[ModelResult]:
    """Evaluate every model of `args` (and its baselines) on the split and write all outputs;
    see the module docstring. Returns the models' results, then the baselines'."""
    names = display_names(args.models, args.model_names)
    several = len(args.models) > 1
    saved = [saved_model(model) for model in args.models]
    contexts = [s.metadata.get("context_turns", 0) for s in saved]
    context = args.context_turns if args.context_turns is not None else max(contexts)
    data = prepare_splits(
        args.dataset,
        splits=[args.split],
        context_turns=context,
        seed=args.seed,
        dataset_config=args.dataset_config,
        max_rows={args.split: args.max_eval_samples},
    )
    frame = data.splits[args.split]
    train = TrainSplit(args.dataset, args.dataset_config)
    reference = Reference(frame, train.seen(frame["text"]), train)
    if args.baselines:
        # The baselines follow the first fine-tuned model (its train rows, context and decision rule).
        first = next((i for i, s in enumerate(saved) if s.metadata), 0)
        baseline_context = args.context_turns if args.context_turns is not None else contexts[first]
        reference.baselines = score_baselines(args, reference, saved[first], baseline_context)
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(os.path.join(args.output_dir, "baselines.json"), {b.name: b.record for b in reference.baselines})
    results: list[ModelResult] = []
    for number, (model, name, brought) in enumerate(zip(args.models, names, saved), start=1):
        folder = os.path.join(args.output_dir, folder_name(name)) if several else args.output_dir
        try:
            classifier = load_classifier(
                model,
                args.device,
                args.context_turns,
                args.context_separator,
                args.max_length,
                args.runtime,
                args.knn_search,
            )
            results.append(evaluate_model(classifier, brought, reference, args, name, folder))
            if classifier.memory is not None and classifier.memory.trajectory_turns:
                given_folder = os.path.join(folder, GIVEN_FOLDER)
                given_name = f"{name} (given emotions)"
                results.append(evaluate_model(classifier, brought, reference, args, given_name, given_folder, True))
        except UserError as err:
            if not several:
                raise
            done = ", ".join(r.folder for r in results)
            kept = f"; the finished outputs of the models before it are kept in {done}" if results else ""
            raise type(err)(f"model {number} of {len(args.models)} ({model}): {err}{kept}") from None
        del classifier
    compared = results + reference.baselines
    if len(compared) > 1:
        print(write_comparison(compared, args.output_dir, args.dataset, args.split), flush=True)
    return compared
