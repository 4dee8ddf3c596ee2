"""User-facing errors and the wrapper that turns them into one line and an exit code.

Every bad input (config, data, model folder) raises `UserError` with a message that says what is
wrong, where, and how to fix it. Entry scripts run their `main` through `run_main`, which prints
that message as a single `error: ...` line on stderr and exits non-zero instead of showing a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def first_line(err: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty)."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    return f"{type(err).__name__}: {lines[0]}" if with_type else lines[0]


class UserError(Exception):
    """A problem with the user's input; its message is shown as is, without a traceback."""

    exit_code = 1


class ConfigError(UserError):
    """A problem with a JSON config file or a command-line override."""

    exit_code = 2


def run_main(main: Callable[[], int | None]) -> None:
    """Run an entry script's `main`, turning `UserError` and Ctrl-C into one line and an exit code."""
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); finished outputs were kept", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
