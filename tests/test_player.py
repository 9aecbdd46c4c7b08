"""The hall's screen: its player page in Chromium plays the programme and says when it is reconnecting."""

import os
import signal
import subprocess
import sys
import time

import aiohttp

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import free_port, wait_for
from tests.media import start_studio
from tests.test_console import browser, wait_for_value  # noqa: F401  (browser: the Chromium fixture)

PLAYING = "document.querySelector('#status').dataset.state === 'playing' && document.querySelector('#status').hidden"
DECODED = """async () => { const pc = window.dcPlayer; if (!pc) return 0; let n = 0;
    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; });
    return n; }"""


def _spawn_origin(orch, secrets, port):
    d, _ = secrets
    env = dict(os.environ, DIEMCAU_RELAY_ICE_ADDRESSES="127.0.0.1", DIEMCAU_RELAY_ORCHESTRATOR_URL=orch.control_url,
               DIEMCAU_RELAY_CREDENTIAL=orch.credential("origin-1"), DIEMCAU_RELAY_MEDIA_PUBLIC_KEY=str(d / "media.pub"),
               DIEMCAU_RELAY_HEARTBEAT_MS="300")
    return subprocess.Popen([sys.executable, "-m", "diemcau", "relay", "--id", "origin-1", "--role", "origin",
                             "--region", "north", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_player_page_plays_the_programme_and_shows_reconnecting_when_the_relay_dies(
        start_orchestrator, signer, secrets_dir, browser):  # noqa: F811
    orch = await start_orchestrator()
    port = free_port()
    origin = _spawn_origin(orch, secrets_dir, port)
    url = f"http://127.0.0.1:{port}"
    studio, task = await start_studio(url, signer, fps=15)
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url, credential=orch.credential("HN-01"),
                                   ice_addresses=["127.0.0.1"], viewers_port=0,
                                   media_public_key=str(secrets_dir[0] / "media.pub")))
    await hall.start_async()
    try:
        await wait_for(lambda: hall.stats().frames_received > 30, 30, what="the hall receiving")
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            async with http.post(orch.url + "/api/v1/halls/HN-01/player", json={"ttl_s": 30}, headers=h) as r:
                assert r.status == 422  # shorter than a minute
            async with http.post(orch.url + "/api/v1/halls/XX-01/player", headers=h) as r:
                assert r.status == 404
            async with http.post(orch.url + "/api/v1/halls/HN-01/player", headers=h) as r:
                assert r.status == 200, await r.text()
                player_url = (await r.json())["url"]
            assert player_url.startswith(hall.local.url + "/player/#")
            # without a token the page says so; the page's files are there, nothing else is
            async with http.get(hall.local.url + "/player/secret.txt") as r:
                assert r.status == 404

        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        seen: list[str] = []
        page.on("console", lambda msg: seen.append(f"console {msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: seen.append(f"page error: {exc}"))
        page.on("response", lambda r: seen.append(f"{r.status} {r.request.method} {r.url[:80]}"))

        async def playing(timeout_ms):
            try:
                await page.wait_for_function(PLAYING, timeout=timeout_ms)
            except Exception:
                status = await page.inner_text("#status")
                pcs = await page.evaluate("""async () => { const pc = window.dcPlayer; if (!pc) return null;
                    const out = [pc.connectionState]; (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp')
                    out.push(JSON.stringify({k: s.kind, p: s.packetsReceived, l: s.packetsLost, f: s.framesReceived,
                    d: s.framesDecoded, kf: s.keyFramesDecoded, pli: s.pliCount, n: s.nackCount, c: s.codecId})); });
                    return out; }""")
                raise AssertionError(f"not playing: {status!r} {pcs} {seen[-12:]}; hall: {hall.stats()}; "
                                     f"local viewers: {hall.local.core.sources}") from None
        await page.goto(hall.local.url + "/player/")
        await page.wait_for_selector("#status[data-state=no_token]", timeout=5000)
        await page.goto(player_url)
        await playing(15000)
        first = await page.evaluate(DECODED)
        # frames keep being decoded (a loaded box may slow the page, not stop it)
        await wait_for_value(page, DECODED, first + 5, 5, "frames decoded by the page")
        assert "HN-01" in await page.inner_text("#title")

        # the hall's only relay dies: the screen says "reconnecting" instead of holding a frozen frame
        origin.send_signal(signal.SIGKILL)
        origin.wait()
        await page.wait_for_selector("#status[data-state=reconnecting]", timeout=3000)
        assert "kết nối lại" in await page.inner_text("#status-text")

        # the relay comes back (same address): the studio republishes, the hall resubscribes, the page plays
        origin = _spawn_origin(orch, secrets_dir, port)
        t0 = time.monotonic()
        await playing(30000)
        print(f"playing again {time.monotonic() - t0:.1f} s after the relay restarted")
        again = await page.evaluate(DECODED)
        await wait_for_value(page, DECODED, again + 5, 5, "frames decoded after the relay came back")
    finally:
        await hall.stop()
        studio.stop()
        await task
        origin.kill()
        origin.wait()
