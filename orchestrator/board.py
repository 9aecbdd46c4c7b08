"""The fleet at a glance: one snapshot of every hall and relay, built once per tick for all viewers."""

from __future__ import annotations

import asyncio

from diemcau.topology import Hall

from .planner import serving_counts
from .settings import OrchestratorSettings
from .store import Store, now_ms


def hall_state(connected: bool, age_ms: int, stats: dict, dark_after_ms: int, assigned: dict | None = None,
               heartbeat_ms: int = 500, programme_fps: float = 0.0) -> str:
    """on_air | on_backup | degraded | audio_only | connecting | dark."""
    if not connected and age_ms > min(dark_after_ms, heartbeat_ms):
        return "dark"  # its control channel closed and no heartbeat since: the daemon is gone
    if age_ms > dark_after_ms:
        return "dark"
    st = stats.get("state", "idle")
    if st == "receiving":
        # the programme's frame rate is what most halls receive: a hall well below it is degraded
        fps = stats.get("fps", 0.0)
        slow = programme_fps > 0 and (fps < 0.5 * programme_fps or stats.get("freezes", 0) > 0 and fps < 0.75 * programme_fps)
        if stats.get("loss_pct", 0) > 2.0 or slow:
            return "degraded"
        primary = (assigned or {}).get("upstream")
        if primary and stats.get("relay") and stats["relay"] != primary:
            return "on_backup"  # switched by itself; the orchestrator has not re-planned yet
        return "on_air"
    if st == "audio_only":
        return "audio_only"
    if st in ("stalled",):
        return "degraded"
    return "connecting"


async def snapshot(store: Store, halls: list[Hall], settings: OrchestratorSettings) -> dict:
    nodes, conn, seen, assign, stats, drained, head, policies = await asyncio.gather(
        store.nodes(), store.connected(), store.last_seen(), store.assignments(), store.stats(),
        store.drained(), store.last_event_id(), store.layer_policies(),
    )
    now = now_ms()
    rates = sorted(s.get("fps", 0.0) for h, s in stats.items() if s.get("state") == "receiving" and h in seen
                   and now - seen[h] < settings.hall_dark_after_ms)
    programme_fps = rates[len(rates) // 2] if rates else 0.0
    hall_rows = []
    for h in halls:
        st = stats.get(h.id, {})
        age = now - seen[h.id] if h.id in seen else 10**9
        # its layer of the ladder, as the relay serving it reports (with the reason for the last switch)
        layer, reason = (stats.get(st.get("relay", ""), {}).get("layers", {}).get(h.id) or ["", ""])[:2]
        policy = policies.get(h.id, {})
        hall_rows.append(
            {
                "id": h.id,
                "name": h.name,
                "province": h.province,
                "region": h.region,
                "lat": h.lat,
                "lon": h.lon,
                "state": hall_state(h.id in conn, age, st, settings.hall_dark_after_ms, assign.get(h.id),
                                    settings.hall_heartbeat_ms, programme_fps),
                "connected": h.id in conn,
                "assigned_relay": assign.get(h.id, {}).get("upstream", ""),
                "assigned_backup": assign.get(h.id, {}).get("backup", ""),
                "last_seen_ms": age if age < 10**9 else None,
                **{k: v for k, v in st.items() if k != "state"},
                "media_state": st.get("state", "idle"),
                "layer": layer,
                "layer_reason": reason,
                "layer_policy": {k: policy[k] for k in ("floor", "ceiling", "audio_only") if k in policy},
            }
        )
        if layer == "audio" and hall_rows[-1]["state"] in ("on_air", "degraded", "on_backup"):
            hall_rows[-1]["state"] = "audio_only"
    hall_ids = {h.id for h in halls}
    serving = serving_counts(stats, seen, now, hall_ids, 3 * settings.hall_heartbeat_ms, 3 * settings.relay_heartbeat_ms)
    relay_rows = []
    for node, info in sorted(nodes.items()):
        if info.get("kind") != "relay":
            continue
        st = stats.get(node, {})
        age = now - seen.get(node, 0)
        alive = (node in conn and age < 5 * settings.relay_heartbeat_ms) or age < settings.relay_dead_after_ms
        cut = not alive and serving.get(node, 0) > 0  # silent to us, yet its halls receive from it
        alive = alive or cut
        relay_rows.append(
            {
                "id": node,
                "role": info.get("role"),
                "region": info.get("region"),
                "url": info.get("url"),
                "capacity": info.get("capacity"),
                "alive": alive,
                "drained": node in drained,
                "cut": cut,  # cut from the control plane, still serving: keeps its halls, takes no new ones
                "serving": serving.get(node, 0),
                "drained_by": drained.get(node, {}).get("by", ""),
                "connected": node in conn,
                "halls": sum(1 for n, a in assign.items() if a.get("upstream") == node and n in hall_ids),
                "upstream": assign.get(node, {}).get("upstream", ""),
                "last_seen_ms": age,
                **st,
            }
        )
    counts: dict[str, int] = {}
    for row in hall_rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"at": now, "halls": hall_rows, "relays": relay_rows, "counts": counts,
            "source": source_view(relay_rows), "events_head": head}


def source_view(relay_rows: list[dict]) -> dict:
    """The studio feeds as the origins see them: which are present, which is on air where."""
    origins = [{"relay": r["id"], "alive": r["alive"], "feeds": r.get("feeds", []),
                "active_feed": r.get("active_feed", ""), "switches": r.get("feed_switches", [])[-5:]}
               for r in relay_rows if r.get("role") == "origin"]
    on_air = {o["active_feed"] for o in origins if o["alive"] and o["active_feed"]}
    return {"origins": origins, "on_air": on_air.pop() if len(on_air) == 1 else ("mixed" if on_air else "")}
