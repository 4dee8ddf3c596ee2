"""Approximate against exact nearest-neighbour search on a saved model's knn memory.

    uv run python -m bench.knn_search --model bench/runs/trajectory-cpu_best-seed42 [--neighbours 128]

Keys the test split's rows as the model does (recognised trajectory emotions), finds each row's
`--neighbours` nearest memory rows with the exact product and with the HNSW index
(`modeling/memory_index.py`), and prints: recall@neighbours (the share of the exact neighbours
the index finds), the time to build the index and to search, and the test headline figures of
the forecasts with each search (the vote reads its fitted number of neighbours).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from emotion_predictor.logs import setup_logging

setup_logging(logging.WARNING)  # before the libraries load: their import-time noise is filtered

from emotion_predictor.errors import run_main  # noqa: E402
from emotion_predictor.tables import markdown_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLINE = ("Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="fine-tuning output_dir or model folder with a knn memory")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--neighbours", type=int, default=128)
    return parser.parse_args()


def main() -> None:
    import numpy as np

    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.errors import UserError
    from emotion_predictor.evaluation.metrics import classification_metrics
    from emotion_predictor.modeling.memory_index import ApproximateSearch
    from emotion_predictor.prediction.decision import decide_with_metadata
    from emotion_predictor.prediction.forecast import Trajectory, classifier_and_queries
    from emotion_predictor.prediction.inference import load_classifier

    args = parse_args()
    classifier = load_classifier(args.model, device="cpu", knn_search="exact")
    memory = classifier.memory
    if memory is None:
        raise UserError(f"{args.model} has no knn memory to search")
    test = prepare_splits(args.dataset, ["test"]).splits["test"]
    probs, queries = classifier_and_queries(
        classifier,
        memory.key_turns,
        memory.trajectory_turns,
        test["turns"].tolist(),
        test["previous_text"].tolist(),
        Trajectory.of_rows(test),
        progress=True,
    )
    started = time.perf_counter()
    exact = memory.nearest(queries, args.neighbours)[1].numpy()
    exact_seconds = time.perf_counter() - started
    forecasts = {"exact": memory.mix(probs, queries)}
    started = time.perf_counter()
    memory.approximate = ApproximateSearch(memory)
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    approximate = memory.nearest(queries, args.neighbours)[1].numpy()
    approximate_seconds = time.perf_counter() - started
    forecasts["approximate"] = memory.mix(probs, queries)
    recall = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approximate, exact)])
    labels = test["label"].to_numpy()
    weights = classifier.metadata.get("f1_all_class_weights")
    rows = []
    for search, p in forecasts.items():
        figures = classification_metrics(labels, decide_with_metadata(p, classifier.metadata), weights)
        rows.append([search, *(f"{figures[k]:.4f}" for k in HEADLINE)])
    print(
        f"{len(memory.labels):,} memory rows, {len(test):,} test rows, recall@{args.neighbours} {recall:.4f}; "
        f"index built in {build_seconds:.1f} s; search {1000 * exact_seconds / len(test):.2f} ms per row exact, "
        f"{1000 * approximate_seconds / len(test):.2f} ms approximate\n"
    )
    print(markdown_table(["search", *HEADLINE], rows))


if __name__ == "__main__":
    run_main(main)
