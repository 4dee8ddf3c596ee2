"""The generated reference pages stay in step with the code."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import pytest

import arguments
from conftest import ROOT


def load_generator():
    path = os.path.join(ROOT, "docs", "generate_configuration.py")
    spec = importlib.util.spec_from_file_location("generate_configuration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_matches_the_dataclasses():
    generator = load_generator()
    with open(generator.PAGE, encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == generator.render(), (
        "docs/configuration.md is stale: run `uv run python -m docs.generate_configuration`"
    )


def test_configuration_page_has_a_row_for_every_key():
    text = load_generator().render()
    classes = [c for c in vars(arguments).values() if dataclasses.is_dataclass(c) and c.__module__ == "arguments"]
    assert len(classes) >= 5
    missing = [
        f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if f"| `{f.name}` |" not in text
    ]
    assert not missing, f"docs/configuration.md has no row for: {', '.join(missing)}"


def load_modules_generator():
    path = os.path.join(ROOT, "docs", "generate_modules.py")
    spec = importlib.util.spec_from_file_location("generate_modules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_modules_page_matches_the_docstrings():
    generator = load_modules_generator()
    with open(generator.PAGE, encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == generator.render(), "docs/modules.md is stale: run `uv run python -m docs.generate_modules`"


def test_modules_page_has_a_row_for_every_module():
    text = load_modules_generator().render()
    modules = [n for n in os.listdir(ROOT) if n.endswith(".py")]
    modules += [os.path.join("sweep", n) for n in os.listdir(os.path.join(ROOT, "sweep")) if n.endswith(".py")]
    assert len(modules) > 30
    assert not [m for m in modules if f"| `{m}` |" not in text]


def test_a_module_without_docstring_is_named(tmp_path, monkeypatch):
    generator = load_modules_generator()
    (tmp_path / "bare.py").write_text("x = 1\n")
    monkeypatch.setattr(generator, "ROOT", str(tmp_path))
    with pytest.raises(ValueError, match=r"bare\.py has no module docstring"):
        generator.summary("bare.py")
