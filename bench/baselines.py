"""Baselines on the shifted DailyDialog splits, through the project's own data and metric code.

    uv run python bench/baselines.py [--dataset ../shared/data/dailydialog] [--out bench/results/baselines.json]

- always-neutral: predicts class 0 for every row;
- TF-IDF (word 1-2-grams) + logistic regression with balanced class weights, on the current
  utterance (context 0) and on the last three utterances (context 2), scored with the decision
  rules of `bench/scoring.py` (argmax; prior_corrected with tau fitted on validation, with and
  without an accuracy floor), as the fine-tuned models are.

Prints a markdown table of test metrics and writes them as JSON, and how many test utterances
occur verbatim in train (DailyDialog repeats some dialogues across splits; a bigram model can
memorise their next-turn labels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.scoring import decision_rows, markdown_table  # noqa: E402
from decision import train_prior  # noqa: E402
from metrics import classification_metrics  # noqa: E402
from utils import prepare_splits  # noqa: E402


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
    name = f"TF-IDF 1-2-gram + LR (balanced), context {context_turns}"
    return decision_rows(name, probs, labels, train_prior(labels["train"]))


def verbatim_overlap(dataset: str) -> str:
    """How many test rows' utterances occur verbatim (case-folded) in train, and how often the
    most frequent train label of that utterance is the test label."""
    splits = prepare_splits(dataset, splits=["train", "test"]).splits
    seen: dict[str, list[int]] = {}
    for text, label in zip(splits["train"]["text"].str.strip().str.lower(), splits["train"]["label"]):
        seen.setdefault(text, []).append(int(label))
    test = splits["test"]
    keys = test["text"].str.strip().str.lower()
    hits = keys.isin(seen.keys()).to_numpy()
    labels = test["label"].to_numpy()
    majority = np.array([np.bincount(seen[k]).argmax() if h else -1 for k, h in zip(keys, hits)])
    emotional = labels != 0
    return (
        f"test rows whose utterance occurs verbatim in train: {hits.mean():.1%} "
        f"(non-neutral rows: {hits[emotional].mean():.1%}); the train majority label is right for "
        f"{(majority[hits] == labels[hits]).mean():.1%} of them "
        f"({(majority[hits & emotional] == labels[hits & emotional]).mean():.1%} of the non-neutral ones)"
    )


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
    print(markdown_table("baseline", rows))
    print(verbatim_overlap(args.dataset))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({name: m for name, m in rows}, handle, indent=2)
    print(f"\n{len(rows)} baselines in {time.time() - started:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
