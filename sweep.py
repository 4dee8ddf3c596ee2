"""Hyperparameter sweeps over the fine-tuning job (`ep_sweep.py`).

This module owns:
- reading a sweep config: the fine-tuning keys the trials start from (inline, or a `base_config`
  file) plus a `sweep_config` block in wandb's sweep format (`load_sweep_config`);
- translating that block to Optuna (`translate_sweep_config`): bayes -> TPE, random -> random,
  grid -> grid sampler; `value`, `values`, `min`/`max` and the distributions uniform,
  log_uniform_values, log_uniform, q_uniform, int_uniform, categorical and constant; an
  `early_terminate` hyperband block -> a Hyperband pruner fed by each evaluation's metric;
- running the trials of one worker against a study in `sweep_storage` (SQLite by default;
  PostgreSQL or MySQL to share one sweep between machines), with resumption after a crash;
- the sweep's outputs: `sweep_results.csv`, `best_config.json`, `sweep.png` and the summary.

Each trial is a real `training.run_fine_tuning` run in `<output_dir>/trial-<number>`; it releases
its memory (gc + CUDA cache) before the next one starts, and a trial that raises is recorded as
failed with its error while the sweep goes on.

Counting: a worker is named by `sweep_worker` (default: the host name). `sweep_count` is the number
of trials that worker finishes in the study - complete, pruned, or failed with an error. A trial cut
off by a crash or Ctrl-C is marked failed without an error and does not count, so re-running the
same command continues until the worker has `sweep_count`; several workers with counts c1..cn on one
storage finish c1 + ... + cn trials. The wandb backend lives in `sweep_wandb.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from arguments import FINE_TUNE_CLASSES, SweepArguments
from config import build_instances, build_parser, coerce, read_json_object, resolved_fields, split_cli_overrides, validated
from errors import ConfigError, UserError
from output_files import atomic_path, write_csv, write_json, write_text

logger = logging.getLogger(__name__)

METHODS = ("bayes", "random", "grid")
SWEEP_CONFIG_KEYS = {
    "method", "metric", "parameters", "early_terminate", "name", "description", "run_cap",
    "project", "entity", "program", "command",
}
PARAMETER_KEYS = {"value", "values", "min", "max", "distribution", "q", "probabilities", "mu", "sigma", "a", "b"}
OPTUNA_DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform", "log_uniform_values", "log_uniform")
WANDB_ONLY_DISTRIBUTIONS = (
    "q_log_uniform_values", "q_log_uniform", "inv_log_uniform_values", "inv_log_uniform", "normal", "q_normal",
    "log_normal", "q_log_normal", "beta", "q_beta",
)
NOT_SWEEPABLE = {
    "output_dir": "each trial gets its own output_dir/trial-<number>",
    "run_name": "each trial is named <sweep_name>-trial-<number>",
    "resume_from_checkpoint": "trials always start fresh",
    "push_to_hub": "trials never push; set it in best_config.json",
    "fine_tuned_model": "trials never push",
}
METRIC_PREFIXES = ("eval_", "eval/", "validation_", "validation/")
MIN_TRIALS_FOR_IMPORTANCE = 5
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 300
MAX_INITIAL_FAILURES = 3  # like wandb's agent: a config whose first trials all fail is stopped
ORPHAN_AGE_S = 120  # a RUNNING trial this old that names no worker was left by a crash
RESULTS_FILE, BEST_CONFIG_FILE, PLOT_FILE = "sweep_results.csv", "best_config.json", "sweep.png"


# --------------------------------------------------------------------------------------------
# Config: the fine-tuning keys plus the sweep block
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class HyperbandSpec:
    min_resource: int
    max_resource: int | str
    reduction_factor: int


@dataclasses.dataclass
class SearchSpace:
    """A wandb sweep block translated to Optuna terms."""

    method: str
    metric: str
    goal: str
    constants: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    hyperband: HyperbandSpec | None = None
    run_cap: int | None = None
    target: float | None = None

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space: every parameter's finite list of values."""
        return {name: finite_values(name, dist) for name, dist in self.distributions.items()}


@dataclasses.dataclass
class SweepSetup:
    """Everything a sweep run needs, validated."""

    args: SweepArguments
    base_values: dict[str, Any]  # typed fine-tuning keys every trial starts from (output_dir = sweep folder)
    space: SearchSpace
    source: str

    @property
    def output_dir(self) -> str:
        return self.base_values["output_dir"]

    @property
    def name(self) -> str:
        return self.args.sweep_name or str(self.args.sweep_config.get("name") or "sweep")

    @property
    def worker(self) -> str:
        return self.args.sweep_worker or socket.gethostname()

    @property
    def storage_url(self) -> str:
        if self.args.sweep_storage:
            return self.args.sweep_storage
        return "sqlite:///" + os.path.abspath(os.path.join(self.output_dir, "sweep.db"))


def fine_tune_key_types() -> dict[str, Any]:
    """Every fine-tuning key (ours and TrainingArguments pass-through) with its type."""
    from transformers import TrainingArguments

    types = {f.name: tp for f, tp in resolved_fields(TrainingArguments)}
    checks: dict[str, Any] = {}
    for cls in FINE_TUNE_CLASSES:
        for f, tp in resolved_fields(cls):
            types[f.name] = tp
            checks[f.name] = f.metadata.get("check")
    return {name: (tp, checks.get(name)) for name, tp in types.items()}


def check_value(name: str, what: str, value: Any, key_types: dict[str, Any]) -> None:
    """Raise ConfigError unless `value` is valid for fine-tuning key `name`."""
    tp, check = key_types[name]
    validated(value, tp, check, f"sweep_config parameter {name!r}: {what}")


def accepts_fractions(name: str, key_types: dict[str, Any]) -> bool:
    try:
        coerce(0.5, key_types[name][0])
        return True
    except ValueError:
        return False


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def translate_parameter(
    name: str, spec: Any, key_types: dict[str, Any], strict: bool = True
) -> tuple[str, Any]:
    """One wandb parameter -> ("constant", value) or ("distribution", an Optuna distribution).

    With `strict` false (wandb backend), distributions that only wandb knows are accepted and
    returned as ("wandb", spec).
    """
    where = f"sweep_config parameter {name!r}"
    if name not in key_types:
        import difflib

        close = difflib.get_close_matches(name, list(key_types), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; parameters must be fine-tuning keys (see --help)"
        raise ConfigError(f"{where} is not a fine-tuning key{hint}")
    if name in NOT_SWEEPABLE:
        raise ConfigError(f"{where} cannot be swept: {NOT_SWEEPABLE[name]}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be an object such as {{\"values\": [...]}} or {{\"min\": ..., \"max\": ...}}")
    unknown = sorted(set(spec) - PARAMETER_KEYS)
    if "parameters" in spec:
        raise ConfigError(f"{where}: nested parameters are not supported; give each fine-tuning key its own entry")
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}; use value, values, min/max, distribution or q")
    dist = spec.get("distribution")
    if dist is None:
        if "value" in spec:
            dist = "constant"
        elif "values" in spec:
            dist = "categorical"
        elif "min" in spec and "max" in spec:
            dist = "int_uniform" if is_int(spec["min"]) and is_int(spec["max"]) else "uniform"
        else:
            raise ConfigError(f"{where} needs value, values, or min and max")
    if dist in WANDB_ONLY_DISTRIBUTIONS:
        if not strict:
            return "wandb", spec
        raise ConfigError(
            f"{where}: distribution {dist!r} has no Optuna equivalent; use one of {', '.join(OPTUNA_DISTRIBUTIONS)} "
            "or sweep_backend wandb"
        )
    if dist not in OPTUNA_DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; use one of {', '.join(OPTUNA_DISTRIBUTIONS)}")
    if "probabilities" in spec and strict:
        raise ConfigError(f"{where}: probabilities have no Optuna equivalent; remove them or use sweep_backend wandb")

    if dist == "constant":
        if "value" not in spec:
            raise ConfigError(f"{where}: distribution constant needs a value")
        check_value(name, "value", spec["value"], key_types)
        return "constant", spec["value"]
    if dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: values must be a non-empty list")
        for value in values:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ConfigError(
                    f"{where}: value {json.dumps(value)} is not a number, string, boolean or null "
                    "(a list key takes a comma-separated string)"
                )
            check_value(name, "value", value, key_types)
        if len(set(map(json.dumps, values))) != len(values):
            raise ConfigError(f"{where}: values has duplicates")
        return "distribution", CategoricalDistribution(values)

    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: distribution {dist} needs min and max")
    low, high = spec["min"], spec["max"]
    if not is_number(low) or not is_number(high):
        raise ConfigError(f"{where}: min and max must be numbers")
    if low > high:
        raise ConfigError(f"{where}: min {low} is larger than max {high}")
    if dist == "log_uniform":  # wandb: exp(X) with X uniform in [min, max]
        low, high = math.exp(low), math.exp(high)
    if dist == "int_uniform":
        if not (is_int(low) and is_int(high)):
            raise ConfigError(f"{where}: int_uniform needs integer min and max, got {low} and {high}")
        distribution: BaseDistribution = IntDistribution(low, high)
    elif dist == "q_uniform":
        q = spec.get("q", 1.0)
        if not is_number(q) or q <= 0:
            raise ConfigError(f"{where}: q must be a number > 0")
        # wandb rounds to multiples of q: the values are the multiples of q within [min, max].
        first, last = math.ceil(round(low / q, 9)) * q, math.floor(round(high / q, 9)) * q
        if first > last:
            raise ConfigError(f"{where}: no multiple of q {q} lies in [{low}, {high}]")
        digits = max(0, -math.floor(math.log10(q))) + 6
        distribution = FloatDistribution(round(first, digits), round(last, digits), step=q)
    else:
        if dist == "log_uniform_values" and low <= 0:
            raise ConfigError(f"{where}: log_uniform_values needs min > 0, got {low}")
        distribution = FloatDistribution(float(low), float(high), log=dist in ("log_uniform_values", "log_uniform"))
    if not accepts_fractions(name, key_types) and not (
        isinstance(distribution, IntDistribution)
        or (isinstance(distribution, FloatDistribution) and distribution.step is not None and float(distribution.step).is_integer() and float(distribution.low).is_integer())
    ):
        raise ConfigError(
            f"{where}: {name} takes integers; give integer min and max (int_uniform), values, or a whole-number q"
        )
    check_value(name, "min", distribution.low, key_types)
    check_value(name, "max", distribution.high, key_types)
    return "distribution", distribution


def finite_values(name: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        count = int(round((dist.high - dist.low) / dist.step)) + 1
        return [round(dist.low + i * dist.step, 12) for i in range(count)]
    raise ConfigError(
        f"sweep_config parameter {name!r}: grid search needs a finite set of values; "
        "give values, integer min/max (int_uniform) or q_uniform with q"
    )


def metric_names() -> list[str]:
    from labels import EMOTIONS
    from metrics import HEADLINE

    return [*HEADLINE, *(f"F1_{name}" for name in EMOTIONS)]


def translate_sweep_config(
    sweep: dict[str, Any], key_types: dict[str, Any], default_metric: str = "F1-all-class", strict: bool = True
) -> SearchSpace:
    """Validate a wandb sweep block and translate it to an Optuna search space (see module doc)."""
    unknown = sorted(set(sweep) - SWEEP_CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"sweep_config: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(SWEEP_CONFIG_KEYS))}")
    method = sweep.get("method")
    if method not in METHODS:
        raise ConfigError(f"sweep_config: method is {json.dumps(method)}; use one of {', '.join(METHODS)}")
    metric_spec = sweep.get("metric")
    if metric_spec is None:
        if method == "bayes":
            raise ConfigError('sweep_config: method bayes needs a metric, e.g. {"name": "Balanced_Accuracy", "goal": "maximize"}')
        metric_spec = {"name": default_metric, "goal": "maximize"}
    if not isinstance(metric_spec, dict) or not isinstance(metric_spec.get("name"), str):
        raise ConfigError('sweep_config: metric must be an object with a name, e.g. {"name": "Balanced_Accuracy", "goal": "maximize"}')
    extra = sorted(set(metric_spec) - {"name", "goal", "target"})
    if extra:
        raise ConfigError(f"sweep_config metric: unknown key {extra[0]!r}; use name, goal and target")
    metric = metric_spec["name"]
    for prefix in METRIC_PREFIXES:
        if metric.startswith(prefix):
            metric = metric[len(prefix):]
    allowed = metric_names()
    if metric not in allowed:
        raise ConfigError(
            f"sweep_config metric name {metric_spec['name']!r} is not a validation metric; use one of {', '.join(allowed)}"
        )
    goal = metric_spec.get("goal", "minimize")  # wandb's default
    if goal not in ("maximize", "minimize"):
        raise ConfigError(f"sweep_config metric goal is {json.dumps(goal)}; use maximize or minimize")
    target = metric_spec.get("target")
    if target is not None and not is_number(target):
        raise ConfigError("sweep_config metric target must be a number")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError('sweep_config needs parameters, e.g. {"learning_rate": {"min": 0.0001, "max": 0.01}}')
    constants: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    for name, spec in parameters.items():
        kind, value = translate_parameter(name, spec, key_types, strict)
        if kind == "constant":
            constants[name] = value
        elif kind == "distribution":
            distributions[name] = value
    space = SearchSpace(method, metric, goal, constants, distributions, target=target)
    if method == "grid" and strict:
        space.grid()  # raises for a continuous parameter
    run_cap = sweep.get("run_cap")
    if run_cap is not None and not (is_int(run_cap) and run_cap >= 1):
        raise ConfigError("sweep_config run_cap must be an integer >= 1")
    space.run_cap = run_cap
    space.hyperband = translate_early_terminate(sweep.get("early_terminate"))
    return space


def translate_early_terminate(spec: Any) -> HyperbandSpec | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "hyperband":
        raise ConfigError('sweep_config early_terminate: only {"type": "hyperband", ...} is supported')
    extra = sorted(set(spec) - {"type", "min_iter", "max_iter", "s", "eta", "strict"})
    if extra:
        raise ConfigError(f"sweep_config early_terminate: unknown key {extra[0]!r}; use min_iter, max_iter, s, eta")
    for name in ("min_iter", "max_iter", "s", "eta"):
        if name in spec and not (is_int(spec[name]) and spec[name] >= 1):
            raise ConfigError(f"sweep_config early_terminate {name} must be an integer >= 1")
    eta = spec.get("eta", 3)
    if eta < 2:
        raise ConfigError("sweep_config early_terminate eta must be >= 2")
    max_iter = spec.get("max_iter")
    if "min_iter" in spec:
        min_iter = spec["min_iter"]
    elif max_iter is not None and "s" in spec:  # wandb: brackets at max_iter / eta^k for k = 1..s
        min_iter = max(1, int(max_iter / eta ** spec["s"]))
    else:
        min_iter = 1
    if max_iter is not None and max_iter < min_iter:
        raise ConfigError("sweep_config early_terminate: max_iter is smaller than min_iter")
    return HyperbandSpec(min_iter, max_iter if max_iter is not None else "auto", eta)


def load_sweep_config(argv: Sequence[str] | None = None, description: str | None = None) -> SweepSetup:
    """Read `--json_file` plus `--key value` overrides into a validated `SweepSetup`."""
    from transformers import TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        classes = [SweepArguments, *FINE_TUNE_CLASSES]
        build_parser("ep_sweep.py", description or __doc__, classes, {}, TrainingArguments).print_help()
        raise SystemExit(0)
    known = argparse.ArgumentParser(add_help=False)
    known.add_argument("--json_file")
    namespace, argv = known.parse_known_args(argv)
    json_file = namespace.json_file
    if json_file is None and not argv:
        raise ConfigError("no config given; run ep_sweep.py --json_file args/ep_sweep_arg.json")
    values = read_json_object(json_file) if json_file else {}
    overrides = split_cli_overrides(argv)
    sweep_keys = {f.name for f in dataclasses.fields(SweepArguments)}
    source = json_file or "command line"
    merged = {**values, **overrides}
    (args,), _ = build_instances(
        {k: v for k, v in merged.items() if k in sweep_keys}, [SweepArguments], source, set(overrides) & sweep_keys
    )
    fine_tune = {k: v for k, v in values.items() if k not in sweep_keys}
    cli = {k: v for k, v in overrides.items() if k not in sweep_keys}
    if args.base_config:
        base = read_json_object(args.base_config)
        stray = sorted(set(base) & sweep_keys)
        if stray:
            raise ConfigError(f"{args.base_config}: key {stray[0]!r} belongs in the sweep file, not in base_config")
        fine_tune = {**base, **fine_tune}
        source = f"{source} (with base_config {args.base_config})"
    fine_tune.update(cli)
    instances, passthrough = build_instances(
        fine_tune, FINE_TUNE_CLASSES, source, set(cli), passthrough=TrainingArguments
    )
    typed = {f.name: getattr(inst, f.name) for inst in instances for f in dataclasses.fields(inst)}
    # Values from files stay as written (JSON types); command-line strings are replaced by their typed value.
    base_values = {
        name: (typed[name] if name in typed else passthrough[name]) if name in cli else value
        for name, value in fine_tune.items()
    }
    key_types = fine_tune_key_types()
    space = translate_sweep_config(
        args.sweep_config, key_types, default_metric=typed["metric_for_best_model"], strict=args.sweep_backend == "optuna"
    )
    return SweepSetup(args, base_values, space, source)


# --------------------------------------------------------------------------------------------
# One trial: a real fine-tuning run in its own folder
# --------------------------------------------------------------------------------------------


class TrialFailed(Exception):
    """A trial's fine-tuning raised; the message is the error, the original traceback is dropped."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def release_memory(finish_tracker: bool = True) -> None:
    """Free what the last trial held: Python garbage, the tracker run, and the CUDA cache."""
    wandb = sys.modules.get("wandb")
    if finish_tracker and wandb is not None and getattr(wandb, "run", None) is not None:
        with contextlib.suppress(Exception):
            wandb.finish()
    gc.collect()
    if cuda_available():
        import torch

        torch.cuda.empty_cache()


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def trial_values(base_values: dict[str, Any], params: dict[str, Any], trial_dir: str, run_name: str) -> dict[str, Any]:
    values = {**base_values, **params, "output_dir": trial_dir, "run_name": run_name}
    values.pop("resume_from_checkpoint", None)
    values["push_to_hub"] = False
    return values


def run_trial_fine_tuning(
    values: dict[str, Any], metric: str, callbacks: list[Any], keep_checkpoints: bool, finish_tracker: bool = True
) -> tuple[float, float | None]:
    """Fine-tune with `values`; return (validation metric, test metric).

    Raises TrialFailed (any error, traceback dropped so the trial's objects can be freed),
    optuna.TrialPruned, or KeyboardInterrupt. Memory is released before returning or raising.
    """
    from transformers import TrainingArguments

    from training import run_fine_tuning

    error: str | None = None
    pruned: str | None = None
    result = None
    try:
        instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, "sweep trial", set(), TrainingArguments)
        result = run_fine_tuning(*instances, passthrough, callbacks=callbacks)
        value = float(result.metrics["validation"][metric])
        test = result.metrics.get("test", {}).get(metric)
    except optuna.TrialPruned as err:
        pruned = str(err)
    except Exception as err:  # any failure (out of memory, bad setting, data) fails this trial only
        error = one_line(err)
        logger.error("Trial in %s failed: %s (traceback in error.txt there)", values["output_dir"], error)
        with contextlib.suppress(OSError):
            write_text(os.path.join(values["output_dir"], "error.txt"), traceback.format_exc())
    finally:
        result = None
        if not keep_checkpoints:
            shutil.rmtree(os.path.join(values["output_dir"], "checkpoints"), ignore_errors=True)
        release_memory(finish_tracker)
    if pruned is not None:
        raise optuna.TrialPruned(pruned)
    if error is not None:
        raise TrialFailed(error)
    return value, (float(test) if test is not None else None)


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

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any) -> None:
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            self.evaluations += 1
            trial.report(float(value), self.evaluations)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after evaluation {self.evaluations} ({metric} {value:.4f})")

    return ReportToTrial()


# --------------------------------------------------------------------------------------------
# The Optuna backend
# --------------------------------------------------------------------------------------------


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
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=HEARTBEAT_GRACE_S
                )
        except ImportError as err:
            cause = err.__cause__ or err
            raise UserError(
                f"sweep_storage {safe_url(url)} needs a database driver that is not installed ({one_line(cause)}); "
                "for PostgreSQL: uv add psycopg2-binary, for MySQL: uv add pymysql (URL mysql+pymysql://...)"
            ) from None
        except sqlalchemy.exc.ArgumentError as err:
            raise ConfigError(f"sweep_storage {safe_url(url)}: {one_line(err)}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            last = err
            time.sleep(0.5 + attempt)
    raise UserError(f"cannot open sweep_storage {safe_url(url)}: {one_line(last)}")  # type: ignore[arg-type]


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
        raise UserError(f"cannot open sweep_storage {safe_url(setup.storage_url)}: {one_line(err)}") from None
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
    """Mark this worker's trials left RUNNING by a crash or Ctrl-C as failed; stop if the worker is live elsewhere."""
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
            if t.state == TrialState.COMPLETE and t.value is not None and (
                t.value >= space.target if space.goal == "maximize" else t.value <= space.target
            ):
                return f"trial {t.number} reached the target {space.metric} {space.target}"
    if space.method == "grid" and isinstance(study.sampler, optuna.samplers.GridSampler):
        visited = {t.system_attrs.get("grid_id") for t in trials if t.state != TrialState.RUNNING}
        if len(visited - {None}) >= math.prod(len(v) for v in space.grid().values()):
            return "every grid point has been run"
    return None


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
        values = trial_values(setup.base_values, {**setup.space.constants, **params}, trial_dir, f"{setup.name}-trial-{trial.number}")
        callbacks = [pruning_callback(trial, setup.space.metric), *extra_callbacks]
        try:
            value, test = run_trial_fine_tuning(values, setup.space.metric, callbacks, setup.args.sweep_keep_checkpoints)
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
            print(f"Worker {worker!r} has already finished {done} of sweep_count {count} trials; raise sweep_count to run more")
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


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


# --------------------------------------------------------------------------------------------
# Outputs shared by both backends
# --------------------------------------------------------------------------------------------


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


def study_records(study: optuna.Study) -> list[TrialRecord]:
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
                t.number, t.state.name, t.user_attrs.get("worker"), value, t.user_attrs.get("test_value"),
                round(duration, 1) if duration is not None else None, dict(t.params), error,
            )
        )
    return sorted(records, key=lambda r: r.number)


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
        row = {"number": r.number, "state": r.state, "worker": r.worker, metric: r.value, f"test_{metric}": r.test_value,
               "duration_s": r.duration_s}
        row.update({name: r.params.get(name) for name in params})
        row["error"] = r.error
        rows.append(row)
    columns = ["number", "state", "worker", metric, f"test_{metric}", "duration_s", *params, "error"]
    return pd.DataFrame(rows, columns=columns)


def param_importances(records: Sequence[TrialRecord], space: SearchSpace) -> dict[str, float] | None:
    """fANOVA importances of the searched parameters, once enough trials are complete."""
    names = [n for n, d in space.distributions.items() if not d.single()]
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None and all(n in r.params for n in names)]
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
                params={n: r.params[n] for n in names}, distributions={n: space.distributions[n] for n in names}, value=r.value
            )
        )
    try:
        return dict(optuna.importance.get_param_importances(study))
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
        ax.scatter([r.number for r in complete], [r.value for r in complete], color="tab:blue", label="complete", zorder=3)
        best, xs, ys = None, [], []
        for r in complete:
            if best is None or (r.value > best if space.goal == "maximize" else r.value < best):
                best = r.value
            xs.append(r.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    if pruned:
        ax.scatter([r.number for r in pruned], [r.value for r in pruned], marker="x", color="gray",
                   label="pruned (last evaluation)", zorder=3)
    if failed:
        low = min([r.value for r in complete + pruned] or [0.0])
        ax.scatter([r.number for r in failed], [low] * len(failed), marker="v", color="tab:red", label="failed", zorder=3)
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
        ax.text(0.5, 0.5, f"parameter importances appear after\n{MIN_TRIALS_FOR_IMPORTANCE} complete trials",
                ha="center", va="center", fontsize=11)
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
        write_json(os.path.join(out, "param_importances.json"), importances)
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
        + (f"; worker {setup.worker!r} finished {mine} of sweep_count {setup.args.sweep_count}" if mine is not None else ""),
    ]
    params = list(space.distributions) or sorted({n for r in records for n in r.params})
    ranked = sorted(
        [r for r in records if r.value is not None],
        key=lambda r: (r.state != "COMPLETE", -(r.value or 0) if space.goal == "maximize" else (r.value or 0)),
    )[:top]
    if ranked:
        header = ["trial", "state", space.metric, "seconds", *params]
        rows = [[str(r.number), r.state, format_value(r.value), format_value(r.duration_s),
                 *(format_value(r.params.get(p)) for p in params)] for r in ranked]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
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


def run_sweep(setup: SweepSetup, extra_callbacks: Sequence[Any] = ()) -> Any:
    """Run the sweep on the configured backend."""
    if setup.args.sweep_backend == "wandb":
        from sweep_wandb import run_wandb_sweep

        return run_wandb_sweep(setup)
    return run_optuna_sweep(setup, extra_callbacks)


def main(argv: Sequence[str] | None = None, description: str | None = None) -> None:
    """`ep_sweep.py`: load the config (argv default: the command line) and run the sweep."""
    run_sweep(load_sweep_config(argv, description))

