"""Settings loading shared by every program: typed structs filled from the environment."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _coerce(name: str, raw: str, kind: Any) -> Any:
    if kind is bool or kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r}: expected true/false")
    if kind is int or kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    if kind is float or kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if kind in (list, "list[str]") or str(kind).startswith("list"):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def from_env(cls: type[T], prefix: str, env: dict[str, str] | None = None, **overrides: Any) -> T:
    """Build settings `cls` from defaults, then `PREFIX_FIELD` env vars, then `overrides`."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    hints = {f.name: f.type for f in msgspec.structs.fields(cls)}
    for name, kind in hints.items():
        key = f"{prefix}{name.upper()}"
        if key in env:
            values[name] = _coerce(key, env[key], kind)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, cls)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid {cls.__name__}: {exc}") from None


def ice_addresses_from(value: str | list[str] | None) -> list[str]:
    """Parse an ICE address list setting ("127.0.0.1,10.0.0.2")."""
    if not value:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)
