"""Per-subscriber layer choice: step down fast on loss, step up slowly, audio-only below the ladder.

Each adapting WHEP subscriber (a hall, a viewer; never a relay) gets one LayerControl. It reads
the subscriber's RTCP receiver reports (fraction lost) and what was sent, and picks a layer:

- down at once when a report shows more than DOWN_LOSS lost: to the highest layer whose
  bitrate fits what actually got through (sent rate x (1 - loss)), at least one step;
- from the lowest layer, still losing: audio only (video stops; audio never does);
- up one step after `stable_s` without loss; a step up that meets loss within PROBE_S goes
  straight back and doubles the wait (at most STABLE_MAX_S), a success resets it.

Every switch happens at a keyframe of the target layer (DownTrack.switch_to). The operator's
floor, ceiling and audio-only bound the choice; `adapt=False` pins the top layer (hitless halls,
whose two paths must carry identical frames).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

log = logging.getLogger(__name__)

TICK_S = 0.25
DOWN_LOSS = 0.08  # a report losing more than this steps down
CLEAN_LOSS = 0.02  # at most this counts as a clean report
STABLE_S = 3.0  # clean this long before stepping up
STABLE_MAX_S = 8.0
PROBE_S = 3.0  # a step up that meets loss this soon was premature
SETTLE_S = 1.2  # after a step down, reports still describe the old layer for about this long
AUDIO_KBPS = 48  # what the audio track costs, for fitting a layer to the measured rate
PENDING_TIMEOUT_S = 3.0
# a subscriber's first seconds say little about its link: it joined with a burst (ICE, DTLS, a
# keyframe) and often together with many others (a deployment starting, a relay's halls moving)
JOIN_GRACE_S = 8.0
# Loss that most of a relay's subscribers report at once is not about their links: the relay
# itself stalled (CPU, a collector pause) or its upstream did. Stepping every hall down would not
# help them and would add the work of transcoding and of everyone's keyframes; they stay.
SHARED_LOSS_WINDOW_S = 2.5
SHARED_LOSS_SHARE = 0.5
SHARED_LOSS_MIN = 4  # with fewer subscribers, each one's loss is its own  # a target layer whose keyframe does not come: stay where we are


class LayerControl:
    """Chooses the video layer of one subscriber session; levels: 0 = top, ..., n = audio only."""

    def __init__(self, session, core, base: str, names: list[str], kbps: list[int]) -> None:
        self.session = session
        self.core = core
        self.base = base
        self.names = names  # ["top", "360p", "180p"]: level i's layer; level len(names) is audio only
        self.kbps = kbps  # nominal bitrate per level (the top's is measured)
        self.level = 0
        self.target = 0
        self.reason = "start"
        self.floor = len(names) - 1  # the lowest video level allowed (operator)
        self.ceiling = 0  # the highest level allowed (operator)
        self.audio_only = False
        self.adapt = True
        self.switches: list[tuple[float, str, str, str]] = []  # (unix time, from, to, reason)
        self.stable_s = STABLE_S
        self._clean_since = time.monotonic()
        self._last_down = 0.0
        self._last_up = 0.0
        self._pending_since = 0.0
        self._reports = 0
        self._lossy_reports = 0  # lossy reports in a row on the lowest layer
        self._shared_skips = 0  # lossy reports not acted on: most of the relay's subscribers lost too
        self._judge_from = 0  # receiver reports up to this one describe an earlier layer
        self._octets = 0
        self._octets_at = time.monotonic()
        self._rate_kbps = 0.0
        self._task: asyncio.Task | None = None
        self._started_at = time.monotonic()
        self.lossy_at = 0.0  # when its last report showed loss (the relay compares its subscribers)
        self._jitter = random.uniform(1.0, 1.3)  # halls of one relay do not all step up at the same tick

    @property
    def layer(self) -> str:
        return "audio" if self.level >= len(self.names) else self.names[self.level]

    def start(self) -> None:
        self.core.layer_controls.add(self)
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.core.layer_controls.discard(self)
        self.core.release_layers(self)

    def _loss_is_shared(self, now: float) -> bool:
        peers = [c for c in self.core.layer_controls if c.adapt and not c.audio_only and now - c._started_at > JOIN_GRACE_S]
        if len(peers) < SHARED_LOSS_MIN:
            return False
        lossy = sum(1 for c in peers if now - c.lossy_at < SHARED_LOSS_WINDOW_S)
        return lossy >= SHARED_LOSS_SHARE * len(peers)

    def set_policy(self, floor: str | None = None, ceiling: str | None = None, audio_only: bool | None = None,
                   adapt: bool | None = None) -> None:
        if floor is not None:
            self.floor = self.names.index(floor) if floor else len(self.names) - 1
        if ceiling is not None:
            self.ceiling = self.names.index(ceiling) if ceiling else 0
        if self.ceiling > self.floor:
            self.floor = self.ceiling
        if audio_only is not None:
            self.audio_only = audio_only
        if adapt is not None:
            self.adapt = adapt
        # an operator's word starts afresh from the highest layer allowed; loss steps down again
        level = self._bounded(self.ceiling)
        self._clean_since = time.monotonic()
        if level != self.target:
            self._go(level, "operator")

    def _bounded(self, level: int) -> int:
        if self.audio_only:
            return len(self.names)
        if not self.adapt:
            return self.ceiling
        if level >= len(self.names):
            return level if self.floor == len(self.names) - 1 else self.floor
        return min(max(level, self.ceiling), self.floor)

    def _video(self):
        return next((dt for dt in self.session.downtracks if dt.output.kind == "video"), None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - a controller bug must not take the session down
                log.exception("layer control of %s", self.session.subject)

    def _tick(self) -> None:
        dt = self._video()
        if dt is None or dt.paused:
            return
        now = time.monotonic()
        # what we sent since the last tick (for fitting a layer to what got through)
        if now - self._octets_at >= 1.0:
            sent = dt.output.octets
            self._rate_kbps = (sent - self._octets) * 8 / 1000 / (now - self._octets_at)
            self._octets, self._octets_at = sent, now
        if self.target != self.level:
            if self._landed(dt):
                self._record(self.level, self.target)
                self.level = self.target
                self.core.hold_only(self, self.base, self.layer)  # the layer we left may stop
                # the next report still covers packets of the old layer: judge from the one after
                self._judge_from = dt.reports + 1
                self._clean_since = now
            elif now - self._pending_since > PENDING_TIMEOUT_S:
                log.info("%s: layer %s did not start within %.0f s; staying on %s", self.session.subject,
                         self._name(self.target), PENDING_TIMEOUT_S, self.layer)
                dt.cancel_switch()
                self.target = self.level
            return
        new_report = dt.reports != self._reports and dt.reports > self._judge_from
        self._reports = dt.reports
        if not self.adapt or self.audio_only:
            return
        if now - self._started_at < JOIN_GRACE_S:
            self._judge_from = dt.reports  # what it reports while joining is not judged
            return
        loss = dt.fraction_lost / 256 if new_report else 0.0
        if new_report:
            log.debug("%s: report %d on %s: loss %.0f%%, sent %.0f kbps", self.session.subject, dt.reports,
                      self.layer, loss * 100, self._rate_kbps)
        if self.level >= len(self.names):  # audio only: the audio track's reports are the signal
            audio = next((d for d in self.session.downtracks if d is not dt), None)
            loss = audio.fraction_lost / 256 if audio is not None else 0.0
        if new_report and loss > DOWN_LOSS:
            self.lossy_at = now
        if new_report and loss > DOWN_LOSS and now - self._last_down > SETTLE_S:
            if self._loss_is_shared(now):
                self._shared_skips += 1
                self._clean_since = now
                return
            if self.level >= len(self.names):
                self._clean_since = now
                return
            got_kbps = self._rate_kbps * (1 - loss)
            fit = next((i for i in range(self.level + 1, len(self.names)) if self.kbps[i] + AUDIO_KBPS <= 0.9 * got_kbps),
                       len(self.names))
            if self.level == len(self.names) - 1:
                # the lowest layer: only a loss that lasts takes the picture away
                self._lossy_reports += 1
                if self._lossy_reports < 2:
                    return
            elif fit >= len(self.names):
                fit = len(self.names) - 1  # audio only is never more than one step away
            if now - self._last_up < PROBE_S:
                self.stable_s = min(self.stable_s * 2, STABLE_MAX_S)  # that step up was premature
                fit = min(fit, self.level + 1)
            level = self._bounded(max(fit, self.level + 1))
            self._clean_since = now
            if level != self.level:
                self._last_down = now
                self._go(level, f"loss {loss * 100:.0f}% at {self._rate_kbps:.0f} kbps")
            return
        if new_report:
            self._lossy_reports = 0
        if new_report and loss > CLEAN_LOSS:
            self._clean_since = now
            return
        if self._last_up > self._last_down and now - self._last_up > PROBE_S:
            self.stable_s = STABLE_S  # the last step up held
        if self.level > self._bounded(0) and now - self._clean_since > self.stable_s * self._jitter:
            level = self._bounded(self.level - 1)
            if level < self.level:
                self._last_up = now
                self._clean_since = now
                self._go(level, f"no loss for {self.stable_s:.0f} s")

    def _landed(self, dt) -> bool:
        if self.target >= len(self.names):
            return dt.suspended
        return (dt.pending is None and not dt.suspended and dt.started
                and dt.up is self.core.layer_up(self.base, self.names[self.target]))

    def _name(self, level: int) -> str:
        return "audio" if level >= len(self.names) else self.names[level]

    def _go(self, level: int, reason: str) -> None:
        dt = self._video()
        if dt is None:
            return
        self.target = level
        self.reason = reason
        self._pending_since = time.monotonic()
        if level >= len(self.names):
            dt.suspend()
            return
        asyncio.ensure_future(self._switch(dt, level))

    async def _switch(self, dt, level: int) -> None:
        up = await self.core.acquire_layer(self.base, self.names[level], self)
        if self.target != level:
            return  # changed its mind meanwhile
        if up is None:
            log.info("%s: layer %s unavailable; staying on %s", self.session.subject, self.names[level], self.layer)
            self.target = self.level
            return
        dt.switch_to(up)

    def _record(self, old: int, new: int) -> None:
        self.switches.append((time.time(), self._name(old), self._name(new), self.reason))
        del self.switches[:-20]
        log.info("%s: layer %s -> %s (%s)", self.session.subject, self._name(old), self._name(new), self.reason)

    def stats(self) -> dict:
        return {"layer": self.layer, "reason": self.reason, "target": self._name(self.target),
                "floor": self._name(self.floor), "ceiling": self._name(self.ceiling), "audio_only": self.audio_only,
                "adapt": self.adapt, "shared_loss_skips": self._shared_skips, "switches": [[f"{t:.3f}", a, b, r] for t, a, b, r in self.switches[-5:]]}
