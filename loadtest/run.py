"""The coordinator: bring up a deployment, drive participants in worker processes, inject faults,
watch every process's CPU, and write one report.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diemcau.deploy import Deployment
from diemcau.topology import load_profile, load_topology

from .html import render_html
from .scenario import LINK_FAULTS, load_scenario

CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = (("loadtest.worker", "workers"), ("diemcau edge", "halls"), ("diemcau relay", "relays"),
         ("diemcau orchestrator", "orchestrator"), ("diemcau studio", "studios"), ("redis-server", "redis"))


def cpu_by_kind(rss_mb: dict[str, float] | None = None) -> dict[str, float]:
    """CPU seconds used so far by each process of ours, keyed "kind/pid"; when `rss_mb` is given,
    also fills it with each kind's resident memory now (MB)."""
    out: dict[str, float] = {}
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for needle, kind in KINDS:
            if needle in cmd:
                out[f"{kind}/{pid}"] = (int(stat[11]) + int(stat[12])) / CLK_TCK
                if rss_mb is not None:
                    rss_mb[kind] = round(rss_mb.get(kind, 0.0) + int(stat[21]) * page_mb, 1)
                break
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def run_loadtest(args) -> int:
    sc = load_scenario(args.scenario)
    if getattr(args, "participants", 0) or getattr(args, "duration", 0):
        sc = scaled(sc, args.participants or sc.participants, args.duration or sc.duration_s)
    profile = load_profile(args.profile)
    halls = [h.id for h in load_topology().halls[: sc.halls]]
    workdir = Path(tempfile.mkdtemp(prefix=f"diemcau-loadtest-{sc.name}-"))
    dep = Deployment(profile=profile, workdir=workdir, host=profile.deployment.host, orchestrators=sc.orchestrators)
    dep.log_dir = workdir / "logs"
    dep.log_dir.mkdir()
    code = 0
    workers: list[subprocess.Popen] = []
    try:
        dep.start_hosts()
        dep.start_redis()
        dep.start_control_plane(0)
        dep.start_relays()
        dep.start_studio(sc.duration_s + 900, sc.fps, sc.width, sc.height)
        dep.start_studio(sc.duration_s + 900, sc.fps, sc.width, sc.height, role="backup")
        unknown = [a.hall for a in sc.action if a.hall and a.hall not in halls]
        if unknown:
            raise SystemExit(f"actions name halls outside the run's {len(halls)}: {', '.join(unknown)}")
        dep.start_halls(halls, per_process=35)
        token = dep.login()
        deadline = time.time() + 180
        while True:
            board = dep.get("/api/v1/halls", token)
            # receiving the programme (on air, or degraded / on its standby on a loaded box)
            on = [h for h in board["halls"] if h["id"] in halls and h["state"] in ("on_air", "degraded", "on_backup")]
            if len(on) == len(halls):
                break
            if time.time() > deadline:
                states = sorted(f"{h['id']}:{h['state']}" for h in board["halls"] if h["id"] in halls and h not in on)
                raise SystemExit(f"only {len(on)}/{len(halls)} halls receiving after 180 s: {', '.join(states[:10])}")
            time.sleep(0.5)
        people = []
        for i in range(sc.participants):
            hall = halls[i % len(halls)]
            pid = f"p{i:04d}"
            people.append({"id": pid, "hall": hall,
                           "token": dep.post("/api/v1/tokens/join", token, {"hall": hall, "participant": pid})["token"]})
        start_at = time.time() + 2.0
        per = [people[i:: sc.workers] for i in range(sc.workers)]
        for i, group in enumerate(per):
            # on the hosts profile each worker is a host of its own, its peers' ICE on its address;
            # the coordinator speaks to it over its stdin and stdout only, so `--worker-via` (e.g.
            # "ssh lt{i}.example") runs it on another machine
            argv, ice = [sys.executable, "-m", "loadtest.worker"], dep.host
            on = dep.host_for(f"workers-{i + 1}")
            if on is not None:
                argv, ice = on.argv(argv), on.address
            if getattr(args, "worker_via", ""):
                argv = shlex.split(args.worker_via.format(i=i + 1)) + ["python3", "-m", "loadtest.worker"]
                ice = ""  # the worker's own machine: every address it has
            w = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=open(dep.log_dir / f"worker-{i}.log", "wb"))
            w.stdin.write(json.dumps({"api": dep.base_url, "participants": group, "start_at": start_at, "ice": ice,
                                      "duration_s": sc.duration_s, "ramp_per_s": sc.ramp_per_s / sc.workers,
                                      "churn_per_min": sc.churn_per_min / sc.workers,
                                      "churn_away_s": sc.churn_away_s}).encode())
            w.stdin.close()
            workers.append(w)
        cpu0, t0 = cpu_by_kind(), time.time()
        faults = []
        lifts: list = []  # (when, fault, its record): link faults with a duration
        pending = sorted(sc.fault, key=lambda f: f.at_s)
        actions = sorted(sc.action, key=lambda a: a.at_s)
        floors: list[dict] = []  # one per handover: speaker, when, and each other hall's reach
        # sample CPU a second before the workers finish: an exited worker's /proc entry loses its name
        while time.time() < start_at + sc.duration_s - 1.0:
            now = time.time() - start_at
            while pending and now >= pending[0].at_s:
                f = pending.pop(0)
                faults.append(inject(dep, token, f))
                if f.kind in LINK_FAULTS and f.duration_s > 0:
                    lifts.append((f.at_s + f.duration_s, f, faults[-1]))
            for due, f, record in [x for x in lifts if now >= x[0]]:
                lift(dep, f, record)
                lifts.remove((due, f, record))
            while actions and now >= actions[0].at_s:
                act = actions.pop(0)
                floors.append(floor_action(dep, token, act.kind, act.hall))
            try:
                board = dep.get("/api/v1/halls", token)
                note_floor_reach(floors, board["halls"], halls)
                note_link_faults(faults, board["halls"])
                viewers = sum(h.get("viewers", 0) for h in board["halls"])
                on = sum(1 for h in board["halls"] if h["id"] in halls and h["state"] == "on_air")
            except OSError:
                viewers = on = -1
            done = min(max(now / sc.duration_s, 0), 1)
            bar = "#" * int(done * 30)
            print(f"\r[{bar:<30}] {now:5.0f}/{sc.duration_s:.0f}s halls on air {on}/{len(halls)} "
                  f"participants watching {viewers}/{sc.participants}", end="", flush=True)
            time.sleep(1.0)
        print(flush=True)
        rss: dict[str, float] = {}
        cpu1, t1 = cpu_by_kind(rss), time.time()
        time.sleep(max(start_at + sc.duration_s - time.time(), 0))
        board = _last_board(dep, token)
        rows = []
        for w in workers:
            out = w.stdout.read()
            w.wait(timeout=120)
            rows.extend(json.loads(out or b"[]"))
        report = build_report(sc, halls, rows, board, faults, cpu0, cpu1, t1 - t0)
        report.update(capacity(report))
        if floors:
            report.update(floor_report(floors, halls, board["halls"]))
        report["rss_mb"] = rss
        if board.get("error"):
            report["board_error"] = board["error"]
        report["started_at"] = start_at
        report["duration_s"] = sc.duration_s
        Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        html_path = Path(args.report).with_suffix(".html")
        html_path.write_text(render_html(report), encoding="utf-8")
        print(f"report: {args.report} and {html_path}", flush=True)
        print(json.dumps({k: v for k, v in report.items() if k not in ("per_participant", "per_hall")}, indent=2))
        if report["participants_receiving"] < report["participants"]:
            code = 1
    except SystemExit as exc:
        print(f"loadtest {sc.name}: {exc}", file=sys.stderr)
        code = 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        dep.stop()
        print(f"logs in {dep.log_dir}", flush=True)
    return code


def floor_action(dep: Deployment, token: str, kind: str, hall: str) -> dict:
    at = time.time()
    try:
        if kind == "floor":
            dep.post("/api/v1/floor", token, {"hall": hall, "expect": "*"})
        else:
            dep.delete("/api/v1/floor", token)
        ok = ""
    except OSError as exc:
        ok = str(exc)
    print(f"\naction: {kind} {hall} {ok}", flush=True)
    return {"kind": kind, "speaker": hall if kind == "floor" else "", "time": at, "error": ok, "reach_ms": {}}


def note_floor_reach(floors: list[dict], rows: list[dict], halls: list[str]) -> None:
    """Each hall measures its own reach (operator's call -> the speaker's first keyframe there):
    keep it for the current handover while the board shows it."""
    if not floors or floors[-1]["kind"] != "floor":
        return
    cur = floors[-1]
    for h in rows:
        if h["id"] in halls and h["id"] != cur["speaker"] and h.get("floor_speaker") == cur["speaker"] \
                and h.get("floor_reach_ms", -1) > 0:
            cur["reach_ms"].setdefault(h["id"], h["floor_reach_ms"])


def floor_report(floors: list[dict], halls: list[str], rows: list[dict] | None = None) -> dict:
    given = [f for f in floors if f["kind"] == "floor"]
    # each hall keeps its recent floors (speaker, when given, reach): the last board has them all,
    # even when the board could not be read during the run
    for row in rows or []:
        if row["id"] not in halls:
            continue
        for speaker, given_at, ms in row.get("floor_history", []):
            f = next((f for f in given if f["speaker"] == speaker and abs(f["time"] - given_at) < 5), None)
            if f is not None and row["id"] != speaker:
                f["reach_ms"].setdefault(row["id"], ms)
    reach = sorted(ms for f in given for ms in f["reach_ms"].values())
    return {
        "floor_handovers": len(given),
        "floor_reach_ms_p50": pct(reach, 0.5),
        "floor_reach_ms_p99": pct(reach, 0.99),
        "floor_reach_ms_max": reach[-1] if reach else None,
        # the other halls of the session (here: every other hall in the run) that saw each speaker
        "floor_halls_reached_min": min((len(f["reach_ms"]) for f in given), default=0),
        "floor_halls_expected": len(halls) - 1,
        "floor": [{"speaker": f["speaker"], "time": f["time"], "halls_reached": len(f["reach_ms"]),
                   "reach_ms_max": max(f["reach_ms"].values(), default=None), "error": f["error"]} for f in given],
    }


def scaled(sc, participants: int, duration_s: float):
    """The scenario with another participant count or duration (what a machine can carry is
    found by running it smaller); faults and actions past the new end are left out."""
    import msgspec

    if not 1 <= participants <= 10_000 or duration_s <= 0:
        raise SystemExit("--participants must be 1-10000 and --duration positive")
    return msgspec.structs.replace(
        sc, participants=participants, duration_s=duration_s,
        fault=[f for f in sc.fault if f.at_s < duration_s], action=[a for a in sc.action if a.at_s < duration_s])


def inject(dep: Deployment, token: str, f) -> dict:
    """A fault now: a process killed or a switch through the API, or a link capped, made lossy or
    cut between two hosts (the hosts profile)."""
    at = time.time()
    if f.kind in LINK_FAULTS:
        net = dep.hostnet
        if net is None:
            raise SystemExit(f"a {f.kind} fault needs every part on a host of its own: --profile hosts")
        for h in (f.host, f.peer) if f.kind == "cut" else (f.host,):
            if h not in net.hosts:
                raise SystemExit(f"fault {f.kind}: no host {h!r} (hosts: {', '.join(sorted(net.hosts))})")
        if f.kind == "cap":
            net.cap(f.host, f.kbit)
            target = f"{f.host} to {f.kbit} kbit/s"
        elif f.kind == "loss":
            net.loss(f.host, f.pct)
            target = f"{f.host} {f.pct} % loss"
        else:
            net.cut(f.host, f.peer)
            target = f"{f.host} <-> {f.peer}"
    else:
        try:
            target = dep.inject(f.kind, token)
        except ValueError as exc:  # e.g. kill-redis against a Redis of one's own (REDIS_URL)
            raise SystemExit(f"fault {f.kind}: {exc}") from None
    print(f"\nfault: {f.kind} {target}", flush=True)
    out = {"kind": f.kind, "target": target, "time": at}
    if f.kind in LINK_FAULTS:
        out["host"] = f.host
        out["halls"] = sorted(h for name, ids in dep.hall_groups.items()
                              if dep.part_host.get(name) is not None and dep.part_host[name].name in (f.host, f.peer)
                              for h in ids)
    return out


def note_link_faults(faults: list[dict], rows: list[dict]) -> None:
    """While a link fault lasts: the layer each of its halls is on."""
    for f in faults:
        if "halls" not in f or "lifted" in f:
            continue
        seen = f.setdefault("layers_seen", {})
        for h in rows:
            if h["id"] in f["halls"] and h.get("layer"):
                seen.setdefault(h["id"], set()).add(h["layer"])


def lift(dep: Deployment, f, record: dict) -> None:
    """The link fault's end (its duration_s passed)."""
    net = dep.hostnet
    if f.kind == "cap":
        net.cap(f.host, 0)
    elif f.kind == "loss":
        net.loss(f.host, 0)
    elif f.kind == "cut":
        net.heal(f.host, f.peer)
    record["lifted"] = time.time()
    print(f"\nfault lifted: {record['kind']} {record['target']}", flush=True)


def cpu_percent(cpu0: dict[str, float], cpu1: dict[str, float], window_s: float) -> dict[str, float]:
    """Per kind, percent of one core over the window, from processes alive at its end (a process
    killed by a fault takes its seconds with it: counting it would make the figure negative)."""
    out: dict[str, float] = {}
    for key, end in cpu1.items():
        kind = key.split("/", 1)[0]
        out[kind] = out.get(kind, 0.0) + end - cpu0.get(key, 0.0)
    return {k: round(v / window_s * 100, 1) for k, v in out.items()}


def _last_board(dep, token: str, tries: int = 6) -> dict:
    """The board at the end of the run; a control plane too loaded to answer (a box past its
    limit) still gets a report, from what the participants saw, with the reason."""
    why = ""
    for _ in range(tries):
        try:
            return dep.get("/api/v1/halls", token)
        except (OSError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            time.sleep(2.0)
    print(f"the orchestrator did not answer for the final board ({why}); reporting without it", flush=True)
    return {"halls": [], "error": f"final board not read: {why}"}


CARRIED_DELIVERED = 0.99  # a run is carried when every participant receives and the median gets this much


def capacity(report: dict) -> dict:
    """Did this machine carry the run, what each participant and hall cost it, and how many cores
    the run would need at those costs (the workers' share measured only while they had CPU:
    the per-participant figure of a run that was not carried is an underestimate, and says so)."""
    cpu = report.get("cpu", {})
    cores = os.cpu_count() or 1
    n, halls = max(report["participants"], 1), max(report["halls"], 1)
    per_participant = cpu.get("workers", 0.0) / n
    per_hall = cpu.get("halls", 0.0) / halls
    rest = sum(v for k, v in cpu.items() if k not in ("workers", "halls"))
    carried = (report["participants_receiving"] == report["participants"]
               and (report["delivered_ratio_p50"] or 0) >= CARRIED_DELIVERED)
    total = sum(cpu.values())
    return {
        "carried": carried,
        "machine_cores": cores,
        "cpu_total_pct": round(total, 1),
        "cpu_per_participant_pct": round(per_participant, 3),
        "cpu_per_hall_pct": round(per_hall, 2),
        # at this run's own costs (only where it was carried: else the costs are what the
        # starved processes got), the cores the summit's 1000 participants in 70 halls would take
        "cores_for_1000_participants_70_halls": (round((per_participant * 1000 + per_hall * 70 + rest) / 100, 1)
                                                 if carried else None),
        "capacity_note": ("carried: every participant received, delivered p50 >= 0.99" if carried else
                          f"not carried on {cores} cores (CPU {total:.0f} % of one core in all): the per-participant "
                          "cost is what the workers got, not what they needed; run smaller (--participants) to find "
                          "what this machine holds, see docs/BENCHMARKS.md"),
    }


def build_report(sc, halls, rows, board, faults, cpu0, cpu1, window_s) -> dict:
    connected = [r for r in rows if r["connected"]]
    receiving = [r for r in connected if r["frames"] > 0]
    ratios = [r["delivered_ratio"] for r in receiving]
    hall_rows = {h["id"]: h for h in board["halls"] if h["id"] in halls}
    for f in faults:
        after = [g for r in rows for end, g in r["gaps"] if end >= f["time"]]
        hall_after = [g for h in hall_rows.values() for end, g in h.get("gaps", []) if end >= f["time"]]
        f["effect"] = {"participant_max_freeze_ms": max(after, default=0.0),
                       "participants_frozen": sum(1 for r in rows if any(end >= f["time"] for end, _ in r["gaps"])),
                       "hall_max_freeze_ms": max(hall_after, default=0.0)}
        if "halls" in f:  # a link fault: what its own halls and their participants saw while it lasted
            until = f.get("lifted", float("inf"))
            mine = [r for r in rows if r["hall"] in f["halls"]]
            during = [g for r in mine for end, g in r["gaps"] if f["time"] <= end <= until + 2.0]
            f["effect"].update({
                "halls": len(f["halls"]),
                "participants_at_its_halls": len(mine),
                "their_max_freeze_ms": max(during, default=0.0),
                "their_delivered_ratio_min": min((r["delivered_ratio"] for r in mine if r["connected"]), default=None),
                # the ladder layers its halls were on while it lasted (a cap steps them down)
                "layers_seen": {h: sorted(v) for h, v in f.pop("layers_seen", {}).items()},
            })
    return {
        "scenario": sc.name,
        "participants": sc.participants,
        "participants_connected": len(connected),
        "participants_receiving": len(receiving),
        "join_ms_p50": pct([r["join_ms"] for r in connected], 0.5),
        "join_ms_p99": pct([r["join_ms"] for r in connected], 0.99),
        "first_media_ms_p99": pct([r["first_media_ms"] for r in receiving], 0.99),
        "rejoins": sum(len(r.get("rejoin_ms", [])) for r in rows),
        "rejoins_failed": sum(r.get("rejoins_failed", 0) for r in rows),
        "rejoin_ms_p50": pct([ms for r in rows for ms in r.get("rejoin_ms", [])], 0.5),
        "rejoin_ms_p99": pct([ms for r in rows for ms in r.get("rejoin_ms", [])], 0.99),
        "delivered_ratio_min": min(ratios, default=0.0),
        "delivered_ratio_p50": pct(ratios, 0.5),
        "halls": len(halls),
        "halls_on_air": sum(1 for h in hall_rows.values() if h["state"] == "on_air"),
        "max_hall_freeze_ms": max((h.get("max_freeze_ms", 0.0) for h in hall_rows.values()), default=0.0),
        "faults": faults,
        "cpu": cpu_percent(cpu0, cpu1, window_s),
        "cpu_unit": "percent of one core over the measured window",
        "per_hall": [{"hall": h, "state": hall_rows.get(h, {}).get("state"), "relay": hall_rows.get(h, {}).get("relay"),
                      "viewers": hall_rows.get(h, {}).get("viewers", 0)} for h in halls],
        "per_participant": rows,
    }
