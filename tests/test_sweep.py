"""Hyperparameter sweeps that run: real offline trials, outputs, failures, resume, workers, wandb.

Trials are real fine-tuning runs of the tiny random BERT (2 optimizer steps, an evaluation after
each); the multi-process tests start `ep_sweep.py` the way a user does. The translation of the
sweep_config block and the config errors are in test_sweep_search_space.py.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import weakref

import numpy as np
import optuna
import pandas as pd
import pytest

from conftest import ROOT
from emotion_predictor.arguments import SweepArguments
from emotion_predictor.errors import ConfigError, run_main
from emotion_predictor.sweep import cli, optuna_backend, results, search_space, trial, wandb_backend
from emotion_predictor.sweep.setup import SweepSetup, load_sweep_config
from sweep_configs import REFERENCE_SWEEP, SMALL_SWEEP, read_json, tiny_values, write_sweep


def sweep_env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def load_trials(output_dir, name="sweep"):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{os.path.abspath(output_dir)}/sweep.db")
    return study.get_trials(deepcopy=False)


def test_wandb_backend_without_credentials_stops_at_once(
    tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    out = tmp_path / "o"
    path = write_sweep(
        tmp_path / "w.json", tiny_model_dir, tiny_dataset_dir, out, REFERENCE_SWEEP, sweep_backend="wandb"
    )
    with pytest.raises(SystemExit) as caught:
        run_main(lambda: cli.main(["--json_file", path]))
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: the wandb sweep backend needs a wandb account (no wandb credentials)")
    assert "wandb login" in err[0] and '"sweep_backend": "optuna"' in err[0]
    assert not out.exists()
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(SystemExit):
        run_main(lambda: cli.main(["--json_file", path]))
    assert "(WANDB_MODE is offline)" in capsys.readouterr().err


def test_wandb_backend_runs_its_agent_through_the_same_trial_code(
    tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch, capsys
):
    """wandb's service is out of reach here: a stand-in records what the backend asks of it."""
    import types

    calls = []

    class Run:
        def __init__(self, number):
            self.id, self.name = f"run{number}", f"sweep-run-{number}"
            self.config = {"learning_rate": 0.02, "lora_rank": 2 + 2 * number, "max_steps": 2}

    fake = types.ModuleType("wandb")
    fake.run = None

    def init():
        fake.run = Run(len([c for c in calls if c[0] == "init"]))
        calls.append(("init", fake.run.id))
        return fake.run

    def finish(exit_code=0):
        calls.append(("finish", exit_code))
        fake.run = None

    fake.init, fake.finish = init, finish
    fake.log = lambda data: calls.append(("log", dict(data)))
    fake.sweep = lambda sweep, project, entity: calls.append(("sweep", sweep["method"], project)) or "abc123"

    def agent(sweep_id, function, count, project, entity):
        calls.append(("agent", sweep_id, count))
        for _ in range(count):
            function()

    fake.agent = agent
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(wandb_backend, "wandb_unavailable_reason", lambda: None)
    monkeypatch.setattr(wandb_backend, "with_wandb_tracking", lambda values: values)  # no Trainer-side wandb here
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    out = tmp_path / "sweep"
    config = {**SMALL_SWEEP, "parameters": {**SMALL_SWEEP["parameters"], "max_steps": {"value": 2}}}
    path = write_sweep(
        tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, config, sweep_backend="wandb", sweep_count=2
    )
    cli.main(["--json_file", path])
    assert ("sweep", "random", "emotion-predictor") in calls and ("agent", "emotion-predictor/abc123", 2) in calls
    assert (out / "wandb_sweep_id.txt").read_text().strip() == "emotion-predictor/abc123"
    logs = [c[1] for c in calls if c[0] == "log" and "test_Balanced_Accuracy" in c[1]]
    per_eval = [c[1] for c in calls if c[0] == "log" and set(c[1]) == {"Balanced_Accuracy"}]
    assert len(logs) == 2 and len(per_eval) == 4  # the final metric per run, and one per evaluation
    for number, logged in enumerate(logs):
        metrics = read_json(out, f"trial-run{number}", "metrics.json")
        assert logged["Balanced_Accuracy"] == pytest.approx(metrics["validation"]["Balanced_Accuracy"])
        assert read_json(out, f"trial-run{number}", "run_config.json")["lora_rank"] == 2 + 2 * number
    assert [c for c in calls if c[0] == "finish"] == [("finish", 0), ("finish", 0)]
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["state"].tolist() == ["COMPLETE", "COMPLETE"] and results["lora_rank"].tolist() == [2, 4]
    assert read_json(out, "best_config.json")["max_steps"] == 2
    calls.clear()
    fake.agent = lambda sweep_id, function, count, project, entity: calls.append(("agent", sweep_id, count))
    cli.main(["--json_file", path])  # a re-run joins the sweep this folder created
    assert ("agent", "emotion-predictor/abc123", 2) in calls and not [c for c in calls if c[0] == "sweep"]


# ---------------------------------------------------------------- real offline sweeps


@pytest.mark.slow
def test_offline_grid_sweep_writes_outputs_and_best_config_reproduces(
    tmp_path, tiny_model_dir, tiny_dataset_dir, capsys, monkeypatch
):
    out = tmp_path / "sweep"
    grid = {
        "method": "grid",
        "name": "grid",
        "metric": {"name": "F1-all-class", "goal": "maximize"},
        "parameters": {"lora_rank": {"values": [2, 4]}, "learning_rate": {"value": 0.02}},
    }
    path = write_sweep(tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, grid, sweep_count=5)
    cli.main(["--json_file", path])
    printed = capsys.readouterr().out
    assert "Stopping the sweep: every grid point has been run" in printed

    results = pd.read_csv(out / "sweep_results.csv")
    assert list(results.columns) == [
        "number",
        "state",
        "worker",
        "F1-all-class",
        "test_F1-all-class",
        "duration_s",
        "lora_rank",
        "error",
    ]
    assert results["number"].tolist() == [0, 1] and set(results["state"]) == {"COMPLETE"}
    assert sorted(results["lora_rank"]) == [2, 4] and set(results["worker"]) == {socket.gethostname()}
    for _, row in results.iterrows():
        trial_dir = out / f"trial-{row.number}"
        metrics = read_json(trial_dir, "metrics.json")
        assert row["F1-all-class"] == pytest.approx(metrics["validation"]["F1-all-class"])
        assert row["test_F1-all-class"] == pytest.approx(metrics["test"]["F1-all-class"])
        run_config = read_json(trial_dir, "run_config.json")
        assert (run_config["lora_rank"], run_config["learning_rate"]) == (row.lora_rank, 0.02)
        assert run_config["output_dir"] == str(trial_dir) and run_config["run_name"] == f"grid-trial-{row.number}"
        assert os.path.isdir(trial_dir / "model") and not os.path.exists(trial_dir / "checkpoints")
        assert row.duration_s > 0
    best_row = results.sort_values(["F1-all-class", "number"], ascending=[False, True]).iloc[0]
    best = read_json(out, "best_config.json")
    expected = {
        **tiny_values(tiny_model_dir, tiny_dataset_dir, str(out / "best")),
        "lora_rank": int(best_row.lora_rank),
        "learning_rate": 0.02,
    }
    assert best == expected
    with open(out / "sweep.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert f"Best: trial {best_row.number}, validation F1-all-class" in printed

    # best_config.json is a fine-tuning args file: ep_fine_tune.py trains the best trial again, identically.
    import ep_fine_tune

    monkeypatch.setattr(sys, "argv", ["ep_fine_tune.py", "--json_file", str(out / "best_config.json")])
    ep_fine_tune.main()
    again = read_json(out, "best", "metrics.json")["validation"]
    trial = read_json(out, f"trial-{best_row.number}", "metrics.json")["validation"]
    assert again == pytest.approx(trial)

    # Running the finished sweep again starts nothing and keeps the results.
    cli.main(["--json_file", path])
    assert "Nothing to run: every grid point has been run" in capsys.readouterr().out
    assert len(pd.read_csv(out / "sweep_results.csv")) == 2


def test_a_trial_exports_no_onnx_unless_the_sweep_keys_ask():
    values = trial.trial_values({"lora_rank": 4}, {"learning_rate": 0.1}, "sweep/trial-0", "s-trial-0")
    assert values["export_onnx"] == "none" and (values["lora_rank"], values["learning_rate"]) == (4, 0.1)
    assert trial.trial_values({"export_onnx": "fp32"}, {}, "sweep/trial-1", "s-trial-1")["export_onnx"] == "fp32"
    searched = trial.trial_values({}, {"export_onnx": "fp32+int8"}, "sweep/trial-2", "s-trial-2")
    assert searched["export_onnx"] == "fp32+int8"


def test_failed_and_pruned_trials_are_recorded_and_memory_is_released(
    tmp_path, tiny_model_dir, tiny_dataset_dir, capsys, monkeypatch
):
    import torch
    from transformers import TrainerCallback

    emptied = []
    monkeypatch.setattr(trial, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 2)
    models, alive_at_start = [], []

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            alive_at_start.append(sum(ref() is not None for ref in models))
            models.append(weakref.ref(model))

        def on_step_end(self, args, state, control, **kwargs):
            if f"{os.sep}trial-1{os.sep}" in args.output_dir:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    out = tmp_path / "sweep"
    path = write_sweep(tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, SMALL_SWEEP, sweep_count=3)
    study = optuna_backend.run_optuna_sweep(load_sweep_config(["--json_file", path]), extra_callbacks=[Probe()])
    printed = capsys.readouterr().out

    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "PRUNED"]
    assert trials[1].user_attrs["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert sorted(trials[0].intermediate_values) == [1, 2]  # every evaluation was reported to the pruner
    assert sorted(trials[2].intermediate_values) == [1]  # pruned right after its first evaluation
    for t in trials:
        assert 0.001 <= t.params["learning_rate"] <= 0.05 and t.params["lora_rank"] in (2, 4)
    assert optuna_backend.finished_by(study, socket.gethostname()) == 3
    # Each trial's model was gone before the next trial began, and the CUDA cache was emptied after each.
    gc.collect()
    assert alive_at_start == [0, 0, 0] and all(ref() is None for ref in models)
    assert len(emptied) == 3
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["state"].tolist() == ["COMPLETE", "FAIL", "PRUNED"]
    assert results.loc[2, "Balanced_Accuracy"] == pytest.approx(trials[2].intermediate_values[1])
    assert results.loc[1, "error"].startswith("OutOfMemoryError")
    assert "trial 1 failed: OutOfMemoryError: CUDA out of memory" in printed
    assert "OutOfMemoryError" in (out / "trial-1" / "error.txt").read_text()  # the full traceback, for debugging
    assert read_json(out, "best_config.json")["lora_rank"] == trials[0].params["lora_rank"]


def single_emotion_dataset(folder, validation_emotion: int) -> str:
    """The tiny dialogues with every turn neutral, except that validation and test are all `validation_emotion`."""
    from conftest import make_dialogues, write_jsonl

    os.makedirs(folder)
    for split, count, seed, emotion in (
        ("train", 60, 1, 0),
        ("validation", 20, 2, validation_emotion),
        ("test", 10, 3, validation_emotion),
    ):
        dialogues = [{**d, "emotions": [emotion] * len(d["emotions"])} for d in make_dialogues(count, seed)]
        write_jsonl(os.path.join(folder, f"{split}.jsonl"), dialogues)
    return str(folder)


def neutral_biased_model(folder) -> str:
    """A tiny BERT with our 7-emotion head whose neutral bias is so large that it predicts neutral
    for every text, before and after two small training steps."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from conftest import build_tiny_bert

    build_tiny_bert(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        model.classifier.bias[0] = 20.0
    model.save_pretrained(str(folder))
    return str(folder)


def test_hyperband_prunes_a_trial_that_falls_behind(tmp_path, capsys):
    # Both runs train the same always-neutral model; the first is scored on neutral rows (accuracy
    # 1), the second on the same texts labelled happiness (accuracy 0), so Hyperband (one bracket:
    # max_iter / min_iter < eta) must stop the second at its first evaluation. Nothing is mocked.
    sweep_config = {
        "method": "random",
        "metric": {"name": "Accuracy", "goal": "maximize"},
        "parameters": {"lora_rank": {"values": [4]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},
    }
    model = neutral_biased_model(tmp_path / "model")
    neutral, happiness = single_emotion_dataset(tmp_path / "neutral", 0), single_emotion_dataset(tmp_path / "happy", 4)
    out = tmp_path / "sweep"
    path = write_sweep(tmp_path / "s.json", model, neutral, out, sweep_config, sweep_count=1)
    cli.main(["--json_file", path])
    cli.main(["--json_file", path, "--dataset", happiness, "--sweep_count", "2"])

    complete, pruned = load_trials(out)
    assert complete.intermediate_values == {1: 1.0, 2: 1.0} and complete.state.name == "COMPLETE"
    assert pruned.intermediate_values == {1: 0.0} and pruned.state.name == "PRUNED"
    assert not os.path.exists(out / "trial-1" / "metrics.json")  # training stopped at the first evaluation
    assert "1 complete, 1 pruned" in capsys.readouterr().out


def test_ctrl_c_marks_the_trial_interrupted_and_keeps_the_outputs(
    tmp_path, tiny_model_dir, tiny_dataset_dir, capsys, monkeypatch
):
    from transformers import TrainerCallback

    class CtrlC(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            raise KeyboardInterrupt

    real_run = optuna_backend.run_optuna_sweep
    monkeypatch.setattr(optuna_backend, "run_optuna_sweep", lambda setup, extra=(): real_run(setup, [CtrlC()]))
    out = tmp_path / "sweep"
    path = write_sweep(tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, SMALL_SWEEP, sweep_count=2)
    with pytest.raises(SystemExit) as caught:
        run_main(lambda: cli.main(["--json_file", path]))
    assert caught.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: interrupted (Ctrl-C); finished outputs were kept"
    (trial,) = load_trials(out)
    assert trial.state.name == "FAIL" and "error" not in trial.user_attrs
    assert not optuna_backend.counts_for_worker(trial)
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["state"].tolist() == ["FAIL"] and results.loc[0, "error"].startswith("interrupted")
    assert not (out / "best_config.json").exists()


def test_a_sweep_whose_first_trials_all_fail_stops(tmp_path, tiny_model_dir, tiny_dataset_dir, capsys):
    broken = {**SMALL_SWEEP, "parameters": {"lr_scheduler_type": {"values": ["no_such_schedule"]}}}
    out = tmp_path / "sweep"
    path = write_sweep(tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, broken, sweep_count=10)
    with pytest.raises(SystemExit) as caught:
        run_main(lambda: cli.main(["--json_file", path]))
    assert caught.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: the first 3 trials all failed (last: UserError: invalid training setting:")
    assert "no_such_schedule" in line and line.endswith(f"{out / 'trial-2' / 'error.txt'}")
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["state"].tolist() == ["FAIL"] * 3 and results["error"].str.contains("no_such_schedule").all()


def test_outputs_rank_trials_and_compute_importances(tmp_path):
    space = search_space.translate_sweep_config(SMALL_SWEEP)
    args = SweepArguments(sweep_config=SMALL_SWEEP)
    setup = SweepSetup(args, {"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path)}, space, "test")
    rng = np.random.default_rng(0)
    records = []
    for n in range(10):  # the metric depends on learning_rate only
        lr, rank = float(10 ** rng.uniform(-3, math.log10(0.05))), int(rng.choice([2, 4]))
        records.append(
            results.TrialRecord(
                n, "COMPLETE", "w", -abs(math.log10(lr) + 2), None, 1.0, {"learning_rate": lr, "lora_rank": rank}
            )
        )
    failed = {"learning_rate": 0.01, "lora_rank": 2}
    records.append(results.TrialRecord(10, "FAIL", "w", None, None, 0.5, failed, "boom"))
    importances = results.write_outputs(records, setup)
    assert set(importances) == {"learning_rate", "lora_rank"} and importances["learning_rate"] > 0.8
    assert read_json(tmp_path, "param_importances.json") == pytest.approx(importances)
    best = max(records[:10], key=lambda r: r.value)
    assert read_json(tmp_path, "best_config.json") == {
        "model_name_or_path": "m",
        "dataset": "d",
        "output_dir": str(tmp_path / "best"),
        **best.params,
    }
    assert len(pd.read_csv(tmp_path / "sweep_results.csv")) == 11
    text = results.summary(records, setup)
    assert f"Best: trial {best.number}" in text and "trial 10 failed: boom" in text
    assert results.param_importances(records[:4], space) is None  # too few trials


def test_a_changed_sweep_config_does_not_join_the_old_study(tmp_path):
    base = {"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path)}

    def setup_for(config):
        space = search_space.translate_sweep_config(config)
        return SweepSetup(SweepArguments(sweep_config=config), base, space, "test")

    optuna_backend.open_study(setup_for(SMALL_SWEEP))
    optuna_backend.open_study(setup_for({**SMALL_SWEEP, "name": "other name is fine"}))
    changed = {**SMALL_SWEEP, "parameters": {"lora_rank": {"values": [2, 8]}}}
    with pytest.raises(ConfigError, match="created with a different sweep_config"):
        optuna_backend.open_study(setup_for(changed))
    with pytest.raises(ConfigError, match="created to maximize its metric, not minimize"):
        minimize = {"name": "Balanced_Accuracy", "goal": "minimize"}
        optuna_backend.open_study(setup_for({**SMALL_SWEEP, "metric": minimize}))


# ---------------------------------------------------------------- resumption and several workers


def sqlite_states(db: str) -> list[tuple[int, str]]:
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            return connection.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # not created yet, or busy
        return []


@pytest.mark.slow
def test_a_crashed_sweep_resumes_to_exactly_sweep_count(tmp_path, tiny_model_dir, tiny_dataset_dir, capsys):
    out = tmp_path / "sweep"
    bayes = {**SMALL_SWEEP, "method": "bayes"}
    path = write_sweep(tmp_path / "s.json", tiny_model_dir, tiny_dataset_dir, out, bayes, sweep_count=3)
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 (the worker writes to it; closed in finally)
    proc = subprocess.Popen(
        [sys.executable, "ep_sweep.py", "--json_file", path],
        cwd=ROOT,
        env=sweep_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 300
        while True:  # kill it (a crash: no clean-up at all) once trial 0 is done and trial 1 is fine-tuning
            states = dict(sqlite_states(str(out / "sweep.db")))
            second_started = (out / "trial-1" / "run_config.json").exists()
            if states.get(0) == "COMPLETE" and states.get(1) == "RUNNING" and second_started:
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the first trial did not finish in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    first = load_trials(out)[0]
    first_metrics = (out / "trial-0" / "metrics.json").read_bytes()

    cli.main(["--json_file", path])  # the same command again
    printed = capsys.readouterr().out
    assert "Resuming: worker" in printed and "has finished 1 of 3 trials" in printed
    trials = load_trials(out)
    assert trials[1].state.name == "FAIL" and "error" not in trials[1].user_attrs  # interrupted, not counted
    finished = [t for t in trials if optuna_backend.counts_for_worker(t)]
    assert len(finished) == 3 and [t.number for t in finished] == [0, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in finished)
    kept = trials[0]
    assert (kept.value, kept.params, kept.datetime_complete) == (first.value, first.params, first.datetime_complete)
    assert (out / "trial-0" / "metrics.json").read_bytes() == first_metrics
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert results.loc[1, "error"].startswith("interrupted")

    cli.main(["--json_file", path])  # nothing left to do
    assert "has already finished 3 of sweep_count 3 trials" in capsys.readouterr().out
    assert len(load_trials(out)) == 4


@pytest.mark.slow
def test_two_workers_on_one_storage_share_the_sweep(tmp_path, tiny_model_dir, tiny_dataset_dir):
    out = tmp_path / "sweep"
    bayes = {**SMALL_SWEEP, "method": "bayes"}
    path = write_sweep(
        tmp_path / "s.json",
        tiny_model_dir,
        tiny_dataset_dir,
        out,
        bayes,
        sweep_storage=f"sqlite:///{tmp_path / 'shared.db'}",
    )
    procs = []
    for worker, count in (("a", 2), ("b", 1)):
        log = open(tmp_path / f"{worker}.log", "w")  # noqa: SIM115 (closed once the worker ends)
        command = [
            sys.executable,
            "ep_sweep.py",
            "--json_file",
            path,
            "--sweep_worker",
            worker,
            "--sweep_count",
            str(count),
        ]
        procs.append((subprocess.Popen(command, cwd=ROOT, env=sweep_env(), stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        try:
            proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for (proc, _), worker in zip(procs, "ab"):
        assert proc.returncode == 0, (tmp_path / f"{worker}.log").read_text()[-3000:]
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.user_attrs["worker"] for t in trials) == ["a", "a", "b"]
    for t in trials:  # one folder per trial, holding that trial's own run
        run_config = read_json(out, f"trial-{t.number}", "run_config.json")
        assert run_config["learning_rate"] == t.params["learning_rate"]
        assert run_config["lora_rank"] == t.params["lora_rank"]
        metrics = read_json(out, f"trial-{t.number}", "metrics.json")
        assert metrics["validation"]["Balanced_Accuracy"] == pytest.approx(t.value)
    assert sorted(n for n in os.listdir(out) if n.startswith("trial-")) == ["trial-0", "trial-1", "trial-2"]
    results = pd.read_csv(out / "sweep_results.csv")
    assert results["number"].tolist() == [0, 1, 2] and set(results["state"]) == {"COMPLETE"}


# ---------------------------------------------------------------- PostgreSQL

PG_BIN = "/usr/lib/postgresql/15/bin"


def postgres_driver() -> str | None:
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        try:
            __import__(module)
            return dialect
        except ImportError:
            continue
    return None


@pytest.fixture
def postgres_url():
    dialect = postgres_driver()
    if dialect is None:
        pytest.skip("no PostgreSQL driver for SQLAlchemy: add psycopg2-binary to pyproject's dev group")
    if not os.path.isfile(os.path.join(PG_BIN, "initdb")):
        pytest.skip(f"no PostgreSQL server binaries at {PG_BIN} (Debian: apt-get install postgresql-15)")
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="ep-sweep-pg-")
    if prefix:
        shutil.chown(folder, user="postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = os.path.join(folder, "data")
    subprocess.run(
        [*prefix, f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    subprocess.run(
        [
            *prefix,
            f"{PG_BIN}/pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(folder, "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"{dialect}://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_workers_share_a_sweep_in_postgresql(tmp_path, tiny_model_dir, tiny_dataset_dir, postgres_url):
    out = tmp_path / "sweep"
    path = write_sweep(
        tmp_path / "s.json",
        tiny_model_dir,
        tiny_dataset_dir,
        out,
        SMALL_SWEEP,
        sweep_storage=postgres_url,
        sweep_count=1,
    )
    cli.main(["--json_file", path, "--sweep_worker", "machine-a"])
    cli.main(["--json_file", path, "--sweep_worker", "machine-b"])
    cli.main(["--json_file", path, "--sweep_worker", "machine-a"])  # already done: runs nothing
    trials = optuna.load_study(study_name="sweep", storage=postgres_url).get_trials()
    assert [(t.number, t.state.name, t.user_attrs["worker"]) for t in trials] == [
        (0, "COMPLETE", "machine-a"),
        (1, "COMPLETE", "machine-b"),
    ]
    metrics = read_json(out, "trial-1", "metrics.json")
    assert metrics["validation"]["Balanced_Accuracy"] == pytest.approx(trials[1].value)
