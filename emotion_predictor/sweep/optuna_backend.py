"""The Optuna backend (`sweep_backend: optuna`, the default): one worker's trials against a study.

This module owns the study in `sweep_storage` (SQLite in output_dir by default; PostgreSQL or
MySQL to share one sweep between machines), its sampler (TPE with constant liar, random, grid)
and pruner (Hyperband, fed each evaluation's metric), running this worker's trials, and resuming.

Counting: a worker is named by `sweep_worker` (default: the host name). `sweep_count` is the
number of trials that worker finishes in the study: complete, pruned, or failed with an error. A
trial cut off by a crash or Ctrl-C is marked failed without an error and does not count, so
re-running the same command continues until the worker has `sweep_count`; several workers with
counts c1..cn on one storage finish c1 + ... + cn trials.

Crashed workers: Optuna's heartbeats (RDBStorage `heartbeat_interval`/`grace_period`) let any
worker fail another machine's trial once its heartbeat is older than the grace period. A
worker's own trial left RUNNING by a crash is failed at once when it restarts
(`recover_interrupted`): the heartbeat would wait out the grace period first. Such trials are not
retried with Optuna's `RetryHeartbeatStaleTrialCallback`: the grid sampler counts the failed
original as a visited point and stops the study itself, so the retry would wait forever, and
re-running a point that may have crashed its machine (an OOM kill) is not what sweep_count promises.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from emotion_predictor.errors import ConfigError, UserError, first_line
from emotion_predictor.sweep.results import TrialRecord, summary, write_outputs
from emotion_predictor.sweep.trial import TrialFailed, run_trial_fine_tuning, trial_values

if TYPE_CHECKING:
    from emotion_predictor.sweep.search_space import SearchSpace
    from emotion_predictor.sweep.setup import SweepSetup

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 300
MAX_INITIAL_FAILURES = 3  # like wandb's agent: a config whose first trials all fail is stopped
ORPHAN_AGE_S = 120  # a RUNNING trial this old that names no worker was left by a crash


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    if space.method == "grid":
        return optuna.samplers.GridSampler(space.grid())
    if space.method == "random":
        return optuna.samplers.RandomSampler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: workers running at once avoid proposing the same point.
        return optuna.samplers.TPESampler(constant_liar=True)


def build_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    if space.hyperband is None:
        return optuna.pruners.NopPruner()
    h = space.hyperband
    return optuna.pruners.HyperbandPruner(
        min_resource=h.min_resource, max_resource=h.max_resource, reduction_factor=h.reduction_factor
    )


def safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's database: heartbeats let other workers fail a crashed machine's trial."""
    import sqlalchemy

    if "://" not in url:
        raise ConfigError(
            f"sweep_storage {url!r} is not a database URL; use e.g. sqlite:///runs/sweep/sweep.db or "
            "postgresql://user:password@host:5432/dbname"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 120}  # workers on one file wait for each other's writes
    else:
        engine_kwargs["pool_pre_ping"] = True
    last: Exception | None = None
    for attempt in range(5):  # two workers creating the tables at the same moment may collide
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=HEARTBEAT_GRACE_S,
                )
        except ImportError as err:
            cause = err.__cause__ or err
            raise UserError(
                f"sweep_storage {safe_url(url)} needs a database driver that is not installed "
                f"({first_line(cause, with_type=True)}); for PostgreSQL: uv add psycopg2-binary, for MySQL: "
                "uv add pymysql (URL mysql+pymysql://...)"
            ) from None
        except sqlalchemy.exc.ArgumentError as err:
            raise ConfigError(f"sweep_storage {safe_url(url)}: {first_line(err, with_type=True)}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            last = err
            time.sleep(0.5 + attempt)
    raise UserError(f"cannot open sweep_storage {safe_url(url)}: {first_line(last, with_type=True)}")  # type: ignore[arg-type]


def sweep_fingerprint(sweep: dict[str, Any]) -> str:
    """What must match between the runs and workers of one study (not name, count or backend)."""
    kept = {k: sweep.get(k) for k in ("method", "metric", "parameters", "early_terminate")}
    return json.dumps(kept, sort_keys=True)


def open_study(setup: SweepSetup) -> optuna.Study:
    import sqlalchemy

    storage = make_storage(setup.storage_url)
    space = setup.space
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=setup.name,
            direction=space.direction,
            sampler=build_sampler(space),
            pruner=build_pruner(space),
            load_if_exists=True,
        )
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise UserError(
            f"cannot open sweep_storage {safe_url(setup.storage_url)}: {first_line(err, with_type=True)}"
        ) from None
    if study.direction.name.lower() != space.direction:
        raise ConfigError(
            f"study {setup.name!r} in {safe_url(setup.storage_url)} was created to {study.direction.name.lower()} its "
            f"metric, not {space.direction}; use another sweep_name or the original goal"
        )
    fingerprint = sweep_fingerprint(setup.args.sweep_config)
    stored = study.user_attrs.get("sweep_config")
    if stored is None:
        study.set_user_attr("sweep_config", fingerprint)
    elif stored != fingerprint:
        raise ConfigError(
            f"study {setup.name!r} in {safe_url(setup.storage_url)} was created with a different sweep_config "
            "(method, metric, parameters or early_terminate); use another sweep_name, or the original sweep_config to "
            "continue it"
        )
    return study


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counts_for_worker(trial: FrozenTrial) -> bool:
    """Complete, pruned, or failed with an error (not cut off by a crash or Ctrl-C)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def finished_by(study: optuna.Study, worker: str) -> int:
    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if t.user_attrs.get("worker") == worker and counts_for_worker(t))


def recover_interrupted(study: optuna.Study, worker: str, current: int | None = None) -> list[int]:
    """Mark this worker's trials left RUNNING by a crash or Ctrl-C as failed; stop if the worker is live elsewhere.

    Ours, not Optuna's heartbeat (`optuna.storages.fail_stale_trials`): that fails a trial only
    after the grace period, and never one whose first heartbeat was not written yet (an orphan)."""
    host, failed = socket.gethostname(), []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if trial.number == current:
            continue
        if "worker" not in attrs and trial.datetime_start is not None:
            # A live worker names its trial within milliseconds; one that never did died right after creating it.
            if (now - trial.datetime_start).total_seconds() > ORPHAN_AGE_S:
                with contextlib.suppress(Exception):
                    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                    failed.append(trial.number)
            continue
        if attrs.get("worker") != worker:
            continue
        if attrs.get("host") == host and attrs.get("pid") != os.getpid() and pid_alive(attrs.get("pid")):
            raise UserError(
                f"worker {worker!r} is already running on this machine (process {attrs.get('pid')}, trial "
                f"{trial.number}); give each process its own --sweep_worker NAME"
            )
        if attrs.get("pid") == os.getpid() and attrs.get("host") == host:
            continue
        with contextlib.suppress(Exception):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
    if failed:
        logger.warning("Marked trial(s) %s, interrupted by a crash or Ctrl-C, as failed", failed)
    return failed


def stop_reason(study: optuna.Study, setup: SweepSetup) -> str | None:
    """Why no new trial should start: run_cap reached, target reached, or grid complete."""
    space = setup.space
    trials = study.get_trials(deepcopy=False)
    if space.run_cap is not None and sum(counts_for_worker(t) for t in trials) >= space.run_cap:
        return f"run_cap {space.run_cap} reached"
    if space.target is not None:
        for t in trials:
            if (
                t.state == TrialState.COMPLETE
                and t.value is not None
                and (t.value >= space.target if space.goal == "maximize" else t.value <= space.target)
            ):
                return f"trial {t.number} reached the target {space.metric} {space.target}"
    if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
        return "every grid point has been run"
    return None


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class ShortTrialFailureLog(logging.Filter):
    """Optuna logs a failed trial with its traceback; ours are one line (the full one is in error.txt)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (KeyboardInterrupt, TrialFailed)):
            record.exc_info = None
        return True


def pruning_callback(trial: optuna.Trial, metric: str) -> Any:
    """A TrainerCallback reporting each evaluation's metric to the trial and stopping it when pruned."""
    from transformers import TrainerCallback

    class ReportToTrial(TrainerCallback):
        def __init__(self) -> None:
            self.evaluations = 0

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
        ) -> None:
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            self.evaluations += 1
            trial.report(float(value), self.evaluations)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after evaluation {self.evaluations} ({metric} {value:.4f})")

    return ReportToTrial()


def study_records(study: optuna.Study) -> list[TrialRecord]:
    """The study's trials as the outputs' records (a pruned trial: the metric at its last evaluation)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.state == TrialState.COMPLETE else None
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        duration = t.duration.total_seconds() if t.duration is not None else None
        error = t.user_attrs.get("error")
        if t.state == TrialState.FAIL and error is None:
            error = "interrupted (crash, Ctrl-C or lost worker)"
        records.append(
            TrialRecord(
                t.number,
                t.state.name,
                t.user_attrs.get("worker"),
                value,
                t.user_attrs.get("test_value"),
                round(duration, 1) if duration is not None else None,
                dict(t.params),
                error,
            )
        )
    return sorted(records, key=lambda r: r.number)


def run_optuna_sweep(setup: SweepSetup, extra_callbacks: Sequence[Any] = ()) -> optuna.Study:
    """Run this worker's trials until it has finished `sweep_count`; write the outputs after each."""
    out, worker, count = setup.output_dir, setup.worker, setup.args.sweep_count
    study = open_study(setup)
    os.makedirs(out, exist_ok=True)
    optimize_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, ShortTrialFailureLog) for f in optimize_logger.filters):
        optimize_logger.addFilter(ShortTrialFailureLog())
    recover_interrupted(study, worker)
    if "wandb" in setup.base_values.get("report_to", []):
        os.environ.setdefault("WANDB_RUN_GROUP", setup.name)
    print(
        f"Sweep {setup.name!r}: {setup.space.method} search of {setup.space.metric} ({setup.space.goal}) over "
        f"{', '.join(setup.space.distributions) or 'no parameters'}; study in {safe_url(setup.storage_url)}; "
        f"worker {worker!r}"
    )

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        recover_interrupted(study, worker, current=trial.number)
        params = {name: suggest(trial, name, dist) for name, dist in setup.space.distributions.items()}
        trial_dir = os.path.join(out, f"trial-{trial.number}")
        trial.set_user_attr("trial_dir", trial_dir)
        print(f"\n=== Trial {trial.number} (worker {worker}): {json.dumps(params)}", flush=True)
        values = trial_values(
            setup.base_values, {**setup.space.constants, **params}, trial_dir, f"{setup.name}-trial-{trial.number}"
        )
        callbacks = [pruning_callback(trial, setup.space.metric), *extra_callbacks]
        try:
            value, test = run_trial_fine_tuning(
                values, setup.space.metric, callbacks, setup.args.sweep_keep_checkpoints
            )
        except TrialFailed as err:
            trial.set_user_attr("error", str(err))
            raise
        if test is not None:
            trial.set_user_attr("test_value", test)
        return value

    outcomes: list[bool] = []  # this run's trials: failed with an error or not

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        write_outputs(study_records(study), setup)
        outcomes.append(trial.state == TrialState.FAIL and "error" in trial.user_attrs)
        if len(outcomes) == MAX_INITIAL_FAILURES and all(outcomes):
            raise UserError(
                f"the first {MAX_INITIAL_FAILURES} trials all failed (last: {trial.user_attrs['error']}); the base "
                f"config is probably wrong: see {os.path.join(out, f'trial-{trial.number}', 'error.txt')}"
            )
        if finished_by(study, worker) >= count:
            study.stop()
            return
        reason = stop_reason(study, setup)
        if reason:
            print(f"Stopping the sweep: {reason}")
            study.stop()

    done = finished_by(study, worker)
    reason = stop_reason(study, setup)
    try:
        if done >= count:
            print(
                f"Worker {worker!r} has already finished {done} of sweep_count {count} trials; "
                "raise sweep_count to run more"
            )
        elif reason:
            print(f"Nothing to run: {reason}")
        else:
            if done:
                print(f"Resuming: worker {worker!r} has finished {done} of {count} trials")
            study.optimize(objective, n_trials=count - done, catch=(TrialFailed,), callbacks=[after_trial])
    finally:
        records = study_records(study)
        write_outputs(records, setup, plot=True)
    print(summary(records, setup, finished_by(study, worker)))
    return study
