"""What ONNX Runtime costs in quality: one model folder scored on a split with each runtime.

    uv run python -m bench.onnx_quality --model runs/quickstart [--runtimes torch onnx onnx_int8]

Each runtime scores every row of the split as `ep_evaluate.py` does (the model's own context,
knn memory and saved decision rule; `inference.predict_proba`, `decision.decide_with_metadata`,
`metrics.classification_metrics` with the saved F1-all-class weights), on the CPU. Printed per
runtime: the headline figures with 4 decimals, the largest probability difference from the first
runtime listed (torch by default), the share of rows whose decided label differs from it, and the
scoring time. ONNX runtimes need the model exported first (`uv run ep-export-onnx --model ... --int8`).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from emotion_predictor.logs import setup_logging

setup_logging(logging.WARNING)  # before the libraries load: their import-time noise is filtered

from emotion_predictor.errors import run_main  # noqa: E402
from emotion_predictor.prediction.encoder_runners import RUNTIMES  # noqa: E402
from emotion_predictor.tables import markdown_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# metrics.classification_metrics' keys and their column names.
HEADLINE = {
    "Accuracy": "Accuracy",
    "Balanced_Accuracy": "Balanced_Accuracy",
    "F1-score": "F1 (weighted)",
    "Macro_F1": "Macro_F1",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart", help="fine-tuning output_dir or model folder")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument(
        "--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="the first one is the reference"
    )
    parser.add_argument("--batch_size", type=int, default=64)
    return parser.parse_args()


def score(model: str, runtime: str, dataset: str, split: str, batch_size: int) -> dict:
    """Probabilities, decided labels, metrics and seconds of `model` on `split` with `runtime`."""
    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.evaluation.metrics import classification_metrics
    from emotion_predictor.prediction.decision import decide_with_metadata
    from emotion_predictor.prediction.forecast import Trajectory, predict_proba
    from emotion_predictor.prediction.inference import load_classifier, window

    classifier = load_classifier(model, device="cpu", runtime=runtime)
    frame = prepare_splits(dataset, splits=(split,), context_turns=classifier.context_turns).splits[split]
    turns = [window(t, classifier.context_turns) for t in frame["turns"]]
    started = time.perf_counter()
    previous, trajectory = frame["previous_text"].tolist(), Trajectory.of_rows(frame)
    probs = predict_proba(classifier, turns, batch_size, previous=previous, trajectory=trajectory)
    seconds = time.perf_counter() - started
    decided = decide_with_metadata(probs, classifier.metadata)
    weights = classifier.metadata.get("f1_all_class_weights")
    metrics = classification_metrics(frame["label"].to_numpy(), decided, weights)
    return {"probs": probs, "decided": decided, "metrics": metrics, "seconds": seconds}


def main() -> None:
    args = parse_args()
    import numpy as np
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    runtimes = list(dict.fromkeys(args.runtimes))
    results = {runtime: score(args.model, runtime, args.dataset, args.split, args.batch_size) for runtime in runtimes}
    reference = results[runtimes[0]]
    rows = []
    for runtime, result in results.items():
        difference = float(np.abs(result["probs"] - reference["probs"]).max())
        changed = float(np.mean(result["decided"] != reference["decided"]))
        rows.append(
            [runtime]
            + [f"{result['metrics'][key]:.4f}" for key in HEADLINE]
            + [f"{difference:.1e}", f"{changed:.2%}", f"{result['seconds']:.1f}"]
        )
    header = ["runtime", *HEADLINE.values(), f"max \\|p - p_{runtimes[0]}\\|", "labels changed", "seconds"]
    print(
        f"model {args.model}, {args.split} split ({len(reference['decided'])} rows), CPU, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print(markdown_table(header, rows, align="l" + "r" * (len(header) - 1)), end="")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_main(main)
