"""Dataset helpers: shift labels to the next turn, add dialogue context, downsample neutral
rows and count classes; `prepare_splits` runs the data path's first steps in order (load with
`sources.py`, check with `checks.py`, shift, downsample), `tokenize.py` the last.

Sources and their layouts (`dialogues`, `utterances`, `shifted`) are in `sources.py` and
`checks.py`. In the utterance layout, turn order is the `turn` column when present, else
the order of the rows of each dialogue in the file (rows of different dialogues may be
interleaved).

After `prepare_splits`, each split is a DataFrame with one row per example: `dialog_id`, `turn`
(index of the current utterance in its dialogue), `turns` (the context utterances followed by
the current one, oldest first), `text` (the current utterance), `previous_text` (the utterance
before it in its dialogue, "" at a dialogue's start and in the shifted layout, which has no
dialogue structure; `knn_memory_turns` 2 keys the memory on it), `history_texts` and
`history_labels` (up to `HISTORY_TURNS` utterances before the current one and their emotions,
oldest first: a trajectory's turns), `label` (the emotion of the next utterance, 0..6 in
`labels.EMOTIONS` order) and `current_label` (the emotion of the current utterance, or
`UNKNOWN_EMOTION` in the shifted layout, which does not carry it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emotion_predictor.data.checks import CheckedSplit, check_table
from emotion_predictor.data.sources import SPLITS, load_source
from emotion_predictor.errors import UserError
from emotion_predictor.labels import EMOTIONS, NUM_LABELS
from emotion_predictor.tables import text_table

UNKNOWN_EMOTION = -1  # `current_label` of rows whose source gives only the next turn's emotion
HISTORY_TURNS = 3  # earlier utterances (and their emotions) kept per row: a trajectory reads up to 3 + 1 turns


# --------------------------------------------------------------------------- dialogues


def order_utterances(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort utterances by dialogue, then by turn (or by file order within a dialogue)."""
    frame = frame.copy()
    if "turn" not in frame.columns:
        frame["turn"] = frame.groupby("dialog_id", sort=False).cumcount()
    frame = frame.sort_values(["dialog_id", "turn"], kind="stable").reset_index(drop=True)
    return frame


# --------------------------------------------------------------------------- shift and context


def earlier_turns(dialog: np.ndarray, rows: np.ndarray, count: int) -> list[list[int]]:
    """For each of `rows` (indices of sorted utterances), the indices of up to `count` utterances
    before it in its dialogue, oldest first."""
    earlier: list[list[int]] = [[] for _ in rows]
    for back in range(count, 0, -1):
        source = rows - back
        valid = source >= 0
        valid[valid] = dialog[source[valid]] == dialog[rows[valid]]
        for row in np.flatnonzero(valid):
            earlier[row].append(int(source[row]))
    return earlier


def shift_to_next_turn(utterances: pd.DataFrame, context_turns: int = 0, task: str = "forecast") -> pd.DataFrame:
    """Label each utterance with the next utterance's emotion and build its input turns.

    `utterances` is sorted by (dialog_id, turn). The last utterance of each dialogue has no next
    turn and is dropped. `turns` holds up to `context_turns` previous utterances of the same
    dialogue followed by the current one; nothing after the current utterance is included. With
    `task` "recognise" (the data of an emotion recogniser) every utterance is a row, labelled with
    its own emotion.
    """
    dialog = utterances["dialog_id"].to_numpy()
    text = utterances["utterance"].to_numpy(dtype=object)
    emotion = utterances["emotion"].to_numpy().astype(np.int64)
    if task == "recognise":
        keep, label = np.arange(len(dialog)), emotion
    else:
        has_next = np.zeros(len(dialog), dtype=bool)
        has_next[:-1] = dialog[:-1] == dialog[1:]
        keep = np.flatnonzero(has_next)
        label = emotion[keep + 1]
    earlier = earlier_turns(dialog, keep, max(context_turns, HISTORY_TURNS))

    def last(before: list[int], count: int) -> list[int]:
        return before[len(before) - count :] if count else []

    return pd.DataFrame(
        {
            "dialog_id": dialog[keep],
            "turn": utterances["turn"].to_numpy()[keep],
            "turns": [[*text[last(before, context_turns)], text[row]] for row, before in zip(keep, earlier)],
            "text": text[keep],
            "previous_text": [text[before[-1]] if before else "" for before in earlier],
            "history_texts": [list(text[last(before, HISTORY_TURNS)]) for before in earlier],
            "history_labels": [emotion[last(before, HISTORY_TURNS)].tolist() for before in earlier],
            "label": label,
            "current_label": emotion[keep],
        }
    )


def normalise_split(split: CheckedSplit, context_turns: int, task: str = "forecast") -> pd.DataFrame:
    """A checked split of any layout -> one shifted example per row (see module docstring)."""
    frame = split.frame
    if split.layout == "shifted":
        if task == "recognise":
            raise UserError(
                f"{split.where} is already shifted (columns text, label): it gives the next turn's emotion, not "
                "each utterance's own, so it cannot train a recogniser (task recognise); use a dialogue- or "
                "utterance-level source"
            )
        if context_turns > 0:
            raise UserError(
                f"{split.where} is already shifted (columns text, label) and has no dialogue structure left, "
                "so context_turns must be 0; use a dialogue- or utterance-level source for context"
            )
        return pd.DataFrame(
            {
                "dialog_id": np.arange(len(frame)),
                "turn": np.zeros(len(frame), dtype=np.int64),
                "turns": [[t] for t in frame["text"]],
                "text": frame["text"].to_numpy(dtype=object),
                "previous_text": np.full(len(frame), "", dtype=object),
                "history_texts": [[] for _ in range(len(frame))],
                "history_labels": [[] for _ in range(len(frame))],
                "label": frame["label"].to_numpy(dtype=np.int64),
                "current_label": np.full(len(frame), UNKNOWN_EMOTION, dtype=np.int64),
            }
        )
    return shift_to_next_turn(order_utterances(frame), context_turns, task)


def downsample_neutral(frame: pd.DataFrame, keep_ratio: float, seed: int) -> pd.DataFrame:
    """Keep floor(n * keep_ratio + 0.5) of the n neutral rows, chosen by `seed`; order is kept."""
    if keep_ratio >= 1.0:
        return frame
    neutral = np.flatnonzero(frame["label"].to_numpy() == 0)
    keep_count = math.floor(len(neutral) * keep_ratio + 0.5)
    kept = np.random.default_rng(seed).choice(neutral, size=keep_count, replace=False)
    mask = frame["label"].to_numpy() != 0
    mask[kept] = True
    return frame[mask].reset_index(drop=True)


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows, drawn by `seed` and kept in their original order."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def class_counts(labels: Sequence[int] | np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_LABELS)
    return {name: int(counts[i]) for i, name in enumerate(EMOTIONS)}


@dataclass
class PreparedData:
    """Shifted splits plus the per-split statistics written to `data_stats.json`."""

    splits: dict[str, pd.DataFrame]
    stats: dict[str, Any]


def prepare_splits(
    dataset: str,
    splits: Sequence[str] = SPLITS,
    context_turns: int = 0,
    neutral_keep_ratio: float = 1.0,
    seed: int = 42,
    dataset_config: str | None = None,
    max_rows: dict[str, int | None] | None = None,
    task: str = "forecast",
) -> PreparedData:
    """Load, shift and (train only) downsample a source; see the module docstring. `task`
    "recognise" labels every utterance with its own emotion instead of the next one's."""
    raw = load_source(dataset, splits, dataset_config)
    result: dict[str, pd.DataFrame] = {}
    stats: dict[str, Any] = {"class_names": EMOTIONS, "context_turns": context_turns, "splits": {}}
    for split, table in raw.items():
        shifted = normalise_split(check_table(table), context_turns, task)
        entry: dict[str, Any] = {"rows": len(shifted), "counts": class_counts(shifted["label"])}
        if split == "train":
            shifted = downsample_neutral(shifted, neutral_keep_ratio, seed)
            entry["neutral_keep_ratio"] = neutral_keep_ratio
            entry["rows_after_downsampling"] = len(shifted)
            entry["counts_after_downsampling"] = class_counts(shifted["label"])
        limit = (max_rows or {}).get(split)
        if limit is not None and limit < len(shifted):
            shifted = subsample(shifted, limit, seed)
            entry["rows_used"] = len(shifted)
            entry["counts_used"] = class_counts(shifted["label"])
        if shifted.empty:
            raise UserError(
                f"{table.where}: no rows left after the next-turn shift (every dialogue has a single utterance)"
            )
        result[split] = shifted
        stats["splits"][split] = entry
    return PreparedData(result, stats)


def format_stats_table(stats: dict[str, Any]) -> str:
    """A short plain-text table of the rows used per split and class."""
    rows = [["split", "rows", *(name[:9] for name in EMOTIONS)]]
    for split, entry in stats["splits"].items():
        counts = (
            entry.get("counts_used")
            or entry.get("counts_per_epoch")
            or entry.get("counts_after_downsampling")
            or entry["counts"]
        )
        rows.append([split, sum(counts.values()), *(counts[n] for n in EMOTIONS)])
    return text_table(rows, [11, 8] + [10] * len(EMOTIONS))
