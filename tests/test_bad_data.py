"""Corrupted split files, in every file format: one error line naming the place (file and line, or
row for parquet), the dialogue, the field, the value and what is accepted; never a traceback."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from conftest import cli_error_lines, write_jsonl
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError

FORMATS = ("jsonl", "json", "csv", "parquet")
TEXT_FORMATS = ("jsonl", "json", "csv")


def dialogue(dialog_id, utterances=("a", "b"), emotions=(0, 4)):
    return {"dialog_id": dialog_id, "utterances": list(utterances), "emotions": list(emotions)}


def write_split(folder, fmt: str, rows: list[dict]) -> str:
    """`rows` as folder/train.<fmt> (validation and test: one good dialogue each)."""
    path = folder / f"train.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":  # one element per line: row i is on line i + 2
        path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n", encoding="utf-8")
    elif fmt == "csv":  # list cells as JSON text; the header is line 1
        cells = [
            {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for k, v in r.items()} for r in rows
        ]
        pd.DataFrame(cells).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path, index=False)
    for split in ("validation", "test"):
        write_jsonl(str(folder / f"{split}.jsonl"), [dialogue(0)])
    return str(path)


def position(fmt: str, index: int) -> str:
    """Row `index` (0-based) of a file written by `write_split`: its line, or its row in parquet."""
    return f"row {index + 1}" if fmt == "parquet" else f"line {index + (1 if fmt == 'jsonl' else 2)}"


def place(path: str, fmt: str, index: int) -> str:
    """How an error message names row `index` of a file written by `write_split`."""
    unit, number = position(fmt, index).split()
    return f"{path} row {number}" if unit == "row" else f"{path}:{number}"


def error_for(folder, fmt: str, rows: list[dict]) -> tuple[str, str]:
    path = write_split(folder, fmt, rows)
    with pytest.raises(UserError) as caught:
        prepare_splits(str(folder))
    message = str(caught.value)
    assert "\n" not in message and "np." not in message
    return path, message


EMOTIONS_ACCEPTED = (
    "expected an emotion code 0..6 (0 neutral, 1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise) "
    "or one of those names"
)

# (name, rows, index of the bad row, what the message says after "<place>: ", formats)
CASES = [
    (
        "null lists",
        [dialogue(0), {"dialog_id": 5, "utterances": None, "emotions": None}],
        1,
        "dialog_id 5: field 'utterances' is missing or null; expected a list of utterance strings",
        FORMATS,
    ),
    (
        "null inside a list",
        [dialogue(0), dialogue(6, utterances=["a", None])],
        1,
        "dialog_id 6: field 'utterances'[1] has value null; expected a string",
        FORMATS,
    ),
    (
        "non-string utterance",
        [dialogue(0), dialogue(7, utterances=["a", 5])],
        1,
        "dialog_id 7: field 'utterances'[1] has value 5; expected a string",
        TEXT_FORMATS,  # a parquet list column has one type: a number cannot sit among strings
    ),
    (
        "row of another layout",
        [dialogue(0), {"dialog_id": 8, "utterance": "hi", "emotion": 0}, dialogue(1)],
        1,
        "a row of the utterances layout (dialog_id, utterance, emotion) in a file of the dialogues layout "
        "(dialog_id, utterances, emotions); every row of a file must use one layout",
        FORMATS,
    ),
    (
        "unknown emotion name",
        [dialogue(0, emotions=["neutral", "joy"]), dialogue(3, emotions=["neutral", "happyish"])],
        1,
        f"dialog_id 3: field 'emotions'[1] has value 'happyish'; {EMOTIONS_ACCEPTED}",
        FORMATS,
    ),
    (
        "out-of-range label",
        [dialogue(0), dialogue(1), dialogue(9999, emotions=[0, 9])],
        2,
        f"dialog_id 9999: field 'emotions'[1] has value 9; {EMOTIONS_ACCEPTED}",
        FORMATS,
    ),
    (
        "unequal lists",
        [dialogue(0), dialogue(4, emotions=[0])],
        1,
        "dialog_id 4: 2 utterances but 1 emotions; they must be lists of equal length, one emotion per utterance",
        FORMATS,
    ),
    (
        "list id",
        [dialogue(0), dialogue([1, 2])],
        1,
        "field 'dialog_id' has value [1, 2]; expected an integer or string id",
        ("jsonl", "json"),  # CSV has no lists outside list columns; parquet's id column has one type
    ),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name, rows, bad, problem, formats", CASES, ids=[c[0] for c in CASES])
def test_bad_row_names_place_dialogue_field_value_and_what_is_accepted(
    tmp_path, fmt, name, rows, bad, problem, formats
):
    if fmt not in formats:
        pytest.skip(f"{name} cannot be written as {fmt}")
    path, message = error_for(tmp_path, fmt, rows)
    assert message == f"{place(path, fmt, bad)}: {problem}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicated_dialogue_id_names_both_places(tmp_path, fmt):
    path, message = error_for(tmp_path, fmt, [dialogue(0), dialogue(1), dialogue(0, utterances=["c", "d"])])
    assert message == (
        f"{place(path, fmt, 2)}: dialog_id 0: dialog_id is also used on {position(fmt, 0)}; "
        "each dialogue needs its own id"
    )


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_text_that_is_not_utf8_names_the_line(tmp_path, fmt):
    path = write_split(tmp_path, fmt, [dialogue(0), dialogue(1, utterances=["a", "café"])])
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "wb") as handle:
        handle.write(text.encode("latin-1"))
    with pytest.raises(UserError) as caught:
        prepare_splits(str(tmp_path))
    assert str(caught.value).startswith(f"{place(path, fmt, 1)}: not UTF-8 text (byte 0xe9 at column ")
    assert str(caught.value).endswith("save the file as UTF-8, e.g. iconv -f latin1 -t utf-8")


def test_parquet_bytes_instead_of_text(tmp_path):
    path, message = error_for(tmp_path, "parquet", [dialogue(2, utterances=[b"caf\xe9", b"b"])])
    assert message == f"{path} row 1: dialog_id 2: field 'utterances'[0] has value b'caf\\xe9'; expected a string"


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_dialogue_is_skipped_with_one_warning(tmp_path, fmt, caplog):
    empty = {"dialog_id": 1, "utterances": [], "emotions": []}
    path = write_split(tmp_path, fmt, [dialogue(0), empty, dialogue(2), dict(empty, dialog_id=3)])
    with caplog.at_level(logging.WARNING, logger="emotion_predictor.data.checks"):
        frame = prepare_splits(str(tmp_path)).splits["train"]
    assert frame["dialog_id"].tolist() == [0, 2]
    warnings = [r.getMessage() for r in caplog.records if r.name == "emotion_predictor.data.checks"]
    assert warnings == [f"{path}: skipped 2 empty dialogue(s) (no utterances), first at {place(path, fmt, 1)}"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_utterance_layout_checks(tmp_path, fmt):
    rows = [
        {"dialog_id": 1, "turn": 0, "utterance": "hi", "emotion": "neutral"},
        {"dialog_id": 1, "turn": 1, "utterance": "yo", "emotion": "happy"},
        {"dialog_id": 1, "turn": 1, "utterance": "again", "emotion": "sad"},
    ]
    path, message = error_for(tmp_path, fmt, rows)
    assert message == (
        f"{place(path, fmt, 2)}: dialog_id 1: turn 1 is also on {position(fmt, 1)}; "
        "each (dialog_id, turn) must appear once"
    )
    path, message = error_for(
        tmp_path, fmt, [*rows[:2], {"dialog_id": 1, "turn": 2, "utterance": "x", "emotion": "bored"}]
    )
    assert message == f"{place(path, fmt, 2)}: dialog_id 1: field 'emotion' has value 'bored'; {EMOTIONS_ACCEPTED}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_shifted_layout_checks(tmp_path, fmt):
    path, message = error_for(tmp_path, fmt, [{"text": "hi", "label": 4}, {"text": None, "label": 0}])
    assert message == f"{place(path, fmt, 1)}: field 'text' is missing or null; expected a string"


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            '{"dialog_id": 0, "utterances": ["a", "b"], "emotions": [0, 1]}\n{not json\n',
            "train.jsonl:2: malformed JSON line",
        ),
        ("", "train.jsonl is empty; it must hold at least one row"),
        (
            '{"dialog_id": 0, "utterance": "a"}\n',
            "has columns dialog_id, utterance and matches no known layout (closest: utterances, missing emotion)",
        ),
        ("[1, 2]\n", "train.jsonl:1: expected a JSON object (one row), got list [1, 2]"),
    ],
)
def test_unreadable_files(tmp_path, content, expected):
    (tmp_path / "train.jsonl").write_text(content)
    for split in ("validation", "test"):
        write_jsonl(str(tmp_path / f"{split}.jsonl"), [dialogue(0)])
    with pytest.raises(UserError) as caught:
        prepare_splits(str(tmp_path))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_damaged_parquet_is_one_line(tmp_path):
    path = write_split(tmp_path, "parquet", [dialogue(0)])
    with open(path, "r+b") as handle:
        handle.truncate(20)
    with pytest.raises(UserError, match=r"train.parquet: not a readable parquet file \(.*\); rewrite it"):
        prepare_splits(str(tmp_path))


def test_prepare_only_prints_one_error_line_and_exits_non_zero(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """The command the issue ran: `ep_fine_tune.py --prepare_only` on a corrupted train split."""
    import ep_fine_tune

    data = tmp_path / "data"
    data.mkdir()
    path = write_split(data, "jsonl", [dialogue(0), dialogue(9999, emotions=[0, 9])])
    argv = [
        "ep_fine_tune.py",
        "--model_name_or_path",
        tiny_model_dir,
        "--dataset",
        str(data),
        "--output_dir",
        str(tmp_path / "out"),
        "--data_cache_dir",
        "null",
        "--report_to",
        '["none"]',
        "--prepare_only",
    ]
    assert cli_error_lines(ep_fine_tune.main, argv, monkeypatch, capsys) == [
        f"error: {path}:2: dialog_id 9999: field 'emotions'[1] has value 9; {EMOTIONS_ACCEPTED}"
    ]
    assert not (tmp_path / "out" / "data_stats.json").exists()
