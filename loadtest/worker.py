"""A worker process: joins its participants through the API, subscribes at their halls, verifies.

Input (stdin, JSON): {"api": url, "participants": [{"id", "hall", "token"}], "ramp_per_s",
"duration_s", "start_at"}. Output (stdout, JSON): one row per participant.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import aiohttp

from edge_node.verify import TrackVerifier
from relay.client import SignallingError, WhepSubscriber
from relay.ice import restrict_ice_addresses
from diemcau.tls import http_session


class Participant:
    def __init__(self, pid: str, hall: str, token: str) -> None:
        self.id, self.hall, self.token = pid, hall, token
        self.video = TrackVerifier("video", 90000)
        self.audio_packets = 0
        self.join_ms = -1.0
        self.first_media_ms = -1.0
        self.connected = False
        self.error = ""
        self._t0 = 0.0
        self.sub: WhepSubscriber | None = None
        self.rejoin_ms: list[float] = []  # each time it left and came back: API call to connected
        self.rejoins_failed = 0
        self.away = False

    def sinks(self, kind, codec):
        def on_packet(packet):
            if self.first_media_ms < 0:
                self.first_media_ms = (time.monotonic() - self._t0) * 1000
            if kind == "video":
                self.video.on_packet(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            else:
                self.audio_packets += 1

        return on_packet, (self.video.on_sr if kind == "video" else None)

    async def join(self, http: aiohttp.ClientSession, api: str, first: bool = True) -> None:
        self._t0 = time.monotonic()

        for attempt in range(20):
            try:
                async with http.post(f"{api}/api/v1/join", headers={"Authorization": f"Bearer {self.token}"}) as r:
                    body = await r.json()
                    if r.status == 503:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if r.status != 200:
                        self.error = f"join {r.status}: {body.get('error')}"
                        return
                self.sub = WhepSubscriber(body["whep_url"], body["token"], self.sinks)
                await self.sub.connect(http, 15.0)
                self.connected = True
                self.join_ms = (time.monotonic() - self._t0) * 1000
                return
            except SignallingError as exc:
                self.error = str(exc)
                if self.sub is not None:
                    await self.sub.close()
                    self.sub = None
                await asyncio.sleep(exc.retry_after or 1.0)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(1.0)

    async def leave(self, http: aiohttp.ClientSession) -> None:
        """Leave the hall (WHEP DELETE) as a participant closing the page does."""
        self.away = True
        sub, self.sub = self.sub, None
        if sub is not None:
            await sub.close(http)

    async def rejoin(self, http: aiohttp.ClientSession, api: str) -> None:
        """Come back through the API: a new join, a new single-use media token, a new session. What
        it saw while away is not counted against it (a new picture-id span)."""
        self.video.after_absence()
        self.connected = False
        await self.join(http, api, first=False)
        if self.connected:
            self.rejoin_ms.append(round(self.join_ms, 1))
        else:
            self.rejoins_failed += 1
        self.away = False

    def row(self) -> dict:
        v = self.video
        expected = v.frames_expected()
        return {
            "id": self.id, "hall": self.hall, "connected": self.connected, "error": self.error if not self.connected else "",
            "join_ms": round(self.join_ms, 1), "first_media_ms": round(self.first_media_ms, 1),
            "frames": v.frames, "frames_expected": expected,
            "delivered_ratio": round(v.frames / expected, 4) if expected else 0.0,
            "max_freeze_ms": round(v.max_gap_ms, 1), "gaps": [list(g) for g in v.gaps],
            "audio_packets": self.audio_packets, "packets_lost": v.lost,
            "rejoin_ms": self.rejoin_ms, "rejoins_failed": self.rejoins_failed,
        }


async def run(cfg: dict) -> list[dict]:
    ice = cfg.get("ice", "127.0.0.1")
    if ice:  # else: every address of the machine it runs on (a worker on another host)
        restrict_ice_addresses([a for a in ice.split(",") if a])
    people = [Participant(p["id"], p["hall"], p["token"]) for p in cfg["participants"]]
    await asyncio.sleep(max(cfg["start_at"] - time.time(), 0))
    end = cfg["start_at"] + cfg["duration_s"]
    async with http_session() as http:
        joins = []
        for i, p in enumerate(people):
            joins.append(asyncio.ensure_future(p.join(http, cfg["api"])))
            await asyncio.sleep(1.0 / cfg["ramp_per_s"])
        churn = None
        if cfg.get("churn_per_min"):
            churn = asyncio.ensure_future(_churn(people, http, cfg, end))
        await asyncio.sleep(max(end - time.time(), 0))
        if churn is not None:
            churn.cancel()
            await asyncio.gather(churn, return_exceptions=True)
        for j in joins:
            j.cancel()
        rows = [p.row() for p in people]
        for p in people:
            if p.sub is not None:
                await p.sub.close(http)
    return rows


async def _churn(people: list[Participant], http: aiohttp.ClientSession, cfg: dict, end: float) -> None:
    """Participants leave and come back at random (a Poisson process of `churn_per_min`)."""
    rng = random.Random(7)
    away = cfg.get("churn_away_s", 3.0)
    tasks: set[asyncio.Task] = set()

    async def one(p: Participant) -> None:
        await p.leave(http)
        await asyncio.sleep(away)
        await p.rejoin(http, cfg["api"])

    try:
        while time.time() < end - away - 5:
            await asyncio.sleep(rng.expovariate(cfg["churn_per_min"] / 60))
            present = [p for p in people if p.connected and not p.away]
            if present:
                t = asyncio.ensure_future(one(rng.choice(present)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        raise


def main() -> None:
    cfg = json.loads(sys.stdin.read())
    rows = asyncio.run(run(cfg))
    sys.stdout.write(json.dumps(rows))


if __name__ == "__main__":
    main()
