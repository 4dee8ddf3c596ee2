"""Serve next-turn emotion forecasts over HTTP (POST /v1/forecast, /v1/forecast/batch; GET /health).

    uv run python ep_serve.py --json_file args/ep_serve_arg.json [--key value ...]

A thin entry point: the work is in `emotion_predictor.cli.serve` (also the `ep-serve` command).
"""

from emotion_predictor.cli.serve import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
