"""Evaluate one or more next-turn emotion forecasters on a dataset split and compare them.

    uv run python ep_evaluate.py --json_file args/ep_evaluate_arg.json [--key value ...]

Writes report.txt, metrics.json, predictions.csv and confusion_matrix.png per model, the
baselines' figures (baselines.json), and comparison.md/.csv/.png of the models and baselines
(see evaluation.py and docs/evaluation.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from emotion_predictor.errors import run_main
from emotion_predictor.extras import require_extra
from emotion_predictor.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> None:
    require_extra("train", "ep-evaluate")
    from emotion_predictor.arguments import EvaluateArguments
    from emotion_predictor.config import load_config

    (args,), _, _ = load_config((EvaluateArguments,), argv, prog="ep_evaluate.py", description=__doc__)
    from emotion_predictor.hub import PACKAGE_PREFIX, is_local_path, resolve_model_path

    for model in args.models:  # a missing folder fails here, before torch is even imported
        if is_local_path(model) or model.startswith(PACKAGE_PREFIX):
            resolve_model_path(model)

    from emotion_predictor.evaluation.evaluate import run_evaluation

    run_evaluation(args)


def cli() -> None:
    """The console script `ep-evaluate`, and `python ep_evaluate.py`."""
    setup_logging(logging.INFO)
    run_main(main)


if __name__ == "__main__":
    cli()
