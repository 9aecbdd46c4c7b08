"""Test helpers: a studio publishing into a relay and a WHEP subscriber counting what arrives."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from relay.client import WhepSubscriber
from relay.studio import Studio


@dataclass
class Counts:
    packets: dict = field(default_factory=lambda: {"audio": 0, "video": 0})
    frames: int = 0
    seqs: list = field(default_factory=list)
    arrivals: list = field(default_factory=list)  # monotonic arrival time of each video packet


def counting_sinks(counts: Counts):
    def sinks(kind, codec):
        def sink(packet):
            counts.packets[kind] += 1
            if kind == "video":
                counts.seqs.append(packet.sequence_number)
                counts.arrivals.append(time.monotonic())
                if packet.marker:
                    counts.frames += 1

        return sink, None

    return sinks


async def start_studio(relay_url: str, signer, stream: str = "programme", aud: str = "*", **kw) -> tuple[Studio, asyncio.Task]:
    studio = Studio(f"{relay_url}/whip/{stream}", signer.mint("studio", stream, "pub", 600, aud=aud),
                    width=kw.pop("width", 320), height=kw.pop("height", 180), **kw)
    task = asyncio.ensure_future(studio.run())
    return studio, task


async def subscribe(http: aiohttp.ClientSession, relay_url: str, signer, counts: Counts,
                    stream: str = "programme", subject: str = "viewer") -> WhepSubscriber:
    sub = WhepSubscriber(f"{relay_url}/whep/{stream}", signer.mint(subject, stream, "sub", 600),
                         counting_sinks(counts))
    await sub.connect(http)
    return sub
