"""The built-in baselines of `ep_evaluate.py`: what a fine-tuned model has to beat.

- `majority`: always the most frequent class of the train labels. A constant forecast, so no
  decision rule applies to it.
- `tfidf`: TF-IDF of word 1-2-grams (min_df 2, sublinear tf) + logistic regression with balanced
  class weights, on the input turns (context, then current utterance) joined by spaces. Its
  decision is the evaluated model's rule: argmax, or prior_corrected with tau fitted by
  `decision.fit_tau` on the validation rows, with the model's decision metric and accuracy floor.

- `tfidf_history`: `tfidf` that also reads the conversation's emotional trajectory, as a model
  with `trajectory_turns` does: beside the TF-IDF features, the emotion distribution of each of
  the last k turns (current first; k is the evaluated model's `trajectory_turns`, else 2) and a
  flag per turn present. Recognised mode: the emotions come from a TF-IDF + LR recogniser of each
  utterance's own emotion fitted on the train rows' current utterances, out of fold by dialogue
  (5 folds) for the train rows, so that they are as noisy in training as at inference. Given
  mode (a row of its own, "(given emotions)"): trained and scored on the gold emotions.

All are fitted on the train rows the evaluated model was fine-tuned on (see `train_split`), and
their validation and evaluated-split probabilities are cached on disk like the tokenized splits,
keyed by the exact texts, trajectories, labels, recipe version and scikit-learn version, so a
second evaluation on the same data takes no fitting time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.output_files import atomic_path
from emotion_predictor.prediction.decision import fit_tau, train_prior

BASELINES = {
    "majority": "always the train majority class",
    "tfidf": "TF-IDF 1-2-gram + logistic regression (balanced)",
    "tfidf_history": "TF-IDF 1-2-gram + the last turns' emotions + logistic regression (balanced)",
}
GIVEN = "__given"  # the suffix of tfidf_history's given-emotions probabilities ("<split>__given")
CACHE_VERSION = 2  # bump when a baseline's recipe or the cached format changes
RECOGNITION_FOLDS = 5


@dataclass
class BaselineRows:
    """What a baseline reads of a split's rows: the input text (context and current utterance
    joined) and, for `tfidf_history`, each row's last turns (current first, "" where the dialogue
    has none), their gold emotion codes (-1 where none) and the row's dialogue (for the folds)."""

    texts: list[str]
    trajectory_texts: list[list[str]]
    trajectory_codes: np.ndarray
    dialogues: np.ndarray


MAJORITY_DECISION = "constant: the train majority class (no decision rule applies)"


def unknown_baselines(names: Sequence[str]) -> str | None:
    """The config check of the `baselines` key: an error, or None when every name is known."""
    bad = [n for n in names if n not in BASELINES]
    if bad:
        return f"unknown baseline {', '.join(bad)}; choose from {', '.join(BASELINES)} ([] for none)"
    if len(set(names)) != len(names):
        return "a baseline is listed twice"
    return None


def text_classifier(texts: Sequence[str], labels: np.ndarray, extra: np.ndarray | None = None):
    """TF-IDF (1-2-grams, min_df 2, sublinear tf) + balanced logistic regression, with `extra`
    dense features beside the TF-IDF ones; returns texts (and their extra features) -> probabilities."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)

    def features(values: Sequence[str], dense: np.ndarray | None, fit: bool = False) -> Any:
        sparse = vectorizer.fit_transform(values) if fit else vectorizer.transform(values)
        return sparse if dense is None else hstack([sparse, csr_matrix(dense)]).tocsr()

    model = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    model.fit(features(texts, extra, fit=True), labels)

    def predict(values: Sequence[str], dense: np.ndarray | None = None) -> np.ndarray:
        probs = np.zeros((len(values), NUM_LABELS))
        # A class absent from the train rows has no column in predict_proba; it keeps probability 0.
        probs[:, model.classes_] = model.predict_proba(features(values, dense))
        return probs

    return predict


def trajectory_features(distributions: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(rows, turns * 8): each turn's emotion distribution and a flag for a turn that exists."""
    return np.concatenate([distributions * present[..., None], present[..., None]], axis=2).reshape(len(present), -1)


def recognised_trajectories(train: BaselineRows, scored: dict[str, BaselineRows]) -> dict[str, np.ndarray]:
    """Trajectory features from a TF-IDF recogniser of the train rows' current utterances: out of
    fold by dialogue for the train rows, from all of them for the scored splits."""
    from sklearn.model_selection import GroupKFold

    def distributions(recognise: Any, rows: BaselineRows, index: np.ndarray) -> np.ndarray:
        texts = [rows.trajectory_texts[i] for i in index]
        flat = [text for row in texts for text in row]
        probs = recognise(flat).reshape(len(index), -1, NUM_LABELS)
        return trajectory_features(probs, np.array([[bool(text) for text in row] for row in texts]))

    current = [row[0] for row in train.trajectory_texts]
    own = train.trajectory_codes[:, 0]
    result = {"train": np.zeros((len(current), train.trajectory_codes.shape[1] * (NUM_LABELS + 1)))}
    folds = GroupKFold(min(RECOGNITION_FOLDS, len(set(train.dialogues))))
    for fitted, held_out in folds.split(current, groups=train.dialogues):
        recognise = text_classifier([current[i] for i in fitted], own[fitted])
        result["train"][held_out] = distributions(recognise, train, held_out)
    recognise = text_classifier(current, own)
    for split, rows in scored.items():
        result[split] = distributions(recognise, rows, np.arange(len(rows.texts)))
    return result


def gold_trajectories(rows: BaselineRows) -> np.ndarray:
    codes = rows.trajectory_codes
    one_hot = np.eye(NUM_LABELS)[np.maximum(codes, 0)]
    return trajectory_features(one_hot, codes >= 0)


def fit_probabilities(
    name: str, train: BaselineRows, train_labels: np.ndarray, scored: dict[str, BaselineRows]
) -> dict[str, np.ndarray]:
    """Fit baseline `name` on the train rows and return its probabilities for each `scored` split
    (and, for `tfidf_history`, its given-emotions probabilities as `<split>__given`)."""
    if name == "majority":
        prior = np.asarray(train_prior(train_labels))
        return {split: np.tile(prior, (len(rows.texts), 1)) for split, rows in scored.items()}
    if name == "tfidf":
        predict = text_classifier(train.texts, train_labels)
        return {split: predict(rows.texts) for split, rows in scored.items()}
    recognised = recognised_trajectories(train, scored)
    predict = text_classifier(train.texts, train_labels, recognised["train"])
    result = {split: predict(rows.texts, recognised[split]) for split, rows in scored.items()}
    predict = text_classifier(train.texts, train_labels, gold_trajectories(train))
    result.update({f"{split}{GIVEN}": predict(rows.texts, gold_trajectories(rows)) for split, rows in scored.items()})
    return result


def cache_key(name: str, train: BaselineRows, train_labels: np.ndarray, scored: dict[str, BaselineRows]) -> str:
    import sklearn

    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, sklearn.__version__, sorted(scored)]).encode())
    digest.update(np.asarray(train_labels, dtype=np.int64).tobytes())
    for rows in [train, *(scored[split] for split in sorted(scored))]:
        digest.update("\x1e".join(rows.texts).encode())
        if name == "tfidf_history":
            digest.update("\x1e".join("\x1d".join(row) for row in rows.trajectory_texts).encode())
            digest.update(np.asarray(rows.trajectory_codes, dtype=np.int64).tobytes())
            digest.update(np.asarray(rows.dialogues).astype(str).astype(bytes).tobytes())
        digest.update(b"\x1f")
    return digest.hexdigest()[:24]


def cached_probabilities(
    name: str,
    train: BaselineRows,
    train_labels: np.ndarray,
    scored: dict[str, BaselineRows],
    cache_dir: str | None,
) -> tuple[dict[str, np.ndarray], bool]:
    """`fit_probabilities`, read from / written to `cache_dir` (None: no cache); and whether it was cached."""
    path = (
        os.path.join(os.path.expanduser(cache_dir), f"{name}-{cache_key(name, train, train_labels, scored)}.npz")
        if cache_dir
        else None
    )
    if path and os.path.isfile(path):
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}, True
    probs = fit_probabilities(name, train, train_labels, scored)
    if path:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **probs)
    return probs, False


def baseline_decision(
    name: str,
    reference: dict[str, Any],
    validation_probs: np.ndarray,
    validation_labels: np.ndarray,
    train_labels: np.ndarray,
    f1_weights: Sequence[float],
) -> dict[str, Any]:
    """Decision metadata (as saved with a fine-tuned model) for baseline `name`, following the
    decision rule of the `reference` model's metadata; tau is fitted on the validation rows."""
    if name == "majority" or reference.get("decision_rule", "argmax") == "argmax":
        return {"decision_rule": "argmax"}
    prior = train_prior(train_labels)
    metric = reference.get("decision_metric", "Macro_F1")
    floor = reference.get("decision_min_accuracy")
    tau, _, _ = fit_tau(validation_probs, validation_labels, prior, metric, f1_weights, floor)
    return {
        "decision_rule": "prior_corrected",
        "tau": tau,
        "train_prior": prior,
        "decision_metric": metric,
        "decision_min_accuracy": floor,
    }
