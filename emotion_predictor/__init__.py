"""Emotion Predictor: forecast the emotion of the next turn of a conversation.

    from emotion_predictor import EmotionPredictor

    predictor = EmotionPredictor.from_pretrained("runs/quickstart")
    predictor.predict(["Hi!", "I lost my keys."]).label

Sub-packages by concern: `data` (load, check, shift, downsample, tokenize), `modeling`, `training`,
`evaluation`, `prediction`, `sweep`, and `cli` (the `ep-*` commands). `EmotionPredictor` and
`Forecast` are imported on first use, so `import emotion_predictor` alone loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emotion_predictor.prediction.predictor import EmotionPredictor, Forecast

__all__ = ["EmotionPredictor", "Forecast"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from emotion_predictor.prediction import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'emotion_predictor' has no attribute {name!r}")
