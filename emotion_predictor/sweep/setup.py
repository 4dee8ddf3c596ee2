"""A sweep's config file, read into a validated `SweepSetup`.

This module owns what a sweep run is given: the sweep keys (`SweepArguments`), the fine-tuning
keys every trial starts from (inline, or in the `base_config` file; inline keys and `--key value`
overrides win) and the search space. It goes through config.py's public steps like every other
script (`parse_command_line`, `read_json_object`, `build_instances`), so `--help`, the one-line
errors and the lazily imported TrainingArguments behave the same; nothing heavy is imported
until the search space is valid.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Sequence
from typing import Any

from emotion_predictor.arguments import FINE_TUNE_CLASSES, FINE_TUNE_PASSTHROUGH, SweepArguments
from emotion_predictor.config import (
    build_instances,
    check_key_names,
    key_names,
    parse_command_line,
    passthrough_name,
    read_json_object,
)
from emotion_predictor.errors import ConfigError
from emotion_predictor.sweep.search_space import SearchSpace, translate_sweep_config

DESCRIPTION = "Search fine-tuning hyperparameters (see ep_sweep.py)."


@dataclasses.dataclass
class SweepSetup:
    """Everything a sweep run needs, validated."""

    args: SweepArguments
    base_values: dict[str, Any]  # typed fine-tuning keys every trial starts from (output_dir = sweep folder)
    space: SearchSpace
    source: str

    @property
    def output_dir(self) -> str:
        return self.base_values["output_dir"]

    @property
    def name(self) -> str:
        return self.args.sweep_name or str(self.args.sweep_config.get("name") or "sweep")

    @property
    def worker(self) -> str:
        return self.args.sweep_worker or socket.gethostname()

    @property
    def storage_url(self) -> str:
        if self.args.sweep_storage:
            return self.args.sweep_storage
        return "sqlite:///" + os.path.abspath(os.path.join(self.output_dir, "sweep.db"))


def load_sweep_config(argv: Sequence[str] | None = None, description: str | None = None) -> SweepSetup:
    """Read `--json_file` plus `--key value` overrides (argv default: the command line) into a `SweepSetup`."""
    command = parse_command_line(
        argv,
        "ep_sweep.py",
        description or DESCRIPTION,
        (SweepArguments, *FINE_TUNE_CLASSES),
        passthrough_name=passthrough_name(FINE_TUNE_PASSTHROUGH),
    )
    values = read_json_object(command.json_file) if command.json_file else {}
    overrides = command.overrides
    sweep_keys = {f.name for f in dataclasses.fields(SweepArguments)}
    source = command.source
    merged = {**values, **overrides}
    (args,), _ = build_instances(
        {k: v for k, v in merged.items() if k in sweep_keys}, [SweepArguments], source, set(overrides) & sweep_keys
    )
    fine_tune = {k: v for k, v in values.items() if k not in sweep_keys}
    cli = {k: v for k, v in overrides.items() if k not in sweep_keys}
    if args.base_config:
        base = read_json_object(args.base_config)
        stray = sorted(set(base) & sweep_keys)
        if stray:
            raise ConfigError(f"{args.base_config}: key {stray[0]!r} belongs in the sweep file, not in base_config")
        fine_tune = {**base, **fine_tune}
        source = f"{source} (with base_config {args.base_config})"
    fine_tune.update(cli)
    # Our keys and the search space first: the other keys (TrainingArguments') are checked last, as
    # importing TrainingArguments takes seconds (torch).
    check_key_names(fine_tune, FINE_TUNE_CLASSES, source, set(cli), FINE_TUNE_PASSTHROUGH)
    own_keys = set(key_names(FINE_TUNE_CLASSES))
    ours = {k: v for k, v in fine_tune.items() if k in own_keys}
    instances, passthrough = build_instances(ours, FINE_TUNE_CLASSES, source, set(cli))
    typed = {f.name: getattr(inst, f.name) for inst in instances for f in dataclasses.fields(inst)}
    space = translate_sweep_config(
        args.sweep_config, default_metric=typed["metric_for_best_model"], strict=args.sweep_backend == "optuna"
    )
    if len(ours) < len(fine_tune):
        _, passthrough = build_instances(fine_tune, FINE_TUNE_CLASSES, source, set(cli), FINE_TUNE_PASSTHROUGH)
    # Values from files stay as written (JSON types); command-line strings are replaced by their typed value.
    base_values = {
        name: (typed[name] if name in typed else passthrough[name]) if name in cli else value
        for name, value in fine_tune.items()
    }
    return SweepSetup(args, base_values, space, source)
