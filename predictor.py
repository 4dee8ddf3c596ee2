"""Ask a trained model how the user is likely to feel in the next turn of a conversation.

    from predictor import EmotionPredictor

    predictor = EmotionPredictor.from_pretrained("runs/quickstart")  # output_dir, its model/, or a Hub id
    forecast = predictor.predict(["Hi!", "I lost my keys."])        # the dialogue so far, oldest first
    forecast.label, forecast.probabilities                            # 'sadness', {'neutral': 0.21, ...}

The model is loaded once (CPU by default, CUDA when available) with the input settings it was
trained with (`context_turns`, separator, `max_length`, decision rule, from
`emotion_predictor.json`); inputs are built by the same code as in training and evaluation
(`inference.predict_proba`), so a forecast equals the evaluation score of that dialogue prefix.
`Forecast.probabilities` are the model's; `Forecast.label` follows the saved decision rule
(`decision.py`: argmax, or prior_corrected with the saved tau and train prior).

`predict_jsonl` and `converse` are the file and interactive modes of `ep_predict.py`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from decision import decide_with_metadata
from errors import UserError
from inference import Classifier, load_classifier, predict_proba, window
from labels import EMOTIONS, NUM_LABELS
from output_files import atomic_path

logger = logging.getLogger(__name__)
FILE_CHUNK = 4096  # histories scored per predict_batch call in file mode (bounds memory)


@dataclass(frozen=True)
class Forecast:
    """The forecast for the next turn: the decided label and the probability of each emotion."""

    label: str
    probabilities: dict[str, float]

    def to_dict(self, decimals: int | None = None) -> dict[str, Any]:
        probabilities = self.probabilities
        if decimals is not None:
            probabilities = {name: round(p, decimals) for name, p in probabilities.items()}
        return {"label": self.label, "probabilities": probabilities}

    def __str__(self) -> str:
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])
        return f"{self.label}  ({', '.join(f'{name} {p:.3f}' for name, p in ranked)})"


def decide(probabilities: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """The class index of each row under the model's saved decision rule (see decision.py)."""
    try:
        return decide_with_metadata(probabilities, metadata)
    except ValueError as err:
        raise UserError(f"the model's decision rule (emotion_predictor.json) cannot be applied: {err}") from None


def short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_history(history: Any, where: str = "history") -> list[str]:
    """`history` as a list of utterances, or a UserError that says what is wrong with it."""
    if isinstance(history, str):
        raise UserError(f"{where} is a single string; pass a list of utterances, oldest first, e.g. [{short(history)}]")
    if not isinstance(history, (list, tuple)):
        raise UserError(f"{where} must be a list of utterances (strings), oldest first, not {type(history).__name__}")
    if not history:
        raise UserError(f"{where} is empty; pass the dialogue so far, at least one utterance")
    for index, turn in enumerate(history):
        if not isinstance(turn, str):
            raise UserError(
                f"{where}[{index}] is {short(turn)} ({type(turn).__name__}), not a string; each turn is one utterance's text"
            )
    return list(history)


class EmotionPredictor:
    """Next-turn emotion forecasts from a fine-tuned classifier; see the module docstring."""

    def __init__(self, classifier: Classifier, batch_size: int = 64) -> None:
        decide(np.full((1, NUM_LABELS), 1.0 / NUM_LABELS), classifier.metadata)  # fail now on an unknown rule
        self.classifier = classifier
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = "auto", batch_size: int = 64) -> EmotionPredictor:
        """Load a fine-tuning output_dir, its model/ folder, or a Hub id (once; reuse the predictor)."""
        classifier = load_classifier(path, device=device)
        if not classifier.metadata:
            logger.warning(
                "%s has no emotion_predictor.json (not fine-tuned by ep_fine_tune.py): using context_turns %d, "
                "max_length %d and argmax; its forecasts are those of a model that was not trained for the next turn",
                path, classifier.context_turns, classifier.max_length,
            )
        return cls(classifier, batch_size)

    @property
    def context_turns(self) -> int:
        return self.classifier.context_turns

    @property
    def separator(self) -> str:
        return self.classifier.separator

    @property
    def max_length(self) -> int:
        return self.classifier.max_length

    @property
    def decision_rule(self) -> str:
        return self.classifier.metadata.get("decision_rule", "argmax")

    @property
    def device(self) -> str:
        return str(self.classifier.device)

    def __repr__(self) -> str:
        return (
            f"EmotionPredictor({self.classifier.name!r}, context_turns={self.context_turns}, "
            f"max_length={self.max_length}, decision_rule={self.decision_rule!r}, device={self.device!r})"
        )

    def predict(self, history: Sequence[str]) -> Forecast:
        """The forecast for the turn after `history` (the utterances so far, oldest first)."""
        return self.forecasts([check_history(history)])[0]

    def predict_batch(self, histories: Iterable[Sequence[str]], batch_size: int | None = None) -> list[Forecast]:
        """`predict` for many histories at once: batched, sorted by length; results in input order."""
        if isinstance(histories, str) or not isinstance(histories, Iterable):
            raise UserError(f"histories must be a list of histories (lists of strings), not {type(histories).__name__}")
        checked = [check_history(h, f"histories[{i}]") for i, h in enumerate(histories)]
        return self.forecasts(checked, batch_size)

    def forecasts(self, histories: list[list[str]], batch_size: int | None = None) -> list[Forecast]:
        """Forecasts for already checked histories."""
        if not histories:
            return []
        turns = [window(h, self.context_turns) for h in histories]
        probabilities = predict_proba(self.classifier, turns, batch_size or self.batch_size)
        labels = decide(probabilities, self.classifier.metadata)
        return [
            Forecast(EMOTIONS[int(label)], dict(zip(EMOTIONS, map(float, row))))
            for label, row in zip(labels, probabilities)
        ]


# --------------------------------------------------------------------------- ep_predict.py modes


def read_requests(path: str) -> Iterator[tuple[int, Any, list[str] | UserError]]:
    """(line number, id, history or the error of that line) for each non-blank line of a JSONL file."""
    try:
        handle = open(path, "rb")
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
                yield number, None, UserError(f"malformed JSON ({err.msg} at column {err.colno}); fix or remove that line")
                continue
            if not isinstance(row, dict) or "history" not in row:
                yield number, None, UserError('expected an object {"id": ..., "history": ["utterance", ...]}')
                continue
            request_id = row.get("id", number)
            try:
                yield number, request_id, check_history(row["history"])
            except UserError as err:
                yield number, request_id, err


def predict_jsonl(predictor: EmotionPredictor, input_path: str, output_path: str, errors: TextIO | None = None) -> tuple[int, int]:
    """Forecast each `{"id", "history"}` line of `input_path` into `output_path` ("-" = stdout).

    Writes one `{"id", "label", "probabilities"}` line per good input line, in input order (the
    output file atomically). A bad line is reported as `error: FILE:LINE: ...` and skipped.
    Returns (lines written, lines failed).
    """
    errors = errors or sys.stderr
    written = failed = 0

    def flush(chunk: list[tuple[Any, list[str]]], out: TextIO) -> None:
        for (request_id, _), forecast in zip(chunk, predictor.forecasts([h for _, h in chunk])):
            out.write(json.dumps({"id": request_id, **forecast.to_dict(decimals=6)}, ensure_ascii=False) + "\n")

    def run(out: TextIO) -> None:
        nonlocal written, failed
        chunk: list[tuple[Any, list[str]]] = []
        for number, request_id, history in read_requests(input_path):
            if isinstance(history, UserError):
                failed += 1
                print(f"error: {input_path}:{number}: {history}", file=errors)
                continue
            chunk.append((request_id, history))
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
