"""Redis Cluster: the orchestrator runs on a real three-master cluster (each master with a replica).

Every key of a deployment hashes to one slot (its prefix carries a hash tag), so the fenced
placement scripts and the transactions are legal; deployments with other prefixes land on other
masters; and when the master holding a deployment's slot dies, its replica is promoted and the
orchestrator carries on, nothing lost.

Real processes: six `redis-server --cluster-enabled yes` on loopback, joined by
`redis-cli --cluster create`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time

import aiohttp
import pytest

from tests.conftest import _redis_server_binary, free_port, login_ok, stop_all, wait_for

NODE_TIMEOUT_MS = 1000  # a master silent this long is failed by the others, and its replica promoted


def _cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        pytest.fail("no redis-cli found: apt-get install redis-tools")
    return found


def _ask(port: int, *args: str, timeout: float = 5) -> str:
    """One command to one node, by redis-cli (plain, not cluster-aware: what that node itself says)."""
    out = subprocess.run([_cli(), "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                         timeout=timeout)
    return out.stdout.strip()


def _info(port: int, section: str) -> dict[str, str]:
    text = _ask(port, "CLUSTER", "INFO") if section == "cluster" else _ask(port, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _slot_ranges(port: int) -> dict[int, list[tuple[int, int]]]:
    """Master port -> the slot ranges it serves, as this node sees the cluster."""
    out: dict[int, list[tuple[int, int]]] = {}
    for line in _ask(port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "master" not in fields[2] or "fail" in fields[2]:
            continue
        master = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated
            lo, _, hi = part.partition("-")
            out.setdefault(master, []).append((int(lo), int(hi or lo)))
    return out


def _master_of_slot(port: int, slot: int) -> int:
    for master, ranges in _slot_ranges(port).items():
        if any(lo <= slot <= hi for lo, hi in ranges):
            return master
    raise AssertionError(f"slot {slot} has no master")


@pytest.fixture
def redis_cluster(tmp_path):
    binary = _redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server found: apt-get install redis-server")
    ports = [free_port() for _ in range(6)]
    bus = [free_port() for _ in range(6)]  # the cluster bus on ports of its own (port + 10000 may be taken)
    log = open(tmp_path / "redis.log", "wb")
    procs: dict[int, subprocess.Popen] = {}
    for port, bus_port in zip(ports, bus):
        d = tmp_path / str(port)
        d.mkdir()
        procs[port] = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(bus_port),
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--repl-diskless-sync-delay", "0"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not all(_ask(p, "PING", timeout=2) == "PONG" for p in ports):
            assert time.monotonic() < deadline, "cluster nodes did not start; see redis.log"
            time.sleep(0.1)
        # the first three are the masters, each of the last three a replica of one of them
        created = subprocess.run([_cli(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                                  "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        deadline = time.monotonic() + 30
        while True:
            states = [_info(p, "cluster") for p in ports]
            if all(s.get("cluster_state") == "ok" and s.get("cluster_known_nodes") == "6" for s in states) and \
                    all(_info(p, "replication").get("master_link_status") == "up" for p in ports[3:]):
                break
            assert time.monotonic() < deadline, f"cluster not ok: {states}"
            time.sleep(0.2)
        yield {"url": "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports[:2]) + "/",
               "ports": ports, "masters": ports[:3], "procs": procs}
    finally:
        stop_all(procs.values())
        log.close()


def _replica_of(master: int, ports: list[int]) -> int:
    for port in ports:
        info = _info(port, "replication")
        if info.get("role") == "slave" and info.get("master_port") == str(master):
            return port
    raise AssertionError(f"master {master} has no replica")


async def _off_loop(fn, *args):
    """A redis-cli call from a test's coroutine, in a thread: the orchestrators share this event loop."""
    return await asyncio.to_thread(fn, *args)


def _keys_by_master(masters: list[int], pattern: str) -> dict[int, set[str]]:
    """What each master itself holds (KEYS is per node in a cluster: every master is asked)."""
    return {m: set(filter(None, _ask(m, "--raw", "KEYS", pattern).splitlines())) for m in masters}


async def test_the_orchestrator_on_a_three_master_cluster_keeps_a_deployment_in_one_slot(redis_cluster):
    """Unit-level but real: the client, the key prefix, the fenced scripts and a transaction on the cluster."""
    from diemcau.redisconn import cluster_prefix, connect
    from orchestrator.auth import Accounts
    from orchestrator.leader import Leadership
    from orchestrator.store import StaleLeader, Store

    r = connect(redis_cluster["url"])
    try:
        prefix = cluster_prefix("dc:")
        assert prefix == "{dc}:"
        with pytest.raises(ValueError, match="no hash tag"):
            Store(r, "dc:")  # the fenced scripts' keys would be in different slots
        store = Store(r, prefix)
        lead = Leadership(r, prefix, "orch-a", 3000, store)
        assert await lead.tick()
        assert await store.set_assignment("HN-01", "programme", "origin-1") == 1
        await store.register("HN-01", {"kind": "hall"}, "orch-a")
        assert await store.take_registered() == ["HN-01"]  # MULTI/EXEC on the cluster
        await Accounts(r, prefix, 60).set_user("duty", "duty-password-1", "operator")
        await store.event("note", "test", "on the cluster")
        other = Store(r, prefix)
        other.fence = lead.fence - 1
        with pytest.raises(StaleLeader):
            await other.set_assignment("HN-01", "programme", "north-1")
        slot = int(await _off_loop(_ask, redis_cluster["masters"][0], "CLUSTER", "KEYSLOT", prefix + "assign"))
        home = await _off_loop(_master_of_slot, redis_cluster["masters"][0], slot)
        held = await _off_loop(_keys_by_master, redis_cluster["masters"], prefix + "*")
        assert {prefix + k for k in ("leader", "leader-fence", "epoch", "assign", "nodes", "conn", "seen", "events",
                                     "operators")} <= held[home]
        assert all(not keys for m, keys in held.items() if m != home)

        # another deployment on the same cluster (another prefix): its own slot, on another master
        masters = redis_cluster["masters"]
        for name in (f"site-{i}:" for i in range(100)):
            other_prefix = cluster_prefix(name)
            other_slot = int(await _off_loop(_ask, masters[0], "CLUSTER", "KEYSLOT", other_prefix + "x"))
            other_home = await _off_loop(_master_of_slot, masters[0], other_slot)
            if other_home != home:
                break
        other = Store(r, other_prefix)
        assert await Leadership(r, other_prefix, "orch-x", 3000, other).tick()
        assert await other.set_assignment("HN-01", "programme", "south-1") == 1
        await other.event("note", "test", "the other deployment")
        held = await _off_loop(_keys_by_master, masters, "*")
        assert {other_prefix + k for k in ("leader", "leader-fence", "epoch", "assign", "events")} <= held[other_home]
        assert not any(k.startswith(prefix) for k in held[other_home])
        assert not any(k.startswith(other_prefix) for k in held[home])
        assert (await store.assignments())["HN-01"]["upstream"] == "origin-1"  # neither sees the other's
        assert (await other.assignments())["HN-01"]["upstream"] == "south-1"
        print(f"{prefix!r}: slot {slot} on master :{home}; {other_prefix!r}: slot {other_slot} on master :{other_home}")
    finally:
        await r.aclose()


def test_cluster_urls_and_prefixes_are_checked():
    from diemcau.redisconn import cluster_prefix, connect, hash_tag, redacted

    for bad, why in (("redis+cluster://", "host:port"), ("redis+cluster://h1:7000,h2/", "host:port"),
                     ("redis+cluster://h1:700000/", "host:port"), ("redis+cluster://h1:7000/3", "database 0"),
                     ("redis+cluster://h1:7000/?ssl=1", "no options")):
        with pytest.raises(ValueError, match=why):
            connect(bad)
    with pytest.raises(ValueError) as caught:
        connect("redis+cluster://ops:s3cret@h1:7000/5")
    assert "s3cret" not in str(caught.value) and "ops:***@h1:7000" in str(caught.value)
    assert redacted("redis+cluster://ops:s3cret@h1:7000,h2:7000/") == "redis+cluster://ops:***@h1:7000,h2:7000/"
    client = connect("redis+cluster://ops:s3cret@10.0.0.1:7000,[::1]:7001/")  # nothing is connected yet
    assert sorted(n.name for n in client.nodes_manager.startup_nodes.values()) == ["10.0.0.1:7000", "::1:7001"]
    assert client.connection_kwargs["password"] == "s3cret" and client.connection_kwargs["username"] == "ops"
    assert cluster_prefix("dc:") == "{dc}:" and cluster_prefix("dc:east:") == "{dc:east}:"
    assert cluster_prefix("{dc}:") == "{dc}:" and cluster_prefix("x{dc}:") == "x{dc}:"
    assert hash_tag("{dc}:assign") == "dc" and hash_tag("dc:assign") is None and hash_tag("{}dc:") is None
    for bad in ("", ":", "{}:", "dc}:"):
        with pytest.raises(ValueError):
            cluster_prefix(bad)


def test_a_connection_torn_down_under_a_command_is_told_from_a_bug():
    """redis-py raises AttributeError/TypeError from its connection code when a connection is
    closed under a command; those are "Redis unreachable", an AttributeError elsewhere is not."""
    from diemcau.redisconn import _torn_down

    def raised(code: str, filename: str) -> BaseException:
        try:
            exec(compile(code, filename, "exec"), {})
        except Exception as exc:
            return exc
        raise AssertionError("nothing raised")

    writer_gone = raised("writer = None\nwriter.writelines([b'PING'])", "/venv/site-packages/redis/asyncio/connection.py")
    assert isinstance(writer_gone, AttributeError) and _torn_down(writer_gone)
    ours = raised("writer = None\nwriter.writelines([b'PING'])", "/work/orchestrator/store.py")
    assert not _torn_down(ours)


@pytest.mark.timeout(180)
async def test_orchestrators_on_a_cluster_place_halls_and_carry_on_through_a_master_failover(
        redis_cluster, start_orchestrator, start_relay, signer):
    from edge_node.daemon import HallDaemon
    from edge_node.settings import EdgeSettings
    from relay.agent import RelayAgent
    from tests.media import start_studio

    url, masters, ports = redis_cluster["url"], redis_cluster["masters"], redis_cluster["ports"]
    a = await start_orchestrator(instance="orch-a", redis_url=url, key_prefix="dc:")
    assert a.settings.key_prefix == "{dc}:"
    await wait_for(lambda: a.state.leadership.is_leader, 10, what="orch-a leads")
    b = await start_orchestrator(instance="orch-b", redis_url=url, key_prefix="dc:")
    p = b.settings.key_prefix
    # the relay talks to orch-a (the leader), the halls to orch-b only: every assignment the leader
    # makes reaches a hall through the cluster's pub/sub
    origin = await start_relay("origin-1", "origin", region="north", orchestrator_url=a.control_url,
                               credential=a.credential("origin-1"), heartbeat_ms=300)
    agent = RelayAgent(origin.core, origin.url)
    agent.start()
    studio, task = await start_studio(origin.url, signer)
    halls = {}

    def start_hall(hall: str, orch) -> HallDaemon:
        halls[hall] = HallDaemon(EdgeSettings(hall=hall, orchestrator_url=orch.control_url,
                                              credential=orch.credential(hall), ice_addresses=["127.0.0.1"]))
        halls[hall].start()
        return halls[hall]

    try:
        hn1 = start_hall("HN-01", b)
        await wait_for(lambda: hn1.stats().frames_received > 30, 30, what="HN-01 on air")
        assert "HN-01" in b.state.hub.channels and "HN-01" not in a.state.hub.channels
        assigned = await b.state.store.assignments()
        assert assigned["HN-01"]["upstream"] == "origin-1" and assigned["HN-01"]["epoch"] >= 1
        assert any(e["subject"] == "HN-01" for e in await b.state.store.events(20, kind="assign"))

        await b.state.accounts.set_user("duty", "duty-password-1", "operator")
        async with aiohttp.ClientSession() as http:
            assert await login_ok(http, b, "duty", "duty-password-1")
            async with http.post(b.url + "/api/v1/login", json={"username": "duty", "password": "wrong"}) as resp:
                assert resp.status == 401
            token = await a.token(http)
            async with http.get(a.url + "/api/v1/halls/HN-01", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, await resp.text()
        await b.state.store.event("note", "test", "before the failover", actor="duty")

        # every key of the deployment is on the master that serves its slot, and on no other
        slot = int(await _off_loop(_ask, masters[0], "CLUSTER", "KEYSLOT", p + "assign"))
        home = await _off_loop(_master_of_slot, masters[0], slot)
        held = await _off_loop(_keys_by_master, masters, p + "*")
        expected = {p + k for k in ("leader", "leader-fence", "epoch", "assign", "nodes", "relays", "conn", "seen", "hb",
                                    "events", "operators", "sessions")}
        assert expected <= held[home], expected - held[home]
        assert any(k.startswith(p + "session:") for k in held[home])  # the operator's login session
        assert all(not keys for m, keys in held.items() if m != home), held
        assert {int(await _off_loop(_ask, home, "CLUSTER", "KEYSLOT", k)) for k in held[home]} == {slot}
        assert json.loads(await _off_loop(_ask, home, "HGET", p + "assign", "HN-01"))["upstream"] == "origin-1"
        print(f"deployment {p!r}: {len(held[home])} keys, all in slot {slot}, on master :{home}")

        # the master of that slot dies; its replica is promoted
        replica = await _off_loop(_replica_of, home, ports)
        assert await _off_loop(_ask, home, "WAIT", "1", "2000") == "1"  # the replica has everything written so far
        frames = hn1.stats().frames_received
        killed_at, killed = time.monotonic(), time.time()
        redis_cluster["procs"][home].send_signal(signal.SIGKILL)
        redis_cluster["procs"][home].wait(5)
        answers: list[int] = []  # the operator's login, tried every 100 ms through the failover

        async def login_until_it_works() -> float:
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.post(b.url + "/api/v1/login",
                                             json={"username": "duty", "password": "duty-password-1"}) as resp:
                            answers.append(resp.status)
                            if resp.status == 200:
                                return time.monotonic() - killed_at
                    except aiohttp.ClientError:
                        answers.append(0)
                    await asyncio.sleep(0.1)

        login = asyncio.ensure_future(asyncio.wait_for(login_until_it_works(), 30))

        async def promoted() -> bool:
            return (await _off_loop(_info, replica, "replication")).get("role") == "master"

        await wait_for(promoted, 30, interval=0.1, what="the replica promoted")
        promoted_s = time.monotonic() - killed_at
        api_s = await login
        # meanwhile the API said the store was unavailable (503), never failed (500) or hung
        assert set(answers) <= {200, 503}, answers
        await wait_for(lambda: a.state.leadership.is_leader or b.state.leadership.is_leader, 30, interval=0.1,
                       what="a leader after the failover")
        # a leader renews its lease on the new master (or, if it lost it, one of them took it anew)
        lease_s = await _lease_renewed_on(replica, p, a, b) - killed_at
        leader, follower = (a, b) if a.state.leadership.is_leader else (b, a)

        # nothing written before the failover is lost; a new hall is placed (the fenced script on
        # the new master) and told through the follower's subscription (made again after the kill)
        notes = await b.state.store.events(50, kind="note")
        assert any(e["detail"] == "before the failover" for e in notes)
        assert (await b.state.store.assignments())["HN-01"]["upstream"] == "origin-1"
        hn2 = start_hall("HN-02", follower)
        await wait_for(lambda: hn2.stats().frames_received > 30, 30, what="HN-02 placed and on air after the failover")
        placed_s = time.monotonic() - killed_at
        assert "HN-02" in follower.state.hub.channels and "HN-02" not in leader.state.hub.channels
        epochs = await b.state.store.assignments()
        assert epochs["HN-02"]["epoch"] > epochs["HN-01"]["epoch"]
        assert json.loads(await _off_loop(_ask, replica, "HGET", p + "assign", "HN-02"))["upstream"] == "origin-1"  # on the new master
        assert await _off_loop(_master_of_slot, replica, slot) == replica
        # the media never noticed
        assert hn1.stats().frames_received > frames + 30
        assert all(g < 250 for end, g in hn1.stats().gaps if end >= killed), hn1.stats().gaps
        print(f"master :{home} killed: replica :{replica} promoted after {promoted_s:.1f} s; operator login "
              f"answered after {api_s:.1f} s ({answers.count(503)} x 503 before); {leader.settings.instance} "
              f"leads, its lease renewed on the new master after {lease_s:.1f} s; a new hall on "
              f"{follower.settings.instance} placed and on air {placed_s:.1f} s after the kill")
        # an orchestrator started now, one node of the cluster still dead, comes up and serves
        c = await start_orchestrator(instance="orch-c", redis_url=url, key_prefix="dc:")
        async with aiohttp.ClientSession() as http:
            assert await login_ok(http, c, "duty", "duty-password-1")
    finally:
        for h in halls.values():
            await h.stop()
        studio.stop()
        await task
        await agent.stop()


async def _lease_renewed_on(port: int, prefix: str, *orchs) -> float:
    """When the leader lease, as the new master holds it, was last set or renewed by a leading instance."""
    deadline = time.monotonic() + 30
    first_ttl = None
    while time.monotonic() < deadline:
        holder = await _off_loop(_ask, port, "GET", prefix + "leader")
        ttl = int(await _off_loop(_ask, port, "PTTL", prefix + "leader") or -2)
        leader = next((o for o in orchs if o.settings.instance == holder and o.state.leadership.is_leader), None)
        if leader is not None and ttl > 0:
            if first_ttl is not None and ttl > first_ttl:
                return time.monotonic()  # the TTL went up: renewed there
            first_ttl = ttl if first_ttl is None else min(first_ttl, ttl)
        await asyncio.sleep(0.05)
    raise AssertionError("no leader renewed its lease on the promoted replica")
