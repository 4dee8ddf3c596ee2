"""How one example's input is built from its turns, the same in training, evaluation and
prediction: context turns and the current utterance joined by a separator, wrapped in the
tokenizer's special tokens, the oldest context tokens dropped first when it is too long.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from emotion_predictor.errors import UserError


def default_separator(tokenizer: Any) -> str:
    """The text placed between context turns: the tokenizer's separator token, or ' | '."""
    sep = getattr(tokenizer, "sep_token", None)
    return f" {sep} " if sep else " | "


@functools.lru_cache(maxsize=8)
def special_token_wrap(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids a tokenizer puts before and after a single sequence (e.g. [CLS] ... [SEP]); kept per
    tokenizer, as a forecast's input is built on every call (it cost a third of a millisecond)."""
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(probe) + 1):
        if wrapped[start : start + len(probe)] == probe:
            return tuple(wrapped[:start]), tuple(wrapped[start + len(probe) :])
    return (), ()


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
        ids_out.append([*prefix, *context_ids, *current_ids, *suffix])
    return ids_out
