"""The wandb backend of `ep_sweep.py` (`sweep_backend: wandb`), as the reference runs it.

With wandb credentials and network, it creates a wandb sweep from `sweep_config` unchanged (or
joins the one named by `sweep_storage`, entity/project/id, or the one this output_dir created
before, saved in `wandb_sweep_id.txt`) and runs an agent for `sweep_count` runs. Other machines
join with the same command plus `--sweep_storage entity/project/id`. Each run is the same trial
code as the optuna backend (sweep/trial.py), in `<output_dir>/trial-<run id>`, and logs the sweep
metric after each evaluation (what wandb's hyperband reads) and at the end. The local outputs
(sweep_results.csv, best_config.json, sweep.png) hold this agent's runs; the wandb dashboard
shows the whole sweep.

Without credentials, or with WANDB_MODE offline/disabled, it stops at once with one line that
says how to log in or to use the optuna backend.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from emotion_predictor.errors import UserError, first_line
from emotion_predictor.extras import require_extra
from emotion_predictor.sweep.results import TrialRecord, summary, write_outputs
from emotion_predictor.sweep.trial import TrialFailed, run_trial_fine_tuning, trial_values
from emotion_predictor.training.wandb_access import wandb_unavailable_reason

if TYPE_CHECKING:
    from emotion_predictor.sweep.setup import SweepSetup

LOGIN_HINT = (
    "run `uv run wandb login` (or set WANDB_API_KEY) with network access, "
    'or set "sweep_backend": "optuna" to sweep offline'
)
SWEEP_ID_FILE = "wandb_sweep_id.txt"


def metric_logger(metric: str) -> Any:
    """Logs the sweep metric under its bare name after each evaluation, for wandb's hyperband."""
    from transformers import TrainerCallback

    class LogSweepMetric(TrainerCallback):
        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
        ) -> None:
            import wandb

            value = (metrics or {}).get(f"eval_{metric}")
            if value is not None and wandb.run is not None:
                wandb.log({metric: float(value)})

    return LogSweepMetric()


def with_wandb_tracking(values: dict[str, Any]) -> dict[str, Any]:
    """The trials log to the agent's wandb run through the Trainer, whatever report_to says."""
    report_to = [r for r in values.get("report_to", []) if r != "none"]
    return {**values, "report_to": report_to if "wandb" in report_to else [*report_to, "wandb"]}


def sweep_id_for(setup: SweepSetup, project: str, entity: str | None) -> str:
    """The sweep to join (sweep_storage, else the one this output_dir created), or a new one."""
    import wandb

    id_file = os.path.join(setup.output_dir, SWEEP_ID_FILE)
    if setup.args.sweep_storage:
        return setup.args.sweep_storage
    if os.path.isfile(id_file):
        with open(id_file, encoding="utf-8") as handle:
            return handle.read().strip()
    config = {**setup.args.sweep_config, "name": setup.name}
    created = wandb.sweep(sweep=config, project=project, entity=entity)
    sweep_id = "/".join(p for p in (entity, project, created) if p)
    with open(id_file, "w", encoding="utf-8") as handle:
        handle.write(sweep_id + "\n")
    return sweep_id


def run_wandb_sweep(setup: SweepSetup) -> list[TrialRecord]:
    require_extra("wandb", "the wandb sweep backend")
    problem = wandb_unavailable_reason()
    if problem:
        raise UserError(f"the wandb sweep backend needs a wandb account ({problem}): {LOGIN_HINT}")
    import wandb

    out, space = setup.output_dir, setup.space
    os.makedirs(out, exist_ok=True)
    project = setup.args.sweep_config.get("project") or os.environ.get("WANDB_PROJECT") or "emotion-predictor"
    entity = setup.args.sweep_config.get("entity") or os.environ.get("WANDB_ENTITY")
    try:
        sweep_id = sweep_id_for(setup, project, entity)
    except Exception as err:  # wandb's client raises many types; all mean "could not create the sweep"
        raise UserError(f"could not create the wandb sweep: {first_line(err) if str(err) else repr(err)}") from None
    print(
        f"wandb sweep {sweep_id}; join from other machines with: uv run python ep_sweep.py --json_file <file> "
        f"--sweep_backend wandb --sweep_storage {sweep_id}"
    )

    records: list[TrialRecord] = []
    base = with_wandb_tracking(setup.base_values)

    def train() -> None:
        run = wandb.init()
        started = time.time()
        params = {k: v for k, v in dict(run.config).items() if k in setup.args.sweep_config["parameters"]}
        searched = {k: v for k, v in params.items() if k not in space.constants}
        trial_dir = os.path.join(out, f"trial-{run.id}")
        values = trial_values(base, params, trial_dir, run.name or run.id)
        record = TrialRecord(len(records), "RUNNING", setup.worker, None, None, None, searched)
        records.append(record)
        try:
            value, test = run_trial_fine_tuning(
                values,
                space.metric,
                [metric_logger(space.metric)],
                setup.args.sweep_keep_checkpoints,
                finish_tracker=False,
            )
            wandb.log({space.metric: value, **({f"test_{space.metric}": test} if test is not None else {})})
            record.state, record.value, record.test_value = "COMPLETE", value, test
            wandb.finish()
        except TrialFailed as err:
            record.state, record.error = "FAIL", str(err)
            wandb.finish(exit_code=1)
        finally:
            record.duration_s = round(time.time() - started, 1)
            write_outputs(records, setup, plot=False)

    try:
        wandb.agent(sweep_id, function=train, count=setup.args.sweep_count, project=project, entity=entity)
    finally:
        write_outputs(records, setup, plot=True)
    print(summary(records, setup))
    return records
