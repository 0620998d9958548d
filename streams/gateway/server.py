"""`router gateway`: serve the gateway until SIGTERM/SIGINT, then drain and close."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from streams.gateway.app import create_app
from streams.logs import configure_logging
from streams.settings import RouterSettings

log = structlog.get_logger("router.gateway")


async def serve(settings: RouterSettings, stop: asyncio.Event) -> None:
    """Listen until `stop` is set; requests in flight then finish (within
    `shutdown_timeout_s`) and the producer flushes before the process exits."""
    runner = web.AppRunner(
        create_app(settings), access_log=None, shutdown_timeout=settings.shutdown_timeout_s
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
        await site.start()
        for address in runner.addresses:  # the real port when the setting is 0
            host, port = address[:2]
            log.info("gateway_serving", url=f"http://{host}:{port}")
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
