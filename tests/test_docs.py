"""The generated reference pages stay in step with the code."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import pytest

from conftest import ROOT
from emotion_predictor import arguments


def load_generator(name: str):
    path = os.path.join(ROOT, "docs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["generate_configuration", "generate_modules"])
def test_generated_page_is_up_to_date(name):
    generator = load_generator(name)
    with open(generator.PAGE, encoding="utf-8") as handle:
        committed = handle.read()
    page = os.path.relpath(generator.PAGE, ROOT)
    assert committed == generator.render(), f"{page} is stale: run `uv run python -m docs.{name}`"


def test_configuration_page_has_a_row_for_every_key():
    text = load_generator("generate_configuration").render()
    classes = [
        c for c in vars(arguments).values() if dataclasses.is_dataclass(c) and c.__module__ == arguments.__name__
    ]
    assert len(classes) >= 5
    missing = [
        f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if f"| `{f.name}` |" not in text
    ]
    assert not missing, f"docs/configuration.md has no row for: {', '.join(missing)}"


def test_modules_page_has_a_row_for_every_module():
    text = load_generator("generate_modules").render()
    modules = [n for n in os.listdir(ROOT) if n.endswith(".py")]
    for folder, _, files in os.walk(os.path.join(ROOT, "emotion_predictor")):
        modules += [os.path.relpath(os.path.join(folder, n), ROOT) for n in files if n.endswith(".py")]
    assert len(modules) > 40
    assert not [m for m in modules if f"| `{m}` |" not in text]


def test_a_module_without_docstring_is_named(tmp_path, monkeypatch):
    generator = load_generator("generate_modules")
    (tmp_path / "bare.py").write_text("x = 1\n")
    monkeypatch.setattr(generator, "ROOT", str(tmp_path))
    with pytest.raises(ValueError, match=r"bare\.py has no module docstring"):
        generator.summary("bare.py")
