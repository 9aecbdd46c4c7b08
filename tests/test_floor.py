"""The floor: a hall speaks back; its camera travels up the tree and down to every other hall of its session."""

import time

import aiohttp

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import wait_for
from tests.test_console import browser  # noqa: F401  (browser: the Chromium fixture)
from tests.tree import start_tree

HALLS = ("HN-01", "HN-02", "HP-01")


ON_SCREEN_MS = 1000  # giving the floor reaches every hall's screen within a second (issue #7)

# The test's own eye on HP-01's projector page: every 10 ms, if the corner shows a picture, it reads
# the code strip the test camera draws at the bottom of each frame (frame counter, capture time in ms
# mod 2**40) from the very pixels the page would put on screen, and notes every change with the time
# and the name under the picture. From those it tells whose camera is shown and since when.
FLOOR_EYE = """() => {
  const v = document.querySelector('#floor'), c = document.createElement('canvas');
  const g = c.getContext('2d', { willReadFrequently: true });
  const seen = window.floorSeen = [];
  let last = '';
  function look() {
    const name = document.querySelector('#floor-name').textContent;
    let frame = null;
    if (v.getClientRects().length && v.videoWidth) {
      const w = c.width = v.videoWidth, h = c.height = v.videoHeight, cell = Math.floor(w / 64);
      g.drawImage(v, 0, 0, w, h);
      const row = g.getImageData(0, h - Math.floor(cell / 2) - 1, w, 1).data;
      let counter = 0, capture = 0;
      for (let i = 0; i < 64; i++) {
        const x = 4 * (i * cell + Math.floor(cell / 2));
        const bit = 0.299 * row[x] + 0.587 * row[x + 1] + 0.114 * row[x + 2] > 128 ? 1 : 0;
        if (i < 24) counter = counter * 2 + bit; else capture = capture * 2 + bit;
      }
      frame = [counter, capture];
    }
    const key = name + '|' + JSON.stringify(frame);
    if (key !== last) { last = key; seen.push({ t: Date.now(), name, frame }); }
    setTimeout(look, 10);
  }
  look();
}"""


CORNER_STATE = """async () => { const v = document.querySelector('#floor'), pc = window.dcFloor, out = {
    hidden: v.hidden, speaker: v.dataset.speaker, name: document.querySelector('#floor-name').textContent,
    attached: !!v.srcObject, readyState: v.readyState, pc: pc && pc.connectionState };
  if (pc) (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video')
    Object.assign(out, { packets: s.packetsReceived, frames: s.framesDecoded, keyframes: s.keyFramesDecoded }); });
  return out; }"""


def camera_start_ms(frame: list[int], fps: int) -> float:
    """When the camera that took this test-pattern frame started (ms mod 2**40): its capture time
    less its frame counter's worth of frames (a camera that dropped frames looks a little later)."""
    counter, capture = frame
    return capture - counter * 1000 / fps


def first_on_screen(seen: list[dict], speaker: str, given: float, fps: int) -> float | None:
    """Ms after `given` (the API call) at which the corner first showed `speaker`'s camera under its
    name: a camera started after the call (the speaker's, started when it was given the floor; every
    earlier speaker's camera started before). Fails if the corner showed an older camera's picture
    (the previous speaker's, frozen or not) under that name."""
    given_ms = given * 1000 % 2**40
    for i, s in enumerate(seen):
        if s["t"] < given * 1000 or s["frame"] is None or speaker not in s["name"]:
            continue
        if not 0 <= s["t"] % 2**40 - s["frame"][1] < 10_000:
            continue  # no camera's picture (Chromium's black first frame of a <video> given a stream)
        est = camera_start_ms(s["frame"], fps)
        assert est >= given_ms - 5, (f"the corner showed a camera started {given_ms - est:.0f} ms before the floor "
                                     f"was given (the previous speaker's) under {speaker}'s name: {seen[max(i - 2, 0):i + 3]}")
        return s["t"] - given * 1000
    return None


def longest_still_ms(seen: list[dict], until_ms: float) -> float:
    """The longest time one picture stayed on screen unchanged (a frozen corner)."""
    out = 0.0
    for s, nxt in zip(seen, [*seen[1:], None]):
        if s["frame"] is not None:
            out = max(out, (nxt["t"] if nxt else until_ms) - s["t"])
    return out


async def test_the_floor_reaches_every_other_hall_and_passes_on(start_orchestrator, start_relay, signer, secrets_dir,
                                                                browser):  # noqa: F811
    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir, regionals=("north-1",), fps=15)
    orch = tree.orch
    # HP-01 has its projector page open: the speaker shows in its corner
    halls = {hid: HallDaemon(EdgeSettings(hall=hid, orchestrator_url=orch.control_url, qoe=False,
                                          credential=orch.credential(hid), ice_addresses=["127.0.0.1"],
                                          viewers_port=0 if hid == "HP-01" else -1,
                                          camera="browser" if hid == "HP-01" else "test",
                                          media_public_key=str(secrets_dir[0] / "media.pub")))
             for hid in HALLS}
    for hall in halls.values():
        await hall.start_async()
    try:
        await wait_for(lambda: all(x.stats().frames_received > 30 and x.stats().relay == "north-1"
                                   for x in halls.values()), 30, what="every hall on the regional relay")
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            url = orch.url + "/api/v1/floor"
            async with http.post(url + "/queue", json={"hall": "HN-02"}, headers=h) as r:
                assert r.status == 201
            async with http.post(url + "/queue", json={"hall": "HN-02"}, headers=h) as r:
                assert r.status == 409
            async with http.delete(url, headers=h) as r:
                assert r.status == 409  # nobody holds it
            async with http.post(url, json={"hall": "XX-01"}, headers=h) as r:
                assert r.status == 404

            async with http.post(orch.url + "/api/v1/halls/HP-01/player", headers=h) as r:
                player_url = (await r.json())["url"]
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            await page.goto(player_url)
            # the corner's subscription is open before anybody has the floor: a speaker costs no connection
            await page.wait_for_function("window.dcFloor && window.dcFloor.connectionState === 'connected'",
                                         timeout=15000)
            await page.evaluate("window.dcFloor.openedFirst = true")
            await page.evaluate(FLOOR_EYE)
            await page.wait_for_function("document.querySelector('#status').dataset.state === 'playing'", timeout=15000)
            assert await page.is_hidden("#floor")
            # HP-01 asks to speak from its projector page: the operators' queue has it, asked by the hall
            await page.click("#hand")

            async def queued():
                async with http.get(url, headers=h) as r:
                    return [(q["hall"], q["by"]) for q in (await r.json())["queue"]]

            async def hp01_queued():
                return ("HP-01", "HP-01") in await queued()

            await wait_for(hp01_queued, 5, what="HP-01 in the floor queue")
            assert await queued() == [("HN-02", "admin"), ("HP-01", "HP-01")]
            assert await page.get_attribute("#hand", "data-up") == "true"
            reach, on_screen_ms = {}, {}

            async def on_hp01_screen(speaker: str, given: float) -> None:
                """When the corner of HP-01's screen first showed the speaker's own picture (read off
                the screen by FLOOR_EYE from the API call on, whatever the test did meanwhile)."""
                fps = halls[speaker].floor._camera.fps  # its test camera's

                async def seen():
                    return first_on_screen(await page.evaluate("window.floorSeen"), speaker, given, fps)

                try:
                    ms = await wait_for(seen, 5, what=f"{speaker}'s picture in the corner of HP-01's screen")
                except AssertionError as exc:
                    corner = await page.evaluate(CORNER_STATE)
                    st = halls["HP-01"].stats()
                    raise AssertionError(f"{exc}; the corner: {corner}; what the eye saw last: "
                                         f"{(await page.evaluate('window.floorSeen'))[-6:]}; HP-01's daemon: floor "
                                         f"{st.floor} by {st.floor_speaker}, {st.floor_frames} frames") from None
                on_screen_ms.setdefault(speaker, []).append(round(ms))

            programme = {hid: x.stats().frames_received for hid, x in halls.items()}
            # HP-01's camera is its projector PC's (Chromium's fake camera, by getUserMedia)
            for speaker, expect in (("HN-01", ""), ("HN-02", "HN-01"), ("HP-01", "HN-02")):
                given = time.time()
                async with http.post(url, json={"hall": speaker, "expect": expect}, headers=h) as r:
                    assert r.status == 202, await r.text()
                    assert (await r.json())["holder"]["hall"] == speaker
                others = [x for hid, x in halls.items() if hid != speaker]
                await wait_for(lambda: all(x.stats().floor_speaker == speaker and x.stats().floor_frames > 15
                                           for x in others), 15, what=f"{speaker}'s floor at every other hall")
                assert halls[speaker].stats().floor.startswith("floor-") and halls[speaker].floor.speaking
                if speaker == "HP-01":
                    assert await page.evaluate("window.dcCamera && window.dcCamera.connectionState") == "connected"
                    await page.wait_for_selector("#hand[data-up=false]", timeout=2000)  # its hand was answered
                    await page.wait_for_selector("#floor", state="hidden", timeout=2000)  # it speaks: no corner
                reach[speaker] = max(x.stats().floor_reach_ms for x in others)

                # the board carries each hall's own measurement (the load harness reads it there)
                async def on_board():
                    async with http.get(orch.url + "/api/v1/halls", headers=h) as r:
                        rows = (await r.json())["halls"]
                    return all(row.get("floor_speaker") == speaker and row.get("floor_reach_ms", -1) > 0
                               for row in rows if row["id"] in HALLS and row["id"] != speaker)

                await wait_for(on_board, 5, what="the floor's reach on the board")
                # the programme goes on at every hall meanwhile
                assert all(x.stats().frames_received > programme[hid] for hid, x in halls.items())
                if speaker != "HP-01":  # on HP-01's screen, in the corner, decoded by Chromium
                    await on_hp01_screen(speaker, given)
            assert all(0 < ms <= 3000 for ms in reach.values()), reach
            # the queue: HN-02 asked to speak and was given the floor, so it left the queue
            async with http.get(url, headers=h) as r:
                assert (await r.json())["queue"] == []
            # a stale handover (the operator saw HN-01 holding it) is refused
            async with http.post(url, json={"hall": "HN-01", "expect": "HN-01"}, headers=h) as r:
                assert r.status == 409 and "HP-01" in (await r.json())["error"]
            async with http.delete(url, headers=h) as r:
                assert r.status == 200
            await wait_for(lambda: all(not x.stats().floor for x in halls.values()), 10, what="the floor ended everywhere")
            await page.wait_for_selector("#floor", state="hidden", timeout=3000)
            await page.wait_for_function("!window.dcCamera", timeout=3000)  # the page stopped capturing
            # given again after it was taken back: a new floor stream, the corner's subscription the same;
            # HN-01's picture, not the last one the corner's decoder had (HN-02's)
            given = time.time()
            async with http.post(url, json={"hall": "HN-01"}, headers=h) as r:
                assert r.status == 202, await r.text()
            await wait_for(lambda: halls["HN-01"].floor._camera is not None, 5, what="HN-01 speaking again")
            await on_hp01_screen("HN-01", given)
            async with http.delete(url, headers=h) as r:
                assert r.status == 200
            await page.wait_for_selector("#floor", state="hidden", timeout=3000)
            assert await page.evaluate("window.dcFloor && window.dcFloor.openedFirst") is True, \
                "the corner's subscription was opened again: a floor cost a new connection"
            seen = await page.evaluate("window.floorSeen")
            still = longest_still_ms(seen, time.time() * 1000)
            print("floor reach (API call -> first keyframe at the slowest other hall), ms:", reach,
                  "; the speaker's own picture on HP-01's projector page, ms after the call:", on_screen_ms,
                  f"; longest still picture in the corner: {still:.0f} ms")
            shown = [ms for v in on_screen_ms.values() for ms in v]
            assert len(shown) == 3 and all(0 < ms <= ON_SCREEN_MS for ms in shown), on_screen_ms
            # a picture that stops (the previous speaker's, a stalled one) leaves the corner within a second
            # or so (the page looks four times a second): never a frozen speaker
            assert still < 2000, still
            async with http.get(orch.url + "/api/v1/events?kind=floor_given,floor_taken,floor_requested", headers=h) as r:
                kinds = [(e["kind"], e["subject"]) for e in (await r.json())["events"]][::-1]
            assert kinds == [("floor_requested", "HN-02"), ("floor_requested", "HP-01"), ("floor_given", "HN-01"),
                             ("floor_given", "HN-02"), ("floor_given", "HP-01"), ("floor_taken", "HP-01"),
                             ("floor_given", "HN-01"), ("floor_taken", "HN-01")]
    finally:
        for hall in halls.values():
            await hall.stop()
        await tree.stop()
