"""The operator console in a real browser (Debian's Chromium through Playwright)."""

import asyncio
import shutil

import aiohttp
import pytest

from diemcau import messages as m

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--allow-loopback-in-peer-connection"]


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    if not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: apt-get install -y chromium")
    p = await async_playwright().start()
    b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield b
    for what, step in (("Chromium did not close", b.close), ("the Playwright driver did not stop", p.stop)):
        try:
            await asyncio.wait_for(step(), 20)
        except asyncio.TimeoutError:
            raise AssertionError(f"{what} within 20 s") from None


async def wait_for_value(page, js: str, above: float, timeout_s: float, what: str) -> float:
    """Poll an (async) page expression until its value exceeds `above`. Playwright's
    wait_for_function takes a returned promise for a truthy value, so it cannot wait on getStats()."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await page.evaluate(js)
        if value > above:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: {value} after {timeout_s} s, wanted more than {above}")
        await asyncio.sleep(0.05)


async def log_in(page, base_url: str, password: str, board_timeout_ms: int = 10000) -> None:
    """A wrong password is refused with the Vietnamese message; the right one shows the board."""
    await page.goto(base_url + "/console/")
    await page.fill("input[name=password]", "not-the-password")
    await page.click("form#login button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('Sai')", timeout=5000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url} {req.failure}"))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await page.fill("input[name=password]", password)
    await page.click("form#login button[type=submit]")
    try:
        await page.wait_for_selector("tr[data-hall]", timeout=board_timeout_ms)
    except Exception:
        shown = await page.evaluate("""() => ({login: document.querySelector('#login').hidden,
            board: document.querySelector('#board').hidden, rows: document.querySelectorAll('tr[data-hall]').length,
            error: document.querySelector('#login-error').textContent})""")
        raise AssertionError(f"the board did not show within {board_timeout_ms} ms of logging in: {shown}; "
                             f"{errors}") from None


async def test_console_login_board_of_70_halls_and_live_hall_state(start_orchestrator, browser):
    orch = await start_orchestrator(board_interval_ms=250)
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await log_in(page, orch.url, orch.password)
    assert await page.locator("tr[data-hall]").count() == 70
    assert await page.locator("div.region").count() == 3
    assert "Hội trường" in await page.locator("tr[data-hall='HN-01'] td.name").inner_text()

    # a hall registers and reports media: it turns "on air" on the page; it goes away: "dark"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential('HN-01')}"})
        await ws.send_bytes(m.encode(m.Hello(node="HN-01", kind="hall", version="t")))
        await ws.receive()

        async def beat():
            seq = 0
            while True:
                seq += 1
                await ws.send_bytes(m.encode(m.Heartbeat(seq=seq, hall=m.HallStats(
                    state="receiving", relay="north-1", frames_received=seq * 15, fps=30.0, bitrate_kbps=850.0))))
                await asyncio.sleep(0.5)

        task = asyncio.ensure_future(beat())
        await page.wait_for_selector("tr[data-hall='HN-01'][data-state='on_air']", timeout=3000)
        task.cancel()
        await ws.close()
        await page.wait_for_selector("tr[data-hall='HN-01'][data-state='dark']", timeout=4000)

    # labels switch between Vietnamese and English
    await page.click("#lang")
    await page.wait_for_selector("div.region h2:has-text('North')", timeout=2000)
    await page.click("#lang")  # back to Vietnamese for the next test

    # the schedule: the summit's 14 sessions; an operator starts one and ends it from the page
    await page.wait_for_function("document.querySelectorAll('#sessions tr[data-session]').length === 14", timeout=5000)
    s01 = await page.inner_text("#sessions tr[data-session='S01']")
    assert "Khai mạc" in s01 and "08:30" in s01 and "11:30" in s01  # Vietnam's time, whatever the PC's zone
    await page.click("#sessions tr[data-session='S01'] button[data-session-act=start]")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#sessions tr[data-session='S01'][data-state=live]", timeout=5000)
    await page.click("#sessions tr[data-session='S01'] button[data-session-act=end]")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#sessions tr[data-session='S01'][data-state=ended]", timeout=5000)
    assert (await orch.state.store.sessions())["S01"].state == "ended"

    # the floor: a hall asks to speak and waits in the queue (giving it needs the hall on line)
    await page.select_option("#floor-hall", "HP-01")
    await page.click("#floor-raise")
    await page.wait_for_selector("#floor-queue li[data-queued='HP-01']", timeout=5000)
    assert await page.get_attribute("#floor-holder", "data-hall") == ""
    await page.click("#floor-queue button[data-floor-to='HP-01']")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#toast.bad:has-text('409')", timeout=5000)  # HP-01 is not on line here
