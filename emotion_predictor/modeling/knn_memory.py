"""The nearest-neighbour memory: train rows whose labels are mixed into a fine-tuned model's forecast.

After fine-tuning (`knn_memory` in the config), every memory row is embedded by the fine-tuned
encoder: the mean of its last layer's states over real tokens, L2-normalised. The memory rows are
the rows the model trained on (`trained_rows`) or every row of the train split, every neutral row
included (`train_split`). A row's key has up to three parts, compared by the cosine of the whole:

- its input's embedding;
- with `key_turns` 2 (`knn_memory_turns`), the embedding of the utterance before it, embedded
  alone (nothing at a dialogue's start), so that rows match on two turns;
- with `trajectory_turns` k > 0, the emotions of its last k turns (current first, so position 1
  is the next speaker's own previous turn), times `emotion_weight`: one-hot gold emotions for a
  memory row, recognised (or given) distributions for a row to forecast, so that the dot product
  of that part is the probability the forecast row's turns carry the memory row's emotions.

A row to forecast is keyed the same way; its `neighbours` most similar memory rows vote for their
labels with softmax(similarity / temperature) weights. The vote, moved from the memory's class
distribution to the train prior of the rows the model trained on, is mixed with the classifier's
probabilities (kNN-LM, Khandelwal et al. 2020, for a classifier):

    p = (1 - weight) * p_classifier + weight * p_memory

`neighbours`, `temperature`, `weight` and `emotion_weight` are fitted on validation together with
the decision rule, on the same metric (`fit_memory`), the validation rows' emotions recognised;
weight 0, the classifier alone, competes too, so a memory that does not help on validation is not
kept. Rows whose every trajectory emotion is given (labelled data, or a caller that knows them)
use `given_emotion_weight` instead, fitted on validation with its gold emotions, the other
settings kept (`fit_given_emotion_weight`): recognised emotions are noisier than given ones, so
they may deserve less weight.

Storage is compact: each distinct text is embedded and stored once (float16), and a row holds the
index of its input's text, of its previous utterance's text (-1 when none), its label and its
trajectory's emotion codes (-1 unknown), in `knn_memory.safetensors` in the model folder; the
settings are under `knn_memory` in `emotion_predictor.json`. `inference.load_classifier` loads
it, so `ep_evaluate`, `ep_predict` and `EmotionPredictor` forecast with it. Files saved before this
layout (one key row per memory row) load too. Loaders outside this project
(`transformers.pipeline`) read the classifier alone.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emotion_predictor.errors import UserError
from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.modeling.model_folder import companion_path

MEMORY_FILE = "knn_memory.safetensors"
NEIGHBOURS = (16, 32, 64, 128)
TEMPERATURES = (0.02, 0.05, 0.1)
WEIGHTS = (0.2, 0.4, 0.6, 0.8, 1.0)
EMOTION_WEIGHTS = (0.5, 1.0, 2.0)  # fitted with a trajectory; 0 (text alone) competes too
QUERY_CHUNK = 256  # query rows per similarity pass: bounds memory use to chunk x (texts + rows)


def normalised(values: Any) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return torch.nn.functional.normalize(torch.as_tensor(values, dtype=torch.float32), dim=1)


@dataclass
class MemoryQueries:
    """What rows to forecast bring to the memory: their inputs' embeddings, the embeddings of the
    utterances before them (`key_turns` 2; zero rows at a dialogue's start) and the emotion
    distributions of their trajectory turns ((rows, k, 7), current first; zero where absent)."""

    current: np.ndarray
    previous: np.ndarray | None = None
    emotions: np.ndarray | None = None
    given: np.ndarray | None = None  # per row: every trajectory emotion given, none recognised

    def __len__(self) -> int:
        return len(self.current)

    def rows(self, index: Any) -> MemoryQueries:
        def part(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return MemoryQueries(self.current[index], part(self.previous), part(self.emotions), part(self.given))


@dataclass
class KnnMemory:
    """Memory rows (indices into the distinct texts' embeddings, labels, trajectory emotions) and
    the fitted mixing settings."""

    texts: torch.Tensor
    current: torch.Tensor
    previous: torch.Tensor
    labels: torch.Tensor
    train_prior: np.ndarray
    emotions: torch.Tensor | None = None
    neighbours: int = NEIGHBOURS[0]
    temperature: float = TEMPERATURES[0]
    weight: float = 0.0
    key_turns: int = 1
    emotion_weight: float = 0.0
    given_emotion_weight: float = 0.0
    # An approximate index over the keys (memory_index.py) searched instead of the exact product;
    # built for the fitted emotion weight, after the fit.
    approximate: Any = None

    def __post_init__(self) -> None:
        # Texts are kept as the float16 values the file stores (given float16 texts are already
        # normalised), so that a saved model forecasts exactly as its run scored it.
        if self.texts.dtype != torch.float16:
            self.texts = normalised(self.texts).half()
        self.texts = self.texts.float()
        self.current, self.previous, self.labels = self.current.long(), self.previous.long(), self.labels.long()
        self.emotions = None if self.emotions is None else self.emotions.long()
        self.has_previous = (self.previous >= 0).float()
        self.previous_rows = self.previous.clamp(min=0)
        self.row_norm_roots: dict[float, torch.Tensor] = {}  # by emotion weight: rows do not change
        counts = np.bincount(self.labels.numpy(), minlength=NUM_LABELS).astype(np.float64)
        # A class absent from the memory gets no votes; its factor only has to be finite.
        self.prior_factors = np.divide(
            np.asarray(self.train_prior, dtype=np.float64),
            counts / max(counts.sum(), 1.0),
            out=np.zeros(NUM_LABELS),
            where=counts > 0,
        )

    @property
    def trajectory_turns(self) -> int:
        return 0 if self.emotions is None else self.emotions.shape[1]

    def text_products(self, vectors: torch.Tensor) -> torch.Tensor:
        """Dot products of `vectors` with every distinct text's embedding (vectors x texts)."""
        # texts @ vectors.T, not vectors @ texts.T: for the one or two vectors of a forecast the
        # CPU's BLAS takes this order 5 to 7 times faster (equal for hundreds of rows).
        return (self.texts @ vectors.T).T

    def row_norm_root(self, emotion_weight: float) -> torch.Tensor:
        """The length of each memory row's key with the emotion part weighted by `emotion_weight`."""
        if emotion_weight not in self.row_norm_roots:
            norm = torch.ones(len(self.labels))
            if self.key_turns == 2:
                norm += self.has_previous
            if emotion_weight > 0 and self.emotions is not None:
                for turn in range(self.trajectory_turns):
                    norm += emotion_weight**2 * (self.emotions[:, turn] >= 0)
            self.row_norm_roots[emotion_weight] = norm.sqrt()
        return self.row_norm_roots[emotion_weight]

    def similarities(self, queries: MemoryQueries, emotion_weight: float) -> torch.Tensor:
        """Cosine similarity of each query's key with each memory row's key (queries x rows), the
        emotion part weighted by `emotion_weight`."""
        current = normalised(queries.current)
        query_norm = torch.ones(len(queries))
        if self.key_turns == 2:
            before = normalised(queries.previous)
            both = self.text_products(torch.cat([current, before]))  # one product for both turns
            dots = both[: len(current)][:, self.current]
            dots += both[len(current) :][:, self.previous_rows] * self.has_previous
            query_norm += before.square().sum(1)
        else:
            dots = self.text_products(current)[:, self.current]
        if emotion_weight > 0 and self.emotions is not None:
            scale = emotion_weight**2
            for turn in range(self.trajectory_turns):
                distribution = torch.as_tensor(queries.emotions[:, turn], dtype=torch.float32)
                known = self.emotions[:, turn] >= 0
                dots += scale * distribution[:, self.emotions[:, turn].clamp(min=0)] * known
                query_norm += scale * distribution.square().sum(1)
        return dots / query_norm.sqrt()[:, None] / self.row_norm_root(emotion_weight)[None, :]

    def nearest(self, queries: MemoryQueries, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Similarities and memory indices of each query's `count` nearest rows, nearest first."""
        count = min(count, len(self.labels))
        given = np.zeros(len(queries), dtype=bool) if queries.given is None else np.asarray(queries.given)
        if not given.any() or self.given_emotion_weight == self.emotion_weight or not self.trajectory_turns:
            return self.search(queries, count, self.emotion_weight)
        values = torch.zeros(len(queries), count)
        indices = torch.zeros(len(queries), count, dtype=torch.long)
        for rows, emotion_weight in ((~given, self.emotion_weight), (given, self.given_emotion_weight)):
            if rows.any():
                mask = torch.from_numpy(rows)
                values[mask], indices[mask] = self.search(queries.rows(rows), count, emotion_weight)
        return values, indices

    def search(self, queries: MemoryQueries, count: int, emotion_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """`nearest` with one emotion weight: the approximate index (built for `emotion_weight`) or
        the exact product, a chunk of queries at a time."""
        if self.approximate is not None and emotion_weight == self.emotion_weight:
            return self.approximate.search(queries, count)
        parts = [
            self.similarities(queries.rows(slice(start, start + QUERY_CHUNK)), emotion_weight).topk(count, dim=1)
            for start in range(0, len(queries), QUERY_CHUNK)
        ]
        return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])

    def vote(
        self, similarities: torch.Tensor, indices: torch.Tensor, neighbours: int, temperature: float
    ) -> np.ndarray:
        """Class probabilities from the first `neighbours` of `nearest`, in the train prior's frame."""
        weights = torch.softmax(similarities[:, :neighbours] / temperature, dim=1)
        voters = self.labels[indices[:, :neighbours]]
        votes = torch.zeros(len(similarities), NUM_LABELS).scatter_add_(1, voters, weights)
        moved = votes.double().numpy() * self.prior_factors
        return moved / np.maximum(moved.sum(axis=1, keepdims=True), 1e-12)

    def mix(self, probs: np.ndarray, queries: MemoryQueries) -> np.ndarray:
        """The forecast: classifier `probs` mixed with the memory's vote for `queries`."""
        if self.weight == 0:
            return probs
        voted = self.vote(*self.nearest(queries, self.neighbours), self.neighbours, self.temperature)
        return ((1 - self.weight) * probs + self.weight * voted).astype(np.float32)

    def settings(self, rows: str) -> dict[str, Any]:
        """What `emotion_predictor.json` records under `knn_memory`."""
        return {
            "rows": rows,
            "size": len(self.labels),
            "texts": len(self.texts),
            "key_turns": self.key_turns,
            "trajectory_turns": self.trajectory_turns,
            "emotion_weight": self.emotion_weight,
            "given_emotion_weight": self.given_emotion_weight,
            "neighbours": self.neighbours,
            "temperature": self.temperature,
            "weight": self.weight,
        }


def fit_memory(
    memory: KnnMemory,
    probs: np.ndarray,
    queries: MemoryQueries,
    fit_decision: Callable[[np.ndarray], tuple[dict[str, Any], tuple]],
) -> tuple[dict[str, Any], tuple]:
    """Set `memory`'s neighbours, temperature, weight and emotion weight to the grid point whose
    mixed validation forecast scores best under `fit_decision` (mixed probs -> (decision,
    comparable score)); return that decision and score. Weight 0 (the classifier alone) and
    emotion weight 0 (the text alone) compete; ties keep the smaller weights."""
    best_decision, best_score = fit_decision(probs)
    best = (0.0, memory.neighbours, memory.temperature, 0.0)
    emotion_weights = (0.0, *EMOTION_WEIGHTS) if memory.trajectory_turns else (0.0,)
    for emotion_weight in emotion_weights:
        memory.emotion_weight = emotion_weight
        similarities, indices = memory.nearest(queries, max(NEIGHBOURS))
        for neighbours, temperature in itertools.product(NEIGHBOURS, TEMPERATURES):
            voted = memory.vote(similarities, indices, neighbours, temperature)
            for weight in WEIGHTS:
                decision, score = fit_decision((1 - weight) * probs + weight * voted)
                if score > best_score:
                    best_decision, best_score = decision, score
                    best = (weight, neighbours, temperature, emotion_weight)
    memory.weight, memory.neighbours, memory.temperature, memory.emotion_weight = best
    memory.given_emotion_weight = memory.emotion_weight
    return best_decision, best_score


def fit_given_emotion_weight(
    memory: KnnMemory,
    probs: np.ndarray,
    given: MemoryQueries,
    fit_decision: Callable[[np.ndarray], tuple[dict[str, Any], tuple]],
) -> None:
    """Set `memory.given_emotion_weight` to the emotion weight (0 included) whose mixed validation
    forecast, every trajectory emotion `given`, scores best; the other settings stay as fitted."""
    if not memory.trajectory_turns or memory.weight == 0:
        return
    scores = {}
    for emotion_weight in (0.0, *EMOTION_WEIGHTS):
        similarities, indices = memory.search(given, memory.neighbours, emotion_weight)
        voted = memory.vote(similarities, indices, memory.neighbours, memory.temperature)
        scores[emotion_weight] = fit_decision((1 - memory.weight) * probs + memory.weight * voted)[1]
    memory.given_emotion_weight = max(scores, key=lambda w: (scores[w], -w))


def save_memory(folder: str, memory: KnnMemory) -> None:
    from safetensors.torch import save_file

    tensors = {
        "texts": memory.texts.half().contiguous(),
        "current": memory.current.int().contiguous(),
        "previous": memory.previous.int().contiguous(),
        "labels": memory.labels.to(torch.int8).contiguous(),
    }
    if memory.emotions is not None:
        tensors["emotions"] = memory.emotions.to(torch.int8).contiguous()
    save_file(tensors, os.path.join(folder, MEMORY_FILE))


def rows_from_keys(keys: torch.Tensor, key_turns: int) -> dict[str, torch.Tensor]:
    """A memory saved before the compact layout (one key of `key_turns` normalised parts per row)
    as texts and row indices: each row's parts become texts of their own."""
    keys = keys.float()  # float32, so that KnnMemory normalises each part again
    width = keys.shape[1] // key_turns
    rows = torch.arange(len(keys))
    if key_turns == 1:
        return {"texts": keys, "current": rows, "previous": torch.full_like(rows, -1)}
    before = keys[:, width:]
    has_previous = before.abs().sum(1) > 0
    previous = torch.full_like(rows, -1)
    previous[has_previous] = len(keys) + torch.arange(int(has_previous.sum()))
    return {"texts": torch.cat([keys[:, :width], keys[has_previous, width:]]), "current": rows, "previous": previous}


def load_memory(folder: str, metadata: dict[str, Any]) -> KnnMemory | None:
    """The memory a fine-tuned model folder was saved with, or None when it has none."""
    settings = metadata.get("knn_memory")
    if not settings or not settings.get("weight"):
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = companion_path(folder, MEMORY_FILE)
    fix = "copy the whole model folder, or fine-tune the model again"
    if not os.path.isfile(path):
        raise UserError(f"{folder}: emotion_predictor.json names a knn_memory but {MEMORY_FILE} is missing ({fix})")
    key_turns = int(settings.get("key_turns", 1))  # models saved before knn_memory_turns key on one turn
    try:
        tensors = load_file(path)
        rows = rows_from_keys(tensors["embeddings"], key_turns) if "embeddings" in tensors else tensors
        memory = KnnMemory(
            rows["texts"],
            rows["current"],
            rows["previous"],
            tensors["labels"],
            np.asarray(metadata["train_prior"], dtype=np.float64),
            tensors.get("emotions"),
            int(settings["neighbours"]),
            float(settings["temperature"]),
            float(settings["weight"]),
            key_turns,
            float(settings.get("emotion_weight", 0.0)),
            float(settings.get("given_emotion_weight", settings.get("emotion_weight", 0.0))),
        )
    except (SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise UserError(f"{path}: not a readable knn memory ({type(err).__name__}: {err}) ({fix})") from None
    if len(memory.labels) != settings.get("size"):
        raise UserError(
            f"{path}: holds {len(memory.labels)} rows, emotion_predictor.json says {settings.get('size')} ({fix})"
        )
    return memory
