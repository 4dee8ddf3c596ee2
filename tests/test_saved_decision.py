"""A model whose saved decision rule (emotion_predictor.json) cannot be applied fails with one
line naming the file, the value and what is accepted, before any data is scored."""

from __future__ import annotations

import json

import pytest

from conftest import build_tiny_bert, cli_error_lines
from emotion_predictor.errors import UserError
from emotion_predictor.modeling.sequence_classifier import METADATA_FILE, read_metadata

PRIOR = [0.8, 0.02, 0.01, 0.01, 0.12, 0.02, 0.02]
FIX = '(fine-tune the model again, or set decision_rule to "argmax" in that file)'


@pytest.mark.parametrize(
    "metadata, problem",
    [
        (
            {"decision_rule": "softmax_vote"},
            f'decision_rule has value "softmax_vote"; expected one of "argmax", "prior_corrected" {FIX}',
        ),
        (
            {"decision_rule": "prior_corrected", "train_prior": PRIOR},
            f"the prior_corrected rule needs a number tau, found null {FIX}",
        ),
        (
            {"decision_rule": "prior_corrected", "tau": 0.5, "train_prior": [1.0]},
            f"the prior_corrected rule needs train_prior, 7 numbers >= 0, found [1.0] {FIX}",
        ),
    ],
)
def test_unusable_rule_is_one_line_naming_the_file(tmp_path, metadata, problem):
    (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(UserError) as caught:
        read_metadata(str(tmp_path))
    assert str(caught.value) == f"{tmp_path / METADATA_FILE}: {problem}"


def test_usable_rules_load(tmp_path):
    for metadata in (
        {},
        {"decision_rule": "argmax"},
        {"decision_rule": "prior_corrected", "tau": 0.5, "train_prior": PRIOR},
    ):
        (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
        assert read_metadata(str(tmp_path)) == metadata


def test_ep_evaluate_on_unknown_rule_exits_with_one_line(tmp_path, tiny_dataset_dir, monkeypatch, capsys):
    import ep_evaluate

    model = tmp_path / "model"
    build_tiny_bert(str(model))
    (model / METADATA_FILE).write_text(json.dumps({"context_turns": 0, "decision_rule": "softmax_vote"}))
    argv = [
        "ep_evaluate.py",
        "--models",
        str(model),
        "--dataset",
        tiny_dataset_dir,
        "--output_dir",
        str(tmp_path / "out"),
    ]
    assert cli_error_lines(ep_evaluate.main, argv, monkeypatch, capsys) == [
        f'error: {model / METADATA_FILE}: decision_rule has value "softmax_vote"; expected one of "argmax", '
        f'"prior_corrected" {FIX}'
    ]
    assert not (tmp_path / "out").exists()
