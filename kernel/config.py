"""One config loader for both daemons: TOML file, then environment, then command-line flags.

Theory of operation. A daemon's config is one frozen dataclass whose fields are the TOML keys;
the comment lines right above a field are its documentation (``example_toml`` renders them into
the example file, so the example cannot drift from the code). ``load_config`` reads the TOML file
(if any), applies ``<prefix><FIELD>`` environment variables (upper case; list fields take a
comma-separated value), then the command-line overrides that are not None, and checks every value
against its field's annotation before the dataclass is built, so a wrong type is reported as
``port: expected an integer, got the string '8080'`` rather than as a crash deep inside.
Fields listed in ``tables`` (such as the frontend's ``[keys]``) are handed to a parser of the
daemon's own.

``production_problems`` holds the rules shared by both daemons for what must not run outside dev
mode: a built-in, placeholder or short secret, a wildcard address that would be advertised to
other members, and the admin surfaces (dashboard, cluster map, metrics) on a public port with no
token. Each problem says what to do instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The cluster secret a config gets when it names none: accepted in dev mode only.
DEV_CLUSTER_SECRET = "dev-cluster-secret-not-for-production"
# Secrets (cluster, API keys) are at least this long outside dev mode.
MIN_SECRET_BYTES = 16
# Both daemons join gossip with this timing profile unless told otherwise.
GOSSIP_PROFILES = ("local", "lan", "wan")
DEFAULT_GOSSIP_PROFILE = "lan"
# Text that marks a secret as an example or placeholder (compared case-insensitively).
_PLACEHOLDER_MARKS = ("replace-me", "replace-with", "change-me", "changeme", "not-for-production",
                      "do-not-use-in-production", "example-secret")
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what it must be."""


# --- small checks shared by both dataclasses ------------------------------------------------------


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")


def check_name(name: str, value: str) -> None:
    if not value or len(value) > 32 or not all(c.isalnum() or c in "_-" for c in value):
        raise ConfigError(f"{name}={value!r} must match [A-Za-z0-9_-]{{1,32}}")


def check_gossip_profile(value: str) -> None:
    if value not in GOSSIP_PROFILES:
        raise ConfigError(f"gossip_profile={value!r} must be one of {', '.join(GOSSIP_PROFILES)}")


def parse_hostport(text: str, *, name: str, allow_zero: bool) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) → ``(host, port)``; raise ConfigError naming ``name``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"{name}={text!r} must look like host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{name}={text!r}: port is out of range [{low}, 65535]")
    return host, port


def is_wildcard(host: str) -> bool:
    return host.strip() in _WILDCARDS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- what must not run outside dev mode -----------------------------------------------------------


def secret_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not a production secret for ``name``, with what to do; None if it is fine."""
    fix = f"set {name} to a random value, e.g. $(openssl rand -base64 32)"
    if value == DEV_CLUSTER_SECRET:
        return f"{name} is the built-in development secret: {fix}"
    lowered = value.lower()
    if any(mark in lowered for mark in _PLACEHOLDER_MARKS):
        return f"{name} is a placeholder or example value ({value[:24]!r}...): {fix}"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes: {fix}"
    return None


def wildcard_problem(name: str, host: str, fix: str) -> str | None:
    if is_wildcard(host):
        return f"{name}={host!r} is a wildcard address that other members cannot reach: {fix}"
    return None


def admin_problem(*, host: str, admin_port: int | None, admin_token: str | None) -> str | None:
    """The admin surfaces on the client port, which listens beyond this machine, with no token."""
    if admin_port is None and not admin_token and not is_loopback(host):
        return (f"the admin surfaces (/dashboard, /cluster, /metrics, /admin) would be served without "
                f"auth on the client port, which listens on {host!r}: set admin_port (a separate "
                f"listener on admin_host, 127.0.0.1 by default) and/or admin_token (a bearer token)")
    return None


def refuse(problems: Iterable[str | None], *, dev: bool) -> None:
    """Raise one ConfigError listing every problem, unless in dev mode or there is none."""
    found = [p for p in problems if p]
    if found and not dev:
        raise ConfigError("refusing an unsafe config outside dev mode (--dev allows it for local use):\n  - "
                          + "\n  - ".join(found))


# --- loading ---------------------------------------------------------------------------------------


def _describe(kind: Any) -> str:
    """A reader's name for an annotation: 'an integer', 'a list of strings', ..."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        parts = [a for a in typing.get_args(kind) if a is not type(None)]
        return " or ".join(_describe(a) for a in parts)
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(kind)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a table"
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def _got(value: Any) -> str:
    kinds = {bool: "the boolean", int: "the integer", float: "the number", str: "the string",
             list: "the list", dict: "the table"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"


def _accepts(kind: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from TOML or a coerced env string) fits ``kind``, and the value to use."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(kind):
            return True, None
        for arg in typing.get_args(kind):
            if arg is not type(None):
                ok, out = _accepts(arg, value)
                if ok:
                    return True, out
        return False, value
    if origin in (tuple, list):
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            return False, value
        checked = [_accepts(item, v) for v in value]
        if not all(ok for ok, _ in checked):
            return False, value
        return True, tuple(v for _, v in checked)
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    return True, value


def _from_env(name: str, text: str, kind: Any, variable: str) -> Any:
    """An environment string turned into the field's type (lists are comma-separated)."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    if origin in (tuple, list):
        return [v.strip() for v in text.split(",") if v.strip()]
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes", "on")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{variable}={text!r}: {name} expects {_describe(kind)}") from None
    return text


def config_fields(cls: type) -> dict[str, Any]:
    """Field name → resolved annotation of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def load_config(
    cls: Callable[..., T],
    path: str | Path | None,
    *,
    env_prefix: str,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    tables: Mapping[str, Callable[[Any], Any]] | None = None,
) -> T:
    """Build ``cls`` from ``path`` (TOML, optional), ``<env_prefix><FIELD>`` variables and
    ``overrides`` (None values ignored), in that order of precedence (last wins). ``tables`` maps a
    field to the parser of its raw TOML value (no env override). Raise ConfigError naming the key
    (or OSError if the file cannot be read)."""
    assert isinstance(cls, type)
    fields = config_fields(cls)
    tables = tables or {}
    raw: dict[str, Any] = {}
    source: dict[str, str] = {}
    if path is not None:
        with open(path, "rb") as fh:
            try:
                raw = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        source = {k: f"in {path}" for k in raw}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)} (in {path}; every key is listed in "
                          f"the deploy/*.example.toml files)")
    environ: Mapping[str, str] = os.environ if env is None else env
    for name, kind in fields.items():
        variable = f"{env_prefix}{name.upper()}"
        if name not in tables and variable in environ:
            raw[name] = _from_env(name, environ[variable], kind, variable)
            source[name] = f"from {variable}"
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = value
            source[name] = "from the command line"
    return build_config(cls, raw, tables=tables, source=source)


def build_config(
    cls: Callable[..., T],
    raw: Mapping[str, Any],
    *,
    tables: Mapping[str, Callable[[Any], Any]] | None = None,
    source: Mapping[str, str] | None = None,
) -> T:
    """``cls(**raw)`` after checking each value against its annotation (see ``load_config``)."""
    assert isinstance(cls, type)
    fields = config_fields(cls)
    tables = tables or {}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in tables:
            values[name] = tables[name](value)
            continue
        ok, converted = _accepts(fields[name], value)
        if not ok:
            where = f" ({(source or {}).get(name)})" if (source or {}).get(name) else ""
            raise ConfigError(f"{name}: expected {_describe(fields[name])}, got {_got(value)}{where}")
        values[name] = converted
    return cls(**values)


# --- the example files ----------------------------------------------------------------------------


def _field_comments(cls: type) -> dict[str, list[str]]:
    """The ``#`` comment lines written right above each field in the class body."""
    comments: dict[str, list[str]] = {}
    pending: list[str] = []
    names = {f.name for f in dataclasses.fields(cls)}
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0]
        if name in names and ":" in stripped:
            comments[name] = pending
        pending = []
    return comments


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def example_toml(cls: type, *, header: str, examples: Mapping[str, Any], skip: Iterable[str] = (),
                 trailer: str = "") -> str:
    """The example file of ``cls``: every field with its comments and its default. ``examples``
    replaces a default by an example value (marked so); a None default is written commented out."""
    comments = _field_comments(cls)
    out = [header.rstrip("\n"), ""]
    skipped = set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skipped:
            continue
        out.extend(f"# {c}" if c else "#" for c in comments.get(f.name, []))
        if f.name in examples:
            out.append(f"{f.name} = {toml_value(examples[f.name])}  # example value, not the default")
        elif f.default is None:
            out.append(f"# {f.name}: unset by default")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            out.append(f"{f.name} = {toml_value(default)}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n" + (("\n" + trailer.rstrip("\n") + "\n") if trailer else "")
