"""Everything the control plane keeps, in Redis: registry, liveness, assignments, events.

Keys (prefix `dc:` by default; in a Redis Cluster the prefix carries a hash tag, `{dc}:`, so that
every key below is in one slot: the fenced scripts read and write several at once):
  nodes    hash  node id -> JSON static description (kind, region, role, url, ...)
  hb       hash  node id -> JSON latest heartbeat stats
  seen     zset  node id -> last heartbeat, unix ms (liveness: old scores are stale)
  conn     hash  node id -> orchestrator instance holding its control channel
  assign   hash  node id -> JSON {stream, upstream, epoch}: written only by a script that checks
                 the writer's fence against leader-fence (a stale leader's writes are refused)
  leader, leader-fence   the lease (holder, expiry) and the fencing token, increased at each new lease
  events   stream of failovers, placements and operator actions (capped)
  drained  hash  relay id -> JSON {by, at}: relays an operator is emptying (no new placements)
  moves    hash  node id -> JSON {relay, by, at}: operator moves the leader has yet to carry out
  sessions hash  session id -> JSON Session (diemcau/programme.py): the schedule and what is live
  floor    string  JSON {hall, by, at}: the hall holding the floor (absent: nobody)
  floorq   hash  hall id -> JSON {by, at}: halls asking to speak, oldest first by `at`
  hitless  hash  hall id -> JSON {on, by, at}: an operator's hitless setting for the hall (overrides its own)
  layers   hash  hall id -> JSON {floor, ceiling, audio_only, by, at}: an operator's bounds on the hall's ladder layer
  revoked  hash  node id -> JSON {by, at, reason}: node credentials refused on the control channel
  nodegen  hash  node id -> the generation of its current credential (absent: 0); older ones are refused
  lock:X   string  operator holding a short lock on target X (conflicting actions are refused)
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from diemcau.programme import Session
from diemcau.redisconn import hash_tag, is_cluster

import redis.asyncio as aioredis


def now_ms() -> int:
    return int(time.time() * 1000)


class _Paths(msgspec.Struct):
    relay: str = ""  # a hall's
    state: str = "idle"
    backup: str = ""
    backup_state: str = ""
    upstream_backup: str = ""  # a relay's
    upstream_backup_state: str = ""


_PATHS = msgspec.json.Decoder(_Paths)
REGISTERED_KEPT = 50_000  # registrations waiting for the leader's sweep (a leaderless spell keeps the newest)


class StaleLeader(RuntimeError):
    """A placement write carried a fencing token that is no longer current: we are not the leader."""


# KEYS: fence, epoch, assign; ARGV: our fence, node, assignment JSON (epoch added here)
_FENCED_ASSIGN = """
if tostring(redis.call('get', KEYS[1])) ~= ARGV[1] then return -1 end
local epoch = redis.call('incr', KEYS[2])
local doc = cjson.decode(ARGV[3])
doc['epoch'] = epoch
redis.call('hset', KEYS[3], ARGV[2], cjson.encode(doc))
return epoch
"""

# KEYS: fence, assign; ARGV: our fence, node
_FENCED_CLEAR = """
if tostring(redis.call('get', KEYS[1])) ~= ARGV[1] then return -1 end
return redis.call('hdel', KEYS[2], ARGV[2])
"""


class Store:
    def __init__(self, redis: aioredis.Redis, prefix: str = "dc:", events_maxlen: int = 100_000) -> None:
        if is_cluster(redis) and hash_tag(prefix) is None:
            raise ValueError(f"key prefix {prefix!r} has no hash tag: in a Redis Cluster the fenced scripts' keys "
                             "would be in different slots (use diemcau.redisconn.cluster_prefix, e.g. {dc}:)")
        self.r = redis
        self.p = prefix
        self.events_maxlen = events_maxlen
        self._pending_hb: dict[str, str] = {}
        self._pending_seen: dict[str, int] = {}
        # the fencing token of our leadership (Leadership sets it when it takes the lease); every
        # placement write is checked against the current one inside Redis
        self.fence = 0
        self._fenced_assign = redis.register_script(_FENCED_ASSIGN)
        self._fenced_clear = redis.register_script(_FENCED_CLEAR)

    def k(self, name: str) -> str:
        return self.p + name

    # -- registry ------------------------------------------------------------------------

    async def register(self, node: str, info: dict[str, Any], instance: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.k("nodes"), node, json.dumps(info))
        if info.get("kind") == "relay":
            pipe.hset(self.k("relays"), node, json.dumps(info))  # the planner reads relays alone, often
        # the leader's next sweep looks at the nodes registered since the last (on any instance),
        # instead of scanning every connected node each time
        pipe.rpush(self.k("registered"), node)
        pipe.ltrim(self.k("registered"), -REGISTERED_KEPT, -1)
        pipe.hset(self.k("conn"), node, instance)
        pipe.zadd(self.k("seen"), {node: now_ms()})
        await pipe.execute()

    async def report_lost(self, node: str, upstream: str, reason: str) -> None:
        """A node's MediaLost that reached an instance not leading: kept for the leader's sweep."""
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.k("lost"), json.dumps([node, upstream, reason[:200]]))
        pipe.ltrim(self.k("lost"), -REGISTERED_KEPT, -1)
        await pipe.execute()

    async def take_lost(self) -> list[tuple[str, str, str]]:
        """The reports kept for the leader since its last call, oldest first."""
        pipe = self.r.pipeline(transaction=True)
        pipe.lrange(self.k("lost"), 0, -1)
        pipe.delete(self.k("lost"))
        raw, _ = await pipe.execute()
        out = []
        for item in raw:
            try:
                node, upstream, reason = json.loads(item)
                out.append((str(node), str(upstream), str(reason)))
            except (ValueError, TypeError):
                continue
        return out

    async def take_registered(self) -> list[str]:
        """The nodes registered since the last call (the leader's sweep), oldest first."""
        pipe = self.r.pipeline(transaction=True)
        pipe.lrange(self.k("registered"), 0, -1)
        pipe.delete(self.k("registered"))
        raw, _ = await pipe.execute()
        return [n.decode() for n in raw]

    async def disconnected(self, node: str, instance: str) -> None:
        # Only the instance that holds the channel may clear it (a newer one may have it).
        holder = await self.r.hget(self.k("conn"), node)
        if holder is not None and holder.decode() == instance:
            await self.r.hdel(self.k("conn"), node)

    async def nodes(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("nodes"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def relay_nodes(self) -> dict[str, dict]:
        """The relays that ever registered (a few dozen, where `nodes` has every hall too)."""
        raw = await self.r.hgetall(self.k("relays"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def liveness(self, nodes: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        """For these nodes only: the instance holding each one's channel, and its last heartbeat."""
        if not nodes:
            return {}, {}
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.k("conn"), nodes)
        pipe.zmscore(self.k("seen"), nodes)
        held, seen = await pipe.execute()
        return ({n: h.decode() for n, h in zip(nodes, held) if h is not None},
                {n: int(t) for n, t in zip(nodes, seen) if t is not None})

    async def paths_of(self, nodes: list[str]) -> dict[str, dict]:
        """What these halls (relay, state, backup, backup_state) or relays (upstream_backup,
        upstream_backup_state) last reported about their two paths: only those fields are decoded
        (the planner checks them for every hall every few seconds)."""
        if not nodes:
            return {}
        raw = await self.r.hmget(self.k("hb"), nodes)
        out = {}
        for n, v in zip(nodes, raw):
            if v is not None:
                try:
                    out[n] = msgspec.structs.asdict(_PATHS.decode(v))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        return out

    async def instances_alive(self, me: str, within_ms: int = 5000) -> list[str]:
        """Mark this instance as serving now; the other instances that did within `within_ms`."""
        now = now_ms()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.k("instances"), {me: now})
        pipe.zremrangebyscore(self.k("instances"), 0, now - 10 * within_ms)
        pipe.zrangebyscore(self.k("instances"), now - within_ms, "+inf")
        _, _, alive = await pipe.execute()
        return [i.decode() for i in alive if i.decode() != me]

    async def holder(self, node: str) -> str | None:
        """The instance holding this node's control channel, if any."""
        held = await self.r.hget(self.k("conn"), node)
        return held.decode() if held is not None else None

    async def connected(self) -> dict[str, str]:
        raw = await self.r.hgetall(self.k("conn"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- heartbeats (batched) --------------------------------------------------------------

    def heartbeat(self, node: str, stats_json: str) -> None:
        self._pending_hb[node] = stats_json
        self._pending_seen[node] = now_ms()

    async def flush(self) -> int:
        """Write buffered heartbeats in one round trip; returns how many."""
        if not self._pending_seen:
            return 0
        hb, seen = self._pending_hb, self._pending_seen
        self._pending_hb, self._pending_seen = {}, {}
        pipe = self.r.pipeline(transaction=False)
        if hb:
            pipe.hset(self.k("hb"), mapping=hb)
        # GT: a heartbeat time only moves forward. An instance cut from Redis may deliver its
        # last batch late, after the node has moved to another instance: it must not turn the
        # node's newer times back (the leader would judge it silent)
        pipe.zadd(self.k("seen"), seen, gt=True)
        await pipe.execute()
        return len(seen)

    async def last_seen(self) -> dict[str, int]:
        raw = await self.r.zrange(self.k("seen"), 0, -1, withscores=True)
        return {k.decode(): int(v) for k, v in raw}

    async def stats(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("hb"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    # -- assignments -----------------------------------------------------------------------

    async def assignments(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("assign"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def set_assignment(self, node: str, stream: str, upstream: str, backup: str = "") -> int:
        """Write a node's assignment, fenced: Redis refuses it unless our fence is the current one
        (a leader that paused past its lease and came back must not undo its successor's plan)."""
        doc = json.dumps({"stream": stream, "upstream": upstream, "backup": backup, "at": now_ms()})
        epoch = await self._fenced_assign(keys=[self.k("leader-fence"), self.k("epoch"), self.k("assign")],
                                          args=[self.fence, node, doc])
        if int(epoch) < 0:
            raise StaleLeader(f"fence {self.fence} is stale: another orchestrator leads now; assignment of {node} refused")
        return int(epoch)

    async def clear_assignment(self, node: str) -> None:
        ok = await self._fenced_clear(keys=[self.k("leader-fence"), self.k("assign")], args=[self.fence, node])
        if int(ok) < 0:
            raise StaleLeader(f"fence {self.fence} is stale: clearing the assignment of {node} refused")

    # -- operator intents --------------------------------------------------------------------

    async def lock(self, target: str, who: str, ttl_ms: int = 3000) -> str | None:
        """Take the short lock on `target`; returns None, or who holds it now."""
        if await self.r.set(self.k(f"lock:{target}"), who, nx=True, px=ttl_ms):
            return None
        holder = await self.r.get(self.k(f"lock:{target}"))
        return holder.decode() if holder else "another operator"

    async def unlock(self, target: str, who: str) -> None:
        key = self.k(f"lock:{target}")
        holder = await self.r.get(key)
        if holder is not None and holder.decode() == who:
            await self.r.delete(key)

    async def revoked(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("revoked"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def is_revoked(self, node: str) -> bool:
        return bool(await self.r.hexists(self.k("revoked"), node))

    async def set_revoked(self, node: str, on: bool, who: str, reason: str = "") -> None:
        if on:
            await self.r.hset(self.k("revoked"), node, json.dumps({"by": who, "at": now_ms(), "reason": reason}))
        else:
            await self.r.hdel(self.k("revoked"), node)

    async def node_generations(self) -> dict[str, int]:
        raw = await self.r.hgetall(self.k("nodegen"))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def node_generation(self, node: str) -> int:
        return int(await self.r.hget(self.k("nodegen"), node) or 0)

    async def next_generation(self, node: str) -> int:
        return int(await self.r.hincrby(self.k("nodegen"), node, 1))

    async def drained(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("drained"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def set_drained(self, relay: str, on: bool, who: str) -> None:
        if on:
            await self.r.hset(self.k("drained"), relay, json.dumps({"by": who, "at": now_ms()}))
        else:
            await self.r.hdel(self.k("drained"), relay)

    async def sessions(self) -> dict[str, Session]:
        raw = await self.r.hgetall(self.k("sessions"))
        return {k.decode(): msgspec.json.decode(v, type=Session) for k, v in raw.items()}

    async def put_session(self, session: Session) -> None:
        await self.r.hset(self.k("sessions"), session.id, msgspec.json.encode(session))

    async def seed_sessions(self, sessions: list[Session]) -> int:
        """The configured programme, for sessions Redis does not know yet (edits are never overwritten)."""
        added = 0
        for s in sessions:
            added += await self.r.hsetnx(self.k("sessions"), s.id, msgspec.json.encode(s))
        return added

    async def floor(self) -> dict | None:
        raw = await self.r.get(self.k("floor"))
        return json.loads(raw) if raw else None

    async def set_floor(self, hall: str | None, who: str) -> None:
        if hall:
            await self.r.set(self.k("floor"), json.dumps({"hall": hall, "by": who, "at": now_ms()}))
            await self.r.hdel(self.k("floorq"), hall)
        else:
            await self.r.delete(self.k("floor"))

    async def floor_queue(self) -> list[dict]:
        raw = await self.r.hgetall(self.k("floorq"))
        rows = [{"hall": k.decode(), **json.loads(v)} for k, v in raw.items()]
        return sorted(rows, key=lambda r: r["at"])

    async def queue_floor(self, hall: str, on: bool, who: str) -> bool:
        if on:
            return bool(await self.r.hsetnx(self.k("floorq"), hall, json.dumps({"by": who, "at": now_ms()})))
        return bool(await self.r.hdel(self.k("floorq"), hall))

    async def hitless(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("hitless"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def set_hitless(self, hall: str, on: bool, who: str) -> None:
        await self.r.hset(self.k("hitless"), hall, json.dumps({"on": on, "by": who, "at": now_ms()}))

    async def layer_policies(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("layers"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def set_layer_policy(self, hall: str, floor: str, ceiling: str, audio_only: bool, who: str) -> None:
        await self.r.hset(self.k("layers"), hall, json.dumps(
            {"floor": floor, "ceiling": ceiling, "audio_only": audio_only, "by": who, "at": now_ms()}))

    async def request_move(self, node: str, relay: str, who: str) -> None:
        await self.r.hset(self.k("moves"), node, json.dumps({"relay": relay, "by": who, "at": now_ms()}))

    async def moves(self) -> dict[str, dict]:
        raw = await self.r.hgetall(self.k("moves"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def move_done(self, node: str) -> None:
        await self.r.hdel(self.k("moves"), node)

    # -- events and audit ------------------------------------------------------------------

    async def event(self, kind: str, subject: str, detail: str = "", actor: str = "system") -> None:
        await self.r.xadd(
            self.k("events"),
            {"kind": kind, "subject": subject, "detail": detail, "actor": actor, "ts": str(now_ms())},
            maxlen=self.events_maxlen,
            approximate=True,
        )

    async def last_event_id(self) -> str:
        raw = await self.r.xrevrange(self.k("events"), count=1)
        return raw[0][0].decode() if raw else ""

    async def events(self, count: int = 200, kind: str | None = None, subject: str | None = None,
                     actor: str | None = None, after: str | None = None) -> list[dict]:
        """Newest first. `kind` may list several kinds separated by commas; `after` is an event id."""
        kinds = set(kind.split(",")) if kind else None
        filtered = bool(kinds or subject or actor)
        # filtered reads scan further back (bounded) so that a rare kind is still found
        raw = await self.r.xrevrange(self.k("events"), min=f"({after}" if after else "-",
                                     count=min(count * 50, 20_000) if filtered else count)
        out = []
        for eid, fields in raw:
            ev = {k.decode(): v.decode() for k, v in fields.items()}
            ev["id"] = eid.decode()
            if kinds and ev.get("kind") not in kinds:
                continue
            if subject and ev.get("subject") != subject:
                continue
            if actor and ev.get("actor") != actor:
                continue
            out.append(ev)
            if len(out) >= count:
                break
        return out
