"""The throughput floor: a bare FastAPI endpoint doing one INSERT and one XADD.

bench/e2e.py drives this with the same wrk script and request file as the real server,
so the ratio between the two says how much the dispatch work (signature check,
idempotency, zone lookup, unit claim, event log, outbox relay, fan-out) costs on top of
the least any durable "store it, then publish it" endpoint must do.

It is served the way ``erss serve`` serves the real app (``uvicorn.run`` with the same
log level, so the same access logging, uvloop and httptools), so that the comparison is
between the two apps and not between two server setups.

Configuration (environment, set by bench/e2e.py):
    FLOOR_DATABASE_URL, FLOOR_REDIS_URL, FLOOR_DB_SCHEMA, FLOOR_REDIS_KEY
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_floor_app(database_url: str, redis_url: str, schema: str, stream_key: str) -> FastAPI:
    """The floor app; its table lives in ``schema``, which it creates."""
    # The schema name goes into DDL, so only plain identifiers are allowed (as in Settings).
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"schema must be a lower-case SQL identifier, not {schema!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Same pool bounds as the real server (dispatch/services.py), so neither side
        # gets more PostgreSQL concurrency than the other.
        pool = await asyncpg.create_pool(
            database_url, min_size=2, max_size=20, server_settings={"search_path": schema}
        )
        redis = aioredis.from_url(redis_url)
        try:
            async with pool.acquire() as conn:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS hits (id bigserial PRIMARY KEY,"
                    " key text NOT NULL, body jsonb NOT NULL,"
                    " at timestamptz NOT NULL DEFAULT now())"
                )
            app.state.pool = pool
            app.state.redis = redis
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app = FastAPI(title="bench floor", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/gateways/panic", status_code=202)
    async def post(request: Request) -> JSONResponse:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        # jsonb makes PostgreSQL parse the body, as the real server stores JSON too.
        row_id = await request.app.state.pool.fetchval(
            "INSERT INTO hits (key, body) VALUES ($1, $2::jsonb) RETURNING id",
            key,
            body.decode(),
        )
        await request.app.state.redis.xadd(
            stream_key, {"id": str(row_id)}, maxlen=100_000, approximate=True
        )
        return JSONResponse({"id": row_id}, status_code=202)

    return app


def main() -> None:
    """Serve the floor app on loopback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_floor_app(
        os.environ["FLOOR_DATABASE_URL"],
        os.environ["FLOOR_REDIS_URL"],
        os.environ["FLOOR_DB_SCHEMA"],
        os.environ["FLOOR_REDIS_KEY"],
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
