"""resample_neutral_each_epoch: each epoch keeps every non-neutral row and its own share of the
neutral rows, so successive epochs cover the neutral rows instead of reusing one share."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from emotion_predictor.data.utils import downsample_neutral, prepare_splits
from emotion_predictor.evaluation.metrics import balanced_class_weights
from emotion_predictor.training.length_bucketing import length_bucket_order
from emotion_predictor.training.neutral_rotation import NeutralRotation, NeutralRotationSampler
from emotion_predictor.training.recipe import run_fine_tuning

# 40 neutral rows (label 0) among 70: a quarter is 10 neutral rows per epoch.
LABELS = np.array([0] * 40 + [1, 2, 3, 4, 5, 6] * 5)


def neutral_rows(rows: np.ndarray) -> set[int]:
    return {int(r) for r in rows if LABELS[r] == 0}


def test_four_epochs_at_a_quarter_see_every_neutral_row_once():
    rotation = NeutralRotation(LABELS, 0.25, seed=7)
    others = set(np.flatnonzero(LABELS != 0).tolist())
    seen: list[int] = []
    for epoch in range(4):
        rows = rotation.epoch_indices(epoch)
        assert len(rows) == len(set(rows.tolist())) == len(rotation) == 30 + 10
        assert others <= set(rows.tolist())
        seen += sorted(neutral_rows(rows))
    assert sorted(seen) == list(range(40))
    # The fifth epoch starts a new permutation, not a replay of the first.
    assert len(neutral_rows(rotation.epoch_indices(4))) == 10
    assert neutral_rows(rotation.epoch_indices(4)) != neutral_rows(rotation.epoch_indices(0))


def test_a_share_that_does_not_divide_the_neutral_rows_never_repeats_a_row_within_a_cycle():
    labels = np.array([0] * 42 + [1] * 3)  # a quarter of 42 is 11 rows: 3 whole shares, 9 rows wait
    rotation = NeutralRotation(labels, 0.25, seed=1)
    shares = [set(rotation.epoch_indices(e).tolist()) - {42, 43, 44} for e in range(3)]
    assert [len(s) for s in shares] == [11, 11, 11]
    assert len(shares[0] | shares[1] | shares[2]) == 33


def test_an_epoch_has_the_size_and_class_mix_of_fixed_downsampling():
    import pandas as pd

    for ratio in (0.1, 0.25, 0.5, 0.9):
        fixed = downsample_neutral(pd.DataFrame({"label": LABELS}), ratio, seed=3)
        rows = NeutralRotation(LABELS, ratio, seed=3).epoch_indices(2)
        assert np.bincount(LABELS[rows], minlength=7).tolist() == np.bincount(fixed["label"], minlength=7).tolist()


def test_the_rotation_depends_on_the_seed_only():
    first, again, other = (NeutralRotation(LABELS, 0.25, seed=s).epoch_indices(1) for s in (5, 5, 6))
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_the_sampler_yields_the_epoch_rows_set_by_trainer():
    rotation = NeutralRotation(LABELS, 0.25, seed=0)
    sampler = NeutralRotationSampler(rotation)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) and sorted(drawn) == rotation.epoch_indices(epoch).tolist()


def test_the_sampler_keeps_length_bucketing_within_the_epoch_rows():
    lengths = np.random.default_rng(0).integers(3, 60, size=len(LABELS))
    rotation = NeutralRotation(LABELS, 0.25, seed=0)
    sampler = NeutralRotationSampler(rotation, lengths.tolist(), batch_size=8)
    sampler.set_epoch(1)
    torch.manual_seed(0)
    drawn = list(sampler)
    rows = rotation.epoch_indices(1)
    torch.manual_seed(0)
    assert drawn == rows[length_bucket_order(lengths[rows], 8)].tolist()
    batches = [drawn[i : i + 8] for i in range(0, len(drawn), 8)]
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))  # sorted, no overlap


def test_fine_tuning_rotates_the_neutral_rows_over_epochs(tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch):
    epochs: list[list[int]] = []
    original = NeutralRotationSampler.__iter__

    def recording(self):
        rows = list(original(self))
        epochs.append(rows)
        yield from rows

    monkeypatch.setattr(NeutralRotationSampler, "__iter__", recording)
    out = tmp_path / "run"
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            str(out),
            num_train_epochs=4,
            neutral_keep_ratio=0.25,
            resample_neutral_each_epoch=True,
            class_weights="balanced",
            head_warm_start="logistic_regression",
        ),
        score_test=False,
    )
    labels = prepare_splits(tiny_dataset_dir, splits=["train"]).splits["train"]["label"].to_numpy()
    rotation = NeutralRotation(labels, 0.25, seed=42)
    share = len(rotation)
    assert len(epochs) == 4 and rotation.shares_per_cycle >= 4  # four disjoint shares in this data
    per_epoch = [[r for r in rows if labels[r] == 0] for rows in epochs]
    assert len({r for rows in per_epoch for r in rows}) == 4 * len(per_epoch[0]) == 4 * rotation.share
    assert all(sorted(r for r in rows if labels[r] != 0) == np.flatnonzero(labels != 0).tolist() for rows in epochs)
    assert all(len(rows) == share for rows in epochs)

    stats = json.loads((out / "data_stats.json").read_text())["splits"]["train"]
    metrics = json.loads((out / "metrics.json").read_text())
    epoch_counts = np.bincount(labels[epochs[0]], minlength=7)
    assert stats["rows_per_epoch"] == share and stats["resample_neutral_each_epoch"] is True
    assert list(stats["counts_per_epoch"].values()) == epoch_counts.tolist()
    # Weights and the warm start see one epoch's rows, as with fixed downsampling.
    assert metrics["head_warm_start"]["rows"] == share
    expected = balanced_class_weights(np.repeat(np.arange(7), epoch_counts))
    assert metrics["class_weights"] == pytest.approx(expected)
