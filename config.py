"""The one config loader shared by every `ep_*.py` script.

A script declares its keys as typed dataclasses (each field with `help` metadata and, where a
value has limits, a `check`). `load_config` reads the flat JSON file named by `--json_file`,
applies `--key value` overrides from the command line, and returns one instance per dataclass.
Keys that belong to an optional pass-through class (for fine-tuning: any
`transformers.TrainingArguments` field) are returned in a separate dict.

Every problem is a `ConfigError` with one line that names the file, the key, the value and what
is allowed; `--help` lists every key with its type, default and meaning.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

from errors import ConfigError

Check = Callable[[Any], str | None]


def key(
    default: Any = dataclasses.MISSING,
    help: str = "",
    check: Check | None = None,
    replaces: str | None = None,
    **kwargs: Any,
) -> Any:
    """A dataclass field with help text, an optional value check (returns an error or None) and,
    for a key that is our name for a pass-through key, the name it `replaces`."""
    if isinstance(default, (list, dict)):
        value = default
        kwargs["default_factory"] = lambda: type(value)(value)
        default = dataclasses.MISSING
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "replaces": replaces}, **kwargs)


def in_range(low: float | None = None, high: float | None = None, low_open: bool = False) -> Check:
    """Check that a number lies in [low, high] (or (low, high] with `low_open`)."""
    left = "(" if low_open else "["

    def check(value: Any) -> str | None:
        if value is None:
            return None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            if high is None:
                return f"must be {'>' if low_open else '>='} {low}"
            return f"must be in {left}{low}, {high}]"
        return None

    return check


def existing_path(value: Any) -> str | None:
    """Check that a local path exists."""
    if value is not None and not os.path.exists(os.path.expanduser(value)):
        return "no such file or folder"
    return None


def type_name(tp: Any) -> str:
    """A readable name for a field type, as shown by --help and in error messages."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{type_name(typing.get_args(tp)[0])}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def read_cli_value(text: str) -> Any:
    """A command-line value: JSON when it parses (`true`, `3`, `["none"]`), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def coerce(value: Any, tp: Any) -> Any:
    """Convert `value` to type `tp` or raise ValueError saying what is allowed."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except ValueError:
                continue
        raise ValueError(f"expected {type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed if a == value):
            raise ValueError(f"expected one of {', '.join(json.dumps(a) for a in allowed)}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, str) and item_type is str:
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected {type_name(tp)}")
        return [coerce(item, item_type) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError("expected an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    if tp is Any or tp is dict or origin is dict:
        return value
    raise ValueError(f"unsupported type {type_name(tp)}")


def validated(value: Any, tp: Any, check: Check | None, label: str) -> Any:
    """`value` coerced to `tp` and checked; otherwise a ConfigError "<label> <value>: <rule>"."""
    try:
        coerced = coerce(value, tp)
    except ValueError as err:
        raise ConfigError(f"{label} {json.dumps(value)}: {err}") from None
    problem = check(coerced) if check else None
    if problem:
        raise ConfigError(f"{label} {json.dumps(value)}: {problem}")
    return coerced


def resolved_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass's fields with their annotations resolved to real types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return json.dumps(field.default)
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return json.dumps(field.default_factory())  # type: ignore[misc]
    return "required"


def build_parser(
    prog: str, description: str, classes: Sequence[type], flags: dict[str, str], passthrough: type | None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every key below can be set in the JSON file or overridden as --key value."
        + (f"\nAny other {passthrough.__name__} key is passed through as is." if passthrough else ""),
    )
    parser.add_argument("--json_file", metavar="PATH", help="the JSON config file (flat keys)")
    for name, help_text in flags.items():
        parser.add_argument(f"--{name}", action="store_true", help=help_text)
    for cls in classes:
        group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
        for field, tp in resolved_fields(cls):
            group.add_argument(
                f"--{field.name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=f"({type_name(tp)}, default {default_text(field)}) {field.metadata.get('help', '')}".replace(
                    "%", "%%"
                ),
            )
    return parser


def read_json_object(path: str) -> dict[str, Any]:
    """Read a JSON file that must hold one object, with errors that name the file and position."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass an existing file to --json_file")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the config as UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f'{path} is empty; a config is a JSON object of keys and values, e.g. {{"dataset": "..."}}')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a JSON object of keys and values, not {type(data).__name__}")
    return data


def split_cli_overrides(rest: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected command-line argument {token!r}; overrides are written --key value")
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise ConfigError(f"command-line override --{name} has no value; write --{name} VALUE")
            value = rest[i + 1]
            i += 1
        overrides[name] = value
        i += 1
    return overrides


def passthrough_types(passthrough: type | None) -> dict[str, Any]:
    if passthrough is None:
        return {}
    return {f.name: tp for f, tp in resolved_fields(passthrough)}


def build_instances(
    values: dict[str, Any],
    classes: Sequence[type],
    source: str,
    cli_keys: set[str],
    passthrough: type | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """Validate flat `values` against `classes`; return the instances and the pass-through keys."""
    owned = {f.name: (cls, f, tp) for cls in classes for f, tp in resolved_fields(cls)}
    extra_types = {name: tp for name, tp in passthrough_types(passthrough).items() if name not in owned}
    kwargs: dict[type, dict[str, Any]] = {cls: {} for cls in classes}
    extra: dict[str, Any] = {}
    for name, value in values.items():
        where = "command line" if name in cli_keys else source
        if name in owned:
            cls, field, tp = owned[name]
            target, checker = kwargs[cls], field.metadata.get("check")
        elif name in extra_types:
            tp, target, checker = extra_types[name], extra, None
        else:
            close = difflib.get_close_matches(name, [*owned, *extra_types], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "; run with --help to list the keys"
            raise ConfigError(f"{where}: unknown key {name!r}{hint}")
        given = read_cli_value(value) if name in cli_keys else value
        target[name] = validated(given, tp, checker, f"{where}: key {name!r} has value")
    for name, (cls, field, _) in owned.items():
        original = field.metadata.get("replaces")
        # Both names given: one of them would be silently ignored, so differing values are an error.
        if original in extra and name in kwargs[cls] and extra[original] != kwargs[cls][name]:
            sources = {k: "command line" if k in cli_keys else source for k in (name, original)}
            given = {k: json.dumps(read_cli_value(values[k]) if k in cli_keys else values[k]) for k in (name, original)}
            raise ConfigError(
                f"{sources[name]}: key {name!r} has value {given[name]} but {original!r} "
                f"({sources[original]}) has {given[original]}; {name!r} is this project's name for "
                f"TrainingArguments' {original!r}, so give only {name!r}"
            )
    instances = []
    for cls in classes:
        missing = [
            f.name
            for f, _ in resolved_fields(cls)
            if f.name not in kwargs[cls]
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        ]
        if missing:
            raise ConfigError(f"{source}: missing required key {missing[0]!r}; run with --help to see what it means")
        try:
            instances.append(cls(**kwargs[cls]))
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from None
    return instances, extra


def load_config(
    classes: Sequence[type],
    argv: Sequence[str] | None = None,
    prog: str = "",
    description: str = "",
    flags: dict[str, str] | None = None,
    passthrough: type | None = None,
) -> tuple[list[Any], dict[str, Any], dict[str, bool]]:
    """Parse `--json_file` plus overrides; return (instances, pass-through keys, flag values)."""
    flags = flags or {}
    parser = build_parser(prog, description, classes, flags, passthrough)
    known, rest = argparse.ArgumentParser(add_help=False), None
    known.add_argument("--json_file")
    for name in flags:
        known.add_argument(f"--{name}", action="store_true")
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    namespace, rest = known.parse_known_args(list(argv))
    values: dict[str, Any] = {}
    source = "command line"
    if namespace.json_file:
        source = namespace.json_file
        values.update(read_json_object(namespace.json_file))
    elif not rest:
        raise ConfigError(f"no config given; run {prog or 'the script'} --json_file args/<name>.json")
    overrides = split_cli_overrides(rest)
    values.update(overrides)
    instances, extra = build_instances(values, classes, source, set(overrides), passthrough)
    return instances, extra, {name: bool(getattr(namespace, name)) for name in flags}
