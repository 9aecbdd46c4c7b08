"""Connect to Redis by URL: a plain server (redis://, rediss://, unix://) or a Sentinel-managed
primary (redis+sentinel://host:port,host:port/service-name), which follows failovers."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


POOL_MAX = 64  # connections per process; more requests than that wait for one (never "too many clients")
POOL_WAIT_S = 10.0


def connect(url: str) -> aioredis.Redis:
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
