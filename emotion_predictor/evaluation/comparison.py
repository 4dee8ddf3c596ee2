"""The side-by-side comparison of evaluated models and baselines: `ModelResult` (one model's
record), `comparison.csv` (one row per model, the best value per metric marked), `comparison.md`
(headline, seen / unseen and per-class F1 tables) and `comparison.png` (per-class F1 as grouped
bars, baselines hatched). `evaluation.run_evaluation` calls `write_comparison` once every model
is scored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emotion_predictor.data.train_split import SEEN_DEFINITION
from emotion_predictor.evaluation.metrics import HEADLINE
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.output_files import atomic_path, write_csv, write_text
from emotion_predictor.tables import markdown_table

COMPARED = HEADLINE + [f"F1_{name}" for name in EMOTIONS]
GROUPS = ("seen", "unseen")
GROUP_METRICS = ["Balanced_Accuracy", "Macro_F1"]  # per group in the comparison


@dataclass
class ModelResult:
    """One evaluated model or baseline: its display name, where its outputs are (None for a
    baseline) and its `metrics.json` content."""

    name: str
    folder: str | None
    record: dict[str, Any]
    baseline: bool = False


def plot_comparison(results: Sequence[ModelResult], path: str) -> None:
    """Per-class F1 (and Macro_F1) of every model and baseline (hatched) as grouped bars."""
    from matplotlib.figure import Figure

    groups = EMOTIONS + ["Macro_F1"]
    keys = [f"F1_{name}" for name in EMOTIONS] + ["Macro_F1"]
    fig = Figure(figsize=(max(10.0, len(groups) * (0.6 + 0.35 * len(results))), 5.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(results)
    for i, result in enumerate(results):
        values = [result.record["metrics"][k] for k in keys]
        positions = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
        bars = ax.bar(positions, values, width, label=result.name, hatch="//" if result.baseline else None)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-class F1 on {results[0].record['dataset']} [{results[0].record['split']}]")
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def comparison_table(results: Sequence[ModelResult]) -> pd.DataFrame:
    """One row per model and baseline: headline and per-class F1 figures, the seen / unseen
    figures, and the metrics it is (jointly) best in."""
    rows = []
    for r in results:
        row = {
            "model": r.name,
            "baseline": r.baseline,
            "source": r.record["model_source"],
            **{k: r.record["metrics"][k] for k in COMPARED},
        }
        for group in GROUPS:
            entry = r.record["seen_unseen"][group]
            row[f"{group}_rows"] = entry["rows"]
            row.update({f"{group}_{k}": (entry["metrics"] or {}).get(k, np.nan) for k in GROUP_METRICS})
        rows.append(row)
    table = pd.DataFrame(rows)
    # A column where every row has the same value marks none of them.
    best = {k: table[k].max() for k in COMPARED if table[k].nunique() > 1}
    table["best_in"] = [";".join(k for k in best if row[k] == best[k]) for _, row in table.iterrows()]
    table["f1_all_class_weights"] = [" ".join(f"{w:.4g}" for w in r.record["f1_all_class_weights"]) for r in results]
    table["f1_all_class_weights_source"] = [r.record["f1_all_class_weights_source"] for r in results]
    return table


def comparison_markdown(table: pd.DataFrame, dataset: str, split: str) -> str:
    """Markdown tables of the headline metrics (best per column in bold), the seen / unseen
    figures and per-class F1; baselines are marked."""

    def label(row: pd.Series) -> str:
        return f"{row['model']} *(baseline)*" if row["baseline"] else row["model"]

    def render(columns: list[str], headers: list[str] | None = None) -> list[str]:
        rows = []
        for _, row in table.iterrows():
            cells = []
            for column in columns:
                value = row[column]
                text = "-" if pd.isna(value) else str(int(value)) if column == "Classes-with-value" else f"{value:.4f}"
                cells.append(f"**{text}**" if column in row["best_in"].split(";") else text)
            rows.append([label(row), *cells])
        return markdown_table(["model", *(headers or columns)], rows, align="l" + "r" * len(columns)).splitlines()

    counts = {group: int(table[f"{group}_rows"].iloc[0]) for group in GROUPS}
    group_columns = [f"{g}_{k}" for g in GROUPS for k in GROUP_METRICS]
    group_headers = [f"{g} {k} (n={counts[g]:,})" for g in GROUPS for k in GROUP_METRICS]
    lines = [f"# Model comparison on {dataset} [{split}]", "", "Best value per column in **bold** (none if all tie)."]
    lines += [""] + render(HEADLINE)
    lines += ["", "## Seen / unseen rows", "", f"{SEEN_DEFINITION[0].upper()}{SEEN_DEFINITION[1:]}.", ""]
    lines += render(group_columns, group_headers)
    lines += ["", "## Per-class F1", ""] + render([f"F1_{n}" for n in EMOTIONS])
    lines += ["", "## Models", ""]
    lines += [
        f"- {label(row)}: `{row['source']}`; F1-all-class weights: {row['f1_all_class_weights_source']}"
        for _, row in table.iterrows()
    ]
    if table["f1_all_class_weights"].nunique() > 1:
        lines += [
            "",
            "Note: F1-all-class uses the balanced weights of each model's own train labels, which "
            "differ here; compare these models on Macro_F1 instead.",
        ]
    return "\n".join(lines) + "\n"


def write_comparison(results: Sequence[ModelResult], output_dir: str, dataset: str, split: str) -> str:
    table = comparison_table(results)
    write_csv(os.path.join(output_dir, "comparison.csv"), table)
    markdown = comparison_markdown(table, dataset, split)
    write_text(os.path.join(output_dir, "comparison.md"), markdown)
    plot_comparison(results, os.path.join(output_dir, "comparison.png"))
    return markdown
