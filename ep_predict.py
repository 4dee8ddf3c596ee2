"""Forecast the emotion of the next turn of conversations with a trained model.

    uv run python ep_predict.py --json_file args/ep_predict_arg.json [--key value ...]

A thin entry point: the work is in `emotion_predictor.cli.predict` (also the `ep-predict` command).
"""

from emotion_predictor.cli.predict import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
