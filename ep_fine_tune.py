"""Fine-tune a sequence classifier to forecast the emotion of the next turn of a conversation.

    uv run python ep_fine_tune.py --json_file args/quickstart.json [--key value ...] [--prepare_only]

A thin entry point: the work is in `emotion_predictor.cli.fine_tune` (also the `ep-fine-tune` command).
"""

from emotion_predictor.cli.fine_tune import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
