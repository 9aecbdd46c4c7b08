"""Scenario files (TOML), validated on load with errors that name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# link faults need the hosts profile (every part on a host of its own): tc tbf, nft drops
LINK_FAULTS = ("cap", "loss", "cut")
FAULT_KINDS = ("kill-relay", "kill-origin", "kill-source", "switch-source", "kill-redis", "drain-relay",
               "kill-orchestrator-leader", *LINK_FAULTS)
ACTION_KINDS = ("floor", "floor-end")


class ScenarioError(ValueError):
    pass


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    at_s: float
    kind: str
    # link faults (the hosts profile): the host whose link is capped / made lossy / cut (e.g.
    # "halls-north", "relay-north-1"), the other end of a cut, the cap, the loss, and for how long
    # (0: to the end of the run)
    host: str = ""
    peer: str = ""
    kbit: int = 0
    pct: int = 0
    duration_s: float = 0.0


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
    orchestrators: int = 1  # instances sharing Redis (kill-orchestrator-leader needs two)
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
    for f in sc.fault:
        if f.kind in LINK_FAULTS:
            if not f.host:
                raise ScenarioError(f"{path}: a {f.kind} fault names its host (e.g. host = \"halls-north\")")
            if f.kind == "cap" and not 8 <= f.kbit <= 10_000_000:
                raise ScenarioError(f"{path}: a cap fault gives kbit, 8-10000000")
            if f.kind == "loss" and not 1 <= f.pct <= 100:
                raise ScenarioError(f"{path}: a loss fault gives pct, 1-100")
            if f.kind == "cut" and not f.peer:
                raise ScenarioError(f"{path}: a cut fault names the peer host it is cut from")
        if f.duration_s < 0:
            raise ScenarioError(f"{path}: a fault's duration_s cannot be negative")
    if not 1 <= sc.orchestrators <= 4:
        raise ScenarioError(f"{path}: orchestrators must be 1-4")
    if any(f.kind == "kill-orchestrator-leader" for f in sc.fault) and sc.orchestrators < 2:
        raise ScenarioError(f"{path}: kill-orchestrator-leader needs orchestrators = 2 (one to take over)")
    for a in sc.action:
        if a.kind == "floor" and not a.hall:
            raise ScenarioError(f"{path}: a floor action names the hall given the floor")
    return sc
