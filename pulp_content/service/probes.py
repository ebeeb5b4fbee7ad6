"""The probes orchestrators and load balancers ask: /livez and /readyz (/health is /readyz).

Liveness is the event loop answering, and nothing else: a database outage must take a
process out of the load balancer (readiness), never get it restarted (liveness).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from asgiref.sync import sync_to_async

from pulp_content.service.database import unit_of_work
from pulp_content.service.errors import DatabaseUnavailable
from pulp_content.service.keys import READERS, STORAGE

# Seconds a readiness check may take before it counts as down: a database or a storage
# mount that hangs is as unready as one that refuses (the thread is left to finish).
CHECK_TIMEOUT = 5.0
RETRY_AFTER = "5"


async def livez(request: web.Request) -> web.Response:
    """200 while the event loop answers; touches neither the database nor the storage."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 while the database and the storage answer, else 503 naming what is down."""
    storage = request.app[STORAGE]
    ping = sync_to_async(_ping, thread_sensitive=False, executor=request.app[READERS])
    database_up, storage_up = await asyncio.gather(
        _within(ping),
        _within(lambda: asyncio.to_thread(storage.check_writable)),
    )
    body = {"database": _word(database_up), "storage": _word(storage_up)}
    if database_up and storage_up:
        return web.json_response({"status": "ok", **body})
    headers = {hdrs.RETRY_AFTER: RETRY_AFTER}
    return web.json_response({"status": "unavailable", **body}, status=503, headers=headers)


async def _within(check: Callable[[], Awaitable[None]]) -> bool:
    """Whether `check` finished without error within CHECK_TIMEOUT seconds."""
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except (TimeoutError, DatabaseUnavailable, OSError):  # logged by unit_of_work, or plain
        return False
    return True


def _word(up: bool) -> str:
    return "ok" if up else "down"


@unit_of_work
def _ping() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
