"""The `sweep_config` block: wandb's sweep format, validated and translated to Optuna.

This module owns what a sweep searches: `method` (bayes -> TPE, random, grid), `metric` (a
validation metric, its goal and optional target), `parameters` (`value`, `values`, `min`/`max`
and the distributions uniform, log_uniform_values, log_uniform, q_uniform, int_uniform,
categorical and constant), `run_cap` and an `early_terminate` hyperband block. Every value a
parameter may take is checked against the fine-tuning key's declared type and limits through
config.py's `check_key_value`, before anything runs.

The whole block is validated before Optuna is imported (its distributions are built last), so a
mistake in it is reported in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
from typing import TYPE_CHECKING, Any

from emotion_predictor.arguments import FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH
from emotion_predictor.config import check_key_value, key_names
from emotion_predictor.errors import ConfigError
from emotion_predictor.labels import EMOTIONS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

METHODS = ("bayes", "random", "grid")
SWEEP_CONFIG_KEYS = {
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "name",
    "description",
    "run_cap",
    "project",
    "entity",
    "program",
    "command",
}
PARAMETER_KEYS = {"value", "values", "min", "max", "distribution", "q", "probabilities", "mu", "sigma", "a", "b"}
OPTUNA_DISTRIBUTIONS = (
    "constant",
    "categorical",
    "uniform",
    "int_uniform",
    "q_uniform",
    "log_uniform_values",
    "log_uniform",
)
WANDB_ONLY_DISTRIBUTIONS = (
    "q_log_uniform_values",
    "q_log_uniform",
    "inv_log_uniform_values",
    "inv_log_uniform",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)
NOT_SWEEPABLE = {
    "output_dir": "each trial gets its own output_dir/trial-<number>",
    "run_name": "each trial is named <sweep_name>-trial-<number>",
    "resume_from_checkpoint": "trials always start fresh",
    "push_to_hub": "trials never push; set it in best_config.json",
    "fine_tuned_model": "trials never push",
}
METRIC_PREFIXES = ("eval_", "eval/", "validation_", "validation/")
# metrics.HEADLINE plus the per-class F1, the names training logs for validation. Copied, because
# metrics.py imports torch and a misspelt metric must be reported at once; tests/test_sweep.py
# checks the copy against metrics.py.
HEADLINE_METRICS = ("Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1", "F1-all-class", "Classes-with-value")
VALIDATION_METRICS = (*HEADLINE_METRICS, *(f"F1_{name}" for name in EMOTIONS))


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


@functools.cache
def fine_tune_keys() -> tuple[str, ...]:
    """Every fine-tuning key: ours, then TrainingArguments' (names only; transformers is not imported)."""
    return tuple(key_names(FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH))


def check_value(name: str, what: str, value: Any) -> Any:
    """`value` typed for fine-tuning key `name`; ConfigError unless it is a valid value of that key."""
    label = f"sweep_config parameter {name!r}: {what}"
    return check_key_value(name, value, FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH, label)


def accepts_fractions(name: str) -> bool:
    try:
        check_key_value(name, 0.5, FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH, type_only=True)
        return True
    except ConfigError:
        return False


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parameter_spec(name: str, spec: Any, strict: bool = True) -> tuple[str, Any]:
    """One wandb parameter, validated, without Optuna: ("constant", value), or ("categorical" |
    "int" | "float", the keyword arguments of that Optuna distribution). With `strict` false (wandb
    backend), distributions that only wandb knows are accepted and returned as ("wandb", spec)."""
    where = f"sweep_config parameter {name!r}"
    dist = distribution_of(name, spec, where, strict)
    if dist == "wandb":
        return "wandb", spec
    if dist == "constant":
        if "value" not in spec:
            raise ConfigError(f"{where}: distribution constant needs a value")
        check_value(name, "value", spec["value"])
        return "constant", spec["value"]
    if dist == "categorical":
        return "categorical", {"choices": categorical_values(name, spec, where)}
    return range_distribution(name, spec, where, dist)


def distribution_of(name: str, spec: Any, where: str, strict: bool) -> str:
    """The parameter's wandb distribution name, checked (or "wandb" for one only wandb knows)."""
    if name not in fine_tune_keys():
        close = difflib.get_close_matches(name, fine_tune_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; parameters must be fine-tuning keys (see --help)"
        raise ConfigError(f"{where} is not a fine-tuning key{hint}")
    if name in NOT_SWEEPABLE:
        raise ConfigError(f"{where} cannot be swept: {NOT_SWEEPABLE[name]}")
    if not isinstance(spec, dict):
        raise ConfigError(f'{where} must be an object such as {{"values": [...]}} or {{"min": ..., "max": ...}}')
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
            return "wandb"
        raise ConfigError(
            f"{where}: distribution {dist!r} has no Optuna equivalent; use one of {', '.join(OPTUNA_DISTRIBUTIONS)} "
            "or sweep_backend wandb"
        )
    if dist not in OPTUNA_DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; use one of {', '.join(OPTUNA_DISTRIBUTIONS)}")
    if "probabilities" in spec and strict:
        raise ConfigError(f"{where}: probabilities have no Optuna equivalent; remove them or use sweep_backend wandb")
    return dist


def categorical_values(name: str, spec: dict[str, Any], where: str) -> list[Any]:
    """A categorical parameter's values, each checked as a value of its key."""
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: values must be a non-empty list")
    for value in values:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"{where}: value {json.dumps(value)} is not a number, string, boolean or null "
                "(a list key takes a comma-separated string)"
            )
        check_value(name, "value", value)
    if len(set(map(json.dumps, values))) != len(values):
        raise ConfigError(f"{where}: values has duplicates")
    return values


def range_distribution(name: str, spec: dict[str, Any], where: str, dist: str) -> tuple[str, dict[str, Any]]:
    """A min/max parameter as ("int" | "float", the Optuna distribution's keyword arguments)."""
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: distribution {dist} needs min and max")
    low, high = spec["min"], spec["max"]
    if not is_number(low) or not is_number(high):
        raise ConfigError(f"{where}: min and max must be numbers")
    if low > high:
        raise ConfigError(f"{where}: min {low} is larger than max {high}")
    if dist == "log_uniform":  # wandb: exp(X) with X uniform in [min, max]
        low, high = math.exp(low), math.exp(high)
    integers = False
    if dist == "int_uniform":
        if not (is_int(low) and is_int(high)):
            raise ConfigError(f"{where}: int_uniform needs integer min and max, got {low} and {high}")
        kind, kwargs, integers = "int", {"low": low, "high": high}, True
    elif dist == "q_uniform":
        q = spec.get("q", 1.0)
        if not is_number(q) or q <= 0:
            raise ConfigError(f"{where}: q must be a number > 0")
        # wandb rounds to multiples of q: the values are the multiples of q within [min, max].
        first, last = math.ceil(round(low / q, 9)) * q, math.floor(round(high / q, 9)) * q
        if first > last:
            raise ConfigError(f"{where}: no multiple of q {q} lies in [{low}, {high}]")
        digits = max(0, -math.floor(math.log10(q))) + 6
        low, high = float(round(first, digits)), float(round(last, digits))
        kind, kwargs = "float", {"low": low, "high": high, "step": q}
        integers = float(q).is_integer() and low.is_integer()
    else:
        if dist == "log_uniform_values" and low <= 0:
            raise ConfigError(f"{where}: log_uniform_values needs min > 0, got {low}")
        low, high = float(low), float(high)
        kind, kwargs = "float", {"low": low, "high": high, "log": dist in ("log_uniform_values", "log_uniform")}
    if not integers and not accepts_fractions(name):
        raise ConfigError(
            f"{where}: {name} takes integers; give integer min and max (int_uniform), values, or a whole-number q"
        )
    check_value(name, "min", low)
    check_value(name, "max", high)
    return kind, kwargs


def to_distribution(kind: str, kwargs: dict[str, Any]) -> BaseDistribution:
    """The Optuna distribution of a `parameter_spec` ("categorical", "int" or "float")."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {"categorical": CategoricalDistribution, "int": IntDistribution, "float": FloatDistribution}[kind](**kwargs)


def translate_parameter(name: str, spec: Any, strict: bool = True) -> tuple[str, Any]:
    """One wandb parameter -> ("constant", value), ("distribution", an Optuna distribution) or
    ("wandb", spec) (see `parameter_spec`)."""
    kind, value = parameter_spec(name, spec, strict)
    return (kind, value) if kind in ("constant", "wandb") else ("distribution", to_distribution(kind, value))


def finite_values(name: str, dist: BaseDistribution) -> list[Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        count = int(round((dist.high - dist.low) / dist.step)) + 1
        return [round(dist.low + i * dist.step, 12) for i in range(count)]
    raise grid_error(name)


def grid_error(name: str) -> ConfigError:
    return ConfigError(
        f"sweep_config parameter {name!r}: grid search needs a finite set of values; "
        "give values, integer min/max (int_uniform) or q_uniform with q"
    )


def translate_metric(spec: Any, method: str, default_metric: str) -> tuple[str, str, float | None]:
    """The metric block -> (validation metric name, goal, target)."""
    if spec is None:
        if method == "bayes":
            raise ConfigError(
                'sweep_config: method bayes needs a metric, e.g. {"name": "Balanced_Accuracy", "goal": "maximize"}'
            )
        spec = {"name": default_metric, "goal": "maximize"}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(
            'sweep_config: metric must be an object with a name, e.g. {"name": "Balanced_Accuracy", "goal": "maximize"}'
        )
    extra = sorted(set(spec) - {"name", "goal", "target"})
    if extra:
        raise ConfigError(f"sweep_config metric: unknown key {extra[0]!r}; use name, goal and target")
    metric = spec["name"]
    for prefix in METRIC_PREFIXES:
        if metric.startswith(prefix):
            metric = metric[len(prefix) :]
    if metric not in VALIDATION_METRICS:
        raise ConfigError(
            f"sweep_config metric name {spec['name']!r} is not a validation metric; use one of "
            f"{', '.join(VALIDATION_METRICS)}"
        )
    goal = spec.get("goal", "minimize")  # wandb's default
    if goal not in ("maximize", "minimize"):
        raise ConfigError(f"sweep_config metric goal is {json.dumps(goal)}; use maximize or minimize")
    target = spec.get("target")
    if target is not None and not is_number(target):
        raise ConfigError("sweep_config metric target must be a number")
    return metric, goal, target


def translate_sweep_config(
    sweep: dict[str, Any], default_metric: str = "F1-all-class", strict: bool = True
) -> SearchSpace:
    """Validate a wandb sweep block and translate it to an Optuna search space (see module doc)."""
    unknown = sorted(set(sweep) - SWEEP_CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"sweep_config: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(SWEEP_CONFIG_KEYS))}"
        )
    method = sweep.get("method")
    if method not in METHODS:
        raise ConfigError(f"sweep_config: method is {json.dumps(method)}; use one of {', '.join(METHODS)}")
    metric, goal, target = translate_metric(sweep.get("metric"), method, default_metric)
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError('sweep_config needs parameters, e.g. {"learning_rate": {"min": 0.0001, "max": 0.01}}')
    specs = {name: parameter_spec(name, spec, strict) for name, spec in parameters.items()}
    if method == "grid" and strict:
        for name, (kind, value) in specs.items():
            if kind == "float" and value.get("step") is None:
                raise grid_error(name)
    run_cap = sweep.get("run_cap")
    if run_cap is not None and not (is_int(run_cap) and run_cap >= 1):
        raise ConfigError("sweep_config run_cap must be an integer >= 1")
    hyperband = translate_early_terminate(sweep.get("early_terminate"))
    # Everything is valid: only now build Optuna's distributions (importing Optuna).
    constants = {name: value for name, (kind, value) in specs.items() if kind == "constant"}
    distributions = {
        name: to_distribution(kind, value) for name, (kind, value) in specs.items() if kind not in ("constant", "wandb")
    }
    return SearchSpace(method, metric, goal, constants, distributions, hyperband, run_cap, target)


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
