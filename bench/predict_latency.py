"""Latency and throughput of EmotionPredictor against transformers.pipeline("text-classification").

    uv run python -m bench.predict_latency --model runs/quickstart --rows 300

Both run the same loaded model on the same inputs: real histories (whole dialogue prefixes) from
the DailyDialog test split. Ours gets the history; the pipeline gets the text our predictor
builds from it (the last context_turns + 1 utterances joined by the saved separator), with
`top_k=None` so it also returns all 7 probabilities. Measured:

- predict latency for one history: p50 and p95 over `--rows` histories, after `--warmup` calls,
  ours and the pipeline timed alternately on each history (so load from other processes hits both);
- batch throughput: predict_batch(histories) vs pipeline(texts, batch_size), best of `--repeats`;
- in a conversation: each forecast after a dialogue's first, over `--dialogues` test dialogues,
  prefix by prefix (ours only), as a chatbot asks after every turn.

The first two are timed cold for ours: the utterance embeddings a two-turn knn memory keeps from
earlier calls (`Classifier.recent_utterances`) are cleared first, so every previous utterance that
is not another history's last one is embedded again, as in the first forecast of a conversation.
The pipeline reads no memory, so its probabilities differ from ours when the model has one.

Ratios are pipeline time / our time: above 1 means ours is faster. "same history (median)" is
the median over histories of that ratio for the two calls on the same history, timed back to
back, which is the figure least disturbed by other load on the machine.
"""

from __future__ import annotations

import argparse
import os
import time

from emotion_predictor.errors import UserError, run_main
from emotion_predictor.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = 0.03  # speed-ups in [0.97, 1.0) are reported as equal, not slower


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart", help="fine-tuning output_dir or model folder")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--rows", type=int, default=300, help="test-set histories to time")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls of each before timing")
    parser.add_argument("--dialogues", type=int, default=40, help="test dialogues of the conversation timing")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="batch passes of each; the best counts")
    parser.add_argument("--device", default="cpu", help="cpu (the benchmark's setting), cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default, one per core)")
    parser.add_argument("--seed", type=int, default=0, help="which test histories are drawn")
    return parser.parse_args()


def percentile_ms(seconds: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(seconds, q)) * 1000


def main() -> None:
    args = parse_args()
    if not os.path.isfile(os.path.join(args.model, "config.json")) and not os.path.isfile(
        os.path.join(args.model, "model", "config.json")
    ):
        raise UserError(
            f"model folder {args.model!r} not found (no config.json in it or in its model/); train the quickstart "
            "model first: uv run python ep_fine_tune.py --json_file args/quickstart.json"
        )
    import warnings

    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.labels import EMOTIONS, canonical_emotion
    from emotion_predictor.prediction.inference import window
    from emotion_predictor.prediction.predictor import EmotionPredictor

    transformers_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = EmotionPredictor.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    classifier = predictor.classifier
    rows = prepare_splits(args.dataset, splits=("test",), context_turns=1000).splits["test"]
    picked = np.sort(np.random.default_rng(args.seed).choice(len(rows), size=min(args.rows, len(rows)), replace=False))
    histories = [list(rows["turns"].iloc[i]) for i in picked]
    texts = [predictor.separator.join(window(h, predictor.context_turns)) for h in histories]
    pipe = pipeline(
        "text-classification", model=classifier.model, tokenizer=classifier.tokenizer, device=classifier.device
    )
    pipe_kwargs = {"top_k": None, "truncation": True, "max_length": predictor.max_length}

    def pipe_probabilities(outputs: list) -> np.ndarray:
        return np.array(
            [[{canonical_emotion(d["label"]): d["score"] for d in o}[name] for name in EMOTIONS] for o in outputs]
        )

    load_at_start = os.getloadavg()[0]
    for i in range(args.warmup):
        predictor.predict(histories[i % len(histories)])
        pipe(texts[i % len(texts)], **pipe_kwargs)
    # Timed cold: no utterance embedding kept from an earlier call (a two-turn knn memory's cache).
    classifier.recent_utterances.clear()
    ours, theirs = [], []
    for i, (history, text) in enumerate(zip(histories, texts)):
        for who in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            if who == 0:
                predictor.predict(history)
            else:
                pipe(text, **pipe_kwargs)
            (ours if who == 0 else theirs).append(time.perf_counter() - start)

    best_ours = best_theirs = float("inf")
    for _ in range(args.repeats):
        classifier.recent_utterances.clear()
        start = time.perf_counter()
        forecasts = predictor.predict_batch(histories)
        best_ours = min(best_ours, time.perf_counter() - start)
        start = time.perf_counter()
        outputs = pipe(texts, batch_size=args.batch_size, **pipe_kwargs)
        best_theirs = min(best_theirs, time.perf_counter() - start)
    difference = np.abs(
        np.array([list(f.probabilities.values()) for f in forecasts]) - pipe_probabilities(outputs)
    ).max()
    # A chatbot asks after every turn: time each forecast after a dialogue's first, cache warm.
    conversation = []
    for dialogue in rows.groupby("dialog_id")["turns"].last().iloc[: args.dialogues]:
        classifier.recent_utterances.clear()
        for end in range(1, len(dialogue) + 1):
            start = time.perf_counter()
            predictor.predict(list(dialogue[:end]))
            if end > 1:
                conversation.append(time.perf_counter() - start)

    n = len(histories)
    p50, p95 = percentile_ms(ours, 50), percentile_ms(ours, 95)
    q50, q95 = percentile_ms(theirs, 50), percentile_ms(theirs, 95)
    print(
        f"model {args.model} (context_turns {predictor.context_turns}, max_length {predictor.max_length}), "
        f"device {predictor.device}, torch threads {torch.get_num_threads()}, {n} test histories, "
        f"batch_size {args.batch_size}; max |p_ours - p_pipeline| = {difference:.1e}; "
        f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end on {os.cpu_count()} CPUs\n"
    )
    rows_out = [
        ("predict p50 (ms)", f"{p50:.2f}", f"{q50:.2f}", f"{q50 / p50:.2f}x"),
        ("predict p95 (ms)", f"{p95:.2f}", f"{q95:.2f}", f"{q95 / p95:.2f}x"),
        ("predict, same history (median)", "", "", f"{float(np.median(np.array(theirs) / np.array(ours))):.2f}x"),
        ("batch (histories/s)", f"{n / best_ours:.1f}", f"{n / best_theirs:.1f}", f"{best_theirs / best_ours:.2f}x"),
    ]
    print(markdown_table(("measure", "EmotionPredictor", "pipeline", "speed-up"), rows_out, align="lrrr"), end="")
    print(
        f"\nin a conversation ({args.dialogues} test dialogues, each forecast after a dialogue's first): "
        f"p50 {percentile_ms(conversation, 50):.2f} ms, p95 {percentile_ms(conversation, 95):.2f} ms"
    )
    ratios = {"p50": q50 / p50, "p95": q95 / p95, "batch": best_theirs / best_ours}
    slower = [name for name, ratio in ratios.items() if ratio < 1 - NOISE]
    print(
        "\nours is "
        + (f"SLOWER than the pipeline on: {', '.join(slower)}" if slower else "not slower than the pipeline")
        + f" (speed-ups within {NOISE:.0%} of 1.00x count as equal: timing noise)"
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_main(main)
