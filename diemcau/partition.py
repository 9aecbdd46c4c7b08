"""Partition drills on the hosts profile: links cut, not processes killed.

A cut drops every packet between two hosts, both ways, silently (nft in their namespaces: no
reset, no ICMP), as a failed link looks from both ends. Each drill holds the cut, heals it, and
waits for the system to converge without any operator action:

- `partition-leader`: the leading orchestrator's host is cut from Redis's. Invariant: at most one
  instance acts as leader at any moment, judged from every instance's own record of when it led
  (`GET /api/v1/leadership`) as well as from polling. The other instance takes over; after the
  heal both serve the API and exactly one leads.
- `partition-hall`: the hosts of the halls of one region are cut from the relay most of them
  pull from. Every cut hall must go on receiving (its warm standby), and all come back to a
  primary and a warm standby after the heal.
- `partition-relay`: the busiest regional relay is cut from every orchestrator while it still
  serves media. Invariant: it is not emptied of its healthy halls; after the heal it is back in
  the control plane.

Every drill reports `halls` and `halls_recovered` (halls receiving the programme at the end),
`converged` and `converge_ms` (from the heal), frames lost at the halls, and its own invariant.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from .deploy import Deployment
from .tls import urlopen as tls_urlopen

CUT_S = 10.0  # how long the link stays cut
CONVERGE_S = 45.0  # how long the system has to converge after the heal
POLL_S = 0.1


def _get(url: str, token: str, timeout: float = 2.0) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with tls_urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _answering(dep: Deployment, token: str) -> list[int]:
    """The orchestrator instances that answer a board request now."""
    up = []
    for i in range(len(dep.orch_ports)):
        try:
            _get(dep.orch_url(i) + "/api/v1/relays", token)
            up.append(i)
        except (urllib.error.URLError, OSError, ValueError):
            pass
    return up


def board(dep: Deployment, token: str, avoid: int | None = None) -> dict:
    """The hall board from any instance that answers (a cut one may not)."""
    order = [i for i in range(len(dep.orch_ports)) if i != avoid] + ([avoid] if avoid is not None else [])
    last: Exception | None = None
    for i in order:
        try:
            return _get(dep.orch_url(i) + "/api/v1/halls", token)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
    raise SystemExit(f"no orchestrator instance answers: {last}")


def relays(dep: Deployment, token: str, avoid: int | None = None) -> list[dict]:
    order = [i for i in range(len(dep.orch_ports)) if i != avoid] + ([avoid] if avoid is not None else [])
    for i in order:
        try:
            return _get(dep.orch_url(i) + "/api/v1/relays", token)["relays"]
        except (urllib.error.URLError, OSError, ValueError):
            continue
    raise SystemExit("no orchestrator instance answers")


class LeaderWatch:
    """Polls every instance's leadership every 100 ms; the terms are read again at the end."""

    def __init__(self, dep: Deployment, token: str) -> None:
        self.dep, self.token = dep, token
        self.sampled_max = 0
        self.samples: list[tuple[float, list]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def leaders(self) -> list:
        """Per instance: True / False, or None when it does not answer."""
        out = []
        for i in range(len(self.dep.orch_ports)):
            try:
                out.append(bool(_get(self.dep.orch_url(i) + "/api/v1/leadership", self.token, 0.5)["leader"]))
            except (urllib.error.URLError, OSError, ValueError):
                out.append(None)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.leaders()
            self.samples.append((time.time(), now))
            self.sampled_max = max(self.sampled_max, sum(1 for x in now if x))
            self._stop.wait(POLL_S)

    def start(self) -> LeaderWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def terms(self) -> list[list[dict]]:
        """Every instance's own record of its terms as leader."""
        out = []
        for i in range(len(self.dep.orch_ports)):
            out.append(_get(self.dep.orch_url(i) + "/api/v1/leadership", self.token, 5)["terms"])
        return out


def leaders_at_once(terms: list[list[dict]], now: float) -> int:
    """The most instances whose terms overlap at one moment."""
    edges = []
    for mine in terms:
        for t in mine:
            edges.append((t["from"], 1))
            edges.append((t["until"] if t["until"] is not None else now, -1))
    edges.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = cur = 0
    for _, step in edges:
        cur += step
        most = max(most, cur)
    return most


def converged(dep: Deployment, token: str, halls: list[str], leaders: LeaderWatch | None) -> tuple[bool, str]:
    """Every hall on air (or degraded) with a warm standby, every relay alive, every instance
    answering and exactly one leading."""
    try:
        rows = {h["id"]: h for h in board(dep, token)["halls"]}
        rl = relays(dep, token)
    except SystemExit as exc:
        return False, str(exc)
    waiting = [h for h in halls if rows.get(h, {}).get("state") not in ("on_air", "degraded")
               or rows.get(h, {}).get("backup_state") != "standby"]
    if waiting:
        return False, f"{len(waiting)} halls not on air with a warm standby (e.g. {waiting[0]}: " \
                      f"{rows.get(waiting[0], {}).get('state')}/{rows.get(waiting[0], {}).get('backup_state')})"
    dead = [r["id"] for r in rl if not r["alive"]]
    if dead:
        return False, f"relays not alive: {', '.join(dead)}"
    if leaders is not None:
        now = leaders.leaders()
        if None in now or sum(1 for x in now if x) != 1:
            return False, f"leadership {now}"
    return True, ""


STABLE_S = 6.0  # converged means: the whole state holds this long (a late verdict would undo it)


def wait_converged(dep: Deployment, token: str, halls: list[str], leaders: LeaderWatch | None,
                   since: float) -> tuple[bool, float | None, str]:
    """Converged at the start of the first span of STABLE_S in which every check held."""
    deadline = since + CONVERGE_S + STABLE_S
    why, held_since = "", None
    while time.time() < deadline:
        ok, why = converged(dep, token, halls, leaders)
        if ok:
            held_since = held_since or time.time()
            if time.time() - held_since >= STABLE_S:
                return True, round((held_since - since) * 1000), ""
        else:
            held_since = None
        time.sleep(0.25)
    return False, None, why


def run_partition(dep: Deployment, token: str, kind: str, halls: list[str], cut_s: float = CUT_S) -> dict:
    """Cut, hold, heal, converge; the report."""
    from .drill import drill_report

    net = dep.hostnet
    if net is None:
        raise SystemExit(f"{kind} cuts links between hosts: run it with --profile hosts")
    watch = LeaderWatch(dep, token).start() if kind == "partition-leader" else None
    extra: dict = {}
    try:
        time.sleep(2.0)
        avoid = None
        if kind == "partition-leader":
            now = watch.leaders()
            if sum(1 for x in now if x) != 1:
                raise SystemExit(f"expected one leader before the cut, saw {now}")
            avoid = now.index(True)
            a, b = f"orch-{avoid + 1}", "redis"
            victim = dep._orch_names()[avoid]
            pairs = [(a, b)]
        elif kind == "partition-relay":
            rl = relays(dep, token)
            target = max((r for r in rl if r["role"] == "regional" and r["alive"]), key=lambda r: r["halls"])["id"]
            victim = target
            pairs = [(f"relay-{target}", f"orch-{i + 1}") for i in range(len(dep.orch_ports))]
        elif kind == "partition-hall":
            rows = board(dep, token)["halls"]
            # the hall host with the most halls, cut from the relay most of them pull from
            hosts: dict[str, list[dict]] = {}
            for name, ids in dep.hall_groups.items():
                host = dep.part_host[name].name
                hosts.setdefault(host, []).extend(r for r in rows if r["id"] in ids)
            host, on = max(hosts.items(), key=lambda kv: len(kv[1]))
            by_relay: dict[str, int] = {}
            for r in on:
                by_relay[r.get("relay", "")] = by_relay.get(r.get("relay", ""), 0) + 1
            target = max((k for k in by_relay if k), key=lambda k: by_relay[k])
            victim = f"{host} <-> relay-{target}"
            pairs = [(host, f"relay-{target}")]
            extra["cut_halls"] = sorted(r["id"] for r in on if r.get("relay") == target)
            extra["relay"] = target
        else:
            raise ValueError(kind)
        before = {h["id"]: h for h in board(dep, token, avoid)["halls"] if h["id"] in halls}
        cut_at = time.time()
        for x, y in pairs:
            net.cut(x, y)
        print(f"drill {kind}: cut {', '.join(f'{x} <-> {y}' for x, y in pairs)} at t={cut_at:.3f} "
              f"for {cut_s:.0f} s", flush=True)
        during: dict = {}
        end_cut = cut_at + cut_s
        while time.time() < end_cut:
            time.sleep(0.5)
            try:
                during = {h["id"]: h for h in board(dep, token, avoid)["halls"] if h["id"] in halls}
                extra["board_reads_during_cut"] = extra.get("board_reads_during_cut", 0) + 1
                if kind == "partition-relay":
                    row = next((r for r in relays(dep, token) if r["id"] == victim), {})
                    extra.setdefault("relay_samples", []).append((row.get("alive"), row.get("cut")))
            except SystemExit:
                extra["board_failures_during_cut"] = extra.get("board_failures_during_cut", 0) + 1
        healed_at = time.time()
        # what the last board of the cut said of each hall (the report's own evidence)
        extra["during_cut"] = {h: {k: r.get(k) for k in ("state", "relay", "backup", "media_state",
                                                         "backup_state", "last_media_ms_ago")}
                               for h, r in during.items()}
        net.heal_all()
        print(f"drill {kind}: healed at t={healed_at:.3f}", flush=True)
        ok, converge_ms, why = wait_converged(dep, token, halls, watch, healed_at)
        after = {h["id"]: h for h in board(dep, token)["halls"] if h["id"] in halls}
        report = drill_report(kind, victim, cut_at, halls, before, after)
        report.update({"cut_s": cut_s, "converged": ok, "converge_ms": converge_ms})
        if not ok:
            report["not_converged_because"] = why
        # receiving at the end of the cut, before the heal, too
        report["halls_receiving_during_cut"] = sum(
            1 for h in during.values() if h.get("media_state") == "receiving" and 0 <= h.get("last_media_ms_ago", 10**6) < 1000)
        if kind == "partition-leader":
            watch.stop()
            terms = watch.terms()
            report["leaders_at_once_max"] = leaders_at_once(terms, time.time())
            report["leaders_at_once_sampled_max"] = watch.sampled_max
            mine = terms[avoid]
            others = [t for i, ts in enumerate(terms) if i != avoid for t in ts]
            stepped = [t["until"] for t in mine if t["until"] and t["until"] >= cut_at]
            took = [t["from"] for t in others if t["from"] >= cut_at]
            report["stepped_down_ms"] = round((min(stepped) - cut_at) * 1000) if stepped else None
            report["new_leader_ms"] = round((min(took) - cut_at) * 1000) if took else None
            report["terms"] = {dep._orch_names()[i]: ts for i, ts in enumerate(terms)}
            report["instances_answering"] = len(_answering(dep, token))
        elif kind == "partition-relay":
            on_target = [h for h, b in before.items() if b.get("relay") == victim]
            report["relay_halls"] = len(on_target)
            report["relay_halls_kept"] = sum(1 for h in on_target if during.get(h, {}).get("relay") == victim)
            samples = extra.pop("relay_samples", [])
            # the control plane saw it silent and judged it cut, not dead (it keeps its halls)
            report["relay_seen_cut"] = any(cut for _, cut in samples)
            report["relay_declared_dead"] = any(alive is False for alive, _ in samples)
        elif kind == "partition-hall":
            cut = extra["cut_halls"]
            report["halls_cut"] = len(cut)
            report["halls_cut_receiving_during_cut"] = sum(
                1 for h in cut if during.get(h, {}).get("media_state") == "receiving"
                and 0 <= during.get(h, {}).get("last_media_ms_ago", 10**6) < 1000)
            report["halls_cut_moved"] = sum(1 for h in cut if during.get(h, {}).get("relay") not in (None, extra["relay"]))
        report.update({k: v for k, v in extra.items() if k not in report})
        return report
    finally:
        if watch is not None:
            watch.stop()
        net.heal_all()
