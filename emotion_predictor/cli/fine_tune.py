"""Fine-tune a sequence classifier to forecast the emotion of the next turn of a conversation.

uv run python ep_fine_tune.py --json_file args/quickstart.json [--key value ...] [--prepare_only]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from emotion_predictor.errors import run_main
from emotion_predictor.extras import require_extra
from emotion_predictor.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> None:
    require_extra("train", "ep-fine-tune")
    from emotion_predictor.arguments import FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH
    from emotion_predictor.config import load_config

    (data_args, model_args, loss_args, train_cfg), passthrough, flags = load_config(
        FINE_TUNE_CLASSES,
        argv,
        prog="ep_fine_tune.py",
        description=__doc__,
        flags={"prepare_only": "load, shift, downsample and tokenize the data, write data_stats.json, and exit"},
        passthrough=FINE_TUNE_PASSTHROUGH,
    )
    from emotion_predictor.training.recipe import run_fine_tuning  # torch, transformers: only once the config is valid

    run_fine_tuning(data_args, model_args, loss_args, train_cfg, passthrough, prepare_only=flags["prepare_only"])


def cli() -> None:
    """The console script `ep-fine-tune`, and `python ep_fine_tune.py`."""
    setup_logging(logging.INFO)
    run_main(main)


if __name__ == "__main__":
    cli()
