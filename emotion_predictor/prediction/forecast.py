"""A forecast: the classifier's probabilities mixed with its knn memory's vote, and what the memory
reads besides the text of each row to forecast.

- The utterance before the row (a memory keyed on two turns) is embedded in the same forward pass
  as the rows; utterances embedded in recent calls are kept (`RECENT_TEXTS` of them), so in a
  conversation each utterance is embedded once.
- The emotions of the row's last turns (a memory with `trajectory_turns`): given ones (a chatbot
  knows its own turns' emotions; labelled data knows all) are used as they are, one-hot; the
  others are recognised from the text by the model's emotion recogniser, and recent recognitions
  are kept too.

`predict_proba` is the one path of evaluation and prediction; a fine-tuning run scores
validation and test with `classifier_and_queries`, the same code without the mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_predictor.errors import UserError
from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.modeling.knn_memory import MemoryQueries
from emotion_predictor.prediction.inference import Classifier, model_outputs

# Texts whose embeddings (and recognitions) a Classifier keeps: in a conversation, the earlier
# turns of one forecast were the turns of the forecasts before it.
RECENT_TEXTS = 1024


@dataclass
class Trajectory:
    """The turns whose emotions key a memory, per row to forecast: their texts (current first, ""
    where the dialogue has no such turn) and the emotions given for them (codes, -1 where none is
    given, so that the recogniser reads the text)."""

    texts: list[list[str]]
    given: np.ndarray | None = None

    @classmethod
    def of_histories(cls, histories: Sequence[Sequence[str]], emotions: Sequence[Sequence[int]] | None = None):
        """From dialogues so far (oldest first) and, optionally, an emotion code per turn (-1 unknown)."""
        texts = [list(reversed(history)) for history in histories]
        given = None if emotions is None else [list(reversed(codes)) for codes in emotions]
        return cls.padded(texts, given)

    @classmethod
    def of_rows(cls, frame: Any, given: bool = False) -> Trajectory:
        """From prepared split rows (`utils.prepare_splits`); with `given`, their gold emotions."""
        texts = [[text, *reversed(history)] for text, history in zip(frame["text"], frame["history_texts"])]
        codes = [[label, *reversed(history)] for label, history in zip(frame["current_label"], frame["history_labels"])]
        return cls.padded(texts, codes if given else None)

    @classmethod
    def padded(cls, texts: list[list[str]], given: list[list[int]] | None) -> Trajectory:
        width = max((len(row) for row in texts), default=0)
        codes = None
        if given is not None:
            codes = np.full((len(texts), width), -1, dtype=np.int64)
            for row, values in enumerate(given):
                codes[row, : len(values)] = values
        return cls([row + [""] * (width - len(row)) for row in texts], codes)


def remember(cache: dict[str, np.ndarray], items: dict[str, np.ndarray]) -> None:
    """Keep `items` in `cache`, newest last, dropping the oldest beyond `RECENT_TEXTS`."""
    for text, vector in list(items.items())[-RECENT_TEXTS:]:
        cache.pop(text, None)
        cache[text] = vector.copy()  # a copy: a view would keep a whole batch's array alive
    for text in list(cache)[: max(len(cache) - RECENT_TEXTS, 0)]:
        del cache[text]


def recognitions(classifier: Classifier, texts: set[str], batch_size: int) -> dict[str, np.ndarray]:
    """The recogniser's emotion distribution of each text (kept ones reused)."""
    kept = classifier.recent_recognitions
    missing = sorted(t for t in texts if t not in kept)
    if missing and classifier.recogniser is None:
        raise UserError(
            f"model {classifier.name!r} has no emotion recogniser: give the emotions of the last turns "
            "(emotions), or fine-tune it with emotion_recogniser"
        )
    found = {t: kept[t] for t in texts if t in kept}
    if missing:
        probs, _ = model_outputs(classifier.recogniser, [[t] for t in missing], batch_size)
        fresh = dict(zip(missing, probs))
        remember(kept, fresh)
        found.update(fresh)
    return found


def emotion_distributions(
    classifier: Classifier,
    trajectory: Trajectory | None,
    turns: int,
    rows: int,
    batch_size: int,
    recognise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, turns, 7): one-hot where an emotion is given, recognised where not, zeros where the
    dialogue has no such turn; and per row whether every emotion was given. Without `recognise`
    (a memory that gives recognised emotions no weight) the turns not given stay zeros, and the
    recogniser does not run."""
    if trajectory is None or len(trajectory.texts) != rows:
        raise ValueError("a knn memory keyed on a trajectory needs each row's trajectory")
    texts = [row[:turns] + [""] * (turns - len(row[:turns])) for row in trajectory.texts]
    given = np.full((rows, turns), -1, dtype=np.int64)
    if trajectory.given is not None:
        width = min(turns, trajectory.given.shape[1])
        given[:, :width] = trajectory.given[:, :width]
    needed = {text for row, codes in zip(texts, given) for text, code in zip(row, codes) if text and code < 0}
    recognised = recognitions(classifier, needed, batch_size) if needed and recognise else {}
    result = np.zeros((rows, turns, NUM_LABELS), dtype=np.float32)
    all_given = np.ones(rows, dtype=bool)
    for row, (row_texts, codes) in enumerate(zip(texts, given)):
        for turn, (text, code) in enumerate(zip(row_texts, codes)):
            if code >= 0:
                result[row, turn, code] = 1.0
            elif text:
                result[row, turn] = recognised.get(text, 0.0)
                all_given[row] = False
    return result, all_given


def classifier_and_queries(
    classifier: Classifier,
    key_turns: int,
    trajectory_turns: int,
    turns: Sequence[Sequence[str]],
    previous: Sequence[str] | None = None,
    trajectory: Trajectory | None = None,
    batch_size: int = 64,
    progress: bool = False,
    recognise: bool = True,
) -> tuple[np.ndarray, MemoryQueries]:
    """The classifier's probabilities of the rows and their memory queries, from one forward pass
    over the rows and the previous utterances not embedded yet (`recognise`: see
    `emotion_distributions`)."""
    kept = classifier.recent_utterances
    singles = {row[0] for row in turns if len(row) == 1}
    extra: list[str] = []
    if key_turns == 2:
        if previous is None or len(previous) != len(turns):
            raise ValueError("a knn memory keyed on two turns needs each row's previous utterance")
        extra = sorted({text for text in previous if text and text not in singles and text not in kept})
    probs, embeddings = model_outputs(classifier, [*turns, *([t] for t in extra)], batch_size, progress, True)
    rows = len(turns)
    queries = MemoryQueries(embeddings[:rows])
    if key_turns == 2:
        # A one-turn row's embedding is its utterance's, so utterances scored as rows are not embedded again.
        scored = {row[0]: embeddings[i] for i, row in enumerate(turns) if len(row) == 1}
        scored.update(zip(extra, embeddings[rows:]))
        before = np.zeros_like(queries.current)
        for row, text in enumerate(previous):
            if text:
                before[row] = scored[text] if text in scored else kept[text]
        remember(kept, scored)
        queries.previous = before
    if trajectory_turns:
        queries.emotions, queries.given = emotion_distributions(
            classifier, trajectory, trajectory_turns, rows, batch_size, recognise
        )
    return probs[:rows], queries


def predict_proba(
    classifier: Classifier,
    turns: Sequence[Sequence[str]],
    batch_size: int = 64,
    progress: bool = False,
    previous: Sequence[str] | None = None,
    trajectory: Trajectory | None = None,
) -> np.ndarray:
    """Next-turn probabilities (rows: examples, columns: `labels.EMOTIONS`), memory mixed in.
    `previous` is each row's utterance before its current one ("" at a dialogue's start), which a
    memory keyed on two turns needs; `trajectory` the row's last turns and any given emotions,
    which a memory keyed on a trajectory needs."""
    memory = classifier.memory
    if memory is None or memory.weight == 0:  # a memory fitted out (weight 0) needs no queries
        return model_outputs(classifier, turns, batch_size, progress)[0]
    # A memory that gives recognised emotions no weight reads given ones alone: no recognition runs.
    recognise = memory.emotion_weight > 0
    probs, queries = classifier_and_queries(
        classifier,
        memory.key_turns,
        memory.trajectory_turns,
        turns,
        previous,
        trajectory,
        batch_size,
        progress,
        recognise,
    )
    return memory.mix(probs, queries)
