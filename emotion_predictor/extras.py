"""Which optional extras a command needs, and the one error line when one is not installed.

The base install forecasts (`EmotionPredictor`, `ep-predict`, `ep-serve`); training and
evaluation need `[train]`, sweeps `[sweep]`, the wandb tracker `[wandb]`, GPU optimizers `[gpu]`
(pyproject.toml lists what each holds). A command checks its extra before it imports anything
from it, so a lean install gets `error: ... pip install 'emotion-predictor[train]'` instead of a
`ModuleNotFoundError` traceback.
"""

from __future__ import annotations

import importlib.util
import sys

from emotion_predictor.errors import UserError

# The top-level modules each extra brings, as imported (not as distribution names).
EXTRA_MODULES = {
    "train": ("datasets", "peft", "accelerate", "pandas", "matplotlib", "torcheval"),
    "sweep": ("optuna",),
    "wandb": ("wandb",),
    "gpu": ("bitsandbytes",),
    "onnx_export": ("onnx",),
}
# ONNX export comes with the training extra.
INSTALLED_WITH = {"onnx_export": "train"}


def missing_modules(extra: str) -> list[str]:
    # An imported module counts as installed without a look at its spec (a stand-in has none).
    return [name for name in EXTRA_MODULES[extra] if name not in sys.modules and importlib.util.find_spec(name) is None]


def require_extra(extra: str, what: str) -> None:
    """Raise one UserError line when `extra`'s modules are not installed; `what` names the command
    or feature that needs them."""
    missing = missing_modules(extra)
    if missing:
        name = INSTALLED_WITH.get(extra, extra)
        raise UserError(
            f"{what} needs the [{name}] extra ({', '.join(missing)} not installed): "
            f"pip install 'emotion-predictor[{name}]' (or uv pip install 'emotion-predictor[{name}]')"
        )
