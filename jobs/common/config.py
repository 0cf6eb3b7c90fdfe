"""Layered, validated configuration.

Layers, later wins: ``conf/default.yaml`` <- ``--conf FILE`` (repeatable) <- ``--set key.path=value``
(repeatable) <- ``${ENV}`` interpolation in string values. ``default.yaml`` doubles as the schema:
a key it does not have, or a value whose type differs from its default, is a :class:`ConfigError`
(exit 2) naming the key and the file it came from. Mappings listed in :data:`FREE_FORM` (Spark
settings) take any key.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from conf import CONF_DIR, DEFAULT_RESOURCE
from jobs.common.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_FILE = DEFAULT_RESOURCE
# The embedded local set-up (local[*], small shuffles); data folders' suggested runs layer over it.
LOCAL_FILE = CONF_DIR / "local.yaml"
FREE_FORM = frozenset({"spark.conf", "sequences.type_weights", "sequences.half_life_days", "sequences.verbs",
                       "rank.weights", "rank.half_life_grid"})
# Free-form mappings whose values stay strings however they look (Spark settings).
RAW_STRINGS = frozenset({"spark.conf"})
# Keys with a non-null default that also take null (meaning off).
NULLABLE = frozenset({"clean.bot_relative_factor"})
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_RE = re.compile(r"(password|secret|token|key)", re.IGNORECASE)


class Config(dict):
    """A nested ``dict`` with dotted-path access: ``cfg.get_path("clean.window_days")``."""

    def get_path(self, path: str) -> Any:
        """Return the value at a dotted path.

        Args:
            path: Dotted key path such as ``"lake.root"``.

        Raises:
            ConfigError: If the path does not exist.
        """
        node: Any = self
        walked = []
        for part in path.split("."):
            walked.append(part)
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"configuration key '{'.'.join(walked)}' does not exist")
            node = node[part]
        return node

    def section(self, path: str) -> dict:
        """Return a copy of the mapping at ``path`` (for passing plain values to transforms)."""
        value = self.get_path(path)
        if not isinstance(value, Mapping):
            raise ConfigError(f"configuration key '{path}' is not a mapping")
        return copy.deepcopy(dict(value))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist; pass an existing file to --conf")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _type_ok(default: Any, value: Any) -> bool:
    if default is None:
        # a null default marks an optional scalar (a run id, a master URL)
        return not isinstance(value, (dict, list))
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return isinstance(value, type(default))


def _merge(schema: dict, target: dict, layer: Mapping, source: str, prefix: str = "") -> None:
    """Merge ``layer`` into ``target``, checking every key and type against ``schema``."""
    for key, value in layer.items():
        key = str(key)
        path = f"{prefix}{key}"
        if prefix.rstrip(".") in FREE_FORM:
            target[key] = value
            continue
        if key not in schema:
            raise ConfigError(
                f"unknown configuration key '{path}' in {source}; "
                f"remove it or use one of: {', '.join(sorted(schema))}"
            )
        default = schema[key]
        if isinstance(default, dict) and path not in FREE_FORM:
            if not isinstance(value, Mapping):
                raise ConfigError(f"configuration key '{path}' in {source} must be a mapping, got {_type_name(value)}")
            _merge(default, target.setdefault(key, {}), value, source, f"{path}.")
            continue
        if not (_type_ok(default, value) or (value is None and path in NULLABLE)):
            raise ConfigError(
                f"configuration key '{path}' in {source} must be {_type_name(default)}"
                f" (like the default {json.dumps(default)}), got {_type_name(value)} {json.dumps(value, default=str)}"
            )
        if path in FREE_FORM:
            target.setdefault(key, {}).update(value)
        else:
            target[key] = float(value) if isinstance(default, float) and value is not None else value


def parse_override(text: str) -> dict:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML.

    Keys under a free-form mapping (``spark.conf.spark.sql.shuffle.partitions=8``) keep their dots.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like key.path=value")
    path, raw = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ConfigError(f"--set {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = path.split(".")
    for free in FREE_FORM:
        free_parts = free.split(".")
        if parts[: len(free_parts)] == free_parts and len(parts) > len(free_parts):
            parts = free_parts + [".".join(parts[len(free_parts):])]
            if free in RAW_STRINGS:
                value = raw
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _interpolate(node: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(node)]
    if isinstance(node, str):
        def repl(match: re.Match) -> str:
            name, fallback = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if fallback is not None:
                return fallback
            raise ConfigError(
                f"configuration key '{path}' uses ${{{name}}} but the environment variable {name} is not set; "
                f"export it or write ${{{name}:-fallback}}"
            )

        return _ENV_RE.sub(repl, node)
    return node


def load_config(
    conf_files: Iterable[str | os.PathLike] | None = None,
    overrides: Iterable[str] | None = None,
    values: Mapping | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective configuration.

    Args:
        conf_files: YAML files layered over the defaults, in order.
        overrides: ``key.path=value`` strings (the CLI's ``--set``).
        values: A nested mapping layered last (tests pass a dict).
        env: Environment for ``${VAR}`` interpolation; ``os.environ`` when None.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Unknown key, wrong type, unreadable file or missing environment variable.
    """
    schema = _read_yaml(DEFAULT_FILE)
    merged: dict = copy.deepcopy(schema)
    for conf_file in conf_files or []:
        path = Path(conf_file)
        _merge(schema, merged, _read_yaml(path), str(path))
    for text in overrides or []:
        _merge(schema, merged, parse_override(text), f"--set {text}")
    if values:
        _merge(schema, merged, values, "the values passed in")
    merged = _interpolate(merged, "", os.environ if env is None else env)
    return Config(merged)


def redacted(cfg: Mapping) -> dict:
    """A copy for logging, with values of secret-looking keys replaced by ``***``."""
    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v, str(k)) for k, v in node.items()}
        if key and _SECRET_RE.search(key) and isinstance(node, str):
            return "***"
        return node

    return walk(cfg)


def log_config(cfg: Mapping) -> None:
    """Log the resolved configuration once at the start of a job."""
    log.info("resolved configuration: %s", json.dumps(redacted(cfg), sort_keys=True, default=str))


def with_values(cfg: Mapping, values: Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted keys set, e.g. ``{"lake.root": "/tmp/x"}`` (no validation:
    for derived configurations built by the jobs themselves)."""
    out = Config(copy.deepcopy(dict(cfg)))
    for path, value in values.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out


# --------------------------------------------------------------------------- typed settings
# A stage reads its section once into a frozen dataclass of plain values (jobs/common/settings.py);
# each field names its dotted key and a check. A check returns None for a good value, otherwise
# what the value must be; the ConfigError then names the key, that requirement and the value.
Check = Callable[[Any], "str | None"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive(value: Any) -> str | None:
    """A number > 0."""
    return None if _is_number(value) and value > 0 else "a number > 0"


def non_negative(value: Any) -> str | None:
    """A number >= 0."""
    return None if _is_number(value) and value >= 0 else "a number >= 0"


def int_at_least(low: int) -> Check:
    """An integer >= ``low``."""
    return lambda value: None if _is_int(value) and value >= low else f"an integer >= {low}"


def int_or_null(low: int = 0) -> Check:
    """null, or an integer >= ``low``."""
    return lambda value: None if value is None or (_is_int(value) and value >= low) \
        else f"null or an integer >= {low}"


def number_or_null(value: Any) -> str | None:
    """null or a number."""
    return None if value is None or _is_number(value) else "null or a number"


def number_in(low: float, high: float, low_open: bool = False) -> Check:
    """A number in [low, high] (or (low, high] when ``low_open``)."""
    def check(value: Any) -> str | None:
        ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
        return None if ok else f"a number in {'(' if low_open else '['}{low}, {high}]"
    return check


def one_of(*choices: Any) -> Check:
    """One of ``choices``."""
    return lambda value: None if value in choices else f"one of {', '.join(map(str, choices))}"


def list_of(check: Check, non_empty: bool = False) -> Check:
    """A list whose every entry passes ``check`` (and holds something when ``non_empty``)."""
    def checked(value: Any) -> str | None:
        if not isinstance(value, list) or (non_empty and not value):
            return "a non-empty list" if non_empty else "a list"
        bad = [v for v in value if check(v) is not None]
        return f"a list of {check(bad[0])} ({bad[0]!r} is not)" if bad else None
    return checked


def text(value: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def map_of(check: Check) -> Check:
    """A mapping whose every value passes ``check``."""
    def checked(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return "a mapping"
        bad = [k for k, v in value.items() if check(v) is not None]
        return f"a mapping of {check(value[bad[0]])} (entry {bad[0]!r} is not)" if bad else None
    return checked


def anything(value: Any) -> str | None:
    """Any value (its type is already checked against conf/default.yaml)."""
    return None


def setting(key: str, check: Check = anything) -> Any:
    """A field of a settings class: read from dotted ``key``, validated with ``check``."""
    return dataclasses.field(metadata={"key": key, "check": check})


class Settings:
    """Base of the typed settings: ``Cls.from_config(cfg)`` reads and checks every field.

    A subclass (a frozen dataclass of :func:`setting` fields) may define ``validate(self)`` for
    checks across keys; it raises :class:`ConfigError` naming the keys.
    """

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Settings":
        values = {}
        for f in dataclasses.fields(cls):
            key, check = f.metadata["key"], f.metadata["check"]
            value = Config.get_path(cfg, key)          # any mapping: get_path only reads it
            problem = check(value)
            if problem is not None:
                raise ConfigError(f"{key} must be {problem}, got {json.dumps(value, default=str)}")
            values[f.name] = copy.deepcopy(value)
        out = cls(**values)
        out.validate()
        return out

    def validate(self) -> None:
        """Checks across keys (none by default)."""


# ------------------------------------------------------------------ suggested run configurations
def nested(dotted: Mapping[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    for path, value in dotted.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def write_run_conf(path: Path, dotted: Mapping[str, Any], note: str) -> Path:
    """Write the settings a data folder needs as a YAML configuration (checked against the
    defaults by loading it over the local configuration); returns its absolute path."""
    path = Path(path).resolve()
    text = "".join(f"# {line}\n" for line in note.splitlines()) + yaml.safe_dump(nested(dotted), sort_keys=True)
    path.write_text(text, encoding="utf-8")
    load_config([LOCAL_FILE, path])
    return path


def nightly_command(ds: str, conf: Path) -> str:
    """The nightly for a data folder on this machine: the local configuration, then the folder's."""
    return f"recjobs nightly --date {ds} --conf {shlex.quote(str(LOCAL_FILE))} --conf {shlex.quote(str(conf))}"
