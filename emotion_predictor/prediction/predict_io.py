"""The file and interactive modes of `ep_predict.py`, on top of `EmotionPredictor` (predictor.py).

- `predict_jsonl`: a JSONL file of `{"id", "history"[, "emotions"]}` lines in (`emotions`: one
  name or null per history turn, used instead of the recognised ones), one `{"id", "label",
  "probabilities"}` line per good input line out (atomically), a bad line reported and skipped;
- `converse`: a conversation read one utterance per line, the next-turn forecast printed after each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from emotion_predictor.errors import UserError
from emotion_predictor.output_files import atomic_path
from emotion_predictor.prediction.predictor import EmotionPredictor, check_emotions, check_history

FILE_CHUNK = 4096  # histories scored per predict_batch call in file mode (bounds memory)


def read_requests(path: str) -> Iterator[tuple[int, Any, tuple[list[str], list[int]] | UserError]]:
    """(line number, id, (history, emotion codes) or the error of that line) for each non-blank
    line of a JSONL file; a line without `emotions` gets -1 (unknown) for every turn."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the `with` below; only opening may fail here)
    except OSError as err:
        raise UserError(f"cannot read input {path!r}: {err.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None, UserError("not valid UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield (
                    number,
                    None,
                    UserError(f"malformed JSON ({err.msg} at column {err.colno}); fix or remove that line"),
                )
                continue
            if not isinstance(row, dict) or "history" not in row:
                yield number, None, UserError('expected an object {"id": ..., "history": ["utterance", ...]}')
                continue
            request_id = row.get("id", number)
            try:
                history = check_history(row["history"])
                given = row.get("emotions")
                codes = [-1] * len(history) if given is None else check_emotions(given, history)
                yield number, request_id, (history, codes)
            except UserError as err:
                yield number, request_id, err


def predict_jsonl(
    predictor: EmotionPredictor, input_path: str, output_path: str, errors: TextIO | None = None
) -> tuple[int, int]:
    """Forecast each `{"id", "history"}` line of `input_path` into `output_path` ("-" = stdout).

    Writes one `{"id", "label", "probabilities"}` line per good input line, in input order (the
    output file atomically). A bad line is reported as `error: FILE:LINE: ...` and skipped.
    Returns (lines written, lines failed).
    """
    errors = errors or sys.stderr
    written = failed = 0

    def flush(chunk: list[tuple[Any, tuple[list[str], list[int]]]], out: TextIO) -> None:
        histories = [history for _, (history, _) in chunk]
        forecasts = predictor.forecasts(histories, emotions=[codes for _, (_, codes) in chunk])
        for (request_id, _), forecast in zip(chunk, forecasts):
            out.write(json.dumps({"id": request_id, **forecast.to_dict(decimals=6)}, ensure_ascii=False) + "\n")

    def run(out: TextIO) -> None:
        nonlocal written, failed
        chunk: list[tuple[Any, tuple[list[str], list[int]]]] = []
        for number, request_id, request in read_requests(input_path):
            if isinstance(request, UserError):
                failed += 1
                print(f"error: {input_path}:{number}: {request}", file=errors)
                continue
            chunk.append((request_id, request))
            if len(chunk) == FILE_CHUNK:
                flush(chunk, out)
                written, chunk = written + len(chunk), []
        flush(chunk, out)
        written += len(chunk)

    if output_path == "-":
        run(sys.stdout)
        sys.stdout.flush()
    else:
        with atomic_path(output_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
            run(out)
    return written, failed


def converse(predictor: EmotionPredictor, lines: TextIO, out: TextIO, prompt: TextIO | None = None) -> int:
    """Read a conversation one utterance per line and print the next-turn forecast after each.

    Blank lines are ignored; `/reset` starts a new conversation. With `prompt` (a terminal), a
    prompt is shown there before each turn. Returns the number of forecasts printed.
    """
    history: list[str] = []
    printed = 0
    while True:
        if prompt is not None:
            print(f"turn {len(history) + 1}> ", end="", file=prompt, flush=True)
        line = lines.readline()
        if not line:
            return printed
        text = line.rstrip("\r\n")
        if text.strip() == "/reset":
            history = []
            print("-- new conversation --", file=out, flush=True)
            continue
        if not text.strip():
            continue
        history.append(text)
        print(f"next turn: {predictor.forecasts([history])[0]}", file=out, flush=True)
        printed += 1
