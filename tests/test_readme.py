"""README.md stays true: its two commands (the key reference is docs/configuration.md, tests/test_docs.py)."""

from __future__ import annotations

import os

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
