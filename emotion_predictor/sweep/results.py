"""A sweep's outputs, the same for both backends, rewritten after every trial.

This module owns, from a list of `TrialRecord`s: `sweep_results.csv` (one row per trial),
`best_config.json` (a complete fine-tuning args file of the best trial), `sweep.png` (the metric
per trial with the best so far, and fANOVA parameter importances), `param_importances.json`, and
the summary table printed at the end of a run.

The CSV is built from our records rather than `optuna.Study.trials_dataframe()`: the wandb
backend has no Optuna study, both backends must write the same columns, and a pruned trial's
row shows the metric at its last evaluation, which the data frame leaves empty. The figure is
drawn here rather than with `optuna.visualization.matplotlib`, whose functions each open their
own figure (no `ax` argument), so the history and the importances could not share one PNG, and
which draw neither pruned nor failed trials.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from emotion_predictor.output_files import atomic_path, write_csv, write_json

if TYPE_CHECKING:
    from emotion_predictor.sweep.search_space import SearchSpace
    from emotion_predictor.sweep.setup import SweepSetup

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 5
RESULTS_FILE, BEST_CONFIG_FILE, PLOT_FILE = "sweep_results.csv", "best_config.json", "sweep.png"
IMPORTANCES_FILE = "param_importances.json"


@dataclasses.dataclass
class TrialRecord:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING
    worker: str | None
    value: float | None  # the metric: final for COMPLETE, at the last evaluation for PRUNED
    test_value: float | None
    duration_s: float | None
    params: dict[str, Any]
    error: str | None = None


def best_record(records: Sequence[TrialRecord], goal: str) -> TrialRecord | None:
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    if not complete:
        return None
    pick = max if goal == "maximize" else min
    return pick(complete, key=lambda r: (r.value, -r.number) if goal == "maximize" else (r.value, r.number))


def best_config(setup: SweepSetup, best: TrialRecord) -> dict[str, Any]:
    """A complete fine-tuning args file: the base keys, the constants and the best trial's parameters."""
    values = {**setup.base_values, **setup.space.constants, **best.params}
    values["output_dir"] = os.path.join(setup.output_dir, "best")
    values.pop("resume_from_checkpoint", None)
    values.pop("run_name", None)
    return values


def results_frame(records: Sequence[TrialRecord], metric: str):
    import pandas as pd

    params = sorted({name for r in records for name in r.params})
    rows = []
    for r in records:
        row = {
            "number": r.number,
            "state": r.state,
            "worker": r.worker,
            metric: r.value,
            f"test_{metric}": r.test_value,
            "duration_s": r.duration_s,
        }
        row.update({name: r.params.get(name) for name in params})
        row["error"] = r.error
        rows.append(row)
    columns = ["number", "state", "worker", metric, f"test_{metric}", "duration_s", *params, "error"]
    return pd.DataFrame(rows, columns=columns)


def param_importances(records: Sequence[TrialRecord], space: SearchSpace) -> dict[str, float] | None:
    """fANOVA importances of the searched parameters, once enough trials are complete."""
    import optuna

    names = [n for n, d in space.distributions.items() if not d.single()]
    complete = [
        r for r in records if r.state == "COMPLETE" and r.value is not None and all(n in r.params for n in names)
    ]
    if not names or len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    study_logger = logging.getLogger("optuna.storages._in_memory")
    level = study_logger.level
    study_logger.setLevel(logging.WARNING)  # no "new study created in memory" line for this scratch study
    try:
        study = optuna.create_study(direction=space.direction)
    finally:
        study_logger.setLevel(level)
    for r in complete:
        study.add_trial(
            optuna.trial.create_trial(
                params={n: r.params[n] for n in names},
                distributions={n: space.distributions[n] for n in names},
                value=r.value,
            )
        )
    try:
        # fANOVA, as documented (Optuna 5's default evaluator is PED-ANOVA); seeded: the same trials, the same figure.
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError, ZeroDivisionError) as err:
        logger.warning("Parameter importances skipped: %s", err)
        return None


def plot_sweep(records: Sequence[TrialRecord], setup: SweepSetup, path: str) -> dict[str, float] | None:
    """Metric per trial with the best so far, and the parameter importances when there are enough trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    space = setup.space
    importances = param_importances(records, space)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    pruned = [r for r in records if r.state == "PRUNED" and r.value is not None]
    failed = [r for r in records if r.state == "FAIL"]
    if complete:
        ax.scatter(
            [r.number for r in complete], [r.value for r in complete], color="tab:blue", label="complete", zorder=3
        )
        best, xs, ys = None, [], []
        for r in complete:
            if best is None or (r.value > best if space.goal == "maximize" else r.value < best):
                best = r.value
            xs.append(r.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    if pruned:
        ax.scatter(
            [r.number for r in pruned],
            [r.value for r in pruned],
            marker="x",
            color="gray",
            label="pruned (last evaluation)",
            zorder=3,
        )
    if failed:
        low = min([r.value for r in complete + pruned] or [0.0])
        ax.scatter(
            [r.number for r in failed], [low] * len(failed), marker="v", color="tab:red", label="failed", zorder=3
        )
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {space.metric}")
    ax.set_title(f"{setup.name}: {space.metric} per trial ({space.goal})")
    if records:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="tab:green")
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title("parameter importances")
    else:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"parameter importances appear after\n{MIN_TRIALS_FOR_IMPORTANCE} complete trials",
            ha="center",
            va="center",
            fontsize=11,
        )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return importances


def write_outputs(records: Sequence[TrialRecord], setup: SweepSetup, plot: bool = True) -> dict[str, float] | None:
    out, space = setup.output_dir, setup.space
    write_csv(os.path.join(out, RESULTS_FILE), results_frame(records, space.metric))
    best = best_record(records, space.goal)
    if best is not None:
        write_json(os.path.join(out, BEST_CONFIG_FILE), best_config(setup, best))
    importances = plot_sweep(records, setup, os.path.join(out, PLOT_FILE)) if plot else None
    if importances:
        write_json(os.path.join(out, IMPORTANCES_FILE), importances)
    return importances


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def summary(records: Sequence[TrialRecord], setup: SweepSetup, mine: int | None = None, top: int = 10) -> str:
    """The table printed at the end of a run: counts, the best trials, and where the outputs are."""
    space = setup.space
    states = {s: sum(r.state == s for r in records) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    lines = [
        "",
        f"Sweep {setup.name!r}: {len(records)} trials: {states['COMPLETE']} complete, {states['PRUNED']} pruned, "
        f"{states['FAIL']} failed, {states['RUNNING']} running"
        + (
            f"; worker {setup.worker!r} finished {mine} of sweep_count {setup.args.sweep_count}"
            if mine is not None
            else ""
        ),
    ]
    params = list(space.distributions) or sorted({n for r in records for n in r.params})
    ranked = sorted(
        [r for r in records if r.value is not None],
        key=lambda r: (r.state != "COMPLETE", -(r.value or 0) if space.goal == "maximize" else (r.value or 0)),
    )[:top]
    if ranked:
        header = ["trial", "state", space.metric, "seconds", *params]
        rows = [
            [
                str(r.number),
                r.state,
                format_value(r.value),
                format_value(r.duration_s),
                *(format_value(r.params.get(p)) for p in params),
            ]
            for r in ranked
        ]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
        if len(records) > len(ranked):
            lines.append(f"(all {len(records)} trials in {RESULTS_FILE})")
    for r in records:
        if r.state == "FAIL":
            lines.append(f"trial {r.number} failed: {r.error}")
    best = best_record(records, space.goal)
    out = setup.output_dir
    if best is None:
        lines.append("No complete trial yet, so no best_config.json.")
    else:
        lines.append(
            f"Best: trial {best.number}, validation {space.metric} {format_value(best.value)}"
            + (f" (test {format_value(best.test_value)})" if best.test_value is not None else "")
            + f"; train it with: uv run python ep_fine_tune.py --json_file {os.path.join(out, BEST_CONFIG_FILE)}"
        )
    lines.append(f"Outputs: {', '.join(os.path.join(out, n) for n in (RESULTS_FILE, BEST_CONFIG_FILE, PLOT_FILE))}")
    return "\n".join(lines)
