"""How the studies run their rows: each finished row is a result file of its own, so a study that
is stopped (a session ends every process after at most 3 hours) resumes where it was."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from emotion_predictor.output_files import write_text


def run_rows(
    names: Sequence[str],
    result_path: Callable[[str], str],
    run: Callable[[str], None],
    report: Callable[[], str],
    page: str,
) -> None:
    """Run each row whose result file is missing, rewriting the report `page` after each; then
    write and print the report."""
    for name in names:
        if os.path.isfile(result_path(name)):
            print(f"{name}: done, skipped ({result_path(name)})")
            continue
        run(name)
        write_text(page, report())
    text = report()
    write_text(page, text)
    print(text)


def finished_rows(names: Sequence[str], result_path: Callable[[str], str]) -> dict[str, Any]:
    """The result of every row of `names` that has finished, by name, in that order."""
    results = {}
    for name in names:
        if os.path.isfile(result_path(name)):
            with open(result_path(name), encoding="utf-8") as handle:
                results[name] = json.load(handle)
    return results
