"""Evaluate one or more next-turn emotion forecasters on a dataset split and compare them.

    uv run python ep_evaluate.py --json_file args/ep_evaluate_arg.json [--key value ...]

A thin entry point: the work is in `emotion_predictor.cli.evaluate` (also the `ep-evaluate` command).
"""

from emotion_predictor.cli.evaluate import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
