"""Training with several processes (torchrun, gloo on CPU): the same step as one process with
the whole batch, and outputs written by rank 0 only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_config
from emotion_predictor.training.recipe import run_fine_tuning
from test_fine_tune import ONE_SGD_STEP, assert_same_weights, dropout_free_copy, encoder_change, saved_weights

AUDITED_FINE_TUNE = os.path.join(ROOT, "tests", "audited_fine_tune.py")
RANK0_OUTPUTS = {"run_config.json", "data_stats.json", "metrics.json", "report.txt", "model"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def audited_writes(audit_dir, rank: int) -> set[str]:
    path = os.path.join(audit_dir, f"rank-{rank}.jsonl")
    if not os.path.exists(path):
        return set()
    with open(path, encoding="utf-8") as handle:
        return {json.loads(line) for line in handle}


@pytest.mark.slow
def test_two_processes_take_the_single_process_step_and_only_rank_0_writes(tmp_path, tiny_model_dir, tiny_dataset_dir):
    model_dir = dropout_free_copy(tiny_model_dir, str(tmp_path / "model"))
    single = str(tmp_path / "single")
    run_fine_tuning(*tiny_config(model_dir, tiny_dataset_dir, single, batch_size=8, **ONE_SGD_STEP))

    # The same resolved config, with half the batch on each of 2 CPU processes.
    with open(os.path.join(single, "run_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    out, audit_dir = tmp_path / "two", tmp_path / "audit"
    config.update(output_dir=str(out), batch_size=4, use_cpu=True, ddp_backend="gloo")
    (tmp_path / "two.json").write_text(json.dumps(config))
    audit_dir.mkdir()
    env = {**os.environ, "AUDIT_DIR": str(audit_dir), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        AUDITED_FINE_TUNE,
        "--json_file",
        str(tmp_path / "two.json"),
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]

    assert_same_weights(saved_weights(str(out)), saved_weights(single))
    assert encoder_change(saved_weights(single), model_dir) > 1e-3  # the step did change the weights
    written_by_rank0 = {path.split(os.sep)[0] for path in audited_writes(audit_dir, 0)}
    assert RANK0_OUTPUTS.issubset(written_by_rank0)  # the audit sees the writes it checks rank 1 for
    assert audited_writes(audit_dir, 1) == set()
