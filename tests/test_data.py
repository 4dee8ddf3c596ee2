"""The data pipeline in utils.py: sources, next-turn shift, context, downsampling, tokenization."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest

from conftest import REAL_DATA, build_tokenizer, requires_real_data, write_jsonl
from emotion_predictor.data.checks import check_table
from emotion_predictor.data.inputs import encode_turns
from emotion_predictor.data.sources import load_source
from emotion_predictor.data.tokenize import tokenize_split
from emotion_predictor.data.utils import UNKNOWN_EMOTION, order_utterances, prepare_splits, shift_to_next_turn
from emotion_predictor.errors import UserError

EXPECTED = {
    "test": (6740, [5454, 102, 41, 14, 927, 94, 108]),
    "validation": (7069, [6186, 62, 3, 8, 649, 65, 96]),
    "train": (76052, [62357, 691, 247, 123, 10253, 877, 1504]),
}


def counts(frame):
    return np.bincount(frame["label"], minlength=7).tolist()


@requires_real_data
def test_real_dailydialog_shifted_counts():
    data = prepare_splits(REAL_DATA)
    for split, (rows, per_class) in EXPECTED.items():
        assert len(data.splits[split]) == rows
        assert counts(data.splits[split]) == per_class
        assert list(data.stats["splits"][split]["counts"].values()) == per_class


@requires_real_data
def test_utterance_level_parquet_shuffled_gives_same_counts(tmp_path):
    for split in EXPECTED:
        utterances = check_table(load_source(REAL_DATA, [split])[split]).frame.sample(frac=1.0, random_state=0)
        utterances.to_parquet(tmp_path / f"{split}.parquet", index=False)
    data = prepare_splits(str(tmp_path))
    for split, (rows, per_class) in EXPECTED.items():
        assert (len(data.splits[split]), counts(data.splits[split])) == (rows, per_class)
    reference = prepare_splits(REAL_DATA).splits["test"]
    pd.testing.assert_frame_equal(
        data.splits["test"][["dialog_id", "turn", "label"]], reference[["dialog_id", "turn", "label"]]
    )


@requires_real_data
def test_full_train_split_shifts_to_one_row_per_utterance_but_the_last():
    # Its speed is measured by bench/throughput.py, not asserted here (a busy machine is no clock).
    utterances = order_utterances(check_table(load_source(REAL_DATA, ["train"])["train"]).frame)
    assert len(utterances) == 87170
    shifted = shift_to_next_turn(utterances)
    assert len(shifted) == 87170 - 11118 == 76052


def utterance_table(rows):
    return pd.DataFrame(rows, columns=["dialog_id", "utterance", "emotion"])


def test_shift_never_crosses_dialogues_when_rows_are_interleaved():
    table = utterance_table([(7, "a0", 0), (3, "b0", 1), (7, "a1", 4), (3, "b1", 5), (7, "a2", 6), (9, "c0", 2)])
    shifted = shift_to_next_turn(order_utterances(table), context_turns=3)
    assert shifted[["dialog_id", "turn", "text", "label", "current_label"]].values.tolist() == [
        [3, 0, "b0", 5, 1],
        [7, 0, "a0", 4, 0],
        [7, 1, "a1", 6, 4],
    ]
    assert shifted["turns"].tolist() == [["b0"], ["a0"], ["a0", "a1"]]
    assert shifted["previous_text"].tolist() == ["", "", "a0"]  # what a two-turn knn memory is keyed on


def test_turn_column_orders_shuffled_rows():
    table = pd.DataFrame(
        {"dialog_id": [1, 1, 1], "turn": [2, 0, 1], "utterance": ["third", "first", "second"], "emotion": [6, 0, 4]}
    )
    shifted = shift_to_next_turn(order_utterances(table))
    assert shifted[["text", "label"]].values.tolist() == [["first", 4], ["second", 6]]


def test_context_two_gives_first_three_utterances_and_fourth_label(tmp_path):
    dialogue = {
        "dialog_id": 0,
        "utterances": ["u0", "u1", "u2", "u3", "u4"],
        "emotions": [0, 1, 2, 3, 4],
        "acts": [1] * 5,
    }
    for split in ("train", "validation", "test"):
        write_jsonl(str(tmp_path / f"{split}.jsonl"), [dialogue])
    frame = prepare_splits(str(tmp_path), context_turns=2).splits["test"]
    third = frame[frame["turn"] == 2].iloc[0]
    assert third["turns"] == ["u0", "u1", "u2"] and third["label"] == 3
    assert frame["turns"].tolist()[-1] == ["u1", "u2", "u3"]
    assert all("u4" not in turns for turns in frame["turns"])


def test_neutral_downsampling_is_reproducible_and_train_only(tiny_dataset_dir):
    full = prepare_splits(tiny_dataset_dir)
    half = prepare_splits(tiny_dataset_dir, neutral_keep_ratio=0.5, seed=3)
    again = prepare_splits(tiny_dataset_dir, neutral_keep_ratio=0.5, seed=3)
    other = prepare_splits(tiny_dataset_dir, neutral_keep_ratio=0.5, seed=4)
    neutral = int((full.splits["train"]["label"] == 0).sum())
    kept = half.splits["train"]
    assert int((kept["label"] == 0).sum()) == int(np.floor(neutral * 0.5 + 0.5))
    assert (kept["label"] != 0).sum() == (full.splits["train"]["label"] != 0).sum()
    pd.testing.assert_frame_equal(kept, again.splits["train"])
    assert not kept.equals(other.splits["train"])
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(half.splits[split], full.splits[split])
    assert half.stats["splits"]["train"]["rows_after_downsampling"] == len(kept)


def test_shifted_layout_is_used_as_is_and_refuses_context(tmp_path):
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": ["hi", "bye"], "label": [4, 0]}).to_csv(tmp_path / f"{split}.csv", index=False)
    frame = prepare_splits(str(tmp_path)).splits["test"]
    assert frame[["text", "label"]].values.tolist() == [["hi", 4], ["bye", 0]]
    assert frame["current_label"].tolist() == [UNKNOWN_EMOTION] * 2  # this layout does not carry it
    assert frame["previous_text"].tolist() == ["", ""]  # nor the utterance before
    with pytest.raises(UserError, match="already shifted .* context_turns must be 0"):
        prepare_splits(str(tmp_path), context_turns=1)


def test_json_file_may_be_an_array_json_lines_or_pandas_columns(tmp_path, tiny_dataset_dir):
    expected = prepare_splits(tiny_dataset_dir).splits["train"]
    raw = pd.read_json(os.path.join(tiny_dataset_dir, "train.jsonl"), lines=True)
    for writer in (
        lambda path: raw.to_json(path, orient="records", indent=1),
        lambda path: raw.to_json(path, orient="records", lines=True),
        lambda path: raw.to_json(path),
    ):
        for split in ("train", "validation", "test"):
            writer(tmp_path / f"{split}.json")
        pd.testing.assert_frame_equal(prepare_splits(str(tmp_path)).splits["train"], expected)


def write_splits(folder, name_to_lines):
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(name_to_lines.get(split, name_to_lines["train"]))


GOOD = json.dumps({"dialog_id": 0, "utterances": ["a", "b"], "emotions": [0, 1], "acts": [1, 2]}) + "\n"


def test_missing_folder_and_split_file(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        prepare_splits(str(tmp_path / "missing"))
    (tmp_path / "train.jsonl").write_text(GOOD)
    with pytest.raises(UserError, match="has no validation split: expected one of validation.jsonl"):
        prepare_splits(str(tmp_path))


def test_single_utterance_dialogue_adds_no_row(tmp_path):
    lonely = json.dumps({"dialog_id": 1, "utterances": ["alone"], "emotions": [3], "acts": [1]}) + "\n"
    write_splits(tmp_path, {"train": GOOD + lonely})
    frame = prepare_splits(str(tmp_path)).splits["train"]
    assert frame["text"].tolist() == ["a"] and frame["label"].tolist() == [1]


def test_hub_id_fails_at_once_offline(monkeypatch):
    # "At once" means no connection attempt (and so no retries), which a clock on a busy machine can't tell.
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address))
    with pytest.raises(UserError, match="cannot load dataset 'someone/not_cached_dataset'"):
        prepare_splits("someone/not_cached_dataset")
    assert attempts == []


def test_truncation_drops_oldest_tokens_never_the_current_utterance(tmp_path):
    tokenizer = build_tokenizer(str(tmp_path))
    turns = [["hello how are you fine thanks", "great terrible awful", "i lost my keys"]]
    current = tokenizer("i lost my keys", add_special_tokens=False)["input_ids"]
    full = encode_turns(tokenizer, turns, " [SEP] ", 128)[0]
    assert full[-len(current) - 1 : -1] == current
    short = encode_turns(tokenizer, turns, " [SEP] ", len(current) + 4)[0]
    assert len(short) == len(current) + 4
    assert short[0] == tokenizer.cls_token_id and short[-1] == tokenizer.sep_token_id
    assert short[-len(current) - 1 : -1] == current
    assert short[1 : -len(current) - 1] == full[-len(current) - 3 : -len(current) - 1]
    tiny = encode_turns(tokenizer, [["i lost my keys"]], " [SEP] ", 4)[0]
    assert tiny == [tokenizer.cls_token_id, *current[:2], tokenizer.sep_token_id]


def test_tokenized_splits_are_unpadded_and_cached(tmp_path, tiny_dataset_dir):
    tokenizer = build_tokenizer(str(tmp_path / "tok"))
    frame = prepare_splits(tiny_dataset_dir, context_turns=1).splits["train"]
    cache = tmp_path / "cache"
    first = tokenize_split(frame, tokenizer, " [SEP] ", 64, str(cache))
    assert first["length"] == [len(ids) for ids in first["input_ids"]]
    assert len(set(first["length"])) > 1
    assert first["labels"] == frame["label"].tolist()
    assert len(os.listdir(cache)) == 1
    second = tokenize_split(frame, tokenizer, " [SEP] ", 64, str(cache))
    assert second.cache_files and second.cache_files[0]["filename"].startswith(str(cache))
    assert second["input_ids"] == first["input_ids"]
    tokenize_split(frame, tokenizer, " [SEP] ", 32, str(cache))
    assert len(os.listdir(cache)) == 2
