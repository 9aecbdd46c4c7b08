"""Scenario files (TOML), validated on load with errors that name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

SCENARIO_DIR = Path(__file__).parent / "scenarios"
FAULT_KINDS = ("kill-relay", "kill-origin", "kill-source", "switch-source")
ACTION_KINDS = ("floor", "floor-end")


class ScenarioError(ValueError):
    pass


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    at_s: float
    kind: str


class Action(msgspec.Struct, forbid_unknown_fields=True):
    at_s: float
    kind: str  # floor (give the floor to `hall`) | floor-end (take it back)
    hall: str = ""


class Scenario(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    halls: int
    participants: int
    duration_s: float
    ramp_per_s: float = 10.0
    workers: int = 1
    fps: int = 30  # the studio programme
    width: int = 640
    height: int = 360
    # churn: this many participants a minute (over the whole run, after the ramp) leave their hall
    # (WHEP DELETE) and come back `churn_away_s` later through the API, with a new join
    churn_per_min: float = 0.0
    churn_away_s: float = 3.0
    fault: list[Fault] = []
    action: list[Action] = []


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        sc = msgspec.convert(data, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not 1 <= sc.halls <= 70:
        raise ScenarioError(f"{path}: halls must be 1-70")
    if not 1 <= sc.participants <= 10_000:
        raise ScenarioError(f"{path}: participants must be 1-10000")
    if sc.duration_s <= 0 or sc.ramp_per_s <= 0 or not 1 <= sc.workers <= 32:
        raise ScenarioError(f"{path}: duration_s and ramp_per_s must be positive, workers 1-32")
    if not (0 <= sc.churn_per_min <= 6000 and 0 < sc.churn_away_s <= 600):
        raise ScenarioError(f"{path}: churn_per_min must be 0-6000 and churn_away_s 0-600 (above 0)")
    if not (1 <= sc.fps <= 60 and 64 <= sc.width <= 1920 and 64 <= sc.height <= 1080):
        raise ScenarioError(f"{path}: fps must be 1-60, width 64-1920, height 64-1080")
    for what, one, entries, kinds in (("fault", "a fault's", sc.fault, FAULT_KINDS),
                                      ("action", "an action's", sc.action, ACTION_KINDS)):
        for e in entries:
            if e.kind not in kinds:
                raise ScenarioError(f"{path}: {what} kind must be one of {', '.join(kinds)}")
            if not 0 <= e.at_s < sc.duration_s:
                raise ScenarioError(f"{path}: {one} at_s must fall inside the run")
    for a in sc.action:
        if a.kind == "floor" and not a.hall:
            raise ScenarioError(f"{path}: a floor action names the hall given the floor")
    return sc
