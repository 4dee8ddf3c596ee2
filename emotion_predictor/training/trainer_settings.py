"""What a run hands to transformers' Trainer besides the model and data, and what it keeps of
Trainer's checkpoints: its `TrainingArguments` (our keys, pass-through keys, adapted to the
hardware and to the trackers that can be reached), the checkpoint to resume from, and the pruning
of `checkpoints/` once the run has finished (`prune_checkpoints`).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from transformers import TrainingArguments

from emotion_predictor.arguments import TrainingConfig
from emotion_predictor.errors import UserError, first_line
from emotion_predictor.extras import require_extra
from emotion_predictor.training.wandb_access import wandb_unavailable_reason

logger = logging.getLogger(__name__)
GPU_ONLY_OPTIMIZER_MARKERS = ("paged", "8bit", "bnb")


def adapt_to_hardware(settings: dict[str, Any]) -> dict[str, Any]:
    """On a machine without CUDA, swap fp16/bf16 and GPU-only optimizers for float32 + adamw_torch."""
    if torch.cuda.is_available():
        return settings
    changed = []
    for flag in ("fp16", "bf16"):
        if settings.get(flag):
            settings[flag] = False
            changed.append(f"{flag} -> float32")
    optim = str(settings.get("optim", ""))
    if any(marker in optim for marker in GPU_ONLY_OPTIMIZER_MARKERS):
        settings["optim"] = "adamw_torch"
        changed.append(f"optim {optim} -> adamw_torch")
    settings["dataloader_pin_memory"] = False
    if changed:
        logger.warning("No CUDA device: %s", ", ".join(changed))
    return settings


def prepare_tracking(report_to: list[str]) -> list[str]:
    """Trackers to use; wandb goes offline by itself when it has no credentials or no network."""
    report_to = [r for r in report_to if r != "none"]
    if "wandb" in report_to:
        require_extra("wandb", "report_to wandb")
    if "wandb" in report_to and os.environ.get("WANDB_MODE", "").lower() not in ("offline", "disabled", "dryrun"):
        reason = wandb_unavailable_reason()
        if reason:
            os.environ["WANDB_MODE"] = "offline"
            logger.warning(
                f"wandb: {reason}, logging offline to ./wandb; upload later with "
                "`uv run wandb sync wandb/offline-run-*` after `uv run wandb login`"
            )
    return report_to or ["none"]


def training_arguments(cfg: TrainingConfig, passthrough: dict[str, Any]) -> TrainingArguments:
    """TrainingArguments from our keys (reference names) plus any pass-through keys."""
    settings: dict[str, Any] = {
        "output_dir": os.path.join(cfg.output_dir, "checkpoints"),
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.eval_batch_size or 2 * cfg.batch_size,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "weight_decay": cfg.weight_decay,
        "warmup_steps": cfg.warmup_ratio,
        "max_grad_norm": cfg.max_grad_norm,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_sampling_strategy": "group_by_length" if cfg.group_by_length else "random",
        "eval_strategy": cfg.eval_strategy,
        "save_strategy": cfg.eval_strategy,
        "eval_steps": cfg.eval_steps,
        "save_steps": cfg.eval_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": cfg.metric_for_best_model,
        "greater_is_better": cfg.metric_for_best_model != "loss",
        "save_total_limit": 2,
        "seed": cfg.seed,
        "report_to": prepare_tracking(cfg.report_to),
        "run_name": cfg.run_name,
        "logging_steps": 50,
        "optim": "adamw_torch",
    }
    settings.update(passthrough)
    # gradient_checkpointing is transformers' deprecated alias of activation_checkpointing; users may give either.
    for name in ("activation_checkpointing", "gradient_checkpointing"):
        if settings.get(name):
            # Re-entrant checkpointing loses gradients when the frozen embeddings need none (LoRA).
            settings.setdefault(f"{name}_kwargs", {"use_reentrant": False})
            break
    try:
        return TrainingArguments(**adapt_to_hardware(settings))
    except (ValueError, TypeError) as err:
        raise UserError(f"invalid training setting: {first_line(err)}") from None


def complete_checkpoint(folder: str) -> bool:
    """Trainer writes trainer_state.json last, so a checkpoint without it was cut off mid-save."""
    return os.path.isfile(os.path.join(folder, "trainer_state.json"))


def checkpoint_folders(output_dir: str) -> dict[int, str]:
    """The run's Trainer checkpoints (`checkpoints/checkpoint-<step>`) by step."""
    folder = os.path.join(output_dir, "checkpoints")
    return {
        int(name.split("-")[1]): os.path.join(folder, name)
        for name in (os.listdir(folder) if os.path.isdir(folder) else [])
        if name.startswith("checkpoint-") and name.split("-")[1].isdigit()
    }


def prune_checkpoints(output_dir: str) -> list[str]:
    """Delete every checkpoint of a finished run but the newest complete one, which a resume starts
    from (the best model is in `model/`); returns the deleted folders."""
    steps = checkpoint_folders(output_dir)
    kept = max((step for step, path in steps.items() if complete_checkpoint(path)), default=None)
    deleted = []
    for step, path in sorted(steps.items()):
        if step != kept:
            # Renamed first, so that a deletion cut short never leaves a folder that passes for a checkpoint.
            doomed = os.path.join(os.path.dirname(path), f".pruned-{os.path.basename(path)}")
            os.replace(path, doomed)
            shutil.rmtree(doomed)
            deleted.append(path)
    if deleted:
        logger.info(
            "Pruned checkpoints/: kept %s, deleted %d older or incomplete (keep_checkpoints: true keeps them)",
            os.path.basename(steps[kept]) if kept is not None else "none",
            len(deleted),
        )
    return deleted


def resume_target(cfg: TrainingConfig) -> str | None:
    """The checkpoint to resume from, or None.

    `true` takes the newest complete checkpoint in output_dir/checkpoints; a run killed while saving
    leaves a newer, incomplete one, which Trainer's own choice (the highest step) would load and fail on.
    """
    if cfg.resume_from_checkpoint is True:
        folder = os.path.join(cfg.output_dir, "checkpoints")
        steps = checkpoint_folders(cfg.output_dir)
        for step in sorted(steps, reverse=True):
            if complete_checkpoint(steps[step]):
                return steps[step]
            logger.warning("Skipped %s: no trainer_state.json (the run stopped while saving it)", steps[step])
        raise UserError(
            f"resume_from_checkpoint is true but {folder} holds no complete checkpoint; "
            "set it to false to start a new run"
        )
    if isinstance(cfg.resume_from_checkpoint, str) and not complete_checkpoint(cfg.resume_from_checkpoint):
        raise UserError(
            f"resume_from_checkpoint {cfg.resume_from_checkpoint!r} is not a complete checkpoint "
            "(no trainer_state.json); give a checkpoint-<step> folder that a run finished saving, "
            "or true for the newest complete one"
        )
    return cfg.resume_from_checkpoint or None
