"""Proof it is on air: the hall decodes what it receives and reports a frozen, black or silent programme."""

import asyncio
import time

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import wait_for
from tests.tree import start_tree


async def test_frozen_black_and_silent_sources_are_each_detected_at_the_hall_within_3_s(
        start_orchestrator, start_relay, signer, secrets_dir):
    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir, fps=15)
    orch, studio = tree.orch, tree.studio
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url,
                                   credential=orch.credential("HN-01"), ice_addresses=["127.0.0.1"]))
    hall.start()
    try:
        await wait_for(lambda: hall.stats().qoe_frames_decoded > 30, 30, what="the hall decoding the programme")
        await asyncio.sleep(2.5)  # longer than any alarm's duration: a healthy programme raises none
        st = hall.stats()
        assert st.qoe_alarms == [], st
        assert st.audio_level_dbfs > -30  # the studio's tone
        assert abs(st.av_drift_ms) < 150, st.av_drift_ms
        detected = {}
        for fault, alarm in (("freeze", "frozen"), ("black", "black"), ("silent", "silent")):
            studio.impairment = fault
            began = time.time()
            await wait_for(lambda: alarm in hall.stats().qoe_alarms, 5, what=f"{alarm} detected")
            detected[alarm] = (hall.stats().qoe_raised_at[alarm] - began) * 1000
            others = [a for a in hall.stats().qoe_alarms if a != alarm]
            assert others == [], f"{fault} also raised {others}"
            studio.impairment = ""
            await wait_for(lambda: not hall.stats().qoe_alarms, 5, what=f"{alarm} cleared")
        print("QoE detection (ms):", {k: round(v) for k, v in detected.items()})
        assert all(ms <= 3000 for ms in detected.values()), detected

        # the orchestrator logs each alarm and its clearing; the board carries the alarms
        async def logged():
            return {e["detail"].split()[1] for e in await orch.state.store.events(50, kind="qoe_alarm")}

        await wait_for(lambda: logged(), 5, what="QoE events")
        assert await logged() == {"frozen", "black", "silent"}
        assert len(await orch.state.store.events(50, kind="qoe_clear")) == 3
    finally:
        await hall.stop()
        await tree.stop()
