"""Ask a trained model how the user is likely to feel in the next turn of a conversation.

    from emotion_predictor.prediction.predictor import EmotionPredictor

    predictor = EmotionPredictor.from_pretrained("runs/quickstart")  # output_dir, its model/, or a Hub id
    forecast = predictor.predict(["Hi!", "I lost my keys."])        # the dialogue so far, oldest first
    forecast.label, forecast.probabilities                            # 'sadness', {'neutral': 0.21, ...}

The model is loaded once (CPU by default, CUDA when available; `runtime="onnx"` runs its ONNX
export with ONNX Runtime on the CPU, see `inference.py`) with the input settings it was
trained with (`context_turns`, separator, `max_length`, decision rule, from
`emotion_predictor.json`); inputs are built by the same code as in training and evaluation
(`inference.predict_proba`), so a forecast equals the evaluation score of that dialogue prefix.
`Forecast.probabilities` are the model's (with its nearest-neighbour memory's vote mixed in when it
was saved with one, `knn_memory.py`); `Forecast.label` follows the saved decision rule
(`decision.py`: argmax, or prior_corrected with the saved tau and train prior).

The file and interactive modes of `ep_predict.py` are in `predict_io.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_predictor.errors import UserError
from emotion_predictor.labels import EMOTIONS, LABEL2ID, NUM_LABELS, canonical_emotion
from emotion_predictor.prediction.decision import decide_with_metadata
from emotion_predictor.prediction.forecast import Trajectory, predict_proba
from emotion_predictor.prediction.inference import Classifier, load_classifier, window

logger = logging.getLogger(__name__)


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


def check_emotions(emotions: Any, history: list[str], where: str = "emotions") -> list[int]:
    """`emotions` (one per history turn: an emotion name, or None where it is not known) as codes
    (-1 unknown), or a UserError that says what is wrong with it."""
    if not isinstance(emotions, (list, tuple)):
        raise UserError(
            f"{where} must be a list with one emotion (or null) per history turn, not {type(emotions).__name__}"
        )
    if len(emotions) != len(history):
        raise UserError(
            f"{where} has {len(emotions)} entries for {len(history)} history turns; give one per turn, oldest "
            "first (null where the emotion is not known)"
        )
    codes = []
    for index, name in enumerate(emotions):
        canonical = canonical_emotion(name) if isinstance(name, str) else None
        if name is not None and canonical is None:
            raise UserError(
                f"{where}[{index}] is {short(name)}: not an emotion; use one of {', '.join(EMOTIONS)} or null"
            )
        codes.append(-1 if name is None else LABEL2ID[canonical])
    return codes


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
                f"{where}[{index}] is {short(turn)} ({type(turn).__name__}), not a string; "
                "each turn is one utterance's text"
            )
    return list(history)


class EmotionPredictor:
    """Next-turn emotion forecasts from a fine-tuned classifier; see the module docstring."""

    def __init__(self, classifier: Classifier, batch_size: int = 64) -> None:
        decide(np.full((1, NUM_LABELS), 1.0 / NUM_LABELS), classifier.metadata)  # fail now on an unknown rule
        self.classifier = classifier
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = "auto",
        batch_size: int = 64,
        runtime: str = "torch",
        knn_search: str = "auto",
    ) -> EmotionPredictor:
        """Load a fine-tuning output_dir, its model/ folder, or a Hub id (once; reuse the predictor).
        `runtime`: torch, onnx (model/model.onnx on ONNX Runtime) or onnx_int8 (model/model.int8.onnx);
        `knn_search`: the memory's neighbour search, exact, approximate, or auto (by its size)."""
        classifier = load_classifier(path, device=device, runtime=runtime, knn_search=knn_search)
        if not classifier.metadata:
            logger.warning(
                "%s has no emotion_predictor.json (not fine-tuned by ep_fine_tune.py): using context_turns %d, "
                "max_length %d and argmax; its forecasts are those of a model that was not trained for the next turn",
                path,
                classifier.context_turns,
                classifier.max_length,
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

    @property
    def runtime(self) -> str:
        return self.classifier.runner.runtime

    def __repr__(self) -> str:
        return (
            f"EmotionPredictor({self.classifier.name!r}, context_turns={self.context_turns}, "
            f"max_length={self.max_length}, decision_rule={self.decision_rule!r}, device={self.device!r}, "
            f"runtime={self.runtime!r})"
        )

    @property
    def trajectory_turns(self) -> int:
        """How many of the last turns' emotions the forecast reads (0: the text alone)."""
        memory = self.classifier.memory
        return 0 if memory is None else memory.trajectory_turns

    def predict(self, history: Sequence[str], emotions: Sequence[str | None] | None = None) -> Forecast:
        """The forecast for the turn after `history` (the utterances so far, oldest first).
        `emotions`, one per turn (a name, or None where not known), are used instead of the
        recognised ones: a chatbot knows the emotions of its own turns."""
        checked = check_history(history)
        codes = None if emotions is None else [check_emotions(emotions, checked)]
        return self.forecasts([checked], emotions=codes)[0]

    def predict_batch(
        self,
        histories: Iterable[Sequence[str]],
        batch_size: int | None = None,
        emotions: Sequence[Sequence[str | None] | None] | None = None,
    ) -> list[Forecast]:
        """`predict` for many histories at once: batched, sorted by length; results in input order.
        `emotions`, if given, holds one list per history (or None for a history without them)."""
        if isinstance(histories, str) or not isinstance(histories, Iterable):
            raise UserError(f"histories must be a list of histories (lists of strings), not {type(histories).__name__}")
        checked = [check_history(h, f"histories[{i}]") for i, h in enumerate(histories)]
        codes = None
        if emotions is not None:
            if not isinstance(emotions, (list, tuple)) or len(emotions) != len(checked):
                raise UserError(
                    f"emotions must be a list with one entry (a list, or null) per history ({len(checked)} histories)"
                )
            codes = [
                [-1] * len(h) if e is None else check_emotions(e, h, f"emotions[{i}]")
                for i, (h, e) in enumerate(zip(checked, emotions))
            ]
        return self.forecasts(checked, batch_size, codes)

    def forecasts(
        self, histories: list[list[str]], batch_size: int | None = None, emotions: list[list[int]] | None = None
    ) -> list[Forecast]:
        """Forecasts for already checked histories (and emotion codes, -1 unknown)."""
        if not histories:
            return []
        turns = [window(h, self.context_turns) for h in histories]
        previous = [h[-2] if len(h) > 1 else "" for h in histories]
        depth = self.trajectory_turns
        trajectory = None
        if depth:
            recent_emotions = None if emotions is None else [e[-depth:] for e in emotions]
            trajectory = Trajectory.of_histories([h[-depth:] for h in histories], recent_emotions)
        batch = batch_size or self.batch_size
        probabilities = predict_proba(self.classifier, turns, batch, previous=previous, trajectory=trajectory)
        labels = decide(probabilities, self.classifier.metadata)
        return [
            Forecast(EMOTIONS[int(label)], dict(zip(EMOTIONS, map(float, row))))
            for label, row in zip(labels, probabilities)
        ]
