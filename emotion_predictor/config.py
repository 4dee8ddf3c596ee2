"""The one config path shared by every `ep_*.py` script (and the sweep).

A script declares its keys as typed dataclasses (each field with `help` metadata and, where a
value has limits, a `check`). Loading a config is three public steps, which `load_config`
composes and which a script with more structure (the sweep: its own keys, a base_config file and
fine-tuning keys) calls one by one:

- `parse_command_line`: `--help` (prints every key with its type, default and meaning, exits 0),
  `--json_file PATH`, the script's flags and the `--key value` overrides;
- `read_json_object`: the flat JSON file, with errors that name the file and position;
- `build_instances`: flat values -> one validated instance per dataclass, plus the keys of an
  optional pass-through class (for fine-tuning: any `transformers.TrainingArguments` field).

The pass-through class may be given by its dotted path; it is then imported only when the config
holds a key that is not ours, so `--help`, unknown keys (`check_key_names`, which reads the
class's field names from its source) and errors in our keys come before torch is imported.
`key_names` and `check_key_value` check one key's value against its declared type and limits
(the sweep's search space uses them for every value it may try).

Every problem is a `ConfigError` with one line that names the file, the key, the value and what
is allowed. This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

from emotion_predictor.errors import ConfigError

Check = Callable[[Any], str | None]
# A pass-through class: a dataclass whose every field not declared by the script's own classes is
# accepted with its type, given as the class or as its dotted path (imported only when needed).
Passthrough = type | str | None


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


def _read_cli_value(text: str) -> Any:
    """A command-line value: JSON when it parses (`true`, `3`, `["none"]`), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _coerce(value: Any, tp: Any) -> Any:
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
                return _coerce(value, arg)
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
        return [_coerce(item, item_type) for item in value]
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


def _validated(value: Any, tp: Any, check: Check | None, label: str) -> Any:
    """`value` coerced to `tp` and checked; otherwise a ConfigError "<label> <value>: <rule>"."""
    try:
        coerced = _coerce(value, tp)
    except ValueError as err:
        raise ConfigError(f"{label} {json.dumps(value)}: {err}") from None
    problem = check(coerced) if check else None
    if problem:
        raise ConfigError(f"{label} {json.dumps(value)}: {problem}")
    return coerced


@functools.cache
def resolved_fields(cls: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    """The dataclass's fields with their annotations resolved to real types."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


def default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return json.dumps(field.default)
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return json.dumps(field.default_factory())  # type: ignore[misc]
    return "required"


# ------------------------------------------------------------------------------------------------
# The pass-through class
# ------------------------------------------------------------------------------------------------


def passthrough_name(passthrough: Passthrough) -> str | None:
    """The pass-through class's name, for --help and messages (no import)."""
    if passthrough is None:
        return None
    return passthrough.rpartition(".")[2] if isinstance(passthrough, str) else passthrough.__name__


@functools.cache
def _import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def passthrough_class(passthrough: Passthrough) -> type | None:
    """The pass-through class itself (imported here when given by its dotted path)."""
    return _import_class(passthrough) if isinstance(passthrough, str) else passthrough


@functools.cache
def _field_names_from_source(path: str) -> frozenset[str] | None:
    """The field names of the dataclass at dotted `path` ("package.module.Class"), read from its
    source file without importing it (importing TrainingArguments imports torch: seconds), so that
    an unknown key is reported at once. None when the source cannot be read that way (then the
    class is imported); tests/test_config.py checks the names equal the imported class's fields."""
    import ast
    import importlib.util

    module, _, name = path.rpartition(".")
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations or not rest:
            return None
        source = os.path.join(list(spec.submodule_search_locations)[0], *rest) + ".py"
        with open(source, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, ImportError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name and not node.bases:  # no inherited fields
            return frozenset(
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and not any(word in ast.unparse(item.annotation) for word in ("ClassVar", "InitVar"))  # not fields
            )
    return None


def passthrough_keys(passthrough: Passthrough) -> frozenset[str]:
    """The pass-through class's key names, without importing it where its source can be read."""
    if passthrough is None:
        return frozenset()
    if isinstance(passthrough, str):
        names = _field_names_from_source(passthrough)
        if names is not None:
            return names
    return frozenset(f.name for f, _ in resolved_fields(passthrough_class(passthrough)))


# ------------------------------------------------------------------------------------------------
# One key's value
# ------------------------------------------------------------------------------------------------


def _owned_keys(classes: Sequence[type]) -> dict[str, tuple[type, dataclasses.Field, Any]]:
    return {f.name: (cls, f, tp) for cls in classes for f, tp in resolved_fields(cls)}


def key_names(classes: Sequence[type], passthrough: Passthrough = None) -> list[str]:
    """Every key a config may hold: the classes' fields, then the pass-through class's other fields."""
    owned = _owned_keys(classes)
    return [*owned, *sorted(passthrough_keys(passthrough) - set(owned))]


def check_key_value(
    name: str,
    value: Any,
    classes: Sequence[type],
    passthrough: Passthrough = None,
    label: str = "",
    type_only: bool = False,
) -> Any:
    """`value` for key `name` coerced to the key's declared type and, unless `type_only`, checked
    against its limits; otherwise a ConfigError "<label> <value>: <rule>". A key that is not one of
    the classes' fields is a pass-through key (the class is imported then); KeyError if it is neither."""
    owned = _owned_keys(classes)
    if name in owned:
        _, field, tp = owned[name]
        check = None if type_only else field.metadata.get("check")
    else:
        if name not in passthrough_keys(passthrough):
            raise KeyError(name)
        tp, check = {f.name: t for f, t in resolved_fields(passthrough_class(passthrough))}[name], None
    return _validated(value, tp, check, label or f"key {name!r} has value")


def check_key_names(
    values: dict[str, Any], classes: Sequence[type], source: str, cli_keys: set[str], passthrough: Passthrough = None
) -> None:
    """ConfigError for the first key of `values` that neither `classes` nor the pass-through class
    declares, with the closest known name (the pass-through class is not imported for this)."""
    owned = _owned_keys(classes)
    foreign = [name for name in values if name not in owned]
    if not foreign:
        return
    extra_names = passthrough_keys(passthrough) - set(owned)
    for name in foreign:
        if name not in extra_names:
            close = difflib.get_close_matches(name, [*owned, *sorted(extra_names)], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "; run with --help to list the keys"
            raise ConfigError(f"{'command line' if name in cli_keys else source}: unknown key {name!r}{hint}")


# ------------------------------------------------------------------------------------------------
# The steps: command line, JSON file, instances
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CommandLine:
    """What the command line holds: the config file, the `--key value` overrides (raw strings), the flags."""

    json_file: str | None
    overrides: dict[str, str]
    flags: dict[str, bool]

    @property
    def source(self) -> str:
        """Where the config's keys come from, as error messages name it."""
        return self.json_file or "command line"


def _help_parser(
    prog: str, description: str, classes: Sequence[type], flags: dict[str, str], passthrough_name: str | None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every key below can be set in the JSON file or overridden as --key value."
        + (f"\nAny other {passthrough_name} key is passed through as is." if passthrough_name else ""),
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


def _split_overrides(rest: list[str]) -> dict[str, str]:
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


def parse_command_line(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    classes: Sequence[type],
    flags: dict[str, str] | None = None,
    passthrough_name: str | None = None,
) -> CommandLine:
    """Read `--json_file`, the flags and the `--key value` overrides (argv default: sys.argv[1:]).

    `--help` prints every key of `classes` (and names the pass-through class, in text only) and
    exits 0. No config at all is a ConfigError. Values are checked later, by `build_instances`."""
    flags = flags or {}
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        _help_parser(prog, description, classes, flags, passthrough_name).print_help()
        raise SystemExit(0)
    known = argparse.ArgumentParser(add_help=False)
    known.add_argument("--json_file")
    for name in flags:
        known.add_argument(f"--{name}", action="store_true")
    namespace, rest = known.parse_known_args(argv)
    if not namespace.json_file and not rest:
        raise ConfigError(f"no config given; run {prog or 'the script'} --json_file args/<name>.json")
    flag_values = {name: bool(getattr(namespace, name)) for name in flags}
    return CommandLine(namespace.json_file, _split_overrides(rest), flag_values)


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


def build_instances(
    values: dict[str, Any],
    classes: Sequence[type],
    source: str,
    cli_keys: set[str],
    passthrough: Passthrough = None,
) -> tuple[list[Any], dict[str, Any]]:
    """Validate flat `values` against `classes`; return the instances and the pass-through keys.

    Values of `cli_keys` are command-line strings (JSON when they parse). Our keys are checked
    first; the pass-through class is imported only when `values` holds a key that is not ours."""
    owned = _owned_keys(classes)
    foreign = [name for name in values if name not in owned]
    check_key_names(values, classes, source, cli_keys, passthrough)

    def given(name: str) -> Any:
        return _read_cli_value(values[name]) if name in cli_keys else values[name]

    def label(name: str) -> str:
        return f"{'command line' if name in cli_keys else source}: key {name!r} has value"

    kwargs: dict[type, dict[str, Any]] = {cls: {} for cls in classes}
    for name in values:
        if name in owned:
            cls, field, tp = owned[name]
            kwargs[cls][name] = _validated(given(name), tp, field.metadata.get("check"), label(name))
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
    extra = {name: check_key_value(name, given(name), classes, passthrough, label(name)) for name in foreign}
    for name, (cls, field, _) in owned.items():
        original = field.metadata.get("replaces")
        # Both names given: one of them would be silently ignored, so differing values are an error.
        if original in extra and name in kwargs[cls] and extra[original] != kwargs[cls][name]:
            sources = {k: "command line" if k in cli_keys else source for k in (name, original)}
            shown = {k: json.dumps(given(k)) for k in (name, original)}
            raise ConfigError(
                f"{sources[name]}: key {name!r} has value {shown[name]} but {original!r} "
                f"({sources[original]}) has {shown[original]}; {name!r} is this project's name for "
                f"{passthrough_name(passthrough)}' {original!r}, so give only {name!r}"
            )
    return instances, extra


def load_config(
    classes: Sequence[type],
    argv: Sequence[str] | None = None,
    prog: str = "",
    description: str = "",
    flags: dict[str, str] | None = None,
    passthrough: Passthrough = None,
) -> tuple[list[Any], dict[str, Any], dict[str, bool]]:
    """The three steps: parse the command line, read the JSON file, validate; returns
    (instances, pass-through keys, flag values)."""
    command = parse_command_line(argv, prog, description, classes, flags, passthrough_name(passthrough))
    values = read_json_object(command.json_file) if command.json_file else {}
    values.update(command.overrides)
    instances, extra = build_instances(values, classes, command.source, set(command.overrides), passthrough)
    return instances, extra, command.flags
