"""The built-in baselines of `ep_evaluate.py`: what a fine-tuned model has to beat.

- `majority`: always the most frequent class of the train labels. A constant forecast, so no
  decision rule applies to it.
- `tfidf`: TF-IDF of word 1-2-grams (min_df 2, sublinear tf) + logistic regression with balanced
  class weights, on the input turns (context, then current utterance) joined by spaces. Its
  decision is the evaluated model's rule: argmax, or prior_corrected with tau fitted by
  `decision.fit_tau` on the validation rows, with the model's decision metric and accuracy floor.

Both are fitted on the train rows the evaluated model was fine-tuned on (see `train_split`), and
their validation and evaluated-split probabilities are cached on disk like the tokenized splits,
keyed by the exact texts, labels, recipe version and scikit-learn version, so a second
evaluation on the same data takes no fitting time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.output_files import atomic_path
from emotion_predictor.prediction.decision import fit_tau, train_prior

BASELINES = {
    "majority": "always the train majority class",
    "tfidf": "TF-IDF 1-2-gram + logistic regression (balanced)",
}
CACHE_VERSION = 1  # bump when a baseline's recipe or the cached format changes
MAJORITY_DECISION = "constant: the train majority class (no decision rule applies)"


def unknown_baselines(names: Sequence[str]) -> str | None:
    """The config check of the `baselines` key: an error, or None when every name is known."""
    bad = [n for n in names if n not in BASELINES]
    if bad:
        return f"unknown baseline {', '.join(bad)}; choose from {', '.join(BASELINES)} ([] for none)"
    if len(set(names)) != len(names):
        return "a baseline is listed twice"
    return None


def fit_probabilities(
    name: str, train_texts: Sequence[str], train_labels: np.ndarray, scored: dict[str, Sequence[str]]
) -> dict[str, np.ndarray]:
    """Fit baseline `name` on the train texts and return its probabilities for each `scored` split."""
    if name == "majority":
        prior = np.asarray(train_prior(train_labels))
        return {split: np.tile(prior, (len(texts), 1)) for split, texts in scored.items()}
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    model.fit(vectorizer.fit_transform(train_texts), train_labels)
    result = {}
    for split, texts in scored.items():
        probs = np.zeros((len(texts), NUM_LABELS))
        # A class absent from the train rows has no column in predict_proba; it keeps probability 0.
        probs[:, model.classes_] = model.predict_proba(vectorizer.transform(texts))
        result[split] = probs
    return result


def cache_key(name: str, train_texts: Sequence[str], train_labels: np.ndarray, scored: dict[str, Sequence[str]]) -> str:
    import sklearn

    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, sklearn.__version__, sorted(scored)]).encode())
    digest.update(np.asarray(train_labels, dtype=np.int64).tobytes())
    for texts in [train_texts, *(scored[split] for split in sorted(scored))]:
        digest.update("\x1e".join(texts).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()[:24]


def cached_probabilities(
    name: str,
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    scored: dict[str, Sequence[str]],
    cache_dir: str | None,
) -> tuple[dict[str, np.ndarray], bool]:
    """`fit_probabilities`, read from / written to `cache_dir` (None: no cache); and whether it was cached."""
    path = (
        os.path.join(os.path.expanduser(cache_dir), f"{name}-{cache_key(name, train_texts, train_labels, scored)}.npz")
        if cache_dir
        else None
    )
    if path and os.path.isfile(path):
        with np.load(path) as stored:
            return {split: stored[split] for split in scored}, True
    probs = fit_probabilities(name, train_texts, train_labels, scored)
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
