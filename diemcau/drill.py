"""Failure drills: bring up a deployment, SIGKILL one part at a random moment, measure every hall.

`diemcau drill kill-relay --report r.json` kills the regional relay serving the
most halls; `kill-origin` kills the origin most regional relays pull from (they
keep a warm path to the other one); `kill-source` kills the primary studio
encoder (origins switch to the backup feed at its next keyframe); `kill-redis` kills the embedded
Redis and restarts it from its append-only file 3 s later, `kill-orchestrator-leader` runs two
orchestrator instances and kills the one holding the lease (media must not notice either); `drain-relay`
drains the busiest regional relay through the API (its halls move make-before-break: no frame may
be lost). `--hitless` puts every hall in hitless mode (both paths carry the programme; the hall
merges them), where killing a relay must cost no frame. Every figure comes from the halls' own verifiers: gaps between complete frames, and
programme frames (VP8 picture ids) that never arrived.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

from .deploy import Deployment
from .topology import load_profile, load_topology

SETTLE_S = 8.0  # watch this long after the fault


def _board(dep: Deployment, token: str) -> dict:
    return dep.get("/api/v1/halls", token)


def run_drill(args) -> int:
    kind = args.kind
    light = kind == "qoe"  # 70 halls decoding share two cores: a lighter programme
    args.fps = args.fps or (15 if light else 30)
    args.width = args.width or (320 if light else 640)
    args.height = args.height or (180 if light else 360)
    if kind.startswith("partition-") and args.profile == "local":
        args.profile = "hosts"  # links between hosts: only the hosts profile has them
    profile = load_profile(args.profile)
    topology = load_topology()
    halls = [h.id for h in topology.halls[: args.edges]]
    workdir = Path(tempfile.mkdtemp(prefix=f"diemcau-drill-{kind}-"))
    dep = Deployment(profile=profile, workdir=workdir, host=profile.deployment.host,
                     orchestrators=2 if kind == "kill-orchestrator-leader" or kind.startswith("partition-") else 1, hitless=args.hitless,
                     qoe_every=1 if kind == "qoe" else 0)
    dep.log_dir = workdir / "logs"
    dep.log_dir.mkdir()
    code = 0
    try:
        dep.start_hosts()
        dep.start_redis()
        dep.start_control_plane(0)
        dep.start_relays()
        dep.start_studio(3600, args.fps, args.width, args.height)
        dep.start_studio(3600, args.fps, args.width, args.height, role="backup")
        dep.start_halls(halls, per_process=35)
        token = dep.login()
        second = ("receiving",) if args.hitless else ("standby",)  # the second path: carrying media, or warm
        print(f"drill {kind}: waiting for {len(halls)} halls on air with a "
              f"{'second path carrying media' if args.hitless else 'warm standby'}", flush=True)
        deadline = time.time() + args.ready_timeout
        while True:
            try:
                board = _board(dep, token)
            except (urllib.error.URLError, OSError, ValueError):
                board = {"halls": []}
            rows = [h for h in board["halls"] if h["id"] in halls]
            ready = [h for h in rows if h["state"] in ("on_air", "degraded") and h.get("backup_state") in second]
            if len(ready) == len(halls):
                break
            if time.time() > deadline:
                late = [f"{h['id']} {h['state']} on {h.get('relay') or '-'}, standby {h.get('backup') or '-'} "
                        f"{h.get('backup_state') or '-'}" for h in rows if h not in ready][:6]
                raise SystemExit(f"only {len(ready)}/{len(halls)} halls ready after {args.ready_timeout:.0f} s: "
                                 + "; ".join(late))
            time.sleep(0.5)
        if kind.startswith("partition-"):
            from .partition import run_partition

            report = run_partition(dep, token, kind, halls, args.cut_seconds)
            if args.report:
                Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
            print(json.dumps({k: v for k, v in report.items() if k not in ("per_hall", "terms")}, indent=2), flush=True)
            return code
        if kind == "qoe":
            report = qoe_drill(dep, token, halls)
            if args.report:
                Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
            print(json.dumps({k: v for k, v in report.items() if k != "per_hall"}, indent=2), flush=True)
            return code
        time.sleep(SETTLE_S + random.uniform(1.0, 3.0))  # a baseline span as long as the watch after, then a random moment
        before = {h["id"]: h for h in _board(dep, token)["halls"] if h["id"] in halls}
        killed_at = time.time()
        victim = dep.inject(kind, token)
        print(f"drill {kind}: {'drain' if kind == 'drain-relay' else 'SIGKILL'} {victim} at t={killed_at:.3f}", flush=True)
        time.sleep(SETTLE_S)
        after = {h["id"]: h for h in _board(dep, token)["halls"] if h["id"] in halls}
        report = drill_report(kind, victim, killed_at, halls, before, after)
        report["hitless"] = bool(args.hitless)
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(json.dumps({k: v for k, v in report.items() if k != "per_hall"}, indent=2), flush=True)
    except SystemExit as exc:
        print(f"drill {kind}: {exc}", file=sys.stderr)
        code = 1
    finally:
        dep.stop()
        print(f"logs in {dep.log_dir}", flush=True)
    return code


QOE_FAULTS = (("freeze", "frozen"), ("black", "black"), ("silent", "silent"))
QOE_WAIT_S = 8.0  # how long every hall has to raise (and then clear) an alarm


def qoe_drill(dep: Deployment, token: str, halls: list[str]) -> dict:
    """The studio's source freezes, goes black and goes silent in turn (the encoder runs on):
    every hall must raise the matching alarm from what it decodes. detect_ms is the hall's own
    raise time minus the moment the fault was written to the studio (which applies it within
    50 ms), so it includes that and the encoder's latency."""
    files = [dep.workdir / f"studio-{role}.impair" for role in ("primary", "backup")]
    per_hall: dict[str, dict] = {h: {"hall": h} for h in halls}
    detect: dict[str, list[float]] = {}
    missed: dict[str, list[str]] = {}
    for fault, alarm in QOE_FAULTS:
        began = time.time()
        for f in files:
            f.write_text(fault)
        print(f"drill qoe: source {fault} at t={began:.3f}", flush=True)
        seen: dict[str, float] = {}
        deadline = began + QOE_WAIT_S
        while len(seen) < len(halls) and time.time() < deadline:
            time.sleep(0.25)
            for row in _board(dep, token)["halls"]:
                at = (row.get("qoe_raised_at") or {}).get(alarm)
                if row["id"] in per_hall and row["id"] not in seen and at and at >= began:
                    seen[row["id"]] = at
        for h in halls:
            per_hall[h][f"{alarm}_detect_ms"] = round((seen[h] - began) * 1000, 1) if h in seen else None
        detect[alarm] = sorted((at - began) * 1000 for at in seen.values())
        missed[alarm] = [h for h in halls if h not in seen]
        for f in files:
            f.write_text("")
        clear_deadline = time.time() + QOE_WAIT_S
        while time.time() < clear_deadline:
            rows = [r for r in _board(dep, token)["halls"] if r["id"] in per_hall]
            if all(alarm not in (r.get("qoe_alarms") or []) for r in rows):
                break
            time.sleep(0.25)
        time.sleep(2.0)  # a healthy programme again before the next fault
    pct = lambda xs, q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None  # noqa: E731
    return {
        "kind": "qoe",
        "halls": len(halls),
        "detect_ms": {a: pct(xs, 1.0) for a, xs in detect.items()},  # the slowest hall
        "detect_ms_p50": {a: pct(xs, 0.5) for a, xs in detect.items()},
        "halls_detected": {a: len(xs) for a, xs in detect.items()},
        "halls_missed": missed,
        "per_hall": list(per_hall.values()),
    }


def drill_report(kind: str, victim: str, killed_at: float, halls: list[str], before: dict, after: dict) -> dict:
    rows = []
    for hid in halls:
        b, a = before.get(hid, {}), after.get(hid, {})
        after_fault = [(g, end) for end, g in a.get("gaps", []) if end >= killed_at]
        gaps = [g for g, _ in after_fault]
        worst = max(after_fault, default=None)
        # the same span before the fault: the run's own jitter on this (loaded) machine
        baseline = [g for end, g in a.get("gaps", []) if killed_at - SETTLE_S <= end < killed_at]
        affected = b.get("relay") == victim or b.get("backup") == victim or bool(gaps)
        rows.append({
            "hall": hid,
            "relay_before": b.get("relay", ""),
            "relay_after": a.get("relay", ""),
            "backup_after": a.get("backup", ""),
            "affected": affected,
            "freeze_ms": max(gaps, default=0.0),
            "baseline_freeze_ms": max(baseline, default=0.0),
            # when the longest gap ended, in seconds after the fault (a gap long after it is load, not failover)
            "freeze_end_s": round(worst[1] - killed_at, 3) if worst else None,
            "frames_lost": max(a.get("frames_missing", 0) - b.get("frames_missing", 0), 0),
            "switches": a.get("switches", 0) - b.get("switches", 0),
            # back on air and receiving programme frames again (not a frame-rate bar: on a saturated
            # machine the surviving encoder itself drops capture slots)
            "recovered": a.get("media_state") == "receiving" and 0 <= a.get("last_media_ms_ago", 10**6) < 1000
            and a.get("frames_received", 0) > b.get("frames_received", 0),
            "state_after": a.get("state"),
            "media_state_after": a.get("media_state"),
            "frames_since_fault": a.get("frames_received", 0) - b.get("frames_received", 0),
            "last_media_ms_ago": a.get("last_media_ms_ago"),
        })
    freezes = sorted(r["freeze_ms"] for r in rows)
    affected = [r for r in rows if r["affected"]]
    return {
        "kind": kind,
        "victim": victim,
        "halls": len(halls),
        "halls_affected": len(affected),
        "max_freeze_ms": freezes[-1] if freezes else 0.0,
        "p99_freeze_ms": freezes[min(len(freezes) - 1, int(0.99 * len(freezes)))] if freezes else 0.0,
        "frames_lost_total": sum(r["frames_lost"] for r in rows),
        "halls_recovered": sum(1 for r in rows if r["recovered"]),
        "recovery_ms_max": max((r["freeze_ms"] for r in affected), default=0.0),
        # the longest gap (>= 100 ms are recorded) at any hall in the same span before the fault
        "baseline_max_freeze_ms": max((r["baseline_freeze_ms"] for r in rows), default=0.0),
        "halls_with_gap_before": sum(1 for r in rows if r["baseline_freeze_ms"] > 0),
        "per_hall": rows,
    }
