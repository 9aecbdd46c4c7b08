"""The bitrate ladder: layers transcoded once at the origin, chosen per subscriber, pulled on demand."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from edge_node.frames import Vp8Frames, vp8_keyframe_size
from relay.agent import RelayAgent
from relay.client import WhepSubscriber
from relay.ladder import LayerSpec, parse_ladder, split_stream, vp8_payloads
from tests.conftest import wait_for
from tests.media import start_studio

LADDER = ["90p:160x90:120"]


class Watch:
    """A WHEP subscriber that assembles VP8 frames and notes each keyframe's size and the audio."""

    def __init__(self) -> None:
        self.sizes: list[tuple[float, tuple[int, int]]] = []
        self.frames = 0
        self.video_seqs: list[int] = []
        self.audio_at: list[float] = []
        self.assembler = Vp8Frames(self._frame)

    def _frame(self, data: bytes, ts: int, keyframe: bool) -> None:
        self.frames += 1
        size = vp8_keyframe_size(data) if keyframe else None
        if size:
            self.sizes.append((time.monotonic(), size))

    @property
    def size(self):
        return self.sizes[-1][1] if self.sizes else None

    def sinks(self, kind, codec):
        def sink(packet):
            if kind == "video":
                self.video_seqs.append(packet.sequence_number)
                self.assembler.packet(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            else:
                self.audio_at.append(time.monotonic())
        return sink, None

    def seq_gaps(self) -> int:
        s = self.video_seqs
        return sum(((b - a) & 0xFFFF) - 1 for a, b in zip(s, s[1:]) if ((b - a) & 0xFFFF) < 0x8000)


async def _layer(http, sub: WhepSubscriber, token: str, **body) -> dict:
    async with http.post(sub.resource + "/layer", json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def test_ladder_settings_are_validated():
    assert parse_ladder(["360p:640x360:600", "180p:320x180:200"])[1] == LayerSpec("180p", 320, 180, 200)
    for bad, why in ((["360p:640x361:600"], "even"), (["x:640x360"], "NAME:WIDTHxHEIGHT:KBPS"),
                     (["a:320x180:200", "a:160x90:100"], "repeat"), (["a:320x180:200", "b:160x90:300"], "cost less")):
        with pytest.raises(ValueError, match=why):
            parse_ladder(bad)
    assert split_stream("programme~180p") == ("programme", "180p")
    # one frame in packets of at most 1200 bytes, each with the picture id, the first with S=1
    payloads = vp8_payloads(bytes(3000), 0x1234)
    assert [p[0] for p in payloads] == [0x90, 0x80, 0x80] and all(p[2:4] == b"\x92\x34" for p in payloads)


async def test_a_subscriber_moves_between_layers_at_keyframes_with_one_continuous_stream(start_relay, signer):
    relay = await start_relay(ladder=LADDER)
    studio, task = await start_studio(relay.url, signer, width=320, height=180)
    w = Watch()
    token = signer.mint("hall-a", "programme", "sub", 600)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: "programme" in relay.core.sources and relay.core.sources["programme"].live, 10, what="publish")
        sub = WhepSubscriber(f"{relay.url}/whep/programme", token, w.sinks)
        await sub.connect(http)
        await wait_for(lambda: w.size == (320, 180) and w.frames > 10, 10, what="the top layer")
        assert relay.core.transcoders == {}  # nobody needs a lower layer: nothing is transcoded

        # the operator caps the hall at the lowest layer: it arrives, at a keyframe, in one stream
        state = await _layer(http, sub, token, ceiling="90p")
        assert state["ceiling"] == "90p"
        t0 = time.monotonic()
        await wait_for(lambda: w.size == (160, 90), 5, what="the 90p layer")
        print(f"ceiling 90p: first 90p keyframe after {(time.monotonic() - t0) * 1000:.0f} ms")
        frames = w.frames
        await wait_for(lambda: w.frames > frames + 20, 5, what="90p frames decoding on")
        assert relay.core.stats()["transcoding"] == ["programme~90p"]
        assert relay.core.stats()["layers"]["hall-a"][0] == "90p"

        # audio only: video stops, audio goes on
        await _layer(http, sub, token, audio_only=True)
        await asyncio.sleep(0.5)
        frames, audio = w.frames, len(w.audio_at)
        await asyncio.sleep(1.5)
        assert w.frames == frames and len(w.audio_at) > audio + 40

        # back to the top: the studio's own encoding again, sequence numbers never jumped
        await _layer(http, sub, token, audio_only=False, ceiling="")
        await wait_for(lambda: w.size == (320, 180) and w.sizes[-1][0] > t0, 10, what="the top layer again")
        assert w.seq_gaps() == 0
        assert w.assembler.skipped <= 1

        # bad policies are refused with a reason
        async with http.post(sub.resource + "/layer", json={"ceiling": "4k"},
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 422 and "ceiling" in await r.text()
        await sub.close(http)
    studio.stop()
    await task


async def test_a_regional_relay_pulls_only_the_layers_its_subscribers_need(start_orchestrator, start_relay, signer):
    orch = await start_orchestrator()
    relays, agents = {}, []
    for rid, role in (("origin-1", "origin"), ("north-1", "regional")):
        relays[rid] = await start_relay(rid, role, region="north", orchestrator_url=orch.control_url,
                                        credential=orch.credential(rid), heartbeat_ms=300, ladder=LADDER,
                                        layer_linger_s=1.0)
        agents.append(RelayAgent(relays[rid].core, relays[rid].url))
        agents[-1].start()
    origin, regional = relays["origin-1"].core, relays["north-1"].core
    studio, task = await start_studio(relays["origin-1"].url, signer, width=320, height=180)
    try:
        await wait_for(lambda: regional.layer_up("programme", "top") is not None
                       and regional.sources["programme"].live, 20, what="the programme at the regional relay")
        a, b = Watch(), Watch()
        ta, tb = signer.mint("hall-a", "programme", "sub", 600), signer.mint("hall-b", "programme", "sub", 600)
        async with aiohttp.ClientSession() as http:
            sa = WhepSubscriber(f"{relays['north-1'].url}/whep/programme", ta, a.sinks)
            sb = WhepSubscriber(f"{relays['north-1'].url}/whep/programme", tb, b.sinks)
            await sa.connect(http)
            await sb.connect(http)
            await wait_for(lambda: a.size == (320, 180) and b.size == (320, 180), 10, what="the top layer at both")
            # the regional relay pulls the programme only (adapt=0: a relay takes the top layer as is)
            assert [k for k in origin.sources if "~" in k] == [] and origin.transcoders == {}
            assert all(s.control is None for s in origin.subscribers.values())

            await _layer(http, sa, ta, ceiling="90p")
            await wait_for(lambda: a.size == (160, 90), 6, what="hall-a on 90p")
            # hall-a's layer came down the tree: transcoded at the origin, pulled by the regional relay
            assert "programme~90p" in regional.sources and "programme~90p" in agents[1].layer_pulls
            assert origin.stats()["transcoding"] == ["programme~90p"]
            await asyncio.sleep(1.0)
            assert b.size == (320, 180)  # hall-b keeps its layer

            # nobody needs 90p any more: after the linger it stops at both tiers
            await _layer(http, sa, ta, ceiling="")
            await wait_for(lambda: "programme~90p" not in regional.sources and not agents[1].layer_pulls, 10,
                           what="the regional relay to stop pulling 90p")
            await wait_for(lambda: origin.transcoders == {}, 10, what="the origin to stop transcoding")
            assert a.size == (320, 180)
            await sa.close(http)
            await sb.close(http)
    finally:
        studio.stop()
        await task
        for ag in agents:
            await ag.stop()
