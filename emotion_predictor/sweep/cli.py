"""`ep_sweep.py`'s work: load the sweep's config into a `SweepSetup` and run its backend.

This module owns the choice of backend; the backends are imported only once the config is valid,
so `--help` and config errors come before Optuna, transformers or torch are imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emotion_predictor.sweep.setup import SweepSetup, load_sweep_config


def run_sweep(setup: SweepSetup, extra_callbacks: Sequence[Any] = ()) -> Any:
    """Run the sweep on the configured backend."""
    if setup.args.sweep_backend == "wandb":
        from emotion_predictor.sweep import wandb_backend

        return wandb_backend.run_wandb_sweep(setup)
    from emotion_predictor.sweep import optuna_backend

    return optuna_backend.run_optuna_sweep(setup, extra_callbacks)


def main(argv: Sequence[str] | None = None, description: str | None = None) -> None:
    """`ep_sweep.py`: load the config (argv default: the command line) and run the sweep."""
    run_sweep(load_sweep_config(argv, description))
