"""A hall's receiver for tests that run it in a network namespace: WHEP in, a JSON line out every 250 ms.

python -m tests.netprobe WHEP_URL TOKEN ICE_ADDRESS SECONDS
Each line: {"t": unix time, "frames": complete VP8 frames so far, "size": [w, h] of the last
keyframe, "video_bytes": so far, "audio": audio packets so far, "audio_gap_ms": the longest
silence between audio packets since the previous line}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from edge_node.frames import Vp8Frames, vp8_keyframe_size
from relay.client import WhepSubscriber
from relay.ice import restrict_ice_addresses


async def main(url: str, token: str, address: str, seconds: float) -> None:
    restrict_ice_addresses([address])
    state = {"frames": 0, "size": None, "video_bytes": 0, "audio": 0, "gap": 0.0, "last_audio": 0.0}

    def on_frame(data: bytes, ts: int, keyframe: bool) -> None:
        state["frames"] += 1
        if keyframe:
            state["size"] = vp8_keyframe_size(data)

    sub: WhepSubscriber | None = None
    # like a real player: a picture that cannot be decoded asks the relay for a keyframe
    frames = Vp8Frames(on_frame, lambda: sub is not None and asyncio.ensure_future(sub.request_keyframe()))

    def sinks(kind, codec):
        def sink(packet):
            if kind == "video":
                state["video_bytes"] += len(packet.payload)
                frames.packet(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            else:
                now = time.monotonic()
                if state["last_audio"]:
                    state["gap"] = max(state["gap"], now - state["last_audio"])
                state["last_audio"] = now
                state["audio"] += 1
        return sink, None

    async with aiohttp.ClientSession() as http:
        sub = WhepSubscriber(url, token, sinks)
        await sub.connect(http, 15)
        print(json.dumps({"connected": True, "resource": sub.resource}), flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            silent = now - state["last_audio"] if state["last_audio"] else 0.0
            for kind, inp in sub.inputs.items():
                task = inp.receiver.__dict__.get("_RTCRtpReceiver__rtcp_task")
                if task is not None and task.done() and not state.get(f"dead_{kind}"):
                    state[f"dead_{kind}"] = True
                    exc = task.exception() if not task.cancelled() else "cancelled"
                    print(json.dumps({"rtcp_died": kind, "error": repr(exc)}), flush=True, file=sys.stderr)
            print(json.dumps({"t": time.time(), "frames": state["frames"], "size": state["size"],
                              "video_bytes": state["video_bytes"], "audio": state["audio"],
                              "audio_gap_ms": round(max(state["gap"], silent) * 1000)}), flush=True)
            state["gap"] = 0.0
        await sub.close(http)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
