"""Search fine-tuning hyperparameters: a sweep of real fine-tuning runs, offline by default.

    uv run python ep_sweep.py --json_file args/ep_sweep_arg.json [--key value ...]

A thin entry point: the work is in `emotion_predictor.cli.sweep` (also the `ep-sweep` command).
"""

from emotion_predictor.cli.sweep import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
