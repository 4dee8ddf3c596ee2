"""Latency and throughput of EmotionPredictor on each runtime against transformers.pipeline("text-classification").

    uv run python -m bench.predict_latency --model runs/quickstart --rows 300 [--runtimes torch onnx onnx_int8]

Every contender runs the same model on the same inputs: real histories (whole dialogue prefixes)
from the DailyDialog test split. EmotionPredictor gets the history, once per runtime: torch (on
`--device`), onnx and onnx_int8 (ONNX Runtime on the CPU, `model/model.onnx` and
`model/model.int8.onnx`; export them first with `uv run ep-export-onnx --model ... --int8`). The
pipeline runs the torch model on the text our predictor builds from the history (the last
context_turns + 1 utterances joined by the saved separator), with `top_k=None` so it also returns
all 7 probabilities. torch always runs: the pipeline shares its model. Measured:

- predict latency for one history: p50 and p95 over `--rows` histories, after `--warmup` calls of
  each, every contender timed on each history in turn, in an order that rotates from one history
  to the next (so load from other processes hits all alike);
- batch throughput: predict_batch(histories) vs pipeline(texts, batch_size), best of `--repeats`;
- in a conversation: each forecast after a dialogue's first, over `--dialogues` test dialogues,
  prefix by prefix, as a chatbot asks after every turn; the pipeline, which keeps nothing between
  calls, takes the same turns, each contender a whole dialogue in turn. Its speed-up is given
  against the pipeline in the same turns (same machine state) and against the pipeline's predict
  p50 above.

The first two are timed cold for ours: the utterance embeddings a two-turn knn memory keeps from
earlier calls, and the recognitions a trajectory keeps, are cleared first (`Classifier.clear_recent`),
so every previous utterance that is not another history's last one is embedded (and recognised)
again, as in the first forecast of a conversation.
The pipeline reads no memory, so its probabilities differ from ours when the model has one.

Speed-ups are pipeline time / our time: above 1 means ours is faster. "same history (median)" is
the median over histories of that ratio for the calls on the same history, timed back to back,
which is the figure least disturbed by other load on the machine. "max |p - p_torch|" compares
each contender's batch probabilities with those of EmotionPredictor on torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emotion_predictor.logs import setup_logging

setup_logging(logging.WARNING)  # before the libraries load: their import-time noise is filtered

from emotion_predictor.errors import UserError, run_main  # noqa: E402
from emotion_predictor.prediction.encoder_runners import RUNTIMES  # noqa: E402
from emotion_predictor.tables import markdown_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = 0.03  # speed-ups in [0.97, 1.0) are reported as equal, not slower
PIPELINE = "pipeline"


@dataclass
class Contender:
    """One way of forecasting the benchmark's histories."""

    forecast: Callable[[list[str]], object]  # the forecast for one history
    batch: Callable[[], np.ndarray]  # the probabilities of every history, in our label order
    forget: Callable[[], None] = lambda: None  # drop what earlier calls kept (cold timing)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart", help="fine-tuning output_dir or model folder")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="torch always runs")
    parser.add_argument("--rows", type=int, default=300, help="test-set histories to time")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls of each before timing")
    parser.add_argument("--dialogues", type=int, default=40, help="test dialogues of the conversation timing")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="batch passes of each; the best counts")
    parser.add_argument("--device", default="cpu", help="torch's device: cpu (the benchmark's setting), cuda or auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads of torch and ONNX Runtime (0 = one per core)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which test histories are drawn")
    return parser.parse_args()


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q)) * 1000


def predictor_contender(predictor, histories: list[list[str]]) -> Contender:
    def batch() -> np.ndarray:
        return np.array([list(f.probabilities.values()) for f in predictor.predict_batch(histories)])

    return Contender(predictor.predict, batch, predictor.classifier.clear_recent)


def pipeline_contender(predictor, histories: list[list[str]], batch_size: int) -> Contender:
    """transformers.pipeline on the text our predictor builds from a history (its last
    context_turns + 1 utterances joined by the saved separator)."""
    from transformers import pipeline

    from emotion_predictor.labels import EMOTIONS, canonical_emotion
    from emotion_predictor.prediction.inference import window

    classifier = predictor.classifier
    pipe = pipeline(
        "text-classification", model=classifier.model, tokenizer=classifier.tokenizer, device=classifier.device
    )
    settings = {"top_k": None, "truncation": True, "max_length": predictor.max_length}

    def text(history: list[str]) -> str:
        return predictor.separator.join(window(history, predictor.context_turns))

    texts = [text(h) for h in histories]

    def batch() -> np.ndarray:
        outputs = pipe(texts, batch_size=batch_size, **settings)
        return np.array(
            [[{canonical_emotion(d["label"]): d["score"] for d in o}[name] for name in EMOTIONS] for o in outputs]
        )

    return Contender(lambda history: pipe(text(history), **settings), batch)


def in_turn(names: list[str], step: int) -> list[str]:
    """`names` rotated by `step`: each contender goes first as often as the others."""
    shift = step % len(names)
    return names[shift:] + names[:shift]


def time_single(contenders: dict[str, Contender], histories: list[list[str]], warmup: int) -> dict[str, list[float]]:
    for i in range(warmup):
        for contender in contenders.values():
            contender.forecast(histories[i % len(histories)])
    for contender in contenders.values():
        contender.forget()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for i, history in enumerate(histories):
        for name in in_turn(list(contenders), i):
            start = time.perf_counter()
            contenders[name].forecast(history)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def time_batches(contenders: dict[str, Contender], repeats: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The best batch time of each contender and its probabilities."""
    best = dict.fromkeys(contenders, float("inf"))
    probabilities = {}
    for repeat in range(repeats):
        for name in in_turn(list(contenders), repeat):
            contenders[name].forget()
            start = time.perf_counter()
            probabilities[name] = contenders[name].batch()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, probabilities


def time_conversations(contenders: dict[str, Contender], dialogues: list[list[str]]) -> dict[str, list[float]]:
    """Each forecast after a dialogue's first, asked after every turn with the cache warm; each
    contender takes a whole dialogue in turn."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for number, dialogue in enumerate(dialogues):
        for name in in_turn(list(contenders), number):
            contenders[name].forget()
            for end in range(1, len(dialogue) + 1):
                start = time.perf_counter()
                contenders[name].forecast(list(dialogue[:end]))
                if end > 1:
                    seconds[name].append(time.perf_counter() - start)
    return seconds


def figures_table(names: list[str], single: dict, batch: dict, conversation: dict, differences: dict, rows: int) -> str:
    def cells(values: dict, text: Callable[[object], str]) -> list[str]:
        return [text(values[name]) if name in values else "" for name in names]

    table = [
        ("predict p50 (ms)", *cells(single, lambda s: f"{percentile_ms(s, 50):.2f}")),
        ("predict p95 (ms)", *cells(single, lambda s: f"{percentile_ms(s, 95):.2f}")),
        ("batch (histories/s)", *cells(batch, lambda s: f"{rows / s:.1f}")),
        ("in a conversation p50 (ms)", *cells(conversation, lambda s: f"{percentile_ms(s, 50):.2f}")),
        ("in a conversation p95 (ms)", *cells(conversation, lambda s: f"{percentile_ms(s, 95):.2f}")),
        ("max \\|p - p_torch\\|", *cells(differences, lambda d: f"{d:.1e}")),
    ]
    header = ["measure", *(name if name == PIPELINE else f"EmotionPredictor {name}" for name in names)]
    return markdown_table(header, table, align="l" + "r" * len(names))


def speed_ups(runtimes: list[str], single: dict, batch: dict, conversation: dict) -> dict[str, dict[str, float]]:
    """Pipeline time / our time, per measure and runtime."""
    theirs = single[PIPELINE]
    return {
        "predict p50": {r: percentile_ms(theirs, 50) / percentile_ms(single[r], 50) for r in runtimes},
        "predict p95": {r: percentile_ms(theirs, 95) / percentile_ms(single[r], 95) for r in runtimes},
        "predict, same history (median)": {
            r: float(np.median(np.array(theirs) / np.array(single[r]))) for r in runtimes
        },
        "batch": {r: batch[PIPELINE] / batch[r] for r in runtimes},
        "in a conversation p50 (the pipeline in the same turns)": {
            r: percentile_ms(conversation[PIPELINE], 50) / percentile_ms(conversation[r], 50) for r in runtimes
        },
        "in a conversation p50 against the pipeline's predict p50": {
            r: percentile_ms(theirs, 50) / percentile_ms(conversation[r], 50) for r in runtimes
        },
    }


def report(runtimes: list[str], single: dict, batch: dict, conversation: dict, probabilities: dict, rows: int) -> str:
    differences = {name: float(np.abs(p - probabilities["torch"]).max()) for name, p in probabilities.items()}
    names = [PIPELINE, *runtimes]
    ratios = speed_ups(runtimes, single, batch, conversation)
    speed_table = markdown_table(
        ["speed-up over the pipeline", *(f"EmotionPredictor {r}" for r in runtimes)],
        [(measure, *(f"{by[r]:.2f}x" for r in runtimes)) for measure, by in ratios.items()],
        align="l" + "r" * len(runtimes),
    )
    verdicts = []
    for runtime in runtimes:
        slower = [measure for measure, by in ratios.items() if by[runtime] < 1 - NOISE]
        verdict = f"SLOWER than the pipeline on: {', '.join(slower)}" if slower else "not slower than the pipeline"
        verdicts.append(f"{runtime}: {verdict}")
    return (
        figures_table(names, single, batch, conversation, differences, rows)
        + "\n"
        + speed_table
        + f"\n{'; '.join(verdicts)} (speed-ups within {NOISE:.0%} of 1.00x count as equal: timing noise)"
    )


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
    import torch
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.prediction.predictor import EmotionPredictor

    transformers_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)  # before loading: ONNX Runtime sessions take torch's thread count
    runtimes = ["torch", *dict.fromkeys(r for r in args.runtimes if r != "torch")]
    predictors = {
        r: EmotionPredictor.from_pretrained(
            args.model, device=args.device if r == "torch" else "cpu", batch_size=args.batch_size, runtime=r
        )
        for r in runtimes
    }
    torch_predictor = predictors["torch"]
    rows = prepare_splits(args.dataset, splits=("test",), context_turns=1000).splits["test"]
    picked = np.sort(np.random.default_rng(args.seed).choice(len(rows), size=min(args.rows, len(rows)), replace=False))
    histories = [list(rows["turns"].iloc[i]) for i in picked]
    contenders = {r: predictor_contender(p, histories) for r, p in predictors.items()}
    contenders[PIPELINE] = pipeline_contender(torch_predictor, histories, args.batch_size)

    load_at_start = os.getloadavg()[0]
    single = time_single(contenders, histories, args.warmup)
    batch, probabilities = time_batches(contenders, args.repeats)
    dialogues = list(rows.groupby("dialog_id")["turns"].last().iloc[: args.dialogues])
    conversation = time_conversations(contenders, dialogues)
    print(
        f"model {args.model} (context_turns {torch_predictor.context_turns}, max_length "
        f"{torch_predictor.max_length}), torch on {torch_predictor.device}, ONNX Runtime on the CPU, "
        f"{torch.get_num_threads()} threads, {len(histories)} test histories, batch_size {args.batch_size}, "
        f"conversations: {args.dialogues} test dialogues; load average {load_at_start:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end on {os.cpu_count()} CPUs\n"
    )
    print(report(runtimes, single, batch, conversation, probabilities, len(histories)))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_main(main)
