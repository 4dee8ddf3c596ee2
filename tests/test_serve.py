"""The HTTP service (ep_serve.py): the real service in a subprocess, called over HTTP.

Its forecasts equal EmotionPredictor's (single, batch, and under 16 concurrent clients, which
share forward passes); each bad request gets its status and one error line and leaves the service
up; Ctrl-C stops it with exit code 0. The micro-batcher is also tested alone, in-process.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, make_dialogues
from emotion_predictor.labels import EMOTIONS

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
LIMITS = {"max_history_turns": 12, "max_utterance_chars": 300, "max_batch_histories": 8, "max_request_bytes": 20_000}
TAU = -0.15
PRIOR = [0.6, 0.05, 0.05, 0.05, 0.15, 0.05, 0.05]


@dataclass
class Service:
    process: subprocess.Popen
    port: int
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: Any = None, content_type: str = "application/json"):
    """(status, parsed JSON body) of one request; `body` bytes are sent as they are, else as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=data, headers={"Content-Type": content_type} if data else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def prior_corrected_model(tiny_run_dir, tmp_path_factory) -> str:
    """The tiny run's model saved with the prior_corrected rule, so that answers carry a tau."""
    folder = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(os.path.join(tiny_run_dir, "model"), folder)
    metadata = json.loads((folder / "emotion_predictor.json").read_text())
    metadata.update(decision_rule="prior_corrected", tau=TAU, train_prior=PRIOR)
    (folder / "emotion_predictor.json").write_text(json.dumps(metadata))
    return str(folder)


@pytest.fixture(scope="module")
def predictor(prior_corrected_model):
    from emotion_predictor.prediction.predictor import EmotionPredictor

    return EmotionPredictor.from_pretrained(prior_corrected_model, device="cpu")


@pytest.fixture(scope="module")
def service(prior_corrected_model, tmp_path_factory):
    """ep_serve.py on the tiny model, on a free port, started and answering /health."""
    folder = tmp_path_factory.mktemp("serve")
    config = {
        "model": prior_corrected_model,
        "port": free_port(),
        "device": "cpu",
        "batch_size": 16,
        "max_batch_wait_ms": 20,
        "log_level": "warning",
        **LIMITS,
    }
    (folder / "serve.json").write_text(json.dumps(config))
    log = folder / "serve.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "ep_serve.py"), "--json_file", str(folder / "serve.json")],
            cwd=ROOT,
            env=ENV,
            stdout=stderr,
            stderr=stderr,
        )
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, f"ep_serve.py exited with {process.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "ep_serve.py did not answer /health within 180 s"
        try:
            if call(config["port"], "GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield Service(process, config["port"], log)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def histories() -> list[list[str]]:
    """Every prefix of 8 tiny dialogues: 1 to 7 turns."""
    return [d["utterances"][: end + 1] for d in make_dialogues(8, seed=11) for end in range(len(d["utterances"]))]


def assert_same_forecast(answer: dict, forecast) -> None:
    assert answer["label"] == forecast.label
    assert list(answer["probabilities"]) == list(forecast.probabilities)
    assert answer["probabilities"] == pytest.approx(forecast.probabilities, abs=1e-5)
    assert answer["decision_rule"] == {"name": "prior_corrected", "tau": TAU}


def test_health_names_the_model_rule_device_and_limits(service, prior_corrected_model):
    status, health = call(service.port, "GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["model"] == prior_corrected_model and health["device"] == "cpu"
    assert health["decision_rule"] == {"name": "prior_corrected", "tau": TAU}
    assert health["limits"] == LIMITS


def test_forecasts_equal_the_predictor(service, predictor, histories):
    for history in histories[:6]:
        status, answer = call(service.port, "POST", "/v1/forecast", {"history": history})
        assert status == 200
        assert_same_forecast(answer, predictor.predict(history))
    batch = histories[-LIMITS["max_batch_histories"] :]
    status, answer = call(service.port, "POST", "/v1/forecast/batch", {"histories": batch})
    assert status == 200 and len(answer["forecasts"]) == len(batch)
    for got, expected in zip(answer["forecasts"], predictor.predict_batch(batch)):
        assert_same_forecast(got, expected)


def test_openapi_documents_the_bodies(service):
    status, schema = call(service.port, "GET", "/openapi.json")
    assert status == 200
    forecast = schema["paths"]["/v1/forecast"]["post"]
    assert forecast["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ForecastRequest")
    assert {"200", "400", "413", "422"} <= set(forecast["responses"])
    components = schema["components"]["schemas"]
    assert list(components["Probabilities"]["properties"]) == EMOTIONS
    assert "description" in components["ForecastRequest"]["properties"]["history"]


TOO_LONG = "x" * (LIMITS["max_utterance_chars"] + 1)
HUGE = {"history": ["a" * 250] * 100}
BAD_REQUESTS = [
    ("/v1/forecast", b'{"history": ["hi",', 400, "the request body is not valid JSON: Expecting value at character 19"),
    ("/v1/forecast", {"history": []}, 422, "history is empty; pass the dialogue so far"),
    (
        "/v1/forecast",
        {"history": "hi"},
        422,
        'history is a single string; pass a list of utterances, oldest first, e.g. ["hi"]',
    ),
    ("/v1/forecast/batch", {"histories": [["a"], ["b", 12]]}, 422, "histories[1][1] is 12 (int), not a string"),
    ("/v1/forecast/batch", {"histories": "a"}, 422, "histories must be a list of histories"),
    ("/v1/forecast/batch", {"histories": []}, 422, "histories is empty"),
    ("/v1/forecast", [["hi"]], 422, 'the request body must be a JSON object such as {"history": '),
    ("/v1/forecast", {"utterances": ["hi"]}, 422, "unknown field 'utterances'; this endpoint takes history, emotions"),
    ("/v1/forecast/batch", {}, 422, "the request has no field 'histories'"),
    (
        "/v1/forecast",
        {"history": ["a"], "emotions": ["hungry"]},
        422,
        'emotions[0] is "hungry": not an emotion; use one of neutral',
    ),
    ("/v1/forecast", {"history": ["a"], "emotions": ["fear", None]}, 422, "emotions has 2 entries for 1 history turns"),
    (
        "/v1/forecast/batch",
        {"histories": [["a"], ["b"]], "emotions": [None, ["fear", "fear"]]},
        422,
        "emotions[1] has 2 entries for 1 history turns",
    ),
    (
        "/v1/forecast/batch",
        {"histories": [["a"]] * 9},
        413,
        "histories holds 9 histories; this service takes at most 8",
    ),
    ("/v1/forecast", {"history": ["a"] * 13}, 413, "history has 13 turns; this service takes at most 12"),
    ("/v1/forecast/batch", {"histories": [["a"], ["b", TOO_LONG]]}, 413, "histories[1][1] has 301 characters"),
    (
        "/v1/forecast",
        HUGE,
        413,
        f"the request body is {len(json.dumps(HUGE)):,} bytes; this service takes at most 20,000",
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_request_gets_its_status_and_one_line(service, path, body, status, message):
    got_status, answer = call(service.port, "POST", path, body)
    assert (got_status, list(answer)) == (status, ["error"])
    assert answer["error"].startswith(message) and "\n" not in answer["error"]
    assert call(service.port, "GET", "/health")[0] == 200


def test_body_not_sent_as_json_and_unknown_routes(service):
    assert call(service.port, "POST", "/v1/forecast", b'{"history": ["hi"]}', "text/plain") == (
        422,
        {"error": "the request body was not sent as JSON; send it with the header Content-Type: application/json"},
    )
    assert call(service.port, "GET", "/v1/forecast") == (405, {"error": "/v1/forecast takes POST, not GET"})
    assert call(service.port, "GET", "/v2/forecast")[0] == 404
    assert call(service.port, "GET", "/health")[0] == 200


def test_given_emotions_reach_the_predictor(service, predictor):
    """Given emotions are used as EmotionPredictor uses them (names or synonyms, null where unknown)."""
    history, emotions = ["hello how are you", "i lost my keys"], ["joy", None]
    status, answer = call(service.port, "POST", "/v1/forecast", {"history": history, "emotions": emotions})
    assert status == 200
    assert_same_forecast(answer, predictor.predict(history, emotions=emotions))
    body = {"histories": [history, history], "emotions": [None, emotions]}
    status, answer = call(service.port, "POST", "/v1/forecast/batch", body)
    assert status == 200
    assert_same_forecast(answer["forecasts"][0], predictor.predict(history))
    assert_same_forecast(answer["forecasts"][1], predictor.predict(history, emotions=emotions))


def test_concurrent_clients_share_forward_passes(service, predictor, histories):
    clients, per_client = 16, 4
    expected = predictor.predict_batch(histories)
    _, before = call(service.port, "GET", "/health")
    start = threading.Barrier(clients)
    answers: dict[int, Any] = {}

    def client(number: int) -> None:
        start.wait()
        for k in range(per_client):
            index = (number * per_client + k) % len(histories)
            answers[index] = call(service.port, "POST", "/v1/forecast", {"history": histories[index]})

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == min(clients * per_client, len(histories))
    for index, (status, answer) in answers.items():
        assert status == 200, answer
        assert_same_forecast(answer, expected[index])
    _, after = call(service.port, "GET", "/health")
    forecast = after["histories_forecast"] - before["histories_forecast"]
    batches = after["batches_run"] - before["batches_run"]
    assert forecast == clients * per_client
    assert batches < forecast, "no two concurrent requests shared a forward pass"


def test_port_in_use_is_one_error_line(prior_corrected_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "ep_serve.py", "--model", prior_corrected_model, "--port", str(port)],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses that port or set "
        "another with --port, and check --host"
    ]


def test_ctrl_c_stops_the_service_cleanly(service):
    """Last: Ctrl-C ends the service of this module with exit code 0 and no traceback."""
    assert service.process.poll() is None, "the service went down during the tests"
    service.process.send_signal(signal.SIGINT)
    assert service.process.wait(timeout=60) == 0
    log = service.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_batcher_gathers_jobs_and_isolates_a_failing_one():
    from emotion_predictor.errors import UserError
    from emotion_predictor.serving.batcher import MicroBatcher

    calls: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        calls.append(list(items))
        if "bad" in items:
            raise UserError("bad item")
        return [item.upper() for item in items]

    async def scenario(max_items: int, jobs: list[list[str]]) -> list:
        batcher = MicroBatcher(run, max_batch_items=max_items, max_wait_seconds=0.05)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario(10, [["a"], ["b", "c"], ["bad"]]))
    assert results[:2] == [["A"], ["B", "C"]] and str(results[2]) == "bad item"
    assert calls == [["a", "b", "c", "bad"], ["a"], ["b", "c"], ["bad"]]  # together, then each alone

    calls.clear()
    assert asyncio.run(scenario(2, [["a"], ["b"], ["c"], ["d"], ["e"]])) == [["A"], ["B"], ["C"], ["D"], ["E"]]
    assert calls == [["a", "b"], ["c", "d"], ["e"]]
