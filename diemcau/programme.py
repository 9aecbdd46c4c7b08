"""Sessions and the schedule: which halls follow which studio programme, and when.

The summit's programme ships in configs/programme.toml. Operators create, edit, start
and end sessions through the API; the orchestrator keeps them in Redis. A live
session's halls follow its `stream`; every other hall follows the deployment's default
programme. Two sessions live at once must not share a hall.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import msgspec

from collections.abc import Iterable

from .topology import CONFIG_DIR, ConfigError, Hall, Topology, _load_toml

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
STREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
REGIONS = ("north", "central", "south")
STATES = ("scheduled", "live", "ended")


class SessionSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the config or an operator says about a session."""

    id: str
    title: str
    theme: str
    start: datetime
    end: datetime
    title_en: str = ""
    stream: str = "programme"
    halls: list[str] = msgspec.field(default_factory=lambda: ["all"])  # "all", region names and/or hall ids


class Session(SessionSpec, kw_only=True, forbid_unknown_fields=True):
    # what happened to it (kept in Redis, never in the config)
    state: str = "scheduled"
    started_at: float = 0.0
    ended_at: float = 0.0
    by: str = ""


class Programme(msgspec.Struct, frozen=True):
    themes: dict[str, str]
    sessions: list[Session]


def resolve_halls(spec: list[str], halls: Iterable[Hall]) -> list[str]:
    """The hall ids a session's `halls` names, in topology order; ValueError names what is unknown."""
    halls = list(halls)
    ids = {h.id for h in halls}
    unknown = [x for x in spec if x != "all" and x not in REGIONS and x not in ids]
    if unknown:
        raise ValueError(f"unknown halls or regions: {', '.join(unknown[:5])}")
    if not spec:
        raise ValueError("a session needs at least one hall (or \"all\", or a region)")
    wanted = set(spec)
    return [h.id for h in halls if "all" in wanted or h.region in wanted or h.id in wanted]


def check_session(s: Session, themes: dict[str, str], topology: Topology) -> list[str]:
    """Validate one session; returns its hall ids. ValueError says what is wrong."""
    if not SESSION_ID.fullmatch(s.id):  # match() would let a trailing newline through ($)
        raise ValueError(f"session id {s.id!r} must be 1-32 letters, digits, '-' or '_'")
    if not s.title.strip() or len(s.title) > 200 or len(s.title_en) > 200:
        raise ValueError("title must be 1-200 characters (title_en at most 200)")
    if s.theme not in themes:
        raise ValueError(f"theme {s.theme!r} is not one of {', '.join(themes)}")
    if s.start.tzinfo is None or s.end.tzinfo is None:
        raise ValueError("start and end need a time zone (e.g. 2021-11-02T08:30:00+07:00)")
    if s.end <= s.start:
        raise ValueError("end must be after start")
    if not STREAM_NAME.fullmatch(s.stream):
        raise ValueError(f"stream {s.stream!r} must be 1-32 lower-case letters, digits or '-'")
    if s.state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    return resolve_halls(s.halls, topology.halls)


def overlapping(a: Session, b: Session, halls_a: list[str], halls_b: list[str]) -> list[str]:
    """Halls two sessions would share at the same time."""
    if a.end <= b.start or b.end <= a.start:
        return []
    shared = set(halls_b)
    return [h for h in halls_a if h in shared]


def load_programme(topology: Topology, path: Path | str | None = None) -> Programme:
    path = Path(path) if path else CONFIG_DIR / "programme.toml"
    data = _load_toml(path)
    themes = data.get("themes")
    if not isinstance(themes, dict) or not themes or not all(isinstance(v, str) for v in themes.values()):
        raise ConfigError(f"{path}: expected a [themes] table of id = \"name\"")
    raw = data.get("session", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected [[session]] tables")
    sessions: list[Session] = []
    halls: dict[str, list[str]] = {}
    for i, item in enumerate(raw):
        label = f"session #{i + 1} ({item.get('id', '?') if isinstance(item, dict) else '?'})"
        try:
            s = msgspec.convert(item, Session)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {label}: {exc}") from None
        if s.state != "scheduled" or s.started_at or s.ended_at or s.by:
            raise ConfigError(f"{path}: {label}: state, started_at, ended_at and by are not set in the config")
        if s.id in halls:
            raise ConfigError(f"{path}: {label}: duplicate session id {s.id}")
        try:
            halls[s.id] = check_session(s, themes, topology)
        except ValueError as exc:
            raise ConfigError(f"{path}: {label}: {exc}") from None
        for other in sessions:
            shared = overlapping(s, other, halls[s.id], halls[other.id])
            if shared:
                raise ConfigError(f"{path}: {label}: overlaps session {other.id} at "
                                  f"{', '.join(shared[:5])}{' …' if len(shared) > 5 else ''}")
        sessions.append(s)
    return Programme(themes=dict(themes), sessions=sessions)
