"""Leadership: one orchestrator instance decides, holding a Redis lease with a fencing token."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


# The lease as this instance counts it runs out this much before Redis's copy does: clocks and the
# round trip of the renewal that set it must never let two instances both believe they lead.
SAFETY = 0.8
TERMS_KEPT = 100


class Leadership:
    """Acquire and renew the lease; `is_leader` is true only while it is held.

    Held means: renewed, by a call that started less than SAFETY x lease ago. If Redis goes silent
    (a cut link drops packets, no reset), the renewal hangs, and the lease runs out here before it
    runs out in Redis and another instance takes it: never two leaders at once, and our writes are
    fenced besides."""

    def __init__(self, redis, prefix: str, instance: str, lease_ms: int, store=None) -> None:
        self.r = redis
        self.key = prefix + "leader"
        self.fence_key = prefix + "leader-fence"
        self.instance = instance
        self.lease_ms = lease_ms
        self._held = False
        self._valid_until = 0.0  # monotonic
        self.fence = 0
        self.store = store  # its placement writes carry our fence
        self._renew = redis.register_script(_RENEW)
        # when this instance led (wall-clock times; `until` None while it leads): what a drill
        # compares across instances to prove that no two ever led at once
        self.terms: list[dict] = []

    def _begin(self) -> None:
        self._held = True
        self.terms.append({"from": time.time(), "until": None, "fence": self.fence})
        del self.terms[:-TERMS_KEPT]

    def _end(self, at_monotonic: float | None = None) -> None:
        """Stop leading; the term ends now, or when the local lease ran out if that was earlier."""
        if self._held and self.terms and self.terms[-1]["until"] is None:
            now = time.monotonic()
            ended = min(now, at_monotonic) if at_monotonic is not None else now
            self.terms[-1]["until"] = time.time() - (now - ended)
        self._held = False

    @property
    def is_leader(self) -> bool:
        if self._held and time.monotonic() >= self._valid_until:
            self._end(self._valid_until)
            log.warning("%s: the leader lease ran out before it could be renewed (Redis unreachable?)",
                        self.instance)
        return self._held

    def _lease_from(self, started: float) -> None:
        self._valid_until = started + SAFETY * self.lease_ms / 1000

    async def tick(self) -> bool:
        started = time.monotonic()
        budget = SAFETY * self.lease_ms / 1000 / 2  # a call that takes longer is as good as lost
        try:
            if self.is_leader:
                ok = await asyncio.wait_for(self._renew(keys=[self.key], args=[self.instance, self.lease_ms]), budget)
                if ok:
                    self._lease_from(started)
                else:
                    log.warning("%s lost the leader lease", self.instance)
                    self._end()
            if not self.is_leader and self.fence and await asyncio.wait_for(
                    self._renew(keys=[self.key], args=[self.instance, self.lease_ms]), budget):
                # our local lease lapsed (a stall here) but Redis still had it as ours all along:
                # nobody else led meanwhile, the fence is still ours
                self._lease_from(started)
                self._begin()
                log.info("%s is leader again (fence %d, kept)", self.instance, self.fence)
            if not self.is_leader:
                if await asyncio.wait_for(self.r.set(self.key, self.instance, nx=True, px=self.lease_ms), budget):
                    fence = int(await asyncio.wait_for(self.r.incr(self.fence_key), budget))
                    self.fence = fence
                    if self.store is not None:
                        self.store.fence = fence
                    self._lease_from(started)
                    self._begin()
                    log.info("%s is leader (fence %d)", self.instance, fence)
        except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
            log.warning("leader lease check failed: %s", exc or type(exc).__name__)
            self._end(self._valid_until)
        except Exception as exc:  # redis errors
            log.warning("leader lease check failed: %s", exc)
            self._end(self._valid_until)
        return self.is_leader

    def demote(self, why: str) -> None:
        """Redis refused a write with our fence: another instance leads; stop acting at once."""
        if self._held:
            log.warning("%s is no longer leader: %s", self.instance, why)
        self._end()

    async def release(self) -> None:
        if self._held:
            try:
                await asyncio.wait_for(self.r.eval(
                    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                    1, self.key, self.instance,
                ), 2)
            except Exception:
                pass
            self._end()
