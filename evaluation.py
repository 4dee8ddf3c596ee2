"""Scoring next-turn emotion forecasters on a dataset split, and comparing several of them.

`run_evaluation` is the one code path behind `ep_evaluate.py`. It loads the split once, then
for each model (a fine-tuning `output_dir`, its `model/` or `adapter/`, a local folder,
`package:<module>` or a Hub id) scores every row with `inference.predict_proba`, turns the
probabilities into a class with `decide`, and writes, atomically, into the output folder (one
subfolder per model when there are several):

- `report.txt`: scikit-learn's classification report plus the headline metrics (also printed);
- `metrics.json`: every figure (headline, per class, averages, confusion matrix) and how it was
  obtained (input settings, label mapping, class weights, decision rule, timing);
- `predictions.csv`: one row per example with the true and predicted class and the 7 probabilities;
- `confusion_matrix.png`: counts and row-normalised rates.

With several models it also writes `comparison.md`, `comparison.csv` (one row per model, the
best value per metric marked) and `comparison.png` (per-class F1 as grouped bars). Each
model's outputs are complete on disk before the next model starts, so a failure on a later
model keeps the earlier results.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from arguments import EvaluateArguments
from decision import decide_with_metadata, describe_decision
from errors import UserError
from hub import PACKAGE_PREFIX, is_local_path, resolve_model_path
from inference import Classifier, load_classifier, locate_model_folder, predict_proba, window
from labels import EMOTIONS, NUM_LABELS
from metrics import HEADLINE, classification_metrics, format_report
from modeling import read_metadata
from output_files import atomic_path, write_csv, write_json, write_text
from utils import prepare_splits

PROB_COLUMNS = [f"prob_{name}" for name in EMOTIONS]
COMPARED = HEADLINE + [f"F1_{name}" for name in EMOTIONS]


@dataclass
class ModelResult:
    """One evaluated model: its display name, where its outputs are and its `metrics.json` content."""

    name: str
    folder: str
    record: dict[str, Any]


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


def saved_context_turns(model: str) -> int:
    """The context_turns a fine-tuned local model was trained with (0 for any other model)."""
    if not (is_local_path(model) or model.startswith(PACKAGE_PREFIX)):
        return 0  # Hub models carry no emotion_predictor.json
    path = resolve_model_path(model)
    if not os.path.isdir(path):
        return 0
    return int((read_metadata(locate_model_folder(path)) or {}).get("context_turns", 0))


# --------------------------------------------------------------------------- deciding and scoring


def class_weights_of(metadata: dict[str, Any]) -> tuple[list[float], str]:
    """Class weights for F1-all-class: the model's saved ones, else all ones; and which it was."""
    weights = metadata.get("class_weights")
    if isinstance(weights, list) and len(weights) == NUM_LABELS:
        return [float(w) for w in weights], "model metadata (the weights it was fine-tuned with)"
    return [1.0] * NUM_LABELS, "none saved with the model: all ones"


def head_description(classifier: Classifier) -> dict[str, Any]:
    """The model's own labels and which of them feeds each of our classes."""
    labels = {int(k): v for k, v in classifier.model.config.id2label.items()}
    mapping = {ours: labels[index] for ours, index in zip(EMOTIONS, classifier.output_order)}
    return {
        "model_labels": [labels[i] for i in sorted(labels)],
        "label_mapping": mapping,
        "mapped_by_name": classifier.output_order != list(range(NUM_LABELS)) or list(mapping.values()) != EMOTIONS,
    }


def figures(labels: np.ndarray, predicted: np.ndarray, weights: Sequence[float]) -> dict[str, Any]:
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
    }


def predictions_table(frame: pd.DataFrame, probs: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "row_id": np.arange(len(frame)),
            "dialog_id": frame["dialog_id"].to_numpy(),
            "turn": frame["turn"].to_numpy(),
            "text": frame["text"].to_numpy(),
            "label": [EMOTIONS[i] for i in frame["label"]],
            "predicted": [EMOTIONS[i] for i in predicted],
        }
    )
    for i, column in enumerate(PROB_COLUMNS):
        table[column] = probs[:, i]
    return table


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
                ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=9,
                        color="white" if shown[r, c] > 0.5 else "black")
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_comparison(results: Sequence[ModelResult], path: str) -> None:
    """Per-class F1 (and Macro_F1) of every model as grouped bars."""
    from matplotlib.figure import Figure

    groups = EMOTIONS + ["Macro_F1"]
    keys = [f"F1_{name}" for name in EMOTIONS] + ["Macro_F1"]
    fig = Figure(figsize=(max(10.0, len(groups) * (0.6 + 0.35 * len(results))), 5.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(results)
    for i, result in enumerate(results):
        values = [result.record["metrics"][k] for k in keys]
        positions = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
        bars = ax.bar(positions, values, width, label=result.name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-class F1 on {results[0].record['dataset']} [{results[0].record['split']}]")
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


# --------------------------------------------------------------------------- one model


def evaluate_model(
    classifier: Classifier, frame: pd.DataFrame, args: EvaluateArguments, name: str, folder: str
) -> ModelResult:
    """Score `frame` with `classifier` and write the model's four output files into `folder`."""
    turns = [window(t, classifier.context_turns) for t in frame["turns"]]
    started = time.perf_counter()
    probs = predict_proba(classifier, turns, batch_size=args.batch_size, progress=not args.disable_tqdm)
    seconds = time.perf_counter() - started
    predicted = decide_with_metadata(probs, classifier.metadata)
    labels = frame["label"].to_numpy(dtype=np.int64)
    weights, weights_source = class_weights_of(classifier.metadata)
    scored = figures(labels, predicted, weights)
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
        "head": head_description(classifier),
        "decision_rule": classifier.metadata.get("decision_rule", "argmax"),
        "tau": classifier.metadata.get("tau"),
        "class_weights": weights,
        "class_weights_source": weights_source,
        **scored,
        "class_names": EMOTIONS,
        "timing": {
            "device": str(classifier.device),
            "batch_size": args.batch_size,
            "inference_seconds": round(seconds, 3),
            "rows_per_second": round(len(frame) / seconds, 1) if seconds > 0 else None,
        },
    }
    report = format_report(labels, predicted, scored["metrics"], describe_decision(classifier.metadata))
    os.makedirs(folder, exist_ok=True)
    write_csv(os.path.join(folder, "predictions.csv"), predictions_table(frame, probs, predicted))
    plot_confusion_matrix(
        scored["confusion_matrix"],
        os.path.join(folder, "confusion_matrix.png"),
        f"{name} on {args.dataset} [{args.split}], {len(frame)} rows",
    )
    write_text(os.path.join(folder, "report.txt"), report)
    write_json(os.path.join(folder, "metrics.json"), record)
    print(f"\n== {name} ({classifier.name}) on {args.split}: {len(frame)} rows scored in {seconds:.1f} s "
          f"on {classifier.device} ==\n{report}", flush=True)
    return ModelResult(name, folder, record)


# --------------------------------------------------------------------------- comparison


def comparison_table(results: Sequence[ModelResult]) -> pd.DataFrame:
    """One row per model: headline and per-class F1 figures, and the metrics it is (jointly) best in."""
    table = pd.DataFrame(
        [
            {"model": r.name, "source": r.record["model_source"], **{k: r.record["metrics"][k] for k in COMPARED}}
            for r in results
        ]
    )
    # A column where every model has the same value marks none of them.
    best = {k: table[k].max() for k in COMPARED if table[k].nunique() > 1}
    table["best_in"] = [";".join(k for k in best if row[k] == best[k]) for _, row in table.iterrows()]
    table["class_weights"] = [" ".join(f"{w:.4g}" for w in r.record["class_weights"]) for r in results]
    table["class_weights_source"] = [r.record["class_weights_source"] for r in results]
    return table


def comparison_markdown(table: pd.DataFrame, dataset: str, split: str) -> str:
    """A markdown table of the headline metrics (best per column in bold) and per-class F1."""

    def render(columns: list[str]) -> list[str]:
        lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
        for _, row in table.iterrows():
            cells = []
            for column in columns:
                value = row[column]
                text = str(int(value)) if column == "Classes-with-value" else f"{value:.4f}"
                cells.append(f"**{text}**" if column in row["best_in"].split(";") else text)
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
        return lines

    lines = [f"# Model comparison on {dataset} [{split}]", "", "Best value per column in **bold** (none if all tie)."]
    lines += [""]
    lines += render(HEADLINE) + ["", "## Per-class F1", ""] + render([f"F1_{n}" for n in EMOTIONS])
    lines += ["", "## Models", ""]
    lines += [f"- {row['model']}: `{row['source']}`; F1-all-class weights: {row['class_weights_source']}"
              for _, row in table.iterrows()]
    if table["class_weights"].nunique() > 1:
        lines += ["", "Note: F1-all-class uses each model's own class weights, which differ here; "
                  "compare these models on Macro_F1 instead."]
    return "\n".join(lines) + "\n"


def write_comparison(results: Sequence[ModelResult], output_dir: str, dataset: str, split: str) -> str:
    table = comparison_table(results)
    write_csv(os.path.join(output_dir, "comparison.csv"), table)
    markdown = comparison_markdown(table, dataset, split)
    write_text(os.path.join(output_dir, "comparison.md"), markdown)
    plot_comparison(results, os.path.join(output_dir, "comparison.png"))
    return markdown


# --------------------------------------------------------------------------- the run


def run_evaluation(args: EvaluateArguments) -> list[ModelResult]:
    """Evaluate every model of `args` on the split and write all outputs; see the module docstring."""
    names = display_names(args.models, args.model_names)
    several = len(args.models) > 1
    context = args.context_turns if args.context_turns is not None else max(map(saved_context_turns, args.models))
    data = prepare_splits(
        args.dataset,
        splits=[args.split],
        context_turns=context,
        seed=args.seed,
        dataset_config=args.dataset_config,
        max_rows={args.split: args.max_eval_samples},
    )
    frame = data.splits[args.split]
    results: list[ModelResult] = []
    for number, (model, name) in enumerate(zip(args.models, names), start=1):
        folder = os.path.join(args.output_dir, folder_name(name)) if several else args.output_dir
        try:
            classifier = load_classifier(
                model, args.device, args.context_turns, args.context_separator, args.max_length
            )
            results.append(evaluate_model(classifier, frame, args, name, folder))
        except UserError as err:
            if not several:
                raise
            done = ", ".join(r.folder for r in results)
            kept = f"; the finished outputs of the models before it are kept in {done}" if results else ""
            raise type(err)(f"model {number} of {len(args.models)} ({model}): {err}{kept}") from None
        del classifier
    if several:
        print(write_comparison(results, args.output_dir, args.dataset, args.split), flush=True)
    return results
