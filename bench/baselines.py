"""Baselines on the shifted DailyDialog splits, through the project's own data and metric code.

    uv run python bench/baselines.py [--dataset ../shared/data/dailydialog] [--out bench/results/baselines.json]

- always-neutral: predicts class 0 for every row;
- TF-IDF (word 1-2-grams) + logistic regression with balanced class weights, on the current
  utterance (context 0) and on the last three utterances (context 2), with argmax decisions and
  with the prior-corrected rule (tau fitted on validation, as for the transformer).

Prints a markdown table of test metrics and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from decision import decide, fit_tau, train_prior  # noqa: E402
from metrics import classification_metrics  # noqa: E402
from utils import prepare_splits  # noqa: E402

COLUMNS = ["Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1"]
PER_CLASS = ["F1_neutral", "F1_anger", "F1_disgust", "F1_fear", "F1_happiness", "F1_sadness", "F1_surprise"]


def tfidf_rows(dataset: str, context_turns: int) -> list[tuple[str, dict]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = prepare_splits(dataset, context_turns=context_turns)
    text = {s: [" ".join(t) for t in f["turns"]] for s, f in data.splits.items()}
    labels = {s: f["label"].to_numpy() for s, f in data.splits.items()}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    train = vectorizer.fit_transform(text["train"])
    model = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    model.fit(train, labels["train"])
    probs = {s: model.predict_proba(vectorizer.transform(text[s])) for s in ("validation", "test")}
    prior = train_prior(labels["train"])
    tau, _ = fit_tau(probs["validation"], labels["validation"], prior, "Macro_F1")
    name = f"TF-IDF 1-2-gram + LR (balanced), context {context_turns}"
    return [
        (f"{name}, argmax", classification_metrics(labels["test"], probs["test"].argmax(-1))),
        (
            f"{name}, prior_corrected tau {tau:.2f}",
            classification_metrics(labels["test"], decide(probs["test"], "prior_corrected", tau, prior)),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/dailydialog")
    parser.add_argument("--out", default="bench/results/baselines.json")
    args = parser.parse_args()
    started = time.time()
    test_labels = prepare_splits(args.dataset, splits=["test"]).splits["test"]["label"].to_numpy()
    rows = [("always neutral", classification_metrics(test_labels, np.zeros_like(test_labels)))]
    for context in (0, 2):
        rows += tfidf_rows(args.dataset, context)
    print("| baseline | " + " | ".join(COLUMNS + PER_CLASS) + " |")
    print("|---" * (1 + len(COLUMNS) + len(PER_CLASS)) + "|")
    for name, m in rows:
        print(f"| {name} | " + " | ".join(f"{m[c]:.3f}" for c in COLUMNS + PER_CLASS) + " |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({name: m for name, m in rows}, handle, indent=2)
    print(f"\n{len(rows)} baselines in {time.time() - started:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
