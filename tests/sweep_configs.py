"""Sweep configs shared by the sweep tests: the reference block, a small one, a fast trial."""

from __future__ import annotations

import json
import os

REFERENCE_SWEEP = {
    "method": "bayes",
    "name": "sweep",
    "metric": {"goal": "maximize", "name": "Balanced_Accuracy"},
    "parameters": {
        "batch_size": {"values": [8, 32, 64]},
        "num_train_epochs": {"values": [3, 5, 8]},
        "learning_rate": {"max": 0.05, "min": 0.0001},
        "lr_scheduler_type": {"values": ["constant", "cosine"]},
        "lora_alpha": {"values": [16, 32, 64]},
        "lora_dropout": {"values": [0.1, 0.2, 0.3]},
        "lora_rank": {"values": [16, 32, 64]},
        "init_lora_weights": {"values": [True, False]},
        "use_rslora": {"values": [True, False]},
        "focal_gamma": {"values": [1, 3, 5, 8]},
        "weight_decay": {"max": 0.5, "min": 0.0},
        "warmup_ratio": {"max": 0.1, "min": 0.0},
        "max_steps": {"value": -1},
        "max_grad_norm": {"max": 1.0, "min": 0.1},
    },
}
SMALL_SWEEP = {
    "method": "random",
    "metric": {"name": "Balanced_Accuracy", "goal": "maximize"},
    "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.05},
        "lora_rank": {"values": [2, 4]},
    },
}


def tiny_values(model_dir: str, dataset_dir: str, output_dir: str) -> dict:
    """A fast fine-tuning config: 2 optimizer steps with an evaluation after each."""
    return {
        "model_name_or_path": model_dir,
        "dataset": dataset_dir,
        "output_dir": output_dir,
        "batch_size": 16,
        "learning_rate": 0.01,
        "lora_rank": 4,
        "lora_alpha": 8,
        "focal_gamma": 2,
        "max_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "max_eval_samples": 60,
        "report_to": ["none"],
        "data_cache_dir": None,
        "disable_tqdm": True,
        "logging_steps": 5,
    }


def write_sweep(path, model_dir, dataset_dir, output_dir, sweep_config, **keys) -> str:
    values = {**tiny_values(model_dir, dataset_dir, str(output_dir)), "sweep_config": sweep_config, **keys}
    path.write_text(json.dumps(values, indent=1))
    return str(path)


def read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as handle:
        return json.load(handle)
