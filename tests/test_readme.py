"""README.md stays true: its two commands, and every config key of every script."""

from __future__ import annotations

import dataclasses
import os

import arguments
from conftest import ROOT


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def test_readme_opens_with_the_main_job_and_the_test_command():
    text = readme()
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "uv run python ep_fine_tune.py --json_file args/quickstart.json" in first_block
    assert "uv run pytest -q" in first_block
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        assert "\nuv run pytest -q\n" in handle.read()


def test_every_config_key_is_documented():
    text = readme()
    classes = [c for c in vars(arguments).values() if dataclasses.is_dataclass(c) and c.__module__ == "arguments"]
    assert len(classes) >= 5
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if f"| `{f.name}` |" not in text]
    assert not missing, f"README has no table row for: {', '.join(missing)}"
