"""How far a long step is: progress bars on a terminal, plain periodic log lines elsewhere.

On a terminal (stderr is a TTY) training, evaluation and scoring show tqdm bars. In a log file
or a pipe, bars are unreadable, so the same steps log one line at every tenth of the work:
`training: step 120/500 (24%), epoch 0.24, loss 1.2345, 1m30s elapsed, about 4m45s left`.
`disable_tqdm: true` asks for the plain lines on a terminal too.

- `track`: wraps a loop with a known length (scoring batches).
- `show_progress`: sets up a Trainer's display (its own bars, or `TrainingProgress`, which also
  replaces transformers' printing of raw log dicts with one readable line per evaluation).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger("progress")
Item = TypeVar("Item")
REPORTS = 10  # lines per step: one at every tenth of the work
HEADLINE_METRICS = ("loss", "Accuracy", "Balanced_Accuracy", "Macro_F1", "F1-all-class")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class PlainProgress:
    """Logs `<label>: <done>/<total> (<percent>)...` each time another tenth of `total` is done."""

    def __init__(self, label: str, total: int, unit: str = "") -> None:
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.started = time.monotonic()
        self.reported = 0  # tenths already logged

    def update(self, done: int, details: str = "") -> None:
        tenths = done * REPORTS // self.total
        if tenths <= self.reported:
            return
        self.reported = tenths
        elapsed = time.monotonic() - self.started
        left = elapsed * (self.total - done) / done
        timing = f"{duration(elapsed)} elapsed" + (f", about {duration(left)} left" if done < self.total else "")
        parts = [f"{self.unit}{done}/{self.total} ({100 * done // self.total}%)", *filter(None, [details]), timing]
        logger.info("%s: %s", self.label, ", ".join(parts))


def track(items: Iterable[Item], total: int, label: str) -> Iterator[Item]:
    """`items` with a progress bar on a terminal, else with plain progress lines."""
    if on_terminal():
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=label)
        return
    progress = PlainProgress(label, total)
    for done, item in enumerate(items, start=1):
        yield item
        progress.update(done)


class TrainingProgress(TrainerCallback):
    """Plain progress lines for a Trainer: training steps, evaluation batches, and each evaluation's
    headline metrics."""

    def __init__(self) -> None:
        self.training: PlainProgress | None = None
        self.evaluating: PlainProgress | None = None
        self.batches = 0  # evaluation batches done
        self.loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = PlainProgress("training", state.max_steps, unit="step ")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        details = f"epoch {state.epoch:.2f}" + (f", loss {self.loss:.4f}" if self.loss is not None else "")
        self.training.update(state.global_step, details)

    def on_prediction_step(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
    ) -> None:
        if self.evaluating is None:
            self.evaluating, self.batches = PlainProgress("evaluating", len(eval_dataloader), unit="batch "), 0
        self.batches += 1
        self.evaluating.update(self.batches)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if "train_runtime" in logs:
            logger.info(
                "training: done in %s, mean loss %.4f",
                duration(logs["train_runtime"]),
                logs.get("train_loss", float("nan")),
            )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.evaluating = None
        shown = [
            f"{name} {metrics[f'eval_{name}']:.4f}" for name in HEADLINE_METRICS if f"eval_{name}" in (metrics or {})
        ]
        logger.info("evaluation at step %d (epoch %.2f): %s", state.global_step, state.epoch or 0.0, ", ".join(shown))


def show_progress(trainer: Trainer) -> None:
    """Bars on a terminal unless `disable_tqdm`; otherwise `TrainingProgress` lines."""
    if on_terminal() and not trainer.args.disable_tqdm:
        return
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainingProgress())
