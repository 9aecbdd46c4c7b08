"""What the bitrate ladder costs at the origin: `diemcau bench ladder --seconds S [--json]`.

One relay (this process) with a ladder, a studio publishing to it from its own process, and two
subscribers. The relay's CPU is measured in four phases of S seconds each: both subscribers on the
studio's own encoding (nothing transcoded), one capped at the lowest layer, the two on the two
lower layers, and all back on the top (the layers linger, then stop). The difference to the first
phase is what transcoding costs; the time from an operator's cap to the first frame of the layer
at the subscriber is what on-demand transcoding costs in reaction time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from diemcau.tokens import MediaTokenSigner, MediaTokenVerifier
from edge_node.frames import Vp8Frames, vp8_keyframe_size

from .app import make_app
from .client import WhepSubscriber
from .ladder import parse_ladder
from .settings import RelaySettings

LADDER = ["360p:640x360:600", "180p:320x180:200"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Viewer:
    def __init__(self) -> None:
        self.size = None
        self.frames = 0
        self.size_at = 0.0
        self.assembler = Vp8Frames(self._frame)

    def _frame(self, data: bytes, ts: int, key: bool) -> None:
        self.frames += 1
        size = vp8_keyframe_size(data) if key else None
        if size and size != self.size:
            self.size, self.size_at = size, time.monotonic()

    def sinks(self, kind, codec):
        def sink(p):
            if kind == "video":
                self.assembler.packet(p.sequence_number, p.timestamp, p.marker, p.payload)
        return sink, None


async def run(args: argparse.Namespace) -> dict:
    signer = MediaTokenSigner.generate()
    port = _free_port()
    settings = RelaySettings(id="origin-1", port=port, ice_addresses=["127.0.0.1"], ladder=args.ladder,
                             layer_linger_s=2.0)
    runner = web.AppRunner(make_app(settings, MediaTokenVerifier.from_pem(signer.public_pem())))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    studio = subprocess.Popen(
        [sys.executable, "-m", "diemcau", "studio", "--whip", f"{url}/whip/programme",
         "--token", signer.mint("studio", "programme", "pub", 3600), "--width", str(args.width),
         "--height", str(args.height), "--fps", str(args.fps), "--bitrate", str(args.bitrate), "--picture", "busy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = [x.name for x in parse_ladder(args.ladder)]
    out: dict = {"ladder": args.ladder, "studio": f"{args.width}x{args.height}@{args.fps} {args.bitrate // 1000} kbps",
                 "seconds_per_phase": args.seconds, "phases": []}
    try:
        async with aiohttp.ClientSession() as http:
            from .app import CORE_KEY

            core = runner.app[CORE_KEY]
            for _ in range(200):
                src = core.sources.get("programme")
                if src is not None and src.live:
                    break
                await asyncio.sleep(0.05)
            viewers, subs, tokens = [], [], []
            for i in range(2):
                v = _Viewer()
                tok = signer.mint(f"hall-{i}", "programme", "sub", 3600)
                sub = WhepSubscriber(f"{url}/whep/programme", tok, v.sinks)
                await sub.connect(http)
                viewers.append(v)
                subs.append(sub)
                tokens.append(tok)
            await asyncio.sleep(3)

            async def bound(i: int, ceiling: str) -> None:
                async with http.post(subs[i].resource + "/layer", json={"ceiling": ceiling},
                                     headers={"Authorization": f"Bearer {tokens[i]}"}) as r:
                    assert r.status == 200, await r.text()

            async def phase(name: str, ceilings: list[str]) -> None:
                reaction = []
                for i, c in enumerate(ceilings):
                    before = viewers[i].size
                    t0 = time.monotonic()
                    await bound(i, c)
                    if c and c != "top":
                        for _ in range(100):
                            if viewers[i].size != before and viewers[i].size_at > t0:
                                reaction.append(round((viewers[i].size_at - t0) * 1000))
                                break
                            await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)
                cpu0, wall0, f0 = time.process_time(), time.monotonic(), [v.frames for v in viewers]
                await asyncio.sleep(args.seconds)
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                out["phases"].append({
                    "phase": name, "relay_cpu_pct": round(cpu / wall * 100, 1),
                    "transcoding": sorted(core.stats()["transcoding"]),
                    "sizes": [list(v.size) if v.size else None for v in viewers],
                    "fps": [round((v.frames - f) / wall, 1) for v, f in zip(viewers, f0)],
                    "cap_to_first_layer_frame_ms": reaction,
                })

            await phase("top only", ["", ""])
            await phase(f"one on {names[-1]}", [names[-1], ""])
            await phase(f"{names[0]} and {names[-1]}", [names[-1], names[0]])
            await phase("back on top (layers stopped)", ["", ""])
            await asyncio.sleep(0)
            for sub in subs:
                await sub.close(http)
    finally:
        studio.terminate()
        studio.wait()
        await runner.cleanup()
    base = out["phases"][0]["relay_cpu_pct"]
    for p in out["phases"]:
        p["over_top_only_pct"] = round(p["relay_cpu_pct"] - base, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="diemcau bench ladder", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", type=int, default=2_500_000)
    p.add_argument("--ladder", type=lambda s: [x for x in s.split(",") if x], default=LADDER)
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"ladder {', '.join(result['ladder'])}; studio {result['studio']}; {result['seconds_per_phase']:.0f} s a phase")
        for ph in result["phases"]:
            print(f"  {ph['phase']:<32} relay CPU {ph['relay_cpu_pct']:5.1f} % (+{ph['over_top_only_pct']:.1f}) "
                  f"transcoding {ph['transcoding'] or '-'}; sizes {ph['sizes']}; fps {ph['fps']}; "
                  f"cap to first frame {ph['cap_to_first_layer_frame_ms'] or '-'} ms")
    return 0
