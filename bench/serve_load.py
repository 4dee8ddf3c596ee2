"""Load test of the HTTP service (ep_serve.py) beside EmotionPredictor in-process, on the same histories.

    uv run python -m bench.serve_load --model runs/quickstart --clients 32 --seconds 30

Histories are dialogue prefixes (every turn of a dialogue, with all turns before it) drawn at
random from the DailyDialog test split (`--dataset`/test.jsonl, one dialogue per line with its
"utterances"). Measured, one after the other so that they do not share the CPU:

- the service: started as `ep_serve.py` in its own process on a free port (the default
  micro-batching settings unless `--batch_size` / `--max_batch_wait_ms` are given); `--clients`
  threads, each with a keep-alive connection, POST /v1/forecast one history at a time, as fast as
  answers come, for `--seconds` (after `--warmup` untimed requests): errors (any answer but 200,
  or a broken connection: must be 0), requests/s, p50/p95 latency, and histories per forward
  pass (from /health);
- EmotionPredictor in the bench's process: predict() one history at a time over the first
  `--local_rows` of the same histories (p50/p95 latency, and requests/s = 1 / mean), and
  predict_batch() over them (histories/s, best of `--repeats`).

Both keep the predictor's cache of recent utterance embeddings (1,024), as in use; the clients'
pool of `--rows` histories is large enough that the cache rarely holds a previous utterance from
an earlier pass over the pool. The exit code is 1 when any request failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from bench.predict_latency import percentile_ms
from emotion_predictor.errors import UserError, run_main
from emotion_predictor.logs import setup_logging
from emotion_predictor.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_SECONDS = 300  # the quickstart model and its memory load in well under this on a busy 2-core CPU


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart", help="any model ep_serve.py takes")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=30, help="how long the clients send requests")
    parser.add_argument("--rows", type=int, default=4000, help="test-split histories drawn (the clients cycle)")
    parser.add_argument("--local_rows", type=int, default=300, help="of those, the ones timed in-process")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests (and predict calls) first")
    parser.add_argument("--repeats", type=int, default=3, help="predict_batch passes; the best counts")
    parser.add_argument("--device", default="cpu", help="cpu (the benchmark's setting), cuda or auto")
    parser.add_argument("--batch_size", type=int, help="the service's batch_size (default: its own)")
    parser.add_argument("--max_batch_wait_ms", type=float, help="the service's max_batch_wait_ms (default: its own)")
    parser.add_argument("--seed", type=int, default=0, help="which test histories are drawn")
    return parser.parse_args()


def test_histories(dataset: str, rows: int, seed: int) -> list[list[str]]:
    """`rows` dialogue prefixes of the test split, drawn at random (in a random order)."""
    path = os.path.join(dataset, "test.jsonl")
    try:
        with open(path, encoding="utf-8") as handle:
            dialogues = [json.loads(line)["utterances"] for line in handle if line.strip()]
    except OSError as err:
        raise UserError(f"cannot read the test split {path!r}: {err.strerror}; pass --dataset") from None
    prefixes = [d[: end + 1] for d in dialogues for end in range(len(d))]
    return random.Random(seed).sample(prefixes, min(rows, len(prefixes)))


class Client:
    """One keep-alive HTTP connection to the service."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as err:
            self.connection.close()  # the next request opens a new connection
            return 0, {"error": f"{type(err).__name__}: {err}"}


@dataclass
class Load:
    """What the clients saw: each answered request's latency, and the failed ones."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_service(args: argparse.Namespace, log_path: str) -> tuple[subprocess.Popen, int]:
    """ep_serve.py on a free port, once it answers /health; a UserError with its log if it does not."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, os.path.join(ROOT, "ep_serve.py"), "--model", args.model, "--port", str(port)]
    command += ["--device", args.device, "--access_log", "false", "--log_level", "warning"]
    for name in ("batch_size", "max_batch_wait_ms"):
        if getattr(args, name) is not None:
            command += [f"--{name}", str(getattr(args, name))]
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if Client(port).call("GET", "/health")[0] == 200:
            return process, port
        time.sleep(0.5)
    how = (
        f"exited with code {process.returncode}"
        if process.poll() is not None
        else f"did not start in {STARTUP_SECONDS} s"
    )
    process.kill()
    with open(log_path, encoding="utf-8") as log:
        tail = [line for line in log.read().splitlines() if line.strip()][-1:] or ["(no output)"]
    raise UserError(f"the service {how}: {tail[0]}")


def drive(port: int, histories: list[list[str]], clients: int, seconds: float) -> Load:
    """`clients` threads POST /v1/forecast, each from its own place in `histories`, for `seconds`."""
    load = Load()
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        connection = Client(port)
        index = number * len(histories) // clients
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            status, answer = connection.call("POST", "/v1/forecast", {"history": histories[index % len(histories)]})
            elapsed = time.perf_counter() - began
            with load.lock:
                if status == 200:
                    load.latencies.append(elapsed)
                else:
                    load.errors.append(f"{status}: {answer.get('error', answer)}")
            index += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load


def measure_service(args: argparse.Namespace, histories: list[list[str]]) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_service(args, os.path.join(folder, "serve.log"))
        try:
            warm = Client(port)
            for history in histories[: args.warmup]:
                warm.call("POST", "/v1/forecast", {"history": history})
            before = warm.call("GET", "/health")[1]
            load = drive(port, histories, args.clients, args.seconds)
            after = Client(port).call("GET", "/health")[1]  # `warm` sat idle past the keep-alive timeout
        finally:
            process.terminate()
            process.wait()
    if load.errors:
        print(f"{len(load.errors)} requests failed; the first: {load.errors[0]}", file=sys.stderr)
    if not load.latencies:
        raise UserError("no request was answered; see the failure above")
    batches = after["batches_run"] - before["batches_run"]
    return {
        "errors": len(load.errors),
        "requests/s": len(load.latencies) / args.seconds,
        "p50": percentile_ms(load.latencies, 50),
        "p95": percentile_ms(load.latencies, 95),
        "per pass": (after["histories_forecast"] - before["histories_forecast"]) / max(batches, 1),
    }


def measure_in_process(args: argparse.Namespace, histories: list[list[str]]) -> dict[str, float]:
    import torch
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.prediction.predictor import EmotionPredictor

    transformers_logging.disable_progress_bar()
    predictor = EmotionPredictor.from_pretrained(args.model, device=args.device)
    for history in histories[: args.warmup]:
        predictor.predict(history)
    latencies = []
    for history in histories:
        began = time.perf_counter()
        predictor.predict(history)
        latencies.append(time.perf_counter() - began)
    best = float("inf")
    for _ in range(args.repeats):
        began = time.perf_counter()
        predictor.predict_batch(histories)
        best = min(best, time.perf_counter() - began)
    return {
        "requests/s": len(latencies) / sum(latencies),
        "p50": percentile_ms(latencies, 50),
        "p95": percentile_ms(latencies, 95),
        "batch": len(histories) / best,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    args = parse_args()
    histories = test_histories(args.dataset, args.rows, args.seed)
    load_at_start = os.getloadavg()[0]
    service = measure_service(args, histories)
    local = measure_in_process(args, histories[: args.local_rows])
    print(
        f"model {args.model}, device {args.device}, {len(histories)} test histories ({args.local_rows} of them "
        f"in-process), {args.clients} clients for {args.seconds:g} s, in-process torch threads {local['threads']}; "
        f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end on {os.cpu_count()} CPUs\n"
    )
    rows = [
        ("errors", service["errors"], "", ""),
        ("requests/s (one history each)", f"{service['requests/s']:.1f}", f"{local['requests/s']:.1f}", ""),
        ("latency p50 (ms)", f"{service['p50']:.2f}", f"{local['p50']:.2f}", ""),
        ("latency p95 (ms)", f"{service['p95']:.2f}", f"{local['p95']:.2f}", ""),
        ("histories per forward pass (mean)", f"{service['per pass']:.1f}", "1", ""),
        ("predict_batch (histories/s)", "", "", f"{local['batch']:.1f}"),
    ]
    header = ("measure", f"service, {args.clients} clients", "predict() one by one", "predict_batch()")
    print(markdown_table(header, rows, align="lrrr"), end="")
    return 1 if service["errors"] else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    setup_logging(logging.WARNING)
    run_main(main)
