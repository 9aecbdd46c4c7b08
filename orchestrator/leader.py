"""Leadership: one orchestrator instance decides, holding a Redis lease with a fencing token."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class Leadership:
    """Acquire and renew the lease; `is_leader` is true only while it is held."""

    def __init__(self, redis, prefix: str, instance: str, lease_ms: int, store=None) -> None:
        self.r = redis
        self.key = prefix + "leader"
        self.fence_key = prefix + "leader-fence"
        self.instance = instance
        self.lease_ms = lease_ms
        self.is_leader = False
        self.fence = 0
        self.store = store  # its placement writes carry our fence
        self._renew = redis.register_script(_RENEW)

    async def tick(self) -> bool:
        try:
            if self.is_leader:
                ok = await self._renew(keys=[self.key], args=[self.instance, self.lease_ms])
                if not ok:
                    log.warning("%s lost the leader lease", self.instance)
                    self.is_leader = False
            if not self.is_leader:
                if await self.r.set(self.key, self.instance, nx=True, px=self.lease_ms):
                    self.fence = int(await self.r.incr(self.fence_key))
                    if self.store is not None:
                        self.store.fence = self.fence
                    self.is_leader = True
                    log.info("%s is leader (fence %d)", self.instance, self.fence)
        except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
            log.warning("leader lease check failed: %s", exc)
            self.is_leader = False
        except Exception as exc:  # redis errors
            log.warning("leader lease check failed: %s", exc)
            self.is_leader = False
        return self.is_leader

    def demote(self, why: str) -> None:
        """Redis refused a write with our fence: another instance leads; stop acting at once."""
        if self.is_leader:
            log.warning("%s is no longer leader: %s", self.instance, why)
        self.is_leader = False

    async def release(self) -> None:
        if self.is_leader:
            try:
                await self.r.eval(
                    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                    1, self.key, self.instance,
                )
            except Exception:
                pass
            self.is_leader = False
