"""Forecast the emotion of the next turn of conversations with a trained model.

    uv run python ep_predict.py --json_file args/ep_predict_arg.json [--key value ...]

File mode (`input` a JSONL file of {"id": ..., "history": [utterances, oldest first]} lines):
writes one {"id", "label", "probabilities"} line per input line to `output`; a bad line is
reported as `error: FILE:LINE: ...` and skipped, and the exit code is 1 when any line failed.
Interactive mode (`input` "-"): reads a conversation from stdin, one utterance per line (both
speakers, in order), and prints the forecast for the next turn after each; `/reset` starts a
new conversation. Works from a terminal and from a pipe.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from emotion_predictor.errors import run_main
from emotion_predictor.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    from emotion_predictor.arguments import PredictArguments
    from emotion_predictor.config import load_config

    (args,), _, _ = load_config([PredictArguments], argv, prog="ep_predict.py", description=__doc__)
    # torch and transformers: only once the config is valid
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.prediction.predict_io import converse, predict_jsonl
    from emotion_predictor.prediction.predictor import EmotionPredictor

    transformers_logging.disable_progress_bar()  # stderr carries only errors and the summary
    predictor = EmotionPredictor.from_pretrained(
        args.model, device=args.device, batch_size=args.batch_size, runtime=args.runtime, knn_search=args.knn_search
    )
    if args.input == "-":
        if hasattr(sys.stdin, "reconfigure"):
            sys.stdin.reconfigure(errors="replace")  # a stray non-UTF-8 byte must not end the conversation
        interactive = sys.stdin.isatty()
        if interactive:
            print(
                f"{predictor}\nType the conversation one utterance per line (both speakers, in order); "
                "/reset starts a new conversation, Ctrl-D ends.",
                file=sys.stderr,
            )
        converse(predictor, sys.stdin, sys.stdout, prompt=sys.stderr if interactive else None)
        return 0
    written, failed = predict_jsonl(predictor, args.input, args.output)
    where = "stdout" if args.output == "-" else args.output
    print(
        f"wrote {written} forecasts to {where}" + (f"; {failed} lines failed (see above)" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def cli() -> None:
    """The console script `ep-predict`, and `python ep_predict.py`."""
    setup_logging(logging.WARNING)
    run_main(main)


if __name__ == "__main__":
    cli()
