"""The 7 DailyDialog emotion classes and how other models' label names map onto them.

Our label order is DailyDialog's integer codes: 0 neutral, 1 anger, 2 disgust, 3 fear,
4 happiness, 5 sadness, 6 surprise. A base model whose head already predicts these emotions
under other names or in another order (the reference base model
`j-hartmann/emotion-english-distilroberta-base` has anger, disgust, fear, joy, neutral, sadness,
surprise) is matched by name through `SYNONYMS`, so fine-tuning keeps its head and evaluation
can score it zero-shot.
"""

from __future__ import annotations

EMOTIONS: list[str] = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
NUM_LABELS = len(EMOTIONS)
ID2LABEL: dict[int, str] = dict(enumerate(EMOTIONS))
LABEL2ID: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

# Names that other emotion models and datasets use for our classes (compared lower-cased, with
# '_' and '-' read as spaces).
SYNONYMS: dict[str, str] = {
    "no emotion": "neutral",
    "none": "neutral",
    "others": "neutral",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "joy": "happiness",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}


def canonical_emotion(name: str) -> str | None:
    """Our class name for a label name, or None when it is not one of the 7 emotions."""
    text = " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
    text = SYNONYMS.get(text, text)
    return text if text in LABEL2ID else None


def map_head_to_emotions(id2label: dict[int, str]) -> list[int] | None:
    """For each of our classes, the index of the base model's output with that name.

    Returns None unless the model has exactly our 7 classes, each once, under any documented
    name: then `logits[:, order]` are the logits in our order.
    """
    if len(id2label) != NUM_LABELS:
        return None
    found: dict[str, int] = {}
    for index, name in id2label.items():
        ours = canonical_emotion(name)
        if ours is None or ours in found:
            return None
        found[ours] = int(index)
    return [found[name] for name in EMOTIONS]
