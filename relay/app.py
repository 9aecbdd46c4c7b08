"""The relay process: an aiohttp application around RelayCore, plus its control-plane agent."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from diemcau.http import on_prepare_security_headers, problem_middleware
from diemcau.tokens import MediaTokenVerifier

from .compat import check_aiortc
from .ice import restrict_ice_addresses
from .server import RelayCore, add_routes
from .settings import RelaySettings

log = logging.getLogger(__name__)

CORE_KEY = web.AppKey("core", RelayCore)


def make_app(settings: RelaySettings, verifier: MediaTokenVerifier | None = None) -> web.Application:
    """Build the relay's application; nothing starts until the runner starts it."""
    check_aiortc()
    if verifier is None:
        if not settings.media_public_key:
            raise SystemExit("relay: media_public_key is required (DIEMCAU_RELAY_MEDIA_PUBLIC_KEY)")
        verifier = MediaTokenVerifier.from_pem(Path(settings.media_public_key).read_bytes())
    restrict_ice_addresses(settings.ice_addresses)
    core = RelayCore(settings, verifier)
    app = web.Application(middlewares=[problem_middleware], client_max_size=settings.max_body_bytes)
    app[CORE_KEY] = core
    add_routes(app, core)
    app.on_response_prepare.append(on_prepare_security_headers)

    async def on_startup(app: web.Application) -> None:
        core.start()

    async def on_shutdown(app: web.Application) -> None:
        core.shutdown()  # long-polling player pages are answered now: the server need not wait for them

    async def on_cleanup(app: web.Application) -> None:
        await core.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
