"""The layout of a saved model folder: the files beside the weights, and where an `adapter/`
folder finds the ones it shares with the `model/` folder beside it (saved once, not copied)."""

from __future__ import annotations

import os

METADATA_FILE = "emotion_predictor.json"
RECOGNISER_FOLDER = "recogniser"  # the emotion recogniser a forecaster reads its trajectory with


def companion_path(folder: str, name: str) -> str:
    """`folder/name`, or, for an `adapter/` folder that lacks it, the `model/` folder's beside it."""
    path = os.path.join(folder, name)
    if os.path.exists(path) or os.path.basename(os.path.normpath(folder)) != "adapter":
        return path
    sibling = os.path.join(os.path.dirname(os.path.normpath(folder)), "model", name)
    return sibling if os.path.exists(sibling) else path
