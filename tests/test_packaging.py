"""The project is an installable package: the wheel holds the `emotion_predictor` package, its
`.dist-info` and nothing else at the top level (no generic `config`, `utils`, ... modules next to an
application's own), with the `ep-*` commands; `from emotion_predictor import EmotionPredictor`
works from any folder without PYTHONPATH. The root's thin `ep_*.py` scripts, tests/, bench/,
docs/, args/, examples/ and runs/ are not part of it.
"""

from __future__ import annotations

import configparser
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

PACKAGE = "emotion_predictor"
CONSOLE_SCRIPTS = {
    "ep-fine-tune": f"{PACKAGE}.cli.fine_tune:cli",
    "ep-evaluate": f"{PACKAGE}.cli.evaluate:cli",
    "ep-predict": f"{PACKAGE}.cli.predict:cli",
    "ep-sweep": f"{PACKAGE}.cli.sweep:cli",
    "ep-serve": f"{PACKAGE}.cli.serve:cli",
    "ep-export-onnx": f"{PACKAGE}.cli.export_onnx:cli",
}
LEFT_OUT = ("tests/", "bench/", "docs/", "args/", "examples/", "runs/")
IMPORT_CHECK = (
    "import os, emotion_predictor\n"
    "from emotion_predictor import EmotionPredictor\n"
    "from emotion_predictor.prediction.predict_io import converse, predict_jsonl\n"
    "print(os.path.realpath(emotion_predictor.__file__))\n"
)


def uv() -> str:
    path = shutil.which("uv")
    if path is None:
        pytest.skip("uv is not on PATH")
    return path


def project_files() -> list[str]:
    """The package's modules, as wheel paths."""
    package = glob.glob(os.path.join(ROOT, PACKAGE, "**", "*.py"), recursive=True)
    return sorted(os.path.relpath(path, ROOT).replace(os.sep, "/") for path in package)


def env_without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [uv(), "build", "--wheel", "--out-dir", str(out), ROOT], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = glob.glob(str(out / "*.whl"))
    return path


def test_wheel_holds_the_package_alone_and_the_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode("utf-8"))

    expected = project_files()
    assert f"{PACKAGE}/prediction/predictor.py" in expected and f"{PACKAGE}/modeling/mean_pooling.py" in expected
    missing = [name for name in expected if name not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith(LEFT_OUT)]
    assert {n.split("/")[0] for n in names} == {PACKAGE, next(n for n in names if ".dist-info/" in n).split("/")[0]}
    modules = [n for n in names if ".dist-info/" not in n]
    assert sorted(modules) == sorted(expected), "the wheel holds files that are not package modules"
    assert dict(parser["console_scripts"]) == CONSOLE_SCRIPTS


def test_console_scripts_name_functions_that_exist():
    import importlib

    for target in CONSOLE_SCRIPTS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function, None)), f"{target} does not exist"


def imported_predictor_file(python: str, cwd) -> str:
    """Where `python`, started in `cwd` without PYTHONPATH, finds `predictor` (after IMPORT_CHECK)."""
    done = subprocess.run(
        [python, "-c", IMPORT_CHECK],
        cwd=str(cwd),
        env=env_without_pythonpath(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_import_predictor_from_another_folder_without_pythonpath(tmp_path):
    """The project environment (`uv sync` installs the project) imports it from anywhere."""
    assert imported_predictor_file(sys.executable, tmp_path) == os.path.realpath(
        os.path.join(ROOT, PACKAGE, "__init__.py")
    )


@pytest.fixture(scope="module")
def base_install(wheel, tmp_path_factory) -> str:
    """A fresh environment with the wheel and its base dependencies only (no extra), pinned to the
    lock's versions so that uv takes them from its cache; its python."""
    folder = tmp_path_factory.mktemp("base_install")
    constraints = folder / "constraints.txt"
    subprocess.run(
        [uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet", "-o", str(constraints)],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    venv = folder / "venv"
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv(), "pip", "install", "--quiet", "--python", python, "-c", str(constraints), wheel], check=True, timeout=900
    )
    return python


def run_in(python: str, code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", code], cwd=str(cwd), env=env_without_pythonpath(), capture_output=True, text=True, timeout=300
    )


def test_base_install_forecasts_and_holds_no_training_library(base_install, tiny_run_dir, tmp_path):
    """The wheel with its base dependencies alone: its own copy of the package is imported, the
    ep-* commands are there, EmotionPredictor forecasts as in the full environment (on torch and
    on ONNX Runtime), and no flat module (`config`) or training library is importable."""
    from emotion_predictor import EmotionPredictor

    venv_bin = os.path.dirname(base_install)
    site = run_in(base_install, "import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp_path).stdout.strip()
    assert imported_predictor_file(base_install, tmp_path) == os.path.realpath(
        os.path.join(site, PACKAGE, "__init__.py")
    )
    for command in CONSOLE_SCRIPTS:
        assert os.access(os.path.join(venv_bin, command), os.X_OK), f"{command} was not installed"

    history = ["hello how are you", "i lost my keys"]
    code = (
        "import json; from emotion_predictor import EmotionPredictor\n"
        "for runtime in ('torch', 'onnx'):\n"
        f"    predictor = EmotionPredictor.from_pretrained({tiny_run_dir!r}, device='cpu', runtime=runtime)\n"
        f"    print(json.dumps(predictor.predict({history!r}).to_dict()))"
    )
    done = run_in(base_install, code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = EmotionPredictor.from_pretrained(tiny_run_dir, device="cpu").predict(history)
    for line in done.stdout.strip().splitlines()[-2:]:
        got = json.loads(line)
        assert got["label"] == expected.label
        assert got["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)

    for module in ("config", "utils", "predictor", "peft", "datasets", "pandas", "optuna", "wandb", "bitsandbytes"):
        missing = run_in(base_install, f"import {module}", tmp_path)
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, f"{module} is importable"


def test_base_install_names_the_extra_a_command_needs(base_install, tmp_path):
    venv_bin = os.path.dirname(base_install)
    quickstart = os.path.join(ROOT, "args", "quickstart.json")
    commands = (("ep-fine-tune", "train"), ("ep-evaluate", "train"), ("ep-sweep", "sweep"), ("ep-export-onnx", "train"))
    for command, extra in commands:
        done = subprocess.run(
            [os.path.join(venv_bin, command), "--json_file", quickstart],
            cwd=str(tmp_path),
            env=env_without_pythonpath(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {command} needs the [{extra}] extra"), lines
        assert f"pip install 'emotion-predictor[{extra}]'" in lines[0]
