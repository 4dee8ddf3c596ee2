"""Approximate nearest-neighbour search for a large knn memory: a FAISS HNSW graph over the
memory's keys, stored as float16.

The exact search (`KnnMemory.similarities`) multiplies every query with every memory row: linear
in the memory's size, and at DailyDialog's whole train split (76,052 rows, 63,895 texts) it reads
98 MB per search, 4.6 ms a row against 0.9 ms approximate on the 2-core CPU (bench/knn_search.py on
the quickstart's memory). From `APPROXIMATE_ABOVE` rows (or when asked, `knn_search:
approximate`), `use_approximate_search` builds an HNSW index (Malkov and
Yashunin, 2018) over the same keys the exact search compares, each row's whole key made one
L2-normalised vector: its text, the utterance before it, and its trajectory's emotions times the
emotion weight. The inner product of two such vectors is the cosine the exact search computes, so
the vote reads the same similarities for the neighbours the graph finds. Recall against the
exact search and its effect on test figures are measured by `bench/knn_search.py`.

The index lives in memory only (built when the model loads, seconds for 76,052 rows): the model
folder keeps the compact memory file alone.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.modeling.knn_memory import KnnMemory, MemoryQueries, normalised

logger = logging.getLogger(__name__)
# Memory rows from which `knn_search: auto` searches approximately: every memory of the whole
# DailyDialog train split; a memory of 16,000 trained rows stays exact.
APPROXIMATE_ABOVE = 50_000
GRAPH_LINKS = 32  # HNSW M: links per node
BUILD_DEPTH = 80  # efConstruction: candidates kept while linking a new node
SEARCH_DEPTH = 384  # efSearch: candidates kept per query (at least the neighbours asked for)
KNN_SEARCHES = ("auto", "exact", "approximate")


def row_keys(memory: KnnMemory) -> np.ndarray:
    """Each memory row's whole key, L2-normalised (float32)."""
    parts = [memory.texts[memory.current]]
    if memory.key_turns == 2:
        parts.append(memory.texts[memory.previous.clamp(min=0)] * (memory.previous >= 0)[:, None])
    if memory.emotion_weight > 0 and memory.emotions is not None:
        one_hot = torch.nn.functional.one_hot(memory.emotions.clamp(min=0), NUM_LABELS).float()
        parts.append((one_hot * (memory.emotions >= 0)[..., None]).flatten(1) * memory.emotion_weight)
    return normalised(torch.cat(parts, dim=1)).numpy()


def query_keys(memory: KnnMemory, queries: MemoryQueries) -> np.ndarray:
    """The queries' whole keys, built like `row_keys` (float32, L2-normalised)."""
    parts = [normalised(queries.current)]
    if memory.key_turns == 2:
        parts.append(normalised(queries.previous))
    if memory.emotion_weight > 0 and memory.emotions is not None:
        emotions = torch.as_tensor(queries.emotions[:, : memory.trajectory_turns], dtype=torch.float32)
        parts.append(emotions.flatten(1) * memory.emotion_weight)
    return np.ascontiguousarray(normalised(torch.cat(parts, dim=1)).numpy())


class ApproximateSearch:
    """An HNSW index over a memory's keys, searched in place of the exact product."""

    def __init__(self, memory: KnnMemory) -> None:
        import faiss

        started = time.time()
        keys = row_keys(memory)
        self.memory = memory
        self.index = faiss.IndexHNSWSQ(
            keys.shape[1], faiss.ScalarQuantizer.QT_fp16, GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT
        )
        self.index.hnsw.efConstruction = BUILD_DEPTH
        self.index.train(keys)
        self.index.add(keys)
        logger.info(
            "knn memory: approximate search over %d rows (HNSW, built in %.1f s)", len(keys), time.time() - started
        )

    def search(self, queries: MemoryQueries, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.index.hnsw.efSearch = max(SEARCH_DEPTH, count)
        similarities, indices = self.index.search(query_keys(self.memory, queries), count)
        # A place the graph could not fill (-1) gets no weight in the vote.
        missing = indices < 0
        similarities[missing], indices[missing] = -np.inf, 0
        return torch.from_numpy(similarities), torch.from_numpy(indices.astype(np.int64))


def use_approximate_search(memory: KnnMemory, knn_search: str) -> bool:
    """Attach an approximate index to `memory` per `knn_search` (auto: from `APPROXIMATE_ABOVE`
    rows); returns whether it did."""
    if knn_search == "exact" or (knn_search == "auto" and len(memory.labels) < APPROXIMATE_ABOVE):
        return False
    memory.approximate = ApproximateSearch(memory)
    return True
