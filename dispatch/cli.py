"""The ``erss`` command: ``erss serve [--demo] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from dispatch.app import create_app
from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.embedded import EmbeddedError, EmbeddedServices, start_embedded
from dispatch.errors import ConfigurationError
from dispatch.settings import Settings

log = logging.getLogger("erss")


async def prepare_demo(settings: Settings, base_url: str) -> Path:
    """Migrate, load the demo city and write demo-credentials.json; returns its path."""
    if not settings.database_url:
        raise ConfigurationError("prepare_demo needs a resolved database_url")
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, settings.db_schema)
            credentials = await load_demo(conn, base_url=base_url)
    finally:
        await pool.close()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "demo-credentials.json"
    # Tokens and secrets: readable by the owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(credentials, fh, indent=2)
    return path


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServices | None]:
    """Start embedded servers for whatever URL is unset; settings with both URLs set."""
    need_db = not settings.database_url
    need_redis = not settings.redis_url
    if not (need_db or need_redis):
        return settings, None
    embedded = start_embedded(settings.data_dir, database=need_db, redis=need_redis)
    update = {}
    if need_db:
        update["database_url"] = embedded.database_url
    if need_redis:
        update["redis_url"] = embedded.redis_url
    return settings.model_copy(update=update), embedded


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    settings = Settings()
    try:
        settings, embedded = resolve_services(settings)
    except EmbeddedError as err:
        print(f"erss: {err}", file=sys.stderr)
        return 1
    try:
        if args.demo:
            path = asyncio.run(prepare_demo(settings, f"http://{args.host}:{args.port}"))
            print(f"erss: demo city loaded; credentials in {path}", file=sys.stderr)
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level="info",
            ws_per_message_deflate=settings.ws_per_message_deflate,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``erss`` console script."""
    parser = argparse.ArgumentParser(prog="erss", description="112 ERSS dispatch backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP and websocket server")
    serve_cmd.add_argument("--demo", action="store_true", help="load the Bhubaneswar demo city")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8112)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
