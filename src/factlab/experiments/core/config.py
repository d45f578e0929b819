"""Experiment configs: frozen dataclasses read from and written to TOML or JSON, and hashed.

Every paper package declares its config as a tree of frozen dataclasses whose defaults are
the paper's (or, where the paper is silent, ours, said so in the field's comment). This
module turns such a tree into a dict and back, with checks that name the file, the key and
the value at fault, writes it as TOML, and hashes it: the hash names everything results
depend on, and a store refuses to be resumed under a config of another hash.

Two kinds of field stay out of the hash, marked in the field's metadata:

- :data:`RUN_ONLY`: how to run, not what (threads, shard sizes, device); results do not
  depend on it.
- :data:`OMIT_AT_DEFAULT`: a field added after stores were written; it enters the hash only
  when it differs from its default, so an old store keeps its hash and can be resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path

from factlab.errors import ConfigError

RUN_ONLY = {"run_only": True}
OMIT_AT_DEFAULT = {"omit_at_default": True}


def config_dict(config, *, for_hash: bool = False) -> dict:
    """The config as nested dicts (tuples as lists). ``for_hash`` leaves out :data:`RUN_ONLY`
    fields, and :data:`OMIT_AT_DEFAULT` fields at their default."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if for_hash and f.metadata.get("run_only"):
            continue
        if for_hash and f.metadata.get("omit_at_default") and value == _default(f):
            continue
        out[f.name] = _plain(value, for_hash)
    return out


def _plain(value, for_hash: bool):
    if dataclasses.is_dataclass(value):
        d = config_dict(value, for_hash=for_hash)
        kind = getattr(type(value), "kind", None)      # a tagged union member (an optimizer)
        return {"kind": kind, **d} if isinstance(kind, str) else d
    if isinstance(value, (list, tuple)):
        return [_plain(v, for_hash) for v in value]
    return value


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def stable_key(*parts) -> int:
    """A 63-bit integer named by ``parts`` (their ``str``), the same in every process (unlike
    ``hash``): seeds and unit ids of paper packages derive from it."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def config_hash(config) -> str:
    """SHA-256 (16 hex digits) of everything results depend on: :func:`config_dict` for the hash."""
    text = json.dumps(config_dict(config, for_hash=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_from_dict(cls, data: dict, *, source: str = "<config>", where: str = ""):
    """Build ``cls`` from nested dicts (TOML or JSON): unknown keys and values of the wrong
    type raise :class:`ConfigError` naming ``source``, the key and the value; a value the
    class itself refuses (its ``__post_init__``) is reported with ``source`` too."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where or cls.__name__}] must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        place = f" in [{where}]" if where else ""
        raise ConfigError(f"{source}: unknown key(s){place}: {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], value, _default(fields[key]), name, source)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{source}: [{where or cls.__name__}]: {e}") from None


def _coerce(hint, value, default, name: str, source: str):
    """Check ``value`` against the annotation ``hint`` (ints accepted for floats, lists for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if all(dataclasses.is_dataclass(a) for a in options) and isinstance(value, dict):
            return _tagged(options, value, name, source)
        errors = []
        for a in options:
            try:
                return _coerce(a, value, default, name, source)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, source=source, where=name)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {name} must have {len(args)} entries, got {value!r}")
            return tuple(_coerce(a, v, None, f"{name}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        return tuple(_coerce(item, v, None, f"{name}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{source}: {name} must be of type {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _tagged(options, value: dict, name: str, source: str):
    """A dict with a ``kind`` naming one of several dataclasses (the optimizers)."""
    kinds = {getattr(o, "kind", o.__name__.lower()): o for o in options}
    data = dict(value)
    kind = data.pop("kind", next(iter(kinds)))
    if kind not in kinds:
        raise ConfigError(f"{source}: {name}.kind must be one of {sorted(kinds)}, got {kind!r}")
    return config_from_dict(kinds[kind], data, source=source, where=name)


def config_to_toml(config, *, header: dict | None = None) -> str:
    """The config as TOML text that :func:`config_from_dict` (after ``tomllib``) reads back.
    ``header`` adds top-level keys before it (``paper = "wong2025"``). TOML has no null: a
    key whose value is None is left out (our configs default such keys to None)."""
    d = _drop_none({**(header or {}), **config_dict(config)})
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    _tables(d, [], lines)
    return "\n".join(lines) + "\n"


def _drop_none(d: dict) -> dict:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


def _tables(d: dict, path: list[str], lines: list[str]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"\n[{'.'.join(path + [k])}]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if not isinstance(vv, dict))
            _tables(v, path + [k], lines)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; unreadable or invalid files raise :class:`ConfigError` naming the file."""
    import tomllib

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


class Hashed:
    """A paper's config: ``hash`` is its :func:`config_hash`, of everything its results
    depend on (never a ``RUN_ONLY`` field)."""

    @property
    def hash(self) -> str:
        return config_hash(self)


@dataclasses.dataclass(frozen=True)
class RunnerSpec:
    """How a paper's units run, never in the hash (mark the field ``RUN_ONLY``): at most
    ``unit_models`` models trained together in one unit, ``threads`` torch threads (0: torch's
    default)."""

    unit_models: int = 64
    threads: int = 0
