"""Trajectory study (issue 24): the recipes with a recognised emotional trajectory, end to end,
then evaluated with recognised and given emotions against the TF-IDF baselines.

    uv run python -m bench.trajectory_study [--only NAME ...] [--report_only]

Rows, in the order they run:

- `recogniser`: the recogniser args/cpu_best.json trains first (`emotion_recogniser: "train"`:
  task recognise, one epoch over every train utterance, neutral kept at a quarter, seed 42);
- `cpu_best-seed42`, `cpu_best-seed43`, `cpu_best-seed44`: args/cpu_best.json with that seed,
  reading the `recogniser` row's model instead of training it again (the CPU budget of the study:
  the seeds vary the forecaster, the recogniser is seed 42's for all three);
- `quickstart_trajectory`: args/quickstart.json reading the last two turns' emotions, its
  recogniser trained inline on 8,000 utterances (sized for the quickstart's 10-minute budget; the
  run took 9.9 min alone before its ONNX export, so the quickstart stays without a trajectory).

Each row fine-tunes into bench/runs/trajectory-<name>/ (a finished run there, with its
metrics.json, is read instead of trained again) and the forecasters then run `ep_evaluate` on the test split
into that folder's `evaluation/` (the model with recognised emotions, the same model given the
split's gold emotions of the history turns, the tfidf and tfidf_history baselines on the same
train rows, each with its seen / unseen rows). It writes bench/results/trajectory-<name>.json as
soon as it finishes, so a re-run skips it; `--report_only` rebuilds bench/results/trajectory.md.
Validation chose everything a run fits (the memory's emotion weight 0, the text alone, competes);
test is scored for these recipes, the picks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

from bench.resumable import finished_rows, run_rows
from emotion_predictor.logs import setup_logging

setup_logging(logging.INFO)  # before the libraries load: their import-time noise is filtered

import numpy as np  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from emotion_predictor.arguments import FINE_TUNE_CLASSES, EvaluateArguments  # noqa: E402
from emotion_predictor.config import build_instances  # noqa: E402
from emotion_predictor.evaluation.evaluate import run_evaluation  # noqa: E402
from emotion_predictor.output_files import write_json  # noqa: E402
from emotion_predictor.tables import markdown_table  # noqa: E402
from emotion_predictor.training.recipe import run_fine_tuning  # noqa: E402

RESULTS = "bench/results"
RUNS = "bench/runs"
HEADLINE = ("Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1")
RECOGNISER = os.path.join(RUNS, "trajectory-recogniser")
# name -> (args file, seed, overrides)
ROWS = {
    "recogniser": (
        "args/cpu_best.json",
        42,
        {
            "task": "recognise",
            "num_train_epochs": 1.0,
            "knn_memory": "none",
            "trajectory_turns": 0,
            "emotion_recogniser": None,
            "decision_rule": "argmax",
        },
    ),
    **{
        f"cpu_best-seed{seed}": ("args/cpu_best.json", seed, {"emotion_recogniser": os.path.join(RECOGNISER, "model")})
        for seed in (42, 43, 44)
    },
    "quickstart_trajectory": (
        "args/quickstart.json",
        42,
        {"emotion_recogniser": "train", "trajectory_turns": 2, "recogniser_train_samples": 8000},
    ),
}


def result_path(name: str) -> str:
    return os.path.join(RESULTS, f"trajectory-{name}.json")


def fine_tune(name: str) -> tuple[str, dict]:
    """The row's run: its metrics.json when it has finished already, else trained now."""
    args_file, seed, overrides = ROWS[name]
    out = os.path.join(RUNS, f"trajectory-{name}")
    if os.path.isfile(os.path.join(out, "metrics.json")):
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
            return out, json.load(handle)
    with open(args_file, encoding="utf-8") as handle:
        values = {**json.load(handle), "seed": seed, **overrides, "output_dir": out, "disable_tqdm": True}
    instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, name, set(), TrainingArguments)
    return out, run_fine_tuning(*instances, passthrough).metrics


def records_by_model(out: str) -> dict[str, dict]:
    """The test-split records of the model (both modes) and the baselines, by display name."""
    args = EvaluateArguments(
        models=[out],
        model_names=["model"],
        dataset=values_of(out)["dataset"],
        output_dir=os.path.join(out, "evaluation"),
        disable_tqdm=True,
        baselines=["tfidf", "tfidf_history"],
    )
    return {result.name: result.record for result in run_evaluation(args)}


def values_of(out: str) -> dict:
    with open(os.path.join(out, "run_config.json"), encoding="utf-8") as handle:
        return json.load(handle)


def summary(record: dict) -> dict:
    """Headline figures of a record, overall and on the unseen / seen rows."""
    groups = record["seen_unseen"]
    return {
        "all": {k: record["metrics"][k] for k in HEADLINE},
        **{group: {k: (groups[group]["metrics"] or {}).get(k) for k in HEADLINE} for group in ("unseen", "seen")},
    }


def run(name: str) -> None:
    args_file, seed, overrides = ROWS[name]
    out, metrics = fine_tune(name)
    row = {"args_file": args_file, "seed": seed, "overrides": overrides, "train_seconds": metrics["train_seconds"]}
    if name == "recogniser":
        row.update({split: {k: metrics[split][k] for k in HEADLINE} for split in ("validation", "test")})
        write_json(result_path(name), row)
        return
    started = time.time()
    records = records_by_model(out)
    recogniser = os.path.join(out, "recogniser", "metrics.json")
    if not os.path.isfile(recogniser):
        recogniser = os.path.join(RECOGNISER, "metrics.json")
    row.update(
        {
            "evaluation_seconds": round(time.time() - started),
            "validation": {k: metrics["validation"][k] for k in HEADLINE},
            "validation_classifier_alone": {k: metrics["validation_classifier_alone"][k] for k in HEADLINE},
            "knn_memory": metrics["knn_memory"],
            "tau": metrics.get("tau"),
            "test": {model: summary(record) for model, record in records.items()},
        }
    )
    if os.path.isfile(recogniser):
        with open(recogniser, encoding="utf-8") as handle:
            recognised = json.load(handle)
        row["recogniser"] = {split: {k: recognised[split][k] for k in HEADLINE} for split in ("validation", "test")}
    write_json(result_path(name), row)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def report() -> str:
    results = finished_rows(ROWS, result_path)
    text = "# Trajectory study (issue 24)\n\nGenerated by `uv run python -m bench.trajectory_study`.\n"
    if "recogniser" in results:
        text += "\n## The recogniser (each utterance's own emotion)\n\n" + markdown_table(
            ["split", *HEADLINE],
            [
                [split, *(f"{results['recogniser'][split][k]:.3f}" for k in HEADLINE)]
                for split in ("validation", "test")
            ],
        )
    for recipe in ("quickstart_trajectory", "cpu_best"):
        done = [n for n in results if n.split("-")[0] == recipe]
        if not done:
            continue
        text += f"\n## {recipe}: test split (6,740 rows), {len(done)} seed(s), mean ± std\n\n"
        models = list(results[done[0]]["test"])
        table = []
        for model in models:
            for group in ("all", "unseen", "seen"):
                cells = [mean_std([results[n]["test"][model][group][k] for n in done]) for k in HEADLINE]
                table.append([f"{model} ({group} rows)", *cells])
        text += markdown_table(["model", *HEADLINE], table)
        recognisers = [results[n]["recogniser"]["test"] for n in done if "recogniser" in results[n]]
        if recognisers:
            cells = [mean_std([r[k] for r in recognisers]) for k in HEADLINE]
            text += "\nThe recogniser on each test utterance's own emotion: " + ", ".join(
                f"{k} {c}" for k, c in zip(HEADLINE, cells)
            )
        seconds = [results[n]["train_seconds"] for n in done]
        text += f"\n\nFine-tuning wall time per run: {', '.join(f'{s / 60:.1f} min' for s in seconds)}.\n"
        for name in done:
            memory = results[name]["knn_memory"] or {}
            validation = results[name]["validation"]
            text += (
                f"- {name}: validation {', '.join(f'{k} {validation[k]:.3f}' for k in HEADLINE)}; "
                f"memory weight {memory.get('weight')}, emotion weight {memory.get('emotion_weight')}, "
                f"neighbours {memory.get('neighbours')}, temperature {memory.get('temperature')}\n"
            )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(ROWS), help="run only these rows")
    parser.add_argument("--report_only", action="store_true", help="rebuild the report from saved results")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    names = [] if args.report_only else args.only or list(ROWS)
    run_rows(names, result_path, run, report, os.path.join(RESULTS, "trajectory.md"))


if __name__ == "__main__":
    main()
