"""Failing fast without the Hub: the network probe itself, not only the HF_HUB_OFFLINE shortcut.

The other tests run with HF_HUB_OFFLINE=1 (conftest), which skips the probe; here it is unset
and the probe is pointed at a local port that refuses connections.
"""

from __future__ import annotations

import socket

import huggingface_hub.constants
import pytest

from emotion_predictor import hub
from emotion_predictor.errors import UserError
from emotion_predictor.modeling.sequence_classifier import load_base_model


@pytest.fixture
def refusing_endpoint() -> tuple[str, int]:
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()


@pytest.fixture
def hub_online_mode(monkeypatch, refusing_endpoint):
    """Online mode as a user without HF_HUB_OFFLINE has it, with the Hub probe aimed at
    `refusing_endpoint`; every outgoing connection is recorded, and any but the probe's is refused
    (the libraries must not try one)."""
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "HUB_HOST", refusing_endpoint[0])
    monkeypatch.setattr(hub, "HUB_PORT", refusing_endpoint[1])
    real_connect = socket.create_connection
    attempts = []

    def connect(address, *args, **kwargs):
        attempts.append(tuple(address))
        if tuple(address) != (hub.HUB_HOST, hub.HUB_PORT):
            raise ConnectionRefusedError(f"test: no connection to {address} allowed")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    hub.go_offline_if_unreachable.cache_clear()
    yield attempts
    hub.go_offline_if_unreachable.cache_clear()


def test_can_connect_is_false_for_a_refusing_endpoint(refusing_endpoint):
    assert hub.can_connect(*refusing_endpoint) is False


def test_unreachable_hub_switches_the_libraries_offline_and_fails_at_once(hub_online_mode, refusing_endpoint):
    import datasets

    with pytest.raises(UserError, match="not in the local Hugging Face cache and the Hub is unreachable"):
        load_base_model("someone/not-a-cached-model")
    # One probe, then offline mode: no retries against the Hub.
    assert hub_online_mode == [refusing_endpoint]
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
    assert hub.go_offline_if_unreachable() is True and hub_online_mode == [refusing_endpoint]  # probed once


def test_a_reachable_hub_stays_online(hub_online_mode, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = server.getsockname()
        monkeypatch.setattr(hub, "HUB_PORT", address[1])
        assert hub.go_offline_if_unreachable() is False
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False and hub_online_mode == [address]
