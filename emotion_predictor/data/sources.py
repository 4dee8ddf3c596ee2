"""Reading a dataset's split files: the first step of the data path (load, check, shift,
downsample, tokenize).

Sources: a local folder holding `<split>.jsonl|.json|.parquet|.csv` files, or a Hugging Face Hub
dataset id. A `.json` file is a JSON array of objects or JSON Lines. Text files must be UTF-8;
a file that is not, or does not parse, is one `UserError` line naming the file and line. Each
split comes back as a `RawTable` that remembers every row's place in its file (`<file>:<line>`
for text files, where a CSV header is line 1; `<file> row <n>`, 1-based, for parquet files and
Hub splits), so that `checks.py` can name it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emotion_predictor.errors import UserError, first_line

SPLITS = ("train", "validation", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# Columns read from CSV as text, so that an utterance like "NA" or "42" stays a string.
CSV_TEXT_COLUMNS = ("utterance", "utterances", "text", "emotions")
WHITESPACE = re.compile(r"\s*")


@dataclass
class RawTable:
    """A split as read from its file, with each row's place in that file for error messages."""

    frame: pd.DataFrame
    where: str  # the file path, or "<hub id> [<split>]"
    positions: np.ndarray  # per row: line in the file (unit "line") or 1-based row number
    unit: str  # "line" or "row"

    def place(self, row: int) -> str:
        position = int(self.positions[row])
        return f"{self.where}:{position}" if self.unit == "line" else f"{self.where} row {position}"


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def shown(value: Any) -> str:
    """A value as the user wrote it: 9999, 'joy', null (never np.int64(9999))."""
    if isinstance(value, np.generic):
        value = value.item()
    if is_missing(value):
        return "null"
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- reading files


def read_text(path: str) -> str:
    """A text file's content; bytes that are not UTF-8 are an error naming the line."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column "
            f"{column}); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None


def records_table(records: list[Any], lines: list[int], path: str) -> RawTable:
    for record, line in zip(records, lines):
        if not isinstance(record, dict):
            raise UserError(
                f"{path}:{line}: expected a JSON object (one row), got {type(record).__name__} {shown(record)}"
            )
    return RawTable(pd.DataFrame(records), path, np.asarray(lines), "line")


def parse_jsonl(text: str, path: str) -> RawTable:
    records, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: malformed JSON line ({err.msg}); fix or remove that line") from None
        lines.append(number)
    return records_table(records, lines, path)


def parse_json(text: str, path: str) -> RawTable:
    """A `.json` file: an array of row objects, pandas' column-oriented object
    (`DataFrame.to_json()`), or JSON Lines."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise UserError(f"{path}:{err.lineno}:{err.colno}: malformed JSON ({err.msg})") from None
        return parse_jsonl(text, path)  # JSON Lines; their errors name the line
    if isinstance(data, list):
        return parse_json_array(text, data, path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        frame = pd.DataFrame(data)
        return RawTable(frame, path, np.arange(1, len(frame) + 1), "row")
    return parse_jsonl(text, path)


def parse_json_array(text: str, data: list[Any], path: str) -> RawTable:
    """The parsed JSON array `data` of `text`, each element with the line it starts on."""
    decoder, lines = json.JSONDecoder(), []
    pos = WHITESPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    for _ in data:
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = WHITESPACE.match(text, pos).end()
        pos = WHITESPACE.match(text, pos + 1).end() if text.startswith(",", pos) else pos
    return records_table(data, lines, path)


def parse_csv(text: str, path: str) -> RawTable:
    # Only empty cells are missing: "NA" or "None" can be what someone said.
    try:
        header = pd.read_csv(io.StringIO(text), nrows=0).columns
        frame = pd.read_csv(
            io.StringIO(text),
            dtype={c: str for c in CSV_TEXT_COLUMNS if c in header},
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise UserError(f"{path}: not a readable CSV file ({first_line(err)})") from None
    return RawTable(frame, path, np.arange(2, len(frame) + 2), "line")


def read_parquet(path: str) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError and more for a damaged file
        raise UserError(
            f"{path}: not a readable parquet file ({first_line(err, with_type=True)}); "
            "rewrite it, e.g. with pandas DataFrame.to_parquet"
        ) from None
    return RawTable(frame, path, np.arange(1, len(frame) + 1), "row")


def read_table(path: str) -> RawTable:
    """Read one split file (JSONL, JSON, parquet or CSV)."""
    if os.path.getsize(path) == 0:
        raise UserError(f"{path} is empty; it must hold at least one row")
    if path.endswith(".parquet"):
        table = read_parquet(path)
    else:
        text = read_text(path)
        if path.endswith(".csv"):
            table = parse_csv(text, path)
        elif path.endswith(".json"):
            table = parse_json(text, path)
        else:
            table = parse_jsonl(text, path)
    if table.frame.empty:
        raise UserError(f"{path} is empty; it must hold at least one row")
    return table


def find_split_file(folder: str, split: str) -> str:
    for suffix in FILE_SUFFIXES:
        path = os.path.join(folder, split + suffix)
        if os.path.isfile(path):
            return path
    present = sorted(os.listdir(folder))
    raise UserError(
        f"dataset folder {folder} has no {split} split: expected one of "
        f"{', '.join(split + s for s in FILE_SUFFIXES)}; it holds {', '.join(present) or 'nothing'}"
    )


def load_hub_splits(dataset: str, config_name: str | None, splits: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Load splits of a Hub dataset with `datasets.load_dataset` (fails at once when offline)."""
    import datasets

    from emotion_predictor.hub import go_offline_if_unreachable

    go_offline_if_unreachable()
    try:
        loaded = datasets.load_dataset(dataset, config_name)
    except Exception as err:  # datasets raises many types; all mean "cannot load this id"
        raise UserError(
            f"cannot load dataset {dataset!r} from the Hugging Face Hub or its cache "
            f"({first_line(err, with_type=True)}); "
            "check the id and your connection, or point `dataset` at a local folder"
        ) from None
    frames = {}
    for split in splits:
        if split not in loaded:
            raise UserError(f"Hub dataset {dataset!r} has no {split!r} split; it has {', '.join(loaded)}")
        frames[split] = loaded[split].to_pandas()
    return frames


def load_source(dataset: str, splits: Sequence[str], config_name: str | None = None) -> dict[str, RawTable]:
    """Read the raw splits of a source (a local folder or a Hub dataset id)."""
    path = os.path.expanduser(dataset)
    if os.path.isdir(path):
        found = {split: find_split_file(path, split) for split in splits}
        return {split: read_table(file) for split, file in found.items()}
    if os.path.exists(path) or dataset.startswith((".", "/", "~")) or dataset.count("/") > 1:
        raise UserError(
            f"dataset {dataset!r} is not a folder; give a folder holding train/validation/test "
            "files (.jsonl, .json, .parquet or .csv) or a Hugging Face Hub dataset id"
        )
    frames = load_hub_splits(dataset, config_name, splits)
    return {
        split: RawTable(frame, f"{dataset} [{split}]", np.arange(1, len(frame) + 1), "row")
        for split, frame in frames.items()
    }
