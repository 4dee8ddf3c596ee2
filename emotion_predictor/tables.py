"""The tables that reports, benchmarks and generated docs print: one markdown renderer and one
plain-text renderer, so every table of a kind has the same layout.

    markdown_table(["model", "Accuracy"], [["tf-idf", "0.713"]], align="lr")
    # | model | Accuracy |
    # |---|---:|
    # | tf-idf | 0.713 |

Cells are written as given (`str()` of each); formatting numbers and escaping a `|` inside a
markdown cell is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub markdown table, ending in a newline. `align` has one letter per column: "r" right-
    aligns it (numbers), "l" or a missing letter leaves it left-aligned."""
    width = len(header)
    if any(letter not in "lr" for letter in align) or len(align) > width:
        raise ValueError(f"align {align!r} must be at most {width} letters 'l' or 'r'")
    rule = "|" + "|".join("---:" if align[i : i + 1] == "r" else "---" for i in range(width)) + "|"
    lines = [markdown_row(header, width), rule]
    lines += [markdown_row(row, width) for row in rows]
    return "\n".join(lines) + "\n"


def markdown_row(cells: Sequence[object], width: int) -> str:
    if len(cells) != width:
        raise ValueError(f"a table row has {len(cells)} cells, the header {width}: {list(cells)!r}")
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def text_table(rows: Iterable[Sequence[object]], widths: Sequence[int]) -> str:
    """A fixed-width plain-text table (first row = header), without a trailing newline: the first
    column left-aligned in `widths[0]` characters, the others right-aligned in theirs. A longer
    cell is not cut; it pushes the rest of its line right."""
    lines = []
    for row in rows:
        if len(row) != len(widths):
            raise ValueError(f"a table row has {len(row)} cells for {len(widths)} widths: {list(row)!r}")
        first, *rest = (str(cell) for cell in row)
        lines.append(first.ljust(widths[0]) + "".join(cell.rjust(w) for cell, w in zip(rest, widths[1:])))
    return "\n".join(lines)
