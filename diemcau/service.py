"""Run one diemcau service in this process until SIGTERM/SIGINT, then stop it cleanly."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


GC_PAUSE_LOG_MS = 50.0  # a garbage collection pausing the event loop longer than this is logged


def watch_gc_pauses() -> None:
    """Log collections that stall this process's event loop (all media of the process waits)."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (ms := (time.perf_counter() - started[0]) * 1000) > GC_PAUSE_LOG_MS:
            log.warning("garbage collection (generation %d, %d collected) paused the process %.0f ms",
                        info.get("generation", -1), info.get("collected", 0), ms)

    gc.callbacks.append(callback)


async def _report_garbage(every_s: float = 10.0) -> None:
    """DIEMCAU_GC_DEBUG=1: keep what each collection finds and log which types it was (a leak hunt)."""
    import collections

    gc.set_debug(gc.DEBUG_SAVEALL)
    while True:
        await asyncio.sleep(every_s)
        found = list(gc.garbage)
        gc.garbage.clear()
        kinds = collections.Counter(type(o).__qualname__ for o in found)
        frames = collections.Counter(f"{o.f_code.co_filename.rsplit('/', 2)[-1]}:{o.f_code.co_name}"
                                     for o in found if type(o).__name__ == "frame")
        log.warning("cyclic garbage in %.0f s: %d objects; %s; frames: %s", every_s, len(found),
                    kinds.most_common(12), frames.most_common(8))


def setup_logging(name: str) -> None:
    level = os.environ.get("DIEMCAU_LOG", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not any(getattr(cb, "__qualname__", "").startswith("watch_gc_pauses") for cb in gc.callbacks):
        watch_gc_pauses()


def run(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """Start, wait for a termination signal, stop."""

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await start()
        # Everything alive now (modules, classes, settings, the started service) lives as long as
        # the process: keep it out of every future collection, whose pause stalls all media here.
        gc.collect()
        gc.freeze()
        if os.environ.get("DIEMCAU_GC_DEBUG"):
            asyncio.ensure_future(_report_garbage())
        await done.wait()
        try:
            await asyncio.wait_for(stop(), 10)
        except asyncio.TimeoutError:
            log.warning("clean stop took too long; exiting anyway")

    asyncio.run(main())
