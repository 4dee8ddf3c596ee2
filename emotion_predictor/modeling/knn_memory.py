"""The nearest-neighbour memory: train rows whose labels are mixed into a fine-tuned model's forecast.

After fine-tuning (`knn_memory` in the config), every memory row is embedded by the fine-tuned
encoder: the mean of its last layer's states over real tokens, L2-normalised. The memory rows are
the rows the model trained on (`trained_rows`) or every row of the train split, every neutral row
included (`train_split`). With `key_turns` 2 (`knn_memory_turns`), a row's key is that embedding
followed by the embedding of the utterance before it, embedded alone (zeros at a dialogue's
start), so that rows match on two turns: the cosine of two keys is the mean of the two turns'
cosines. A row to forecast is keyed the same way; its `neighbours` most cosine-similar memory
rows vote for their labels with softmax(similarity / temperature) weights.
The vote, moved from the memory's class distribution to the train prior of the rows the model
trained on, is mixed with the classifier's probabilities (kNN-LM, Khandelwal et al. 2020, for a
classifier):

    p = (1 - weight) * p_classifier + weight * p_memory

`neighbours`, `temperature` and `weight` are fitted on validation together with the decision
rule, on the same metric (`fit_memory`); weight 0, the classifier alone, competes too, so a memory
that does not help on validation is not kept.

The memory is saved in the model folder as `knn_memory.safetensors` (float16 embeddings, labels),
its settings under `knn_memory` in `emotion_predictor.json`; `inference.load_classifier` loads it,
so `ep_evaluate`, `ep_predict` and `EmotionPredictor` forecast with it. Loaders outside this project
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

MEMORY_FILE = "knn_memory.safetensors"
NEIGHBOURS = (16, 32, 64, 128)
TEMPERATURES = (0.02, 0.05, 0.1)
WEIGHTS = (0.2, 0.4, 0.6, 0.8, 1.0)
QUERY_CHUNK = 1024  # query rows per similarity product: bounds memory use to chunk x memory rows


@dataclass
class KnnMemory:
    """Memory rows (L2-normalised embeddings, labels) and the fitted mixing settings."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    train_prior: np.ndarray
    neighbours: int = NEIGHBOURS[0]
    temperature: float = TEMPERATURES[0]
    weight: float = 0.0
    key_turns: int = 1

    def __post_init__(self) -> None:
        # Rows are kept as the float16 values the file stores (given float16 rows are already
        # normalised), so that a saved model forecasts exactly as its run scored it.
        if self.embeddings.dtype != torch.float16:
            self.embeddings = torch.nn.functional.normalize(self.embeddings.float(), dim=1).half()
        self.embeddings = self.embeddings.float()
        self.labels = self.labels.long()
        counts = np.bincount(self.labels.numpy(), minlength=NUM_LABELS).astype(np.float64)
        # A class absent from the memory gets no votes; its factor only has to be finite.
        self.prior_factors = np.divide(
            np.asarray(self.train_prior, dtype=np.float64),
            counts / max(counts.sum(), 1.0),
            out=np.zeros(NUM_LABELS),
            where=counts > 0,
        )

    def nearest(self, queries: np.ndarray, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities and memory indices of each query's `count` nearest rows, nearest first."""
        count = min(count, len(self.labels))
        normalised = torch.nn.functional.normalize(torch.as_tensor(queries, dtype=torch.float32), dim=1)
        parts = [(chunk @ self.embeddings.T).topk(count, dim=1) for chunk in normalised.split(QUERY_CHUNK)]
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

    def mix(self, probs: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """The forecast: classifier `probs` mixed with the memory's vote for `queries` (their embeddings)."""
        if self.weight == 0:
            return probs
        voted = self.vote(*self.nearest(queries, self.neighbours), self.neighbours, self.temperature)
        return ((1 - self.weight) * probs + self.weight * voted).astype(np.float32)

    def settings(self, rows: str) -> dict[str, Any]:
        """What `emotion_predictor.json` records under `knn_memory`."""
        return {
            "rows": rows,
            "size": len(self.labels),
            "key_turns": self.key_turns,
            "neighbours": self.neighbours,
            "temperature": self.temperature,
            "weight": self.weight,
        }


def memory_keys(current: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Rows' memory keys from their embeddings (`current`) and, for `key_turns` 2, those of the
    utterances before them (`previous`, zero rows where there is none): each part L2-normalised."""
    if previous is None:
        return current
    parts = [torch.nn.functional.normalize(torch.as_tensor(e, dtype=torch.float32), dim=1) for e in (current, previous)]
    return torch.cat(parts, dim=1).numpy()


def fit_memory(
    memory: KnnMemory,
    probs: np.ndarray,
    queries: np.ndarray,
    fit_decision: Callable[[np.ndarray], tuple[dict[str, Any], tuple]],
) -> tuple[dict[str, Any], tuple]:
    """Set `memory`'s neighbours, temperature and weight to the grid point whose mixed validation
    forecast scores best under `fit_decision` (mixed probs -> (decision, comparable score)); return
    that decision and score. Weight 0 (the classifier alone) competes; ties keep the smaller weight."""
    best_decision, best_score = fit_decision(probs)
    best = (0.0, memory.neighbours, memory.temperature)
    similarities, indices = memory.nearest(queries, max(NEIGHBOURS))
    for neighbours, temperature in itertools.product(NEIGHBOURS, TEMPERATURES):
        voted = memory.vote(similarities, indices, neighbours, temperature)
        for weight in WEIGHTS:
            decision, score = fit_decision((1 - weight) * probs + weight * voted)
            if score > best_score:
                best_decision, best_score, best = decision, score, (weight, neighbours, temperature)
    memory.weight, memory.neighbours, memory.temperature = best
    return best_decision, best_score


def save_memory(folder: str, memory: KnnMemory) -> None:
    from safetensors.torch import save_file

    save_file(
        {"embeddings": memory.embeddings.half().contiguous(), "labels": memory.labels.contiguous()},
        os.path.join(folder, MEMORY_FILE),
    )


def load_memory(folder: str, metadata: dict[str, Any]) -> KnnMemory | None:
    """The memory a fine-tuned model folder was saved with, or None when it has none."""
    settings = metadata.get("knn_memory")
    if not settings or not settings.get("weight"):
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.path.join(folder, MEMORY_FILE)
    fix = "copy the whole model folder, or fine-tune the model again"
    if not os.path.isfile(path):
        raise UserError(f"{folder}: emotion_predictor.json names a knn_memory but {MEMORY_FILE} is missing ({fix})")
    try:
        tensors = load_file(path)
        memory = KnnMemory(
            tensors["embeddings"],
            tensors["labels"],
            np.asarray(metadata["train_prior"], dtype=np.float64),
            int(settings["neighbours"]),
            float(settings["temperature"]),
            float(settings["weight"]),
            int(settings.get("key_turns", 1)),  # models saved before knn_memory_turns key on one turn
        )
    except (SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise UserError(f"{path}: not a readable knn memory ({type(err).__name__}: {err}) ({fix})") from None
    if len(memory.labels) != settings.get("size"):
        raise UserError(
            f"{path}: holds {len(memory.labels)} rows, emotion_predictor.json says {settings.get('size')} ({fix})"
        )
    return memory
