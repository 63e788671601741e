"""The app factory: the one place where the core, the API and the gateways meet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from dispatch.api import alerts, exchange, exchange_ws, ops, rest, volunteers, ws, ws_volunteer
from dispatch.api.errors import install_error_handlers
from dispatch.api.failures import FailureMiddleware
from dispatch.api.limits import single_query_values
from dispatch.exchange.runtime import running_exchange
from dispatch.redact import install_log_redaction
from dispatch.services import running_services
from dispatch.settings import Settings
from gateways.panic.router import router as panic_router
from gateways.sms.router import router as sms_router
from gateways.telecom.router import router as telecom_router
from gateways.vehicle.router import router as vehicle_router


def create_app(settings: Settings, *, on_started: Callable[[], None] | None = None) -> FastAPI:
    """A FastAPI app whose lifespan connects, migrates and runs the background tasks;
    ``on_started`` is called once they run, before the first request."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()  # uvicorn logs ?token= on every websocket connect
        async with running_services(settings) as services, running_exchange(services) as ex:
            app.state.services = services
            app.state.exchange = ex
            if on_started is not None:
                on_started()
            yield

    app = FastAPI(
        title="ERSS 112 dispatch",
        version="0.1.0",
        description="Emergency Response Support System backend: see docs/protocol.md "
        "for the websocket protocol.",
        lifespan=lifespan,
        dependencies=[Depends(single_query_values)],
    )
    install_error_handlers(app)
    app.add_middleware(FailureMiddleware)
    app.include_router(panic_router)
    app.include_router(telecom_router)
    app.include_router(sms_router)
    app.include_router(vehicle_router)
    app.include_router(rest.router)
    app.include_router(ws.router)
    app.include_router(exchange.router)
    app.include_router(alerts.router)
    app.include_router(exchange_ws.router)
    app.include_router(volunteers.router)
    app.include_router(ws_volunteer.router)
    app.mount(
        "/console",
        StaticFiles(directory=Path(__file__).parent / "console", html=True),
        name="console",
    )
    app.include_router(ops.router)

    return app
