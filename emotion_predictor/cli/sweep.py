"""Search fine-tuning hyperparameters: a sweep of real fine-tuning runs, offline by default.

    uv run python ep_sweep.py --json_file args/ep_sweep_arg.json [--key value ...]

The config holds the fine-tuning keys the trials start from (inline, or a base_config file) and a
sweep_config block in wandb's sweep format. The optuna backend (default) keeps the study in
sweep_storage (an SQLite file in output_dir unless set); the same command on several machines
with one PostgreSQL or MySQL sweep_storage runs one sweep, and re-running it after a crash or
Ctrl-C continues it. Writes sweep_results.csv, best_config.json and sweep.png to output_dir, and
each trial's run to output_dir/trial-<number>.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from emotion_predictor.errors import run_main
from emotion_predictor.extras import require_extra
from emotion_predictor.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> None:
    require_extra("sweep", "ep-sweep")
    from emotion_predictor.sweep.cli import main as sweep_main

    sweep_main(argv, description=__doc__)


def cli() -> None:
    """The console script `ep-sweep`, and `python ep_sweep.py`."""
    setup_logging(logging.INFO)
    run_main(main)


if __name__ == "__main__":
    cli()
