"""The generated reference pages stay in step with the code."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

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
