"""Reading a dataset's split files and checking every row before anything is computed from it.

Sources: a local folder holding `<split>.jsonl|.json|.parquet|.csv` files, or a Hugging Face Hub
dataset id. A `.json` file is a JSON array of objects or JSON Lines. Text files must be UTF-8.

Layouts, detected from the columns (every row of a file must use the file's layout):

- `dialogues`: one dialogue per row, `dialog_id, utterances, emotions[, acts]` (lists; in CSV, a
  JSON list in the cell);
- `utterances`: one utterance per row, `dialog_id, utterance, emotion[, turn]`;
- `shifted`: one example per row, `text, label`.

Emotions are DailyDialog codes 0..6 or names (`labels.canonical_emotion`). Every bad row is a
`UserError` of one line naming the place, the dialogue, the field, the value and what is
accepted. The place is `<file>:<line>` for text files (JSONL, JSON, CSV; in CSV the header is
line 1, so the first data row is line 2) and `<file> row <n>` (1-based) for parquet files and
Hub splits.

Two rules beyond types: a dialogue id used by two rows of a dialogues file, or a (dialog_id,
turn) pair used twice in an utterances file, is an error, since their turns would be merged into
one dialogue; an empty dialogue (no utterances and no emotions) adds no example, like a
one-utterance dialogue, and is skipped with one warning per file.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from errors import UserError, first_line
from labels import EMOTIONS, LABEL2ID, NUM_LABELS, canonical_emotion

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
LAYOUTS: dict[str, tuple[str, ...]] = {
    "dialogues": ("dialog_id", "utterances", "emotions"),
    "utterances": ("dialog_id", "utterance", "emotion"),
    "shifted": ("text", "label"),
}
# Columns read from CSV as text, so that an utterance like "NA" or "42" stays a string.
CSV_TEXT_COLUMNS = ("utterance", "utterances", "text", "emotions")
EMOTIONS_ACCEPTED = (
    f"an emotion code 0..{NUM_LABELS - 1} ({', '.join(f'{i} {n}' for i, n in enumerate(EMOTIONS))}) "
    "or one of those names"
)
FIELD_EXPECTS = {
    "dialog_id": "an integer or string id",
    "utterances": "a list of utterance strings",
    "emotions": f"a list of emotions, each {EMOTIONS_ACCEPTED}",
    "utterance": "a string",
    "text": "a string",
    "emotion": EMOTIONS_ACCEPTED,
    "label": EMOTIONS_ACCEPTED,
}
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


@dataclass
class CheckedSplit:
    """A split whose rows passed every check: utterances (`dialog_id, utterance, emotion[, turn]`)
    or shifted examples (`text, label`), emotions as int codes."""

    layout: str
    frame: pd.DataFrame
    where: str


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

    from hub import go_offline_if_unreachable

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


# --------------------------------------------------------------------------- checking rows


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


def as_integer(value: Any) -> int | None:
    """An int from an int or an integer-valued float (CSV and parquet turn ints into floats)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return None


def emotion_code(value: Any) -> int | None:
    """The class index of an emotion code or name, or None when it is neither."""
    if isinstance(value, str):
        name = canonical_emotion(value)
        return LABEL2ID[name] if name else None
    code = as_integer(value)
    return code if code is not None and 0 <= code < NUM_LABELS else None


def as_list(value: Any) -> list | None:
    """A list cell: a list, a parquet array, or (CSV) a JSON or Python list written as text."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.lstrip().startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            return parsed if isinstance(parsed, list) else None
    return None


def row_layout(row: dict[str, Any]) -> str | None:
    """The layout whose required fields are all present in this row."""
    return next((name for name, fields in LAYOUTS.items() if all(not is_missing(row.get(f)) for f in fields)), None)


def detect_layout(table: RawTable) -> str:
    """The file's layout: the one its columns allow (the first row's, when they allow several)."""
    present = set(table.frame.columns)
    matching = [name for name, required in LAYOUTS.items() if present.issuperset(required)]
    if not matching:
        closest = max(LAYOUTS, key=lambda name: len(present.intersection(LAYOUTS[name])))
        missing = [c for c in LAYOUTS[closest] if c not in present]
        accepted = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in LAYOUTS.items())
        raise UserError(
            f"{table.where} has columns {', '.join(map(str, table.frame.columns))} and matches no known layout "
            f"(closest: {closest}, missing {', '.join(missing)}); accepted layouts are {accepted}"
        )
    first = row_layout(table.frame.iloc[0].to_dict())
    return first if first in matching else matching[0]


class RowChecker:
    """Checks the rows of one file against its layout; each problem is one UserError line."""

    def __init__(self, table: RawTable, layout: str) -> None:
        self.table, self.layout = table, layout
        self.columns = [c for c in table.frame.columns if isinstance(c, str)]
        self.values = [table.frame[c].tolist() for c in self.columns]

    def rows(self):
        for index, values in enumerate(zip(*self.values)):
            yield index, dict(zip(self.columns, values))

    def fail(self, index: int, row: dict[str, Any], problem: str) -> UserError:
        value = row.get("dialog_id")
        number = as_integer(value)  # CSV turns an id column with a gap into floats
        dialog = "" if is_missing(value) else f" dialog_id {shown(value if number is None else number)}:"
        return UserError(f"{self.table.place(index)}:{dialog} {problem}")

    def require_layout(self, index: int, row: dict[str, Any]) -> None:
        """Every required field present; a row of another layout is named as such."""
        missing = [f for f in LAYOUTS[self.layout] if is_missing(row.get(f))]
        if not missing:
            return
        other = row_layout(row)
        if other and other != self.layout:
            raise UserError(
                f"{self.table.place(index)}: a row of the {other} layout ({', '.join(LAYOUTS[other])}) "
                f"in a file of the {self.layout} layout ({', '.join(LAYOUTS[self.layout])}); "
                "every row of a file must use one layout"
            )
        raise self.fail(index, row, f"field {missing[0]!r} is missing or null; expected {FIELD_EXPECTS[missing[0]]}")

    def dialog_id(self, index: int, row: dict[str, Any]) -> int | str:
        value = row["dialog_id"]
        number = as_integer(value)
        if number is not None:
            return number
        if isinstance(value, str):
            return value
        raise UserError(
            f"{self.table.place(index)}: field 'dialog_id' has value {shown(value)}; "
            f"expected {FIELD_EXPECTS['dialog_id']}"
        )

    def text(self, index: int, row: dict[str, Any], field: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        raise self.fail(index, row, f"field {field} has value {shown(value)}; expected a string")

    def emotion(self, index: int, row: dict[str, Any], field: str, value: Any) -> int:
        code = emotion_code(value)
        if code is None:
            raise self.fail(index, row, f"field {field} has value {shown(value)}; expected {EMOTIONS_ACCEPTED}")
        return code

    def check(self) -> CheckedSplit:
        checker = {"dialogues": self.dialogues, "utterances": self.utterances, "shifted": self.shifted}[self.layout]
        return CheckedSplit(self.layout, checker(), self.table.where)

    def shifted(self) -> pd.DataFrame:
        texts, labels = [], []
        for index, row in self.rows():
            self.require_layout(index, row)
            texts.append(self.text(index, row, "'text'", row["text"]))
            labels.append(self.emotion(index, row, "'label'", row["label"]))
        return pd.DataFrame({"text": texts, "label": np.asarray(labels, dtype=np.int64)})

    def utterances(self) -> pd.DataFrame:
        columns: dict[str, list] = {"dialog_id": [], "utterance": [], "emotion": []}
        has_turn = "turn" in self.columns
        seen: dict[tuple[str, int], int] = {}  # as text: ids 1 and "1" end up as one dialogue
        if has_turn:
            columns["turn"] = []
        for index, row in self.rows():
            self.require_layout(index, row)
            dialog = self.dialog_id(index, row)
            columns["dialog_id"].append(dialog)
            columns["utterance"].append(self.text(index, row, "'utterance'", row["utterance"]))
            columns["emotion"].append(self.emotion(index, row, "'emotion'", row["emotion"]))
            if has_turn:
                turn = as_integer(row["turn"])
                if turn is None or turn < 0:
                    raise self.fail(
                        index, row, f"field 'turn' has value {shown(row['turn'])}; expected an integer >= 0"
                    )
                slot = (str(dialog), turn)
                if slot in seen:
                    raise self.fail(
                        index,
                        row,
                        f"turn {turn} is also on {self.table.unit} {self.table.positions[seen[slot]]}; "
                        "each (dialog_id, turn) must appear once",
                    )
                seen[slot] = index
                columns["turn"].append(turn)
        return pd.DataFrame(columns).astype({"emotion": np.int64})

    def dialogues(self) -> pd.DataFrame:
        ids, turns, texts, codes = [], [], [], []
        seen: dict[str, int] = {}  # as text: ids 1 and "1" would end up as one dialogue
        empty: list[int] = []
        for index, row in self.rows():
            self.require_layout(index, row)
            dialog = self.dialog_id(index, row)
            if str(dialog) in seen:
                raise self.fail(
                    index,
                    row,
                    f"dialog_id is also used on {self.table.unit} {self.table.positions[seen[str(dialog)]]}; "
                    "each dialogue needs its own id",
                )
            seen[str(dialog)] = index
            utterances, emotions = as_list(row["utterances"]), as_list(row["emotions"])
            for field, value in (("utterances", utterances), ("emotions", emotions)):
                if value is None:
                    raise self.fail(index, row, f"field {field!r} has value {shown(row[field])}; expected a list")
            if len(utterances) != len(emotions):
                raise self.fail(
                    index,
                    row,
                    f"{len(utterances)} utterances but {len(emotions)} emotions; "
                    "they must be lists of equal length, one emotion per utterance",
                )
            if not utterances:
                empty.append(index)
                continue
            for turn, (utterance, emotion) in enumerate(zip(utterances, emotions)):
                texts.append(self.text(index, row, f"'utterances'[{turn}]", utterance))
                codes.append(self.emotion(index, row, f"'emotions'[{turn}]", emotion))
                ids.append(dialog)
                turns.append(turn)
        if empty:
            logger.warning(
                "%s: skipped %d empty dialogue(s) (no utterances), first at %s",
                self.table.where,
                len(empty),
                self.table.place(empty[0]),
            )
        return pd.DataFrame(
            {
                "dialog_id": ids,
                "turn": np.asarray(turns, dtype=np.int64),
                "utterance": texts,
                "emotion": np.asarray(codes, dtype=np.int64),
            }
        )


def check_table(table: RawTable) -> CheckedSplit:
    """Check every row of a split against its layout (see the module docstring)."""
    split = RowChecker(table, detect_layout(table)).check()
    if split.layout != "shifted" and split.frame["dialog_id"].map(type).nunique() > 1:
        # Ids mixing numbers and strings cannot be sorted; as text they group the same way.
        split.frame["dialog_id"] = split.frame["dialog_id"].astype(str)
    return split
