"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from dispatch.api.deps import ServicesDep
from dispatch.db import load_migrations

router = APIRouter(tags=["operations"])

# A probe must answer quickly even when a dependency hangs.
_PROBE_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (says nothing about its dependencies)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to take reports: PostgreSQL and Redis reachable, migrations applied. 503 with
    what is wrong otherwise, so a load balancer sends reports to another instance."""
    checks: dict[str, Any] = {}
    latest = max(m.version for m in load_migrations())
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            applied = await services.pool.fetchval("SELECT max(version) FROM schema_migrations")
        checks["postgres"] = "ok"
        checks["migrations"] = (
            "ok" if applied == latest else f"at version {applied}, expected {latest}"
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        checks["postgres"] = f"unreachable: {type(err).__name__}: {err}"
        checks["migrations"] = "unknown"
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await services.redis.ping()
        checks["redis"] = "ok"
    except (TimeoutError, OSError, RedisError) as err:
        checks["redis"] = f"unreachable: {type(err).__name__}: {err}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition of this instance's metrics."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
