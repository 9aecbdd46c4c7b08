"""Run one diemcau service in this process until SIGTERM/SIGINT, then stop it cleanly."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def setup_logging(name: str) -> None:
    level = os.environ.get("DIEMCAU_LOG", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """Start, wait for a termination signal, stop."""

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await start()
        await done.wait()
        try:
            await asyncio.wait_for(stop(), 10)
        except asyncio.TimeoutError:
            log.warning("clean stop took too long; exiting anyway")

    asyncio.run(main())
