"""The entry scripts answer `--help` and report config errors before importing the heavy libraries.

One fresh Python process runs each script's `main` on `--help` and on bad configs (unknown key,
bad type or range, missing file, bad JSON, a bad sweep_config) and records which of torch,
transformers, peft, datasets and optuna were imported by then: none may be. Each script has the
`cli` function its console script points at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "transformers", "peft", "datasets", "optuna")

PROBE = r"""
import contextlib, importlib, io, json, sys
from emotion_predictor.errors import ConfigError

cases, report = json.loads(sys.argv[1]), []
for script, argv in cases:
    module = importlib.import_module(script)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            module.main(argv)
        outcome = "ran"
    except SystemExit as exit:
        outcome = f"exit {exit.code}: {stdout.getvalue()[:60]!r}"
    except ConfigError as err:
        outcome = f"error: {err}"
    heavy = sorted(name for name in HEAVY if name in sys.modules)
    report.append([script, argv, outcome, heavy, callable(getattr(module, "cli", None))])
print(json.dumps(report))
""".replace("HEAVY", repr(HEAVY))


def test_help_and_config_errors_import_no_heavy_library(tmp_path):
    (tmp_path / "bad.json").write_text('{"dataset": "d",\n "output_dir": }')
    quickstart, sweep = "args/quickstart.json", "args/ep_sweep_quickstart.json"
    with open(os.path.join(ROOT, sweep), encoding="utf-8") as handle:
        bad_sweep = json.load(handle)  # its disable_tqdm is a TrainingArguments key: that class is not needed yet
    bad_sweep["sweep_config"]["parameters"]["lora_rnak"] = {"values": [2]}
    (tmp_path / "bad_sweep.json").write_text(json.dumps(bad_sweep))
    missing, bad_json = str(tmp_path / "missing.json"), str(tmp_path / "bad.json")
    cases = [
        ("ep_fine_tune", ["--help"], "exit 0"),
        ("ep_fine_tune", ["--json_file", quickstart, "--neutral_keep_ratio", "0"], "must be in (0, 1]"),
        ("ep_fine_tune", ["--json_file", quickstart, "--lerning_rate", "0.1"], "did you mean 'learning_rate'?"),
        ("ep_fine_tune", ["--json_file", quickstart, "--use_lora", "maybe"], "expected true or false"),
        ("ep_fine_tune", ["--json_file", missing], "does not exist"),
        ("ep_fine_tune", ["--json_file", bad_json], "invalid JSON"),
        ("ep_evaluate", ["--help"], "exit 0"),
        ("ep_evaluate", ["--json_file", "args/ep_evaluate_quickstart.json", "--split", "dev"], "key 'split'"),
        ("ep_evaluate", ["--json_file", bad_json], "invalid JSON"),
        ("ep_predict", ["--help"], "exit 0"),
        ("ep_predict", ["--json_file", "args/ep_predict_arg.json", "--batch_size", "0"], "must be >= 1"),
        ("ep_predict", ["--json_file", missing], "does not exist"),
        ("ep_serve", ["--help"], "exit 0"),
        ("ep_serve", ["--json_file", "args/ep_serve_arg.json", "--port", "0"], "must be in [1, 65535]"),
        ("ep_serve", ["--json_file", "args/ep_serve_arg.json", "--max_batch_wait_ms", "fast"], "expected a number"),
        ("ep_serve", ["--json_file", "args/ep_serve_arg.json", "--log_level", "loud"], "key 'log_level'"),
        ("ep_serve", ["--json_file", missing], "does not exist"),
        ("ep_sweep", ["--help"], "exit 0"),
        ("ep_sweep", ["--json_file", sweep, "--sweep_count", "0"], "must be >= 1"),
        ("ep_sweep", ["--json_file", sweep, "--lora_rnk", "4"], "unknown key 'lora_rnk'"),
        ("ep_sweep", ["--json_file", str(tmp_path / "bad_sweep.json")], "did you mean 'lora_rank'?"),
        ("ep_sweep", ["--json_file", missing], "does not exist"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([case[:2] for case in cases])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for (script, argv, outcome, heavy, has_cli), (_, _, expected) in zip(report, cases, strict=True):
        assert expected in outcome, (script, argv, outcome)
        assert outcome.startswith(("exit 0", "error: ")), (script, argv, outcome)
        assert heavy == [], f"{script} {' '.join(argv)} imported {', '.join(heavy)}"
        assert has_cli, f"{script} has no cli()"
