"""Baselines on the shifted DailyDialog splits, through the project's own data, baseline and metric code.

    uv run python -m bench.baselines [--dataset ../shared/data/dailydialog] [--out bench/results/baselines.json]

- always-majority and TF-IDF (word 1-2-grams) + logistic regression with balanced class weights,
  the baselines `ep_evaluate.py` scores (`baselines.py`), fitted on the full train split, on the
  current utterance (context 0) and on the last three utterances (context 2), scored with the
  decision rules of `bench/scoring.py` (argmax; prior_corrected with tau fitted on validation,
  with and without an accuracy floor), as the fine-tuned models are.

Prints a markdown table of test metrics and writes them as JSON, and how many test rows are seen
(`train_split.SEEN_DEFINITION`: DailyDialog repeats some dialogues across splits, and a bigram
model can memorise their next-turn labels) with the TF-IDF (context 0, argmax) figures on the
seen and the unseen rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.scoring import decision_rows, markdown_table
from emotion_predictor.data.train_split import SEEN_DEFINITION, TrainRecipe, TrainSplit
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.evaluation.baselines import BASELINES, fit_probabilities
from emotion_predictor.evaluation.metrics import classification_metrics, subset_figures
from emotion_predictor.output_files import write_json
from emotion_predictor.prediction.decision import train_prior


def joined(frame) -> list[str]:
    return [" ".join(turns) for turns in frame["turns"]]


def baseline_rows(dataset: str, train_split: TrainSplit, context_turns: int, seen: np.ndarray) -> tuple[list, dict]:
    """Test metrics of both baselines under each decision rule, and the TF-IDF argmax seen / unseen figures."""
    train, validation = train_split.rows(TrainRecipe(), context_turns)
    test = prepare_splits(dataset, splits=["test"], context_turns=context_turns).splits["test"]
    train_labels = train["label"].to_numpy()
    labels = {"validation": validation["label"].to_numpy(), "test": test["label"].to_numpy()}
    scored = {"validation": joined(validation), "test": joined(test)}
    majority = fit_probabilities("majority", joined(train), train_labels, {"test": scored["test"]})["test"]
    rows = [
        (
            f"{BASELINES['majority']}, context {context_turns}",
            classification_metrics(labels["test"], majority.argmax(-1)),
        )
    ]
    probs = fit_probabilities("tfidf", joined(train), train_labels, scored)
    rows += decision_rows(f"{BASELINES['tfidf']}, context {context_turns}", probs, labels, train_prior(train_labels))
    predicted = probs["test"].argmax(-1)
    breakdown = {
        group: subset_figures(labels["test"], predicted, mask, None)
        for group, mask in (("seen", seen), ("unseen", ~seen))
    }
    return rows, breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/dailydialog")
    parser.add_argument("--out", default="bench/results/baselines.json")
    args = parser.parse_args()
    started = time.time()
    train_split = TrainSplit(args.dataset)
    seen = train_split.seen(prepare_splits(args.dataset, splits=["test"]).splits["test"]["text"])
    rows, breakdown = [], {}
    for context in (0, 2):
        context_rows, context_breakdown = baseline_rows(args.dataset, train_split, context, seen)
        rows += context_rows
        breakdown = breakdown or context_breakdown  # context 0's
    print(markdown_table("baseline", rows))
    print(f"{SEEN_DEFINITION}: {seen.sum()} of {len(seen)} test rows ({seen.mean():.1%})")
    for group, entry in breakdown.items():
        m = entry["metrics"]
        if m is None:
            continue  # no rows in this group
        print(
            f"TF-IDF context 0, argmax, {group} rows ({entry['rows']}): macro F1 {m['Macro_F1']:.3f}, "
            f"balanced accuracy {m['Balanced_Accuracy']:.3f}"
        )
    write_json(args.out, {**dict(rows), "tfidf_context0_argmax_seen_unseen": breakdown})
    print(f"\n{len(rows)} baselines in {time.time() - started:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
