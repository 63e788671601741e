"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from dispatch.api.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (says nothing about its dependencies)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to take reports: PostgreSQL and Redis answer now, migrations applied. 503 with
    what is wrong otherwise, so a load balancer sends reports to another instance
    (dispatch/readiness.py: how a restart's dead connections and a slow answer are told
    apart from an outage)."""
    ready, body = await services.readiness.check()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition of this instance's metrics."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
