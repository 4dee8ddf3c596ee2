"""Checking every row of a split before anything is computed from it (after `sources.py`).

Layouts, detected from the columns (every row of a file must use the file's layout):

- `dialogues`: one dialogue per row, `dialog_id, utterances, emotions[, acts]` (lists; in CSV, a
  JSON list in the cell);
- `utterances`: one utterance per row, `dialog_id, utterance, emotion[, turn]`;
- `shifted`: one example per row, `text, label`.

Emotions are DailyDialog codes 0..6 or names (`labels.canonical_emotion`). Every bad row is a
`UserError` of one line naming the place, the dialogue, the field, the value and what is
accepted.

Two rules beyond types: a dialogue id used by two rows of a dialogues file, or a (dialog_id,
turn) pair used twice in an utterances file, is an error, since their turns would be merged into
one dialogue; an empty dialogue (no utterances and no emotions) adds no example, like a
one-utterance dialogue, and is skipped with one warning per file.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emotion_predictor.data.sources import RawTable, is_missing, shown
from emotion_predictor.errors import UserError
from emotion_predictor.labels import EMOTIONS, LABEL2ID, NUM_LABELS, canonical_emotion

logger = logging.getLogger(__name__)

LAYOUTS: dict[str, tuple[str, ...]] = {
    "dialogues": ("dialog_id", "utterances", "emotions"),
    "utterances": ("dialog_id", "utterance", "emotion"),
    "shifted": ("text", "label"),
}
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


@dataclass
class CheckedSplit:
    """A split whose rows passed every check: utterances (`dialog_id, utterance, emotion[, turn]`)
    or shifted examples (`text, label`), emotions as int codes."""

    layout: str
    frame: pd.DataFrame
    where: str


# --------------------------------------------------------------------------- checking rows


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
