"""Whether this machine can reach Weights & Biases: the host, the credentials, the network.

Training uses it to fall back to offline logging; the wandb sweep backend uses it to refuse a
sweep that cannot reach the server. The host follows `WANDB_BASE_URL` so a self-hosted server is
checked, not api.wandb.ai.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from emotion_predictor.hub import can_connect


def wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def has_wandb_credentials() -> bool:
    """An API key in the environment, or a ~/.netrc entry for the wandb host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    if not os.path.isfile(netrc):
        return False
    with open(netrc, encoding="utf-8", errors="replace") as handle:
        return wandb_host() in handle.read()


def wandb_unavailable_reason() -> str | None:
    """Why wandb cannot log online from here (offline mode, no credentials, unreachable), or None."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE is {mode}"
    if not has_wandb_credentials():
        return "no wandb credentials"
    if not can_connect(wandb_host()):
        return f"{wandb_host()} is unreachable"
    return None
