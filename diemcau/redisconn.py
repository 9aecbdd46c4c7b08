"""Connect to Redis by URL: a plain server (redis://, rediss://, unix://), a Sentinel-managed
primary (redis+sentinel://host:port,host:port/service-name), which follows failovers, or a Redis
Cluster (redis+cluster://host:port,host:port/), which follows slot moves and replica promotions.

In a cluster every key the orchestrator keeps must hash to one slot: its Lua scripts and
transactions touch several keys at once, which Redis Cluster allows only within a slot. See
`cluster_prefix`."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


POOL_MAX = 64  # connections per process; more requests than that wait for one (never "too many clients")
POOL_WAIT_S = 10.0

# Cluster: a connection per node for each command in flight, at most POOL_MAX at once; the few
# above that are for what holds a connection outside that count (the pub/sub subscription, the
# topology refresh after a failover).
CLUSTER_SPARE_CONNECTIONS = 8
CLUSTER_SOCKET_TIMEOUT_S = 2.0
CLUSTER_CONNECT_TIMEOUT_S = 1.0


def connect(url: str) -> aioredis.Redis | RedisCluster:
    if url.startswith(CLUSTER_SCHEME + "://"):
        return _connect_cluster(url)
    if not url.startswith(SENTINEL_SCHEME + "://"):
        # bounded: thousands of nodes registering at once must queue for Redis, not open a
        # connection each (Redis refuses clients beyond maxclients, and each costs it memory)
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=POOL_MAX, timeout=POOL_WAIT_S)
        return aioredis.Redis.from_pool(pool)  # closing the client closes its pool
    parts = urlsplit(url)
    name = parts.path.strip("/")
    if not name:
        raise ValueError(f"{url}: name the monitored service, e.g. redis+sentinel://h1:26379,h2:26379/diemcau")
    hosts = []
    for item in parts.netloc.split("@")[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url}: sentinels must be host:port, separated by commas")
        hosts.append((host.strip("[]"), int(port)))
    sentinel = Sentinel(hosts, socket_timeout=0.5)
    return sentinel.master_for(name, socket_timeout=2.0)


def redacted(url: str) -> str:
    """The URL as it may be logged: without the password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return parts._replace(netloc=(f"{user}:***@" if user else "***@") + parts.netloc.rpartition("@")[2]).geturl()


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes to pick its slot: between the first `{` and the first
    `}` after it, when that is not empty; None when the whole key is hashed."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1:end]


def cluster_prefix(prefix: str) -> str:
    """The key prefix to use in a cluster: `prefix` itself when it has a hash tag, else its body
    in braces ("dc:" -> "{dc}:", "dc:east:" -> "{dc:east}:").

    One tag for the whole deployment puts every key of it in one slot, so every script and
    transaction stays legal however the keys are combined later (the fenced placement script
    alone reads the fence, bumps the epoch and writes the assignments). The price: one
    deployment's keys live on one master (its replicas take over if it fails); a cluster spreads
    deployments, i.e. prefixes, over its masters, not one deployment's keys."""
    if hash_tag(prefix) is not None:
        return prefix
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix {prefix!r}: braces that do not make a hash tag; "
                         "use a tag such as {dc}: or a prefix without braces")
    body = prefix.rstrip(":")
    if not body:
        raise ValueError("a Redis Cluster needs a non-empty key prefix (its hash tag keeps a deployment's keys in one slot)")
    return "{" + body + "}" + prefix[len(body):]


def key_prefix_for(client: Any, prefix: str) -> str:
    """The key prefix a deployment configured with `prefix` uses on this client's Redis: the same,
    or in a cluster the hash-tagged one (the orchestrator and every tool reading its keys agree)."""
    return cluster_prefix(prefix) if is_cluster(client) else prefix


class ClusterUnavailable(RedisConnectionError):
    """The cluster's topology could not be read, or the slot has no master just now (a failover
    under way): callers treat it as Redis being unreachable, and retry."""


# set while a task holds a place at the gate: a command redis-py issues from inside another (a
# pipeline re-sending a redirected command alone) must not wait for a second place, or every
# place could be held by callers waiting for one
_AT_GATE: contextvars.ContextVar[bool] = contextvars.ContextVar("diemcau_cluster_gate", default=False)


def _torn_down(exc: BaseException) -> bool:
    """A connection closed under a command (by the peer, or by the client's own reset of a failed
    node's connections in a failover) surfaces from redis-py as an AttributeError or TypeError
    raised in the connection or transport code, not as a ConnectionError (redis-py issue #4287;
    seen here as `'NoneType' object has no attribute 'writelines'` while a master was failing over)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename.replace("\\", "/") if tb is not None else ""
    return where.endswith(("redis/asyncio/connection.py", "asyncio/streams.py", "asyncio/selector_events.py"))


@contextlib.asynccontextmanager
async def _through(gate: asyncio.Semaphore) -> AsyncIterator[None]:
    if _AT_GATE.get():
        yield
        return
    async with gate:
        token = _AT_GATE.set(True)
        try:
            yield
        except SlotNotCoveredError as exc:
            raise ClusterUnavailable(str(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if _torn_down(exc):
                raise ClusterUnavailable(f"connection closed under the command: {exc}") from exc
            raise
        finally:
            _AT_GATE.reset(token)


class _GatedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        async with _through(self.cluster_client.gate):
            return await super().execute(raise_on_error, allow_redirections)


class GatedCluster(RedisCluster):
    """RedisCluster whose callers wait for a connection when POOL_MAX commands are in flight
    (redis-py's own limit raises MaxConnectionsError instead), and whose "cannot find the
    cluster" errors are connection errors (redis-py raises a class outside RedisError)."""

    def __init__(self, *args: Any, gate: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Semaphore(gate)

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:  # no startup node answers, or the slots are not covered
            raise ClusterUnavailable(str(exc)) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with _through(self.gate):
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("shard_hint is not used in cluster mode")
        return _GatedPipeline(self, transaction)


def _connect_cluster(url: str) -> RedisCluster:
    parts = urlsplit(url)
    shown = redacted(url)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{shown}: a cluster has only database 0; end the URL after the nodes")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown}: no options are read from a cluster URL; give only the nodes")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{shown}: cluster nodes must be host:port, separated by commas, "
                             "e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")
        nodes.append(ClusterNode(host, int(port)))
    user, _, password = userinfo.partition(":")
    return GatedCluster(
        startup_nodes=nodes,
        username=unquote(user) or None,
        password=unquote(password) or None,
        gate=POOL_MAX,
        max_connections=POOL_MAX + CLUSTER_SPARE_CONNECTIONS,  # per node
        socket_timeout=CLUSTER_SOCKET_TIMEOUT_S,
        socket_connect_timeout=CLUSTER_CONNECT_TIMEOUT_S,
        # one deployment's keys are in one slot: another master's outage must not stop it here
        # (whether the servers refuse meanwhile is their cluster-require-full-coverage setting)
        require_full_coverage=False,
    )
