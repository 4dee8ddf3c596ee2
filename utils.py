"""Dataset helpers: shift labels to the next turn, add dialogue context, downsample neutral
rows, tokenize (cached) and count classes.

Sources, their layouts (`dialogues`, `utterances`, `shifted`) and the checks on every row live in
`data_sources.py`. In the utterance layout, turn order is the `turn` column when present, else
the order of the rows of each dialogue in the file (rows of different dialogues may be
interleaved).

After `prepare_splits`, each split is a DataFrame with one row per example: `dialog_id`, `turn`
(index of the current utterance in its dialogue), `turns` (the context utterances followed by
the current one, oldest first), `text` (the current utterance), `previous_text` (the utterance
before it in its dialogue, "" at a dialogue's start and in the shifted layout, which has no
dialogue structure; `knn_memory_turns` 2 keys the memory on it), `label` (the emotion of the
next utterance, 0..6 in `labels.EMOTIONS` order) and `current_label` (the emotion of the current
utterance, or `UNKNOWN_EMOTION` in the shifted layout, which does not carry it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from data_sources import SPLITS, CheckedSplit, check_table, load_source
from errors import UserError
from labels import EMOTIONS, NUM_LABELS
from tables import text_table

UNKNOWN_EMOTION = -1  # `current_label` of rows whose source gives only the next turn's emotion
TOKENIZATION_VERSION = 1  # bump when the tokenized-cache format or input building changes


# --------------------------------------------------------------------------- dialogues


def order_utterances(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort utterances by dialogue, then by turn (or by file order within a dialogue)."""
    frame = frame.copy()
    if "turn" not in frame.columns:
        frame["turn"] = frame.groupby("dialog_id", sort=False).cumcount()
    frame = frame.sort_values(["dialog_id", "turn"], kind="stable").reset_index(drop=True)
    return frame


# --------------------------------------------------------------------------- shift and context


def shift_to_next_turn(utterances: pd.DataFrame, context_turns: int = 0) -> pd.DataFrame:
    """Label each utterance with the next utterance's emotion and build its input turns.

    `utterances` is sorted by (dialog_id, turn). The last utterance of each dialogue has no next
    turn and is dropped. `turns` holds up to `context_turns` previous utterances of the same
    dialogue followed by the current one; nothing after the current utterance is included.
    """
    dialog = utterances["dialog_id"].to_numpy()
    text = utterances["utterance"].to_numpy(dtype=object)
    emotion = utterances["emotion"].to_numpy()
    has_next = np.zeros(len(dialog), dtype=bool)
    has_next[:-1] = dialog[:-1] == dialog[1:]
    keep = np.flatnonzero(has_next)
    turns = [[t] for t in text[keep]]
    has_previous = np.zeros(len(dialog), dtype=bool)
    has_previous[1:] = dialog[1:] == dialog[:-1]
    previous = np.where(has_previous[keep], text[np.maximum(keep - 1, 0)], "")
    for back in range(1, context_turns + 1):
        source = keep - back
        valid = source >= 0
        valid[valid] = dialog[source[valid]] == dialog[keep[valid]]
        for row in np.flatnonzero(valid):
            turns[row].insert(0, text[source[row]])
    return pd.DataFrame(
        {
            "dialog_id": dialog[keep],
            "turn": utterances["turn"].to_numpy()[keep],
            "turns": turns,
            "text": text[keep],
            "previous_text": previous,
            "label": emotion[keep + 1].astype(np.int64),
            "current_label": emotion[keep].astype(np.int64),
        }
    )


def normalise_split(split: CheckedSplit, context_turns: int) -> pd.DataFrame:
    """A checked split of any layout -> one shifted example per row (see module docstring)."""
    frame = split.frame
    if split.layout == "shifted":
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
                "label": frame["label"].to_numpy(dtype=np.int64),
                "current_label": np.full(len(frame), UNKNOWN_EMOTION, dtype=np.int64),
            }
        )
    return shift_to_next_turn(order_utterances(frame), context_turns)


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
) -> PreparedData:
    """Load, shift and (train only) downsample a source; see the module docstring."""
    raw = load_source(dataset, splits, dataset_config)
    result: dict[str, pd.DataFrame] = {}
    stats: dict[str, Any] = {"class_names": EMOTIONS, "context_turns": context_turns, "splits": {}}
    for split, table in raw.items():
        shifted = normalise_split(check_table(table), context_turns)
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


# --------------------------------------------------------------------------- tokenization


def default_separator(tokenizer: Any) -> str:
    """The text placed between context turns: the tokenizer's separator token, or ' | '."""
    sep = getattr(tokenizer, "sep_token", None)
    return f" {sep} " if sep else " | "


def special_token_wrap(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence (e.g. [CLS] ... [SEP])."""
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(probe) + 1):
        if wrapped[start : start + len(probe)] == probe:
            return wrapped[:start], wrapped[start + len(probe) :]
    return [], []


def encode_turns(tokenizer: Any, turns: Sequence[Sequence[str]], separator: str, max_length: int) -> list[list[int]]:
    """Token ids for each example: context turns and current utterance joined by `separator`.

    When the text is too long, the oldest tokens are dropped first; the current utterance is
    cut (keeping its beginning) only if it alone exceeds the budget.
    """
    prefix, suffix = special_token_wrap(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise UserError(f"max_length {max_length} leaves no room for text after the special tokens")
    joined, starts = [], []
    for row in turns:
        context = separator.join(row[:-1]) + separator if len(row) > 1 else ""
        joined.append(context + row[-1])
        starts.append(len(context))
    encoded = tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True)
    ids_out = []
    for ids, offsets, start in zip(encoded["input_ids"], encoded["offset_mapping"], starts):
        split_at = next((i for i, (begin, end) in enumerate(offsets) if begin >= start and end > begin), len(ids))
        context_ids, current_ids = ids[:split_at], ids[split_at:][:budget]
        room = budget - len(current_ids)
        context_ids = context_ids[len(context_ids) - room :] if room > 0 else []
        ids_out.append(prefix + context_ids + current_ids + suffix)
    return ids_out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(frame[["dialog_id", "turn", "label"]], index=False).to_numpy().tobytes())
    digest.update("\x1f".join("\x1e".join(t) for t in frame["turns"]).encode())
    return digest.hexdigest()


def tokenize_split(
    frame: pd.DataFrame, tokenizer: Any, separator: str, max_length: int, cache_dir: str | None = None
) -> Any:
    """A `datasets.Dataset` with `input_ids`, `labels` and `length` (unpadded), cached on disk.

    The cache key covers the rows, the labels, the tokenizer, the separator and `max_length`,
    so a changed input never reuses a stale cache.
    """
    import datasets

    key = hashlib.sha256(
        json.dumps(
            [TOKENIZATION_VERSION, frame_fingerprint(frame), tokenizer_fingerprint(tokenizer), separator, max_length]
        ).encode()
    ).hexdigest()[:24]
    path = os.path.join(os.path.expanduser(cache_dir), key) if cache_dir else None
    if path and os.path.isdir(path):
        return datasets.load_from_disk(path)
    ids = encode_turns(tokenizer, frame["turns"].tolist(), separator, max_length)
    dataset = datasets.Dataset.from_dict(
        {"input_ids": ids, "labels": frame["label"].tolist(), "length": [len(i) for i in ids]}
    )
    if path:
        tmp = f"{path}.tmp-{os.getpid()}"
        dataset.save_to_disk(tmp)
        try:
            os.replace(tmp, path)
        except OSError:
            # Another process (a torchrun rank) cached the same content first: keep theirs.
            if not os.path.isdir(path):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        dataset = datasets.load_from_disk(path)
    return dataset
