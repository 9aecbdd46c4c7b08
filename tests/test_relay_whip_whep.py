"""The relay's WHIP/WHEP endpoints: media forwarded without decoding, and every bad request refused."""

import asyncio
import time

import aiohttp
import pytest
from relay.client import recvonly_offer
from aiortc.codecs import opus, vpx

from tests.conftest import wait_for
from tests.media import Counts, counting_sinks, start_studio, subscribe
from relay.client import WhepSubscriber


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail loudly if anything in this process decodes video or audio."""
    calls = []

    def spy(name):
        def decode(self, *a, **kw):
            calls.append(name)
            raise AssertionError(f"{name} was called: a relay must not decode")

        return decode

    monkeypatch.setattr(vpx.Vp8Decoder, "decode", spy("Vp8Decoder.decode"))
    monkeypatch.setattr(opus.OpusDecoder, "decode", spy("OpusDecoder.decode"))
    return calls


async def test_media_published_by_whip_reaches_whep_subscribers_without_decoding(start_relay, signer, no_decoding):
    relay = await start_relay()
    studio, task = await start_studio(relay.url, signer)
    counts_a, counts_b = Counts(), Counts()
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: "programme" in relay.core.sources and relay.core.sources["programme"].live, 10, what="publish")
        sub_a = await subscribe(http, relay.url, signer, counts_a, subject="a")
        sub_b = await subscribe(http, relay.url, signer, counts_b, subject="b")
        await wait_for(lambda: counts_a.frames >= 30 and counts_b.frames >= 30, 15, what="frames at both subscribers")
        assert counts_a.packets["audio"] > 20 and counts_b.packets["audio"] > 20
        # every subscriber's stream starts at a keyframe and has no sequence gap
        for c in (counts_a, counts_b):
            gaps = sum(((b - a) & 0xFFFF) - 1 for a, b in zip(c.seqs, c.seqs[1:]) if ((b - a) & 0xFFFF) < 0x8000)
            assert gaps == 0
        # the relay's receivers never queued anything for a decoder
        for session in relay.core.publishers.values():
            for inp in session.inputs:
                assert inp.receiver._RTCRtpReceiver__decoder_queue.qsize() == 0
        assert no_decoding == []
        await sub_a.close(http)
        await sub_b.close(http)
    studio.stop()
    await task


async def test_new_subscriber_waits_for_a_keyframe_and_keyframe_requests_are_coalesced(start_relay, signer):
    relay = await start_relay()
    studio, task = await start_studio(relay.url, signer)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: "programme" in relay.core.sources and relay.core.sources["programme"].live, 10)
        up = relay.core.sources["programme"].tracks["video"]
        before = up.keyframe_requests_up
        subs = [await subscribe(http, relay.url, signer, Counts(), subject=f"s{i}") for i in range(4)]
        await asyncio.sleep(0.6)
        # four joins within a fraction of a second cause at most a few upstream requests
        assert 1 <= up.keyframe_requests_up - before <= 4
        assert all(dt.started for dt in up.downtracks)
        for s in subs:
            await s.close(http)
    studio.stop()
    await task


def _offer_headers(token: str | None, ctype: str = "application/sdp") -> dict:
    h = {"Content-Type": ctype}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return h


@pytest.mark.parametrize(
    "case,status,reason",
    [
        ("no_token", 401, "missing Bearer"),
        ("garbage_token", 401, "not a diemcau media token"),
        ("expired_token", 401, "expired"),
        ("other_stream_token", 403, "is for stream"),
        ("publish_token", 403, "allows 'pub'"),
        ("wrong_content_type", 415, "application/sdp"),
        ("oversized", 413, "larger than"),
        ("junk_sdp", 400, "SDP"),
        ("no_media_sdp", 400, "no audio or video"),
        ("unknown_stream", 404, "unknown stream"),
        ("bad_stream_name", 400, "stream name"),
        ("stream_name_with_newline", 400, "stream name"),  # re.match's $ matched before a trailing "\n"
    ],
)
async def test_whep_bad_requests_get_4xx_with_a_reason(start_relay, signer, case, status, reason):
    relay = await start_relay()
    good = signer.mint("v", "programme", "sub", 60)
    offer = await recvonly_offer()
    stream = "programme"
    headers = _offer_headers(good)
    body = offer
    if case == "no_token":
        headers = _offer_headers(None)
    elif case == "garbage_token":
        headers = _offer_headers("xyz")
    elif case == "expired_token":
        headers = _offer_headers(signer.mint("v", "programme", "sub", -5))
    elif case == "other_stream_token":
        headers = _offer_headers(signer.mint("v", "other", "sub", 60))
    elif case == "publish_token":
        headers = _offer_headers(signer.mint("v", "programme", "pub", 60))
    elif case == "wrong_content_type":
        headers = _offer_headers(good, "application/json")
    elif case == "oversized":
        body = offer + ("a=x-padding:" + "z" * 1000 + "\r\n") * 40
    elif case == "junk_sdp":
        body = "v=0\r\nthis is not sdp\r\n"
    elif case == "no_media_sdp":
        body = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    elif case == "unknown_stream":
        stream = "nothing-here"
        headers = _offer_headers(signer.mint("v", stream, "sub", 60))
    elif case == "bad_stream_name":
        stream = "bad%20name!"
    elif case == "stream_name_with_newline":
        stream = "programme%0A"
        headers = _offer_headers(signer.mint("v", "programme\n", "sub", 60))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay.url}/whep/{stream}", data=body.encode(), headers=headers) as r:
            assert r.status == status, await r.text()
            payload = await r.json()
            assert reason in payload["error"]
            if status == 401:
                assert "Bearer" in r.headers.get("WWW-Authenticate", "")


async def test_second_publisher_is_refused_and_delete_ends_the_session(start_relay, signer):
    relay = await start_relay()
    studio, task = await start_studio(relay.url, signer)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: relay.core.publishers, 10)
        from relay.client import SignallingError, WhipPublisher

        second = WhipPublisher(f"{relay.url}/whip/programme", signer.mint("x", "programme", "pub", 60))
        with pytest.raises(SignallingError) as err:
            await second.connect(http)
        assert err.value.status == 409
        await second.close()
        # a subscriber's DELETE removes its session; a DELETE by someone else is refused
        counts = Counts()
        sub = await subscribe(http, relay.url, signer, counts, subject="me")
        assert len(relay.core.subscribers) == 1
        other = signer.mint("someone-else", "programme", "sub", 60)
        async with http.delete(sub.resource, headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 403
        async with http.delete(sub.resource, headers={"Authorization": f"Bearer {sub.token}"}) as r:
            assert r.status == 200
        assert relay.core.subscribers == {}
        async with http.delete(sub.resource, headers={"Authorization": f"Bearer {sub.token}"}) as r:
            assert r.status == 404
        await sub.close()
        # a single-use token (a participant's, a console preview's) opens one session: replayed after
        # its DELETE, or alongside it, it is refused
        once = signer.mint("participant-7", "programme", "sub", 60, once=True)
        sub = WhepSubscriber(f"{relay.url}/whep/programme", once, counting_sinks(Counts()))
        await sub.connect(http)
        again = WhepSubscriber(f"{relay.url}/whep/programme", once, counting_sinks(Counts()))
        with pytest.raises(SignallingError) as err:
            await again.connect(http)
        assert err.value.status == 401 and "single-use" in err.value.reason
        await again.close()
        await sub.close(http)  # DELETE
        assert relay.core.subscribers == {}
        replay = WhepSubscriber(f"{relay.url}/whep/programme", once, counting_sinks(Counts()))
        with pytest.raises(SignallingError) as err:
            await replay.connect(http)
        assert err.value.status == 401
        await replay.close()
    studio.stop()
    await task


async def test_subscriber_that_never_connects_is_dropped(start_relay, signer):
    relay = await start_relay(connect_timeout_s=1.0)
    studio, task = await start_studio(relay.url, signer)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: relay.core.sources.get("programme") and relay.core.sources["programme"].live, 10)
        offer = await recvonly_offer()  # its peer connection is already closed: ICE never completes
        async with http.post(f"{relay.url}/whep/programme", data=offer.encode(),
                             headers=_offer_headers(signer.mint("v", "programme", "sub", 60))) as r:
            assert r.status == 201
        assert len(relay.core.subscribers) == 1
        t0 = time.monotonic()
        await wait_for(lambda: not relay.core.subscribers, 5, what="abandoned session dropped")
        assert time.monotonic() - t0 < 3
        assert all(not t.downtracks for t in relay.core.sources["programme"].tracks.values())
    studio.stop()
    await task


async def test_player_info_is_a_long_poll_answered_at_each_change(start_relay, signer):
    """A player page learns of a change (a new speaker) the moment its hall's server does: with
    ?since=VERSION the request waits for the next change, or the end of its wait, or the server's stop."""
    relay = await start_relay("HN-01", role="edge")
    core = relay.core
    url = relay.url + "/player-info?stream=programme"
    h = {"Authorization": f"Bearer {signer.mint('player:HN-01', 'programme', 'sub', 60, aud='HN-01')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 401
        other = {"Authorization": f"Bearer {signer.mint('player:HN-01', 'programme', 'sub', 60, aud='HN-02')}"}
        async with http.get(url + "&since=0", headers=other) as r:
            assert r.status == 403  # another hall's token: refused before any wait
        for bad, why in (("since=abc", "since must be an integer"), ("since=-2", "since must be between"),
                         ("wait=61", "wait must be between"), ("wait=1.5", "wait must be an integer")):
            async with http.get(f"{url}&{bad}", headers=h) as r:
                assert r.status == 400 and why in await r.text(), (bad, r.status)
        core.set_info(hall="HN-01", floor="")
        async with http.get(url, headers=h) as r:  # no since: at once
            first = await r.json()
        assert first["hall"] == "HN-01" and first["floor"] == "" and first["version"] >= 1

        async def ask(since: int, wait: int = 10) -> tuple[dict, float]:
            t0 = time.monotonic()
            async with http.get(f"{url}&since={since}&wait={wait}", headers=h) as r:
                assert r.status == 200
                return await r.json(), time.monotonic() - t0

        waiting = asyncio.ensure_future(ask(first["version"]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        core.set_info(floor="")  # no change: nobody is woken
        await asyncio.sleep(0.1)
        assert not waiting.done()
        core.set_info(floor="HN-02")
        info, took = await asyncio.wait_for(waiting, 2)
        assert info["floor"] == "HN-02" and info["version"] == first["version"] + 1 and 0.3 < took < 1.0
        info, took = await ask(first["version"])  # a version not current (missed, or another server's): at once
        assert info["version"] == first["version"] + 1 and took < 0.5
        info, took = await ask(info["version"], wait=1)  # nothing changes: the same answer after the wait
        assert info["floor"] == "HN-02" and 0.9 < took < 2.0
        # the server stops: a waiting page is answered at once, not after its wait
        waiting = asyncio.ensure_future(ask(info["version"], wait=30))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await relay.stop()
        assert time.monotonic() - t0 < 3.0
        assert (await asyncio.wait_for(waiting, 3))[0]["floor"] == "HN-02"
