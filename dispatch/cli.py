"""The ``erss`` command: ``erss serve [--demo] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from dispatch.app import create_app
from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.embedded import EmbeddedError, EmbeddedServices, start_embedded
from dispatch.errors import ConfigurationError
from dispatch.logformat import configure_logging
from dispatch.posts import STANDBY_POLICIES
from dispatch.serving import freeze_startup_objects, websocket_options
from dispatch.settings import Settings
from dispatch.simulation.policies import POLICY_NAMES
from dispatch.zonestore import save_zones
from gateways.client import PATHS, aml_sms, deliver
from geo.zones import Zone, ZoneError, zones_from_geojson

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


def resolve_services(
    settings: Settings, *, redis: bool = True
) -> tuple[Settings, EmbeddedServices | None]:
    """Start embedded servers for whatever URL is unset; settings with the URLs set."""
    need_db = not settings.database_url
    need_redis = redis and not settings.redis_url
    if not (need_db or need_redis):
        return settings, None
    embedded = start_embedded(settings.data_dir, database=need_db, redis=need_redis)
    update = {}
    if need_db:
        update["database_url"] = embedded.database_url
    if need_redis:
        update["redis_url"] = embedded.redis_url
    return settings.model_copy(update=update), embedded


@contextlib.contextmanager
def database_only() -> Iterator[Settings | None]:
    """Settings with a database for a one-off command (embedded if no URL is set, and
    stopped afterwards); None, with the reason printed, if it cannot be had."""
    try:
        settings, embedded = resolve_services(Settings(), redis=False)
    except EmbeddedError as err:
        print(f"erss: {err}", file=sys.stderr)
        yield None
        return
    try:
        yield settings
    finally:
        if embedded is not None:
            embedded.stop()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then restores this handler and raises
    # the signal again; the default action would end the process there, skipping the
    # `finally` that stops the embedded servers. An exception unwinds through it; a stop
    # that was asked for is a clean exit (status 0, as systemd and docker expect).
    del signum
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted (Ctrl-C or SIGTERM); stops what it started."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = Settings()
    if args.demo and "position_stale_s" not in settings.model_fields_set:
        # The demo fleet has no MDTs pinging (unless the simulator drives it): its
        # positions are as old as the demo, and would all be distrusted.
        settings = settings.model_copy(update={"position_stale_s": None})
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
            create_app(settings, on_started=freeze_startup_objects),
            host=args.host,
            port=args.port,
            log_level="info",
            # Our handler (text or JSON) for uvicorn's loggers too.
            log_config=None,
            **websocket_options(settings),
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def send(args: argparse.Namespace) -> int:
    """Sign and post one report as a gateway would; print the answer."""
    path = (
        Path(args.credentials)
        if args.credentials
        else Settings().data_dir / ("demo-credentials.json")
    )
    try:
        credentials = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        print(f"erss send: cannot read credentials {path}: {err}", file=sys.stderr)
        return 2
    gateway = args.gateway or {"panic": "panic", "call": "telecom", "sms": "sms"}[args.kind]
    secret = args.secret or credentials.get("gateways", {}).get(gateway)
    if not secret:
        print(f"erss send: no secret for gateway {gateway!r} in {path}", file=sys.stderr)
        return 2
    ident = uuid.uuid4().hex[:12]
    fix = (
        {"lat": args.lat, "lon": args.lon}
        if args.lat is not None and args.lon is not None
        else None
    )
    payload: dict[str, Any]
    if args.kind == "panic":
        payload = {"trigger_id": ident, "device_id": args.device or f"cli-{ident}"}
        if fix:
            payload["location"] = {**fix, "accuracy_m": args.accuracy}
        if args.category:
            payload["category"] = args.category
        if args.phone:
            payload["user"] = {"phone": args.phone}
    elif args.kind == "call":
        payload = {"call_id": ident, "caller": args.phone or "+910000000000"}
        if fix:
            payload["location"] = {**fix, "radius_m": args.accuracy, "method": "cell"}
        if args.silent:
            payload["call_state"] = "silent"
    else:
        text = args.text or (aml_sms(args.lat, args.lon, args.accuracy) if fix else "")
        payload = {
            "message_id": ident,
            "from": args.phone or "+910000000000",
            "to": "112",
            "text": text,
        }
    base_url = args.url or credentials.get("base_url", "http://127.0.0.1:8112")
    try:
        answer = deliver(base_url, PATHS[args.kind], payload, gateway=gateway, secret=secret)
    except (OSError, ValueError) as err:
        # URLError, refused or reset connections and time-outs are all OSErrors; a
        # malformed URL is a ValueError. A person needs the address and the reason.
        reason = getattr(err, "reason", err)
        print(
            f"erss send: could not reach {base_url}: {reason}; is `erss serve` running there?",
            file=sys.stderr,
        )
        return 3
    print(json.dumps({"status": answer.status, "answer": answer.body}, indent=2))
    return 0 if 200 <= answer.status < 300 else 1


async def _store_zones(settings: Settings, zones: list[Zone]) -> tuple[int, list[str]]:
    """Store validated zones; (how many, ids stored before that the file lacks)."""
    if not settings.database_url:
        raise ConfigurationError("no database_url")
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await migrate(conn, settings.db_schema)
            await save_zones(conn, zones)
            absent = await conn.fetch(
                "SELECT id FROM zones WHERE NOT id = ANY($1::text[]) ORDER BY id",
                [z.id for z in zones],
            )
    finally:
        await pool.close()
    return len(zones), [r["id"] for r in absent]


def zones_command(args: argparse.Namespace) -> int:
    """`erss zones load FILE`: validate a city's jurisdictions and store them."""
    # Validated before anything is started or written: a bad file changes nothing.
    try:
        zones = zones_from_geojson(json.loads(Path(args.file).read_text("utf-8")))
    except (OSError, ValueError, ZoneError) as err:
        print(f"erss zones load: {args.file}: {err}", file=sys.stderr)
        return 1
    with database_only() as settings:
        if settings is None:
            return 1
        stored, absent = asyncio.run(_store_zones(settings, zones))
    print(
        f"erss: {stored} zones stored; running servers pick them up within"
        f" {settings.zone_refresh_s:.0f} s"
    )
    if absent:
        # Kept, not deleted: open incidents and units may still refer to them.
        print(f"erss: zones in the database but not in the file (kept): {', '.join(absent)}")
    return 0


def simulate(args: argparse.Namespace) -> int:
    """`erss simulate`: a seeded simulated day, offline (the engine's policy called
    directly) or against a running server (--live); writes report.json and PNG charts."""
    from dispatch.posts import standby_named
    from dispatch.simulation.offline import OfflineSimulator
    from dispatch.simulation.policies import policy_named
    from dispatch.simulation.report import summarise, write_charts, write_json
    from dispatch.simulation.scenario import arrivals, demo_city, grid_city, load_sim_config

    config = load_sim_config(args.config)
    city = grid_city(args.grid) if args.grid else demo_city()
    # A synthetic grid has zones of its own: the demo's names cannot apply there.
    unknown = [] if args.grid else config.unknown_zones(city.zone_ids)
    if unknown:
        print(
            f"erss simulate: the simulation config names zones the city does not have:"
            f" {', '.join(unknown)} (zone ids: {', '.join(city.zone_ids)})",
            file=sys.stderr,
        )
        return 2
    if args.live:
        from dispatch.simulation.live import run_live

        path = Path(args.credentials or Settings().data_dir / "demo-credentials.json")
        credentials = json.loads(path.read_text("utf-8"))
        result = asyncio.run(
            run_live(
                args.url or credentials["base_url"],
                credentials,
                city,
                config,
                seed=args.seed,
                hours=args.hours,
                load=args.load,
                speedup=args.speedup,
            )
        )
    else:
        policy = policy_named(
            args.policy,
            zones=city.zones,
            rates=config.zone_rates,
            default_rate=config.rate_default,
            params=config.policy,
        )
        posts = standby_named(
            args.standby,
            zones=city.zones,
            model=config.travel_model(),
            rates=config.zone_rates,
            default_rate=config.rate_default,
            params=config.policy,
        )
        day = arrivals(city, config, seed=args.seed, hours=args.hours, load=args.load)
        simulator = OfflineSimulator(city, config, policy, posts=posts)
        result = simulator.run(day, horizon_s=args.hours * 3600)
    report = summarise(result, config)
    out = Path(args.out)
    write_json(report, out / "report.json")
    if not args.no_charts:
        try:
            write_charts(result, report, city, config, out)
        except ImportError:
            print("erss simulate: no charts (pip install 'erss-dispatch[sim]')", file=sys.stderr)
    overall = report["overall"]
    print(
        f"erss simulate: {overall['incidents']} incidents, {overall['responses']} responses,"
        f" {overall['within_target']:.1%} within {config.target_min:g} min,"
        f" response p50/p90 {overall['response_s']['p50']}/{overall['response_s']['p90']} s;"
        f" report in {out}"
    )
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """`erss demo`: load the demo city and write its credentials, without serving.

    For deployments where several instances serve one database: one set-up step loads
    the city once, then every instance runs `erss serve`.
    """
    with database_only() as settings:
        if settings is None:
            return 1
        path = asyncio.run(prepare_demo(settings, args.base_url))
    print(f"erss: demo city loaded; credentials in {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``erss`` console script."""
    parser = argparse.ArgumentParser(prog="erss", description="112 ERSS dispatch backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP and websocket server")
    serve_cmd.add_argument("--demo", action="store_true", help="load the Bhubaneswar demo city")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8112)
    demo_cmd = commands.add_parser(
        "demo", help="load the demo city and write demo-credentials.json, then exit"
    )
    demo_cmd.add_argument(
        "--base-url", default="http://127.0.0.1:8112", help="written into the credentials"
    )
    zones_cmd = commands.add_parser("zones", help="manage jurisdictions")
    zones_sub = zones_cmd.add_subparsers(dest="zones_command", required=True)
    load_cmd = zones_sub.add_parser("load", help="validate and store a GeoJSON FeatureCollection")
    load_cmd.add_argument("file", help="GeoJSON (RFC 7946) of (Multi)Polygons, lon/lat")
    send_cmd = commands.add_parser(
        "send", help="sign and post a report as a gateway would (for testing a set-up)"
    )
    send_cmd.add_argument("kind", choices=["panic", "call", "sms"])
    send_cmd.add_argument("--lat", type=float, help="latitude of the fix")
    send_cmd.add_argument("--lon", type=float, help="longitude of the fix")
    send_cmd.add_argument("--accuracy", type=float, default=15.0, help="metres (default 15)")
    send_cmd.add_argument("--phone", help="caller / sender number (E.164)")
    send_cmd.add_argument("--device", help="panic: device id")
    send_cmd.add_argument("--category", help="panic: category, e.g. women_safety, medical")
    send_cmd.add_argument("--text", help="sms: text (default: an AML SMS of --lat/--lon)")
    send_cmd.add_argument("--silent", action="store_true", help="call: nobody spoke")
    send_cmd.add_argument("--url", help="server (default: base_url of the credentials)")
    send_cmd.add_argument("--gateway", help="gateway id (default: the demo's for the kind)")
    send_cmd.add_argument("--secret", help="gateway secret (default: from the credentials)")
    send_cmd.add_argument("--credentials", help="demo-credentials.json (default: data dir)")
    sim_cmd = commands.add_parser("simulate", help="simulate a seeded day and report on it")
    sim_cmd.add_argument(
        "--policy", default="closest_idle", choices=POLICY_NAMES, help="offline: which unit goes"
    )
    sim_cmd.add_argument(
        "--standby",
        default="patrol",
        choices=STANDBY_POLICIES,
        help="offline: where freed units wait",
    )
    sim_cmd.add_argument("--seed", type=int, default=1)
    sim_cmd.add_argument("--hours", type=float, default=24.0)
    sim_cmd.add_argument("--load", type=float, default=1.0, help="multiplier of arrival rates")
    sim_cmd.add_argument("--grid", type=int, default=0, help="synthetic N x N city, not demo")
    sim_cmd.add_argument("--config", help="simulation config (default config/simulation.json)")
    sim_cmd.add_argument("--out", default="sim-report", help="folder for report.json and PNGs")
    sim_cmd.add_argument("--no-charts", action="store_true")
    sim_cmd.add_argument("--live", action="store_true", help="drive a running server")
    sim_cmd.add_argument("--speedup", type=float, default=60.0, help="live: simulated s per s")
    sim_cmd.add_argument("--url", help="live: server (default: base_url of the credentials)")
    sim_cmd.add_argument("--credentials", help="live: demo-credentials.json")
    args = parser.parse_args(argv)
    configure_logging(Settings().log_format)
    if args.command == "serve":
        return serve(args)
    if args.command == "send":
        return send(args)
    if args.command == "zones":
        return zones_command(args)
    if args.command == "demo":
        return demo_command(args)
    if args.command == "simulate":
        return simulate(args)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
