"""The shared config loader: typed keys, overrides, and one-line errors with exit code 2."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import cli_exit
from emotion_predictor.arguments import FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH
from emotion_predictor.config import load_config, passthrough_keys
from emotion_predictor.errors import ConfigError

BASE = {"model_name_or_path": "m", "dataset": "d", "output_dir": "o"}


def load(tmp_path, values, *extra_argv):
    path = tmp_path / "args.json"
    path.write_text(json.dumps(values) if not isinstance(values, str) else values)
    return load_config(FINE_TUNE_CLASSES, ["--json_file", str(path), *extra_argv], passthrough=FINE_TUNE_PASSTHROUGH)


def error_of(tmp_path, values, *extra_argv) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, values, *extra_argv)
    return str(caught.value)


def test_defaults_types_and_passthrough(tmp_path):
    (data, model, loss, train), passthrough, _ = load(tmp_path, {**BASE, "fp16": True, "logging_steps": 7})
    assert data.context_turns == 0 and data.neutral_keep_ratio == 1.0
    assert model.lora_rank == 32 and model.lora_alpha == 64 and model.use_rslora is True
    assert loss.loss == "focal" and loss.focal_gamma == 8.0 and loss.class_weights == "balanced"
    assert train.metric_for_best_model == "F1-all-class" and train.report_to == ["wandb"]
    assert passthrough == {"fp16": True, "logging_steps": 7}


def test_command_line_overrides_json(tmp_path):
    (data, model, loss, train), passthrough, _ = load(
        tmp_path,
        BASE,
        "--context_turns",
        "2",
        "--lora_target_modules",
        "query,key",
        "--class_weights",
        "[1,1,1,1,1,1,2]",
        "--optim=adafactor",
    )
    assert data.context_turns == 2
    assert model.lora_target_modules == ["query", "key"]
    assert loss.class_weights == [1, 1, 1, 1, 1, 1, 2]
    assert passthrough == {"optim": "adafactor"}


@pytest.mark.parametrize(
    "values, expected",
    [
        ({**BASE, "neutral_keep_ratio": 0}, "'neutral_keep_ratio' has value 0: must be in (0, 1]"),
        ({**BASE, "neutral_keep_ratio": 1.5}, "'neutral_keep_ratio' has value 1.5: must be in (0, 1]"),
        ({**BASE, "context_turns": -1}, "'context_turns' has value -1: must be >= 0"),
        ({**BASE, "context_turns": 1.5}, "'context_turns' has value 1.5: expected an integer"),
        ({**BASE, "loss": "hinge"}, '\'loss\' has value "hinge": expected one of "focal", "cross_entropy"'),
        ({**BASE, "use_lora": "yes"}, "'use_lora' has value \"yes\": expected true or false"),
        ({**BASE, "class_weights": [1, 2]}, "a list must hold 7 numbers"),
        ({**BASE, "fp16": "maybe"}, "'fp16' has value \"maybe\": expected true or false"),
        ({**BASE, "resume_from_checkpoint": "/no/such/checkpoint"}, "no such folder"),
        (
            {**BASE, "resample_neutral_each_epoch": True},
            "resample_neutral_each_epoch is true but neutral_keep_ratio is 1",
        ),
        (
            {**BASE, "resample_neutral_each_epoch": True, "neutral_keep_ratio": 0.5, "max_train_samples": 9},
            "max_train_samples cannot apply; drop one of the two keys",
        ),
        ({**BASE, "lerning_rate": 0.1}, "unknown key 'lerning_rate'; did you mean 'learning_rate'?"),
        ({**BASE, "neutral_keep_ration": 0.5}, "did you mean 'neutral_keep_ratio'?"),
        ({"dataset": "d", "output_dir": "o"}, "missing required key 'model_name_or_path'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_values_name_key_value_and_rule(tmp_path, values, expected):
    assert expected in error_of(tmp_path, values)


def test_json_syntax_error_names_file_line_and_column(tmp_path):
    message = error_of(tmp_path, '{\n  "dataset": "d",\n  "output_dir": "o"\n  "x": 1\n}')
    assert message.startswith(f"{tmp_path / 'args.json'}:4:3: invalid JSON")


@pytest.mark.parametrize(
    "ours, original",
    [
        ({"batch_size": 16}, {"per_device_train_batch_size": 8}),
        ({"eval_batch_size": 64}, {"per_device_eval_batch_size": 32}),
        ({"warmup_ratio": 0.1}, {"warmup_steps": 500}),
        ({"group_by_length": True}, {"train_sampling_strategy": "random"}),
    ],
)
def test_our_name_and_the_trainingarguments_original_must_not_disagree(tmp_path, ours, original):
    (name, value), (other, other_value) = *ours.items(), *original.items()
    message = error_of(tmp_path, {**BASE, **ours, **original})
    assert message == (
        f"{tmp_path / 'args.json'}: key {name!r} has value {json.dumps(value)} "
        f"but {other!r} ({tmp_path / 'args.json'}) "
        f"has {json.dumps(other_value)}; {name!r} is this project's name for TrainingArguments' {other!r}, "
        f"so give only {name!r}"
    )
    cli = error_of(tmp_path, {**BASE, **ours}, f"--{other}", json.dumps(other_value))
    assert f"but {other!r} (command line) has" in cli


def test_our_name_and_its_original_may_agree_or_come_alone(tmp_path):
    _, passthrough, _ = load(tmp_path, {**BASE, "batch_size": 8, "per_device_train_batch_size": 8, "warmup_steps": 5})
    assert passthrough == {"per_device_train_batch_size": 8, "warmup_steps": 5}


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_config_file_says_it_is_empty(tmp_path, content):
    assert error_of(tmp_path, content).startswith(f"{tmp_path / 'args.json'} is empty; a config is a JSON object")


def test_config_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "args.json"
    path.write_bytes('{\n  "run_name": "café"\n}'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(FINE_TUNE_CLASSES, ["--json_file", str(path)])
    assert str(caught.value) == f"{path}:2: not UTF-8 text (byte 0xe9); save the config as UTF-8"


def test_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(FINE_TUNE_CLASSES, ["--json_file", str(tmp_path / "nope.json")])


def test_cli_bad_config_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    import ep_fine_tune

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**BASE, "context_turns": -3}))
    code, errors = cli_exit(ep_fine_tune.main, ["ep_fine_tune.py", "--json_file", str(path)], monkeypatch, capsys)
    assert code == 2
    assert errors == [f"error: {path}: key 'context_turns' has value -3: must be >= 0"]


def test_help_lists_every_key_with_type_and_default(capsys):
    import ep_fine_tune

    with pytest.raises(SystemExit) as exited:
        ep_fine_tune.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for cls in FINE_TUNE_CLASSES:
        for name in cls.__dataclass_fields__:
            assert f"--{name}" in out
    assert "(float, default 1.0) fraction of neutral train rows kept" in " ".join(out.split())
    assert "Any other TrainingArguments key is passed through as is." in out


def test_trainingarguments_keys_read_without_import_are_its_fields():
    """config.py reads TrainingArguments' field names from its source (no torch import) to tell an
    unknown key from a pass-through one; they must be the imported class's fields."""
    from transformers import TrainingArguments

    assert passthrough_keys(FINE_TUNE_PASSTHROUGH) == {f.name for f in dataclasses.fields(TrainingArguments)}
    assert passthrough_keys(TrainingArguments) == passthrough_keys(FINE_TUNE_PASSTHROUGH)
