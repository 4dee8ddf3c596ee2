"""One sweep trial: a real fine-tuning run in its own folder, shared by both backends.

This module owns what a trial is: the base fine-tuning keys plus the trial's parameters, in
`<output_dir>/trial-<n>` under the name `<sweep_name>-trial-<n>`, never resuming, never pushing
and exporting no ONNX unless the sweep's keys ask (`export_onnx`); `training.run_fine_tuning`
(the code path of `ep_fine_tune.py`) does the work. Whatever happens, the trial frees its memory
(the tracker run, Python garbage, the CUDA cache) before the next one starts; an error fails this
trial only (`TrialFailed`, one line; the traceback goes to the trial's `error.txt`), a pruned
trial raises `optuna.TrialPruned`, Ctrl-C propagates.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
import traceback
from typing import Any

import optuna

from emotion_predictor.arguments import FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH
from emotion_predictor.config import build_instances
from emotion_predictor.errors import first_line
from emotion_predictor.output_files import write_text

logger = logging.getLogger(__name__)


class TrialFailed(Exception):
    """A trial's fine-tuning raised; the message is the error, the original traceback is dropped."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def release_memory(finish_tracker: bool = True) -> None:
    """Free what the last trial held: Python garbage, the tracker run, and the CUDA cache."""
    wandb = sys.modules.get("wandb")
    if finish_tracker and wandb is not None and getattr(wandb, "run", None) is not None:
        with contextlib.suppress(Exception):
            wandb.finish()
    gc.collect()
    if cuda_available():
        import torch

        torch.cuda.empty_cache()


def trial_values(base_values: dict[str, Any], params: dict[str, Any], trial_dir: str, run_name: str) -> dict[str, Any]:
    """The fine-tuning keys of one trial."""
    values = {**base_values, **params, "output_dir": trial_dir, "run_name": run_name}
    values.pop("resume_from_checkpoint", None)
    values["push_to_hub"] = False
    # A trial's model is one of many: export it only when the sweep config asks (ep-export-onnx can later).
    values.setdefault("export_onnx", "none")
    return values


def run_trial_fine_tuning(
    values: dict[str, Any], metric: str, callbacks: list[Any], keep_checkpoints: bool, finish_tracker: bool = True
) -> tuple[float, float | None]:
    """Fine-tune with `values`; return (validation metric, test metric).

    Raises TrialFailed (any error, traceback dropped so the trial's objects can be freed),
    optuna.TrialPruned, or KeyboardInterrupt. Memory is released before returning or raising.
    """
    from emotion_predictor.training.recipe import run_fine_tuning

    error: str | None = None
    pruned: str | None = None
    result = None
    try:
        instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, "sweep trial", set(), FINE_TUNE_PASSTHROUGH)
        result = run_fine_tuning(*instances, passthrough, callbacks=callbacks)
        value = float(result.metrics["validation"][metric])
        test = result.metrics.get("test", {}).get(metric)
    except optuna.TrialPruned as err:
        pruned = str(err)
    except Exception as err:  # any failure (out of memory, bad setting, data) fails this trial only
        error = first_line(err, with_type=True)
        logger.error("Trial in %s failed: %s (traceback in error.txt there)", values["output_dir"], error)
        with contextlib.suppress(OSError):
            write_text(os.path.join(values["output_dir"], "error.txt"), traceback.format_exc())
    finally:
        result = None
        if not keep_checkpoints:
            shutil.rmtree(os.path.join(values["output_dir"], "checkpoints"), ignore_errors=True)
        release_memory(finish_tracker)
    if pruned is not None:
        raise optuna.TrialPruned(pruned)
    if error is not None:
        raise TrialFailed(error)
    return value, (float(test) if test is not None else None)
