"""`router gateway`: serve the gateway until SIGTERM/SIGINT, then drain and close."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from aiohttp import web

from streams.gateway.app import create_app
from streams.logs import configure_logging
from streams.settings import RouterSettings

log = structlog.get_logger("router.gateway")


async def serve(
    settings: RouterSettings,
    stop: asyncio.Event,
    on_serving: Callable[[list[str]], None] | None = None,
) -> None:
    """Listen until `stop` is set; requests in flight then finish (within
    `shutdown_timeout_s`) and the producer flushes before the process exits. `on_serving`
    gets the URLs once the socket listens."""
    runner = web.AppRunner(
        create_app(settings), access_log=None, shutdown_timeout=settings.shutdown_timeout_s
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
        await site.start()
        # the real port when the setting is 0
        urls = [f"http://{address[0]}:{address[1]}" for address in runner.addresses]
        for url in urls:
            log.info("gateway_serving", url=url)
        if on_serving is not None:
            on_serving(urls)
        await stop.wait()
        log.info("gateway_stopping")
    finally:
        await runner.cleanup()
    log.info("gateway_stopped")


def run_gateway(settings: RouterSettings) -> None:
    configure_logging(settings.log_level)
    log.info("gateway_starting", settings=settings.masked())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
