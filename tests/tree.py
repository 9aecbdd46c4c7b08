"""A small relay tree for tests: orchestrator, origin (in this process), regional relays (their own
processes, so one can be SIGKILLed), and studios publishing to the origin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field

from relay.agent import RelayAgent
from tests.conftest import free_port, wait_for
from tests.media import start_studio


def spawn_relay(orch, secrets, relay_id: str, region: str, port: int, role: str = "regional",
                ladder: tuple[str, ...] = (), province: str = "") -> subprocess.Popen:
    d, _ = secrets
    env = dict(os.environ,
               DIEMCAU_RELAY_LADDER=",".join(ladder),
               DIEMCAU_RELAY_ICE_ADDRESSES="127.0.0.1",
               DIEMCAU_RELAY_ORCHESTRATOR_URL=orch.control_url,
               DIEMCAU_RELAY_CREDENTIAL=orch.credential(relay_id),
               DIEMCAU_RELAY_MEDIA_PUBLIC_KEY=str(d / "media.pub"),
               DIEMCAU_RELAY_HEARTBEAT_MS="300",
               DIEMCAU_RELAY_PROVINCE=province)
    return subprocess.Popen([sys.executable, "-m", "diemcau", "relay", "--id", relay_id, "--role", role,
                             "--region", region, "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Tree:
    orch: object
    origin: object
    agent: RelayAgent
    procs: dict = field(default_factory=dict)  # regional (and provincial) relay id -> its process
    studios: list = field(default_factory=list)  # (Studio, task)

    @property
    def studio(self):
        return self.studios[0][0]

    async def stop(self) -> None:
        for studio, task in self.studios:
            studio.stop()
            await task
        await self.agent.stop()
        for p in self.procs.values():
            p.kill()
            p.wait()


async def start_tree(start_orchestrator, start_relay, signer, secrets_dir, regionals: tuple[str, ...] = (),
                     streams: tuple[str, ...] = ("programme",), ladder: tuple[str, ...] = (),
                     provincials: tuple[tuple[str, str], ...] = (), **studio_kw) -> Tree:
    """Returns once every regional (and provincial: (id, province)) relay has registered (halls
    started after are placed on them)."""
    orch = await start_orchestrator()
    origin = await start_relay("origin-1", "origin", region="north", orchestrator_url=orch.control_url,
                               credential=orch.credential("origin-1"), heartbeat_ms=300, ladder=list(ladder))
    agent = RelayAgent(origin.core, origin.url)
    agent.start()
    tree = Tree(orch, origin, agent)
    tree.procs = {rid: spawn_relay(orch, secrets_dir, rid, "north", free_port(), ladder=ladder) for rid in regionals}
    tree.procs.update({rid: spawn_relay(orch, secrets_dir, rid, "north", free_port(), role="provincial", province=prov)
                       for rid, prov in provincials})
    regionals = tuple(regionals) + tuple(rid for rid, _ in provincials)
    for stream in streams:
        tree.studios.append(await start_studio(origin.url, signer, stream=stream, **studio_kw))

    async def registered():
        return set(regionals) <= set(await orch.state.store.connected())

    try:
        await wait_for(registered, 20, what=f"regional relays {', '.join(regionals)} registered")
    except BaseException:
        await tree.stop()
        raise
    await asyncio.sleep(0)
    return tree
