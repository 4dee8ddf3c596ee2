"""Export a trained model to ONNX for `runtime: "onnx"` (and `"onnx_int8"` with `--int8`).

    uv run ep-export-onnx --model runs/quickstart [--int8]
    uv run python -m emotion_predictor.cli.export_onnx --model runs/quickstart [--int8]

`--model` is a fine-tuning output_dir, its model/ or adapter/ folder, or another local model
folder; the files go into that folder (into model/ for an output_dir): `model.onnx`, and
`model.int8.onnx` with `--int8` (`modeling/onnx_export.py`). Runs that set `export_onnx` write
them already; this command is for models trained before, or with `export_onnx: "none"`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from emotion_predictor.errors import UserError, run_main
from emotion_predictor.extras import require_extra
from emotion_predictor.logs import setup_logging


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ep-export-onnx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="fine-tuning output_dir, its model/ folder or a model folder")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (runtime onnx_int8)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    require_extra("onnx_export", "ep-export-onnx")
    args = parse_args(argv)
    if not os.path.isdir(args.model):
        raise UserError(f"model folder {args.model!r} does not exist; give a fine-tuning output_dir or a model folder")
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.modeling.onnx_export import export_model_folder
    from emotion_predictor.prediction.inference import model_source

    transformers_logging.disable_progress_bar()  # stderr carries only errors and the summary
    folder = model_source(args.model)
    written = export_model_folder(folder, int8=args.int8)
    print(f"wrote {' and '.join(written)}", file=sys.stderr)


def cli() -> None:
    """The console script `ep-export-onnx`, and `python -m emotion_predictor.cli.export_onnx`."""
    setup_logging(logging.WARNING)
    run_main(main)


if __name__ == "__main__":
    cli()
