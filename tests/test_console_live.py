"""The operator console in Chromium against a real deployment of 70 halls (every part its own process)."""

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from diemcau.deploy import Deployment
from diemcau.topology import load_profile, load_topology
from tests.test_console import browser, log_in, wait_for_value  # noqa: F401  (browser: the Chromium fixture)

DOCS = Path(__file__).parent.parent / "docs"
SOLO = "KG-01"  # this hall runs in its own process so that it can be killed alone
MOVED = "HN-02"
SOLO_LAYER = "HP-01"  # its layer is capped from the console


@pytest.fixture
async def deployment(tmp_path):
    env_redis = os.environ.pop("REDIS_URL", None)  # the embedded Redis, as `diemcau demo` runs it
    dep = Deployment(profile=load_profile("local"), workdir=tmp_path, host="127.0.0.1")
    dep.log_dir = tmp_path / "logs"
    dep.log_dir.mkdir()
    halls = [h.id for h in load_topology().halls]
    assert SOLO in halls and MOVED in halls

    def start():
        dep.start_redis()
        dep.start_control_plane(0)
        dep.start_relays()
        # a light programme (the console is under test here, not the media path): 70 halls, the
        # relays, two studio encoders, Chromium and this test share two cores
        dep.start_studio(900, fps=15, width=320, height=180)
        dep.start_studio(900, fps=15, width=320, height=180, role="backup")
        dep.start_halls([h for h in halls if h != SOLO], per_process=35)
        dep.start_halls([SOLO])

    try:
        await asyncio.to_thread(start)
        yield dep
    finally:
        await asyncio.to_thread(dep.stop)
        if env_redis is not None:
            os.environ["REDIS_URL"] = env_redis


async def _states(page) -> dict:
    return await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('tr[data-hall]')].map(r => [r.dataset.hall, r.dataset.state]))")


@pytest.mark.timeout(300)
async def test_console_sees_and_steers_a_live_deployment_of_70_halls(deployment, browser):  # noqa: F811
    dep = deployment
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    said: list[str] = []  # what the page said (warnings, errors): the first thing to read when a step fails
    page.on("console", lambda m: said.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
    page.on("pageerror", lambda e: said.append(f"pageerror: {e}"))
    # 70 halls, nine relays and two studios are starting up on two cores while the page loads
    await log_in(page, dep.base_url, dep.operator_password, board_timeout_ms=30_000)
    assert await page.locator("tr[data-hall]").count() == 70
    assert await page.locator("circle[data-map-hall]").count() == 70

    # every hall receives the programme, and the page shows it
    t0 = time.time()
    try:
        await page.wait_for_function(
            "document.querySelectorAll('tr[data-hall][data-state=on_air], tr[data-hall][data-state=degraded]')"
            ".length === 70", timeout=90_000)
    except Exception:
        token = await asyncio.to_thread(dep.login)
        rows = (await asyncio.to_thread(dep.get, "/api/v1/halls", token))["halls"]
        bad = [(h["id"], h["state"], h.get("fps"), h.get("loss_pct"), h.get("freezes"), h.get("relay"),
                h.get("assigned_relay")) for h in rows if h["state"] != "on_air"]
        raise AssertionError(f"not all on air: {bad}") from None
    states = await _states(page)
    print(f"all 70 halls receiving on the page after {time.time() - t0:.1f} s; "
          f"{sum(s == 'on_air' for s in states.values())} on air, the rest degraded")
    # which studio feed is on air (the primary, unless the studio stalled for CPU and the origins
    # failed over to the backup: both are right answers on a loaded box)
    await page.wait_for_selector("#source-badge:not([hidden])", timeout=5000)
    feed = await page.get_attribute("#source-badge", "data-feed")
    assert feed in ("primary", "backup", "mixed")  # mixed: the two origins chose differently for a moment

    # the programme preview plays: the page's own WebRTC stats show decoded frames increasing
    await page.click("#preview-toggle")
    decoded = """async () => { if (!window.dcPreview) return 0; let n = 0;
        (await window.dcPreview.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video')
        n = s.framesDecoded || 0; }); return n; }"""
    # (on a loaded box the first answer may need a retry: the page reconnects by itself)
    deadline = time.time() + 60
    while (first := await page.evaluate(decoded)) <= 10:
        if time.time() > deadline:
            why = await page.evaluate("""async () => { const pc = window.dcPreview; if (!pc) return 'no peer connection; toast: '
                + document.querySelector('#toast').textContent; const out = [pc.connectionState, pc.iceConnectionState];
                (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') out.push(JSON.stringify({k: s.kind,
                p: s.packetsReceived, l: s.packetsLost, f: s.framesReceived, d: s.framesDecoded, kf: s.keyFramesDecoded,
                pli: s.pliCount, n: s.nackCount})); }); return out.join(' '); }""")
            raise AssertionError(f"the preview decoded {first} frames in 60 s: {why}; the page said: {said[-12:]}")
        await asyncio.sleep(0.25)
    await wait_for_value(page, decoded, first + 5, 10, "frames decoded by the preview")
    await page.click("#preview-toggle")  # seen playing; the rest of the test needs the page's CPU more
    await page.wait_for_function("!window.dcPreview", timeout=5000)

    # a hall's daemon dies: the board the server publishes shows it dark within 1.5 s, and that board
    # reaches the page within 1 s (the page notes when each state arrived, beside the snapshot's time)
    dep.procs[f"hall-{SOLO}"].send_signal(signal.SIGKILL)
    killed_ms = time.time() * 1000
    try:
        await page.wait_for_selector(f"tr[data-hall='{SOLO}'][data-state='dark']", timeout=15_000)
    except Exception:
        token = await asyncio.to_thread(dep.login)
        server = (await asyncio.to_thread(dep.get, f"/api/v1/halls/{SOLO}", token))["state"]
        shown = await page.evaluate(f"window.dcShown['{SOLO}']")
        raise AssertionError(f"{SOLO} not dark on the page 15 s after SIGKILL: the server says {server}, "
                             f"the page last got {shown}; the page said: {said[-12:]}") from None
    shown = await page.evaluate(f"window.dcShown['{SOLO}']")
    published, reached = shown["at"] - killed_ms, shown["shown"] - shown["at"]
    print(f"{SOLO} dark on the page {published + reached:.0f} ms after SIGKILL: on the server's board after "
          f"{published:.0f} ms, on the page {reached:.0f} ms later")
    assert published <= 1500 and reached <= 1000, (published, reached)
    assert await page.get_attribute(f"circle[data-map-hall='{SOLO}']", "class") == "dot s-dark"

    # an operator moves a hall to another relay: confirmed, carried out, on the board and in the log
    # (the leader may re-plan the hall between the operator reading the board and the click: the
    # server then refuses the stale move with 409, and the operator looks again and retries)
    token = await asyncio.to_thread(dep.login)
    for attempt in range(3):
        # (on a loaded box a hall may be on its standby for a moment before the plan catches up:
        # the operator acts on a hall whose board row and plan agree)
        deadline = time.time() + 30
        while True:
            hall = (await asyncio.to_thread(dep.get, f"/api/v1/halls/{MOVED}", token))
            if hall.get("relay") == hall["assigned_relay"] or time.time() > deadline:
                break
            await asyncio.sleep(0.5)
        current = hall["assigned_relay"]
        relays = (await asyncio.to_thread(dep.get, "/api/v1/relays", token))["relays"]
        target = next(r["id"] for r in relays if r["role"] == "regional" and r["alive"]
                      and r["id"] not in (current, hall.get("backup")))
        await page.wait_for_selector(f"tr[data-hall='{MOVED}'] td.relay:has-text('{current}')", timeout=10_000)
        await page.click(f"tr[data-hall='{MOVED}']")
        await page.select_option("#move-target", target)
        await page.click("#move-go")
        text = await page.inner_text("#confirm-text")
        assert target in text
        if current not in text and attempt < 2:
            # the leader re-planned the hall between our reading of the API and the page's board:
            # the dialog names where it is now; the operator cancels and looks again
            print(f"{MOVED} moved by the leader meanwhile ({text}); looking again")
            await page.click("#confirm button[value=cancel]")
            await page.keyboard.press("Escape")
            continue
        assert current in text, text
        async with page.expect_response(lambda r: r.url.endswith(f"/api/v1/halls/{MOVED}/move"), timeout=15_000) as resp:
            await page.click("#confirm-ok")
        status = (await resp.value).status
        if status == 202:
            break
        body = await (await resp.value).text()
        assert status == 409 and attempt < 2, f"move answered {status}: {body}"
        print(f"move of {MOVED} refused ({body}); looking again")
        await page.keyboard.press("Escape")
    await page.wait_for_selector("#toast.ok", timeout=5000)
    await page.wait_for_selector(f"tr[data-hall='{MOVED}'] td.relay:has-text('{target}')", timeout=20_000)
    after = await asyncio.to_thread(dep.get, f"/api/v1/halls/{MOVED}", token)
    assert after["relay"] == target
    print(f"{MOVED} moved to {target}; programme frames missing before {hall.get('frames_missing', 0)}, "
          f"after {after.get('frames_missing', 0)}")

    # a second operator's stale move of the same hall is refused, with the reason on the page
    await page.click(f"tr[data-hall='{MOVED}']")
    await page.evaluate(f"""fetch('/api/v1/halls/{MOVED}/move', {{method: 'POST', headers: {{'Content-Type':
        'application/json', 'X-Diemcau-Request': '1'}}, body: JSON.stringify({{relay: '{current}', expect: '{current}'}})}})
        .then(r => window.staleStatus = r.status)""")
    await page.wait_for_function("window.staleStatus === 409", timeout=5000)
    await page.keyboard.press("Escape")

    # cap a hall's layer of the bitrate ladder from its dialog: the origin transcodes the layer,
    # the hall's relay pulls it, and the board shows the hall on it with the reason
    await page.click(f"tr[data-hall='{SOLO_LAYER}']")
    await page.select_option("#layer-ceiling", "180p")
    await page.click("#layer-go")
    assert "180p" in await page.inner_text("#confirm-text")
    async with page.expect_response(lambda r: r.url.endswith(f"/api/v1/halls/{SOLO_LAYER}/layer")) as resp:
        await page.click("#confirm-ok")
    assert (await resp.value).status == 202, await (await resp.value).text()
    await page.keyboard.press("Escape")
    t0 = time.time()
    await page.wait_for_selector(f"tr[data-hall='{SOLO_LAYER}'] td.layer:has-text('180p')", timeout=20_000)
    print(f"{SOLO_LAYER} on the 180p layer on the page {time.time() - t0:.1f} s after the operator's click")

    # switch the studio source from the console: the other feed goes on air everywhere
    # (on a loaded box the origins may fail over by themselves between reading the badge and the
    # click: the server then refuses the stale switch with 409, and the operator tries again)
    for attempt in range(3):
        feed = await page.get_attribute("#source-badge", "data-feed")
        other = "primary" if feed == "backup" else "backup"
        await page.click(f"button[data-source={other}]")
        async with page.expect_response(lambda r: r.url.endswith("/api/v1/source") and r.request.method == "POST") as resp:
            await page.click("#confirm-ok")
        status = (await resp.value).status
        if status == 200:
            break
        assert status == 409 and attempt < 2, f"source switch answered {status}"
    await page.wait_for_selector(f"#source-badge[data-feed={other}]", timeout=10_000)
    await page.screenshot(path=str(DOCS / "console-board.png"))

    # the log shows the operator's actions with who did them; filterable; exportable as CSV
    await page.click("#tabs button[data-tab=log]")
    await page.wait_for_selector(f"#events tr[data-kind=operator_move]:has-text('{MOVED}'):has-text('admin')",
                                 timeout=5000)
    await page.wait_for_selector("#events tr[data-kind=source_switch]:has-text('admin')", timeout=5000)
    await page.wait_for_selector(f"#events tr[data-kind=moved]:has-text('{target}')", timeout=5000)
    await page.screenshot(path=str(DOCS / "console-log.png"))
    await page.fill("#log-filter input[name=subject]", MOVED)
    await page.click("#log-filter button[type=submit]")
    await page.wait_for_function(
        f"[...document.querySelectorAll('#events tbody tr')].every(r => r.children[2].textContent === '{MOVED}')",
        timeout=5000)
    csv = await page.evaluate("fetch(document.querySelector('#csv').href).then(r => r.text())")
    assert csv.startswith("id,time,kind,subject,actor,detail") and "operator_move" in csv and MOVED in csv
    await page.click("#tabs button[data-tab=board]")
    await page.click("#preview-toggle")
