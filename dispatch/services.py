"""The running system's parts, built once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatch.auth import GatewaySecrets, load_gateways_file, register_gateways
from dispatch.capacity import ConnectionLimit, default_limit
from dispatch.control import Control
from dispatch.correlate import CorrelationPolicy
from dispatch.db import create_pool, migrate
from dispatch.engine import TravelModel
from dispatch.errors import ConfigurationError
from dispatch.expiry import OfferExpiry
from dispatch.hub import Hub
from dispatch.incident_types import load_incident_types
from dispatch.intake import Intake
from dispatch.keys import RedisKeys
from dispatch.metrics import Metrics
from dispatch.offers import Dispatcher
from dispatch.outbox import OutboxRelay
from dispatch.positions import PositionTracker
from dispatch.posts import standby_named
from dispatch.queue import QueueWorker
from dispatch.ratelimit import RateLimiter
from dispatch.readiness import Readiness
from dispatch.settings import Settings
from dispatch.simulation.policies import policy_named
from dispatch.simulation.scenario import load_sim_config
from dispatch.transient import OutageLog, is_transient
from dispatch.unit_index import UnitIndex
from dispatch.volunteers.alerter import VolunteerAlerter
from dispatch.volunteers.policy import load_policy
from dispatch.zonestore import ZoneDirectory, load_zone_index
from geo.geocode import Geocoder, build_geocoder

log = logging.getLogger(__name__)

# Seconds the database pool gets to close gracefully when the instance stops.
_POOL_CLOSE_S = 5.0
# Pause before a background task that died is started again.
_RESTART_S = 1.0
# Redis connections: see redis_client.
_REDIS_RETRIES = 2
_REDIS_HEALTH_CHECK_S = 15
_REDIS_CONNECT_TIMEOUT_S = 2.0


@dataclass
class Services:
    """Everything a request handler may need."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: RedisKeys
    dispatcher: Dispatcher
    intake: Intake
    hub: Hub
    relay: OutboxRelay
    gateway_secrets: GatewaySecrets
    rate_limiter: RateLimiter
    queue: QueueWorker
    control: Control
    metrics: Metrics
    positions: PositionTracker
    geocoder: Geocoder
    websockets: ConnectionLimit
    readiness: Readiness
    volunteers: VolunteerAlerter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def redis_client(url: str, *, connections: int) -> aioredis.Redis:
    """A Redis client whose callers wait (up to 10 s) for a free connection, and whose
    pooled connections heal by themselves after a Redis restart.

    After a restart every pooled connection is dead. Without a retry each of them failed
    one command before being replaced (``/readyz`` flapped to 503, a rate check or a
    publish failed, one by one). With it, a command that meets a dead connection
    reconnects and runs again at once. The retry is short (two more tries within about
    0.1 s): while Redis is really down a caller must learn it quickly, as the rate
    limiter and the unit index then fall back. The health check pings a connection that
    sat idle longer than its interval before using it again, which also catches one a
    firewall dropped without a word.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=_REDIS_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionError],
        health_check_interval=_REDIS_HEALTH_CHECK_S,
        socket_connect_timeout=_REDIS_CONNECT_TIMEOUT_S,
        # TCP only: the embedded Redis listens on a Unix socket, whose connection class
        # refuses the keepalive option (the app then failed to start at all).
        **({} if url.startswith("unix") else {"socket_keepalive": True}),
    )
    # from_pool: the client owns the pool and closes it with itself.
    return aioredis.Redis.from_pool(pool)


def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Run a background loop as a task that is started again if it ever ends.

    Each loop retries outages itself; this is for what it does not expect (a bug, an
    error type its ``except`` does not list). Without it the task would end silently
    and, say, offers would stop expiring or events stop reaching sockets on this
    instance while ``/readyz`` still said ready.
    """

    async def supervised() -> None:
        while True:
            try:
                await run()
                log.error("background task %s returned; starting it again", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s died; starting it again", name)
            await asyncio.sleep(_RESTART_S)

    return asyncio.create_task(supervised(), name=name)


async def _reach_stores(
    settings: Settings, database_url: str, redis: aioredis.Redis
) -> asyncpg.Pool:
    """The database pool, once PostgreSQL and Redis both answer.

    An instance started while a store is down (a host booting before its database, a
    restart during an outage) waits for it, up to ``startup_wait_s``, instead of
    exiting with a traceback and leaving the retry to whatever supervises it.
    """
    outage = OutageLog(log, "start-up")
    deadline = time.monotonic() + settings.startup_wait_s
    while True:
        pool: asyncpg.Pool | None = None
        try:
            pool = await create_pool(database_url, settings.db_schema, min_size=2, max_size=20)
            await redis.ping()
            outage.succeeded()
            return pool
        except Exception as err:
            if pool is not None:
                pool.terminate()
            if not is_transient(err):
                raise
            if time.monotonic() >= deadline:
                raise ConfigurationError(
                    f"PostgreSQL or Redis did not answer within {settings.startup_wait_s:.0f} s"
                    f" of start ({type(err).__name__}: {err}); check that both run and that"
                    " ERSS_DATABASE_URL and ERSS_REDIS_URL point at them"
                ) from err
            outage.failed(err)
            await asyncio.sleep(_RESTART_S)


@contextlib.asynccontextmanager
async def running_services(settings: Settings) -> AsyncIterator[Services]:
    """Connect, migrate, start the background tasks; undo it all on exit."""
    if not settings.database_url or not settings.redis_url:
        raise ConfigurationError(
            "database_url and redis_url must be resolved before the app starts"
            " (erss serve starts embedded servers when they are unset)"
        )
    schema = settings.db_schema
    # Blocking pools: redis-py's default pool raises once its connections are all in
    # use, and a burst of MDT pings did exactly that (bench/fanout.py). Pings get a pool
    # of their own so that they can never starve the outbox relay or the event reader.
    redis = redis_client(settings.redis_url, connections=64)
    pings_redis = redis_client(settings.redis_url, connections=64)
    try:
        pool = await _reach_stores(settings, settings.database_url, redis)
    except BaseException:
        await redis.aclose()
        await pings_redis.aclose()
        raise
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema)
            if settings.standby_policy == "patrol":
                # Posts named while the deployment ran the coverage rule no longer hold.
                await conn.execute(
                    "UPDATE units SET post_lat = NULL, post_lon = NULL WHERE post_lat IS NOT NULL"
                )
            if settings.gateways_file is not None:
                await register_gateways(conn, load_gateways_file(settings.gateways_file))
        index = await load_zone_index(pool)
        if index is None:
            raise ConfigurationError(
                "no zones are loaded: start with `erss serve --demo`, or load a city first"
            )
        zones = ZoneDirectory(index, pool=pool)
        await zones.refresh()
        keys = RedisKeys(settings.redis_prefix)
        unit_index = UnitIndex(redis=redis, keys=keys)
        metrics = Metrics()
        travel = TravelModel(
            road_factor=settings.road_factor,
            speed_kmh=settings.urban_speed_kmh,
            max_radius_m=settings.max_candidate_radius_m,
            zone_slack_s=settings.zone_slack_s,
            zone_speeds_kmh=settings.zone_speeds_kmh,
        )
        # The coverage rules' demand, parameters and zone targets: read once.
        sim = load_sim_config()
        policy = policy_named(
            settings.dispatch_policy,
            zones=index,
            rates=sim.zone_rates,
            default_rate=sim.rate_default,
            params=sim.policy,
        )
        posts = standby_named(
            settings.standby_policy,
            zones=index,
            model=travel,
            rates=sim.zone_rates,
            default_rate=sim.rate_default,
            params=sim.policy,
        )
        dispatcher = Dispatcher(
            schema=schema,
            zones=zones,
            incident_types=load_incident_types(),
            travel=travel,
            offer_timeout_s=settings.offer_timeout_s,
            max_offers=settings.max_offers,
            preempt_priority=settings.preempt_priority,
            zone_tolerance_m=settings.zone_tolerance_m,
            position_stale_s=settings.position_stale_s,
            unit_index=unit_index,
            metrics=metrics,
            policy=policy,
            posts=posts,
            response_target_s=settings.response_target_min * 60.0,
            zone_targets_s={
                zone: minutes * 60.0
                for zone, minutes in (
                    settings.zone_response_target_min or sim.zone_target_min
                ).items()
            },
        )
        hub = Hub(redis=redis, keys=keys)
        await hub.start()
        relay = OutboxRelay(
            pool=pool,
            redis=redis,
            schema=schema,
            keys=keys,
            poll_s=settings.relay_poll_s,
            stream_maxlen=settings.stream_maxlen,
            unit_index=unit_index,
            metrics=metrics,
        )
        services = Services(
            settings=settings,
            pool=pool,
            redis=redis,
            keys=keys,
            dispatcher=dispatcher,
            intake=Intake(
                pool=pool,
                schema=schema,
                dispatcher=dispatcher,
                correlation=CorrelationPolicy(
                    same_sender_window_s=settings.same_sender_window_s,
                    nearby_radius_m=settings.nearby_radius_m,
                    nearby_window_s=settings.nearby_window_s,
                ),
                group_commit=settings.intake_group_commit,
            ),
            hub=hub,
            relay=relay,
            gateway_secrets=GatewaySecrets(pool),
            rate_limiter=RateLimiter(
                redis=redis, keys=keys, per_second=settings.gateway_rate_per_s
            ),
            queue=QueueWorker(pool=pool, dispatcher=dispatcher, poll_s=settings.queue_poll_s),
            control=Control(schema=schema, dispatcher=dispatcher),
            metrics=metrics,
            positions=PositionTracker(
                pool=pool,
                redis=pings_redis,
                keys=keys,
                zones=zones,
                flush_s=settings.position_flush_s,
                schema=schema,
                geofence_hysteresis_m=settings.geofence_hysteresis_m,
                unit_index=UnitIndex(redis=pings_redis, keys=keys),
                publish_s=settings.position_publish_s,
            ),
            geocoder=build_geocoder(nominatim_url=settings.nominatim_url, zones=index),
            websockets=ConnectionLimit(settings.ws_max_connections or default_limit()),
            readiness=Readiness(pool=pool, redis=redis),
            volunteers=VolunteerAlerter(
                pool=pool,
                schema=schema,
                policy=load_policy(settings.volunteers_file, dispatcher.incident_types),
                labels={name: t.label for name, t in dispatcher.incident_types.items()},
            ),
        )
        log.info("this instance holds up to %d websockets", services.websockets.limit)
        expiry = OfferExpiry(
            pool=pool, schema=schema, dispatcher=dispatcher, poll_s=settings.expiry_poll_s
        )
        services.tasks = [
            _supervise(name, run)
            for name, run in (
                ("queue", services.queue.run),
                ("zones", lambda: zones.run(settings.zone_refresh_s)),
                ("positions", services.positions.run),
                ("positions-publish", services.positions.run_publisher),
                ("positions-hub", hub.run_positions),
                ("outbox-relay", relay.run),
                ("offer-expiry", expiry.run),
                ("event-hub", hub.run),
                ("volunteers", lambda: services.volunteers.run(hub)),
            )
        ]
        unwatch_gc = metrics.watch_gc()
        try:
            yield services
        finally:
            unwatch_gc()
            for task in services.tasks:
                task.cancel()
            await asyncio.gather(*services.tasks, return_exceptions=True)
    finally:
        await redis.aclose()
        await pings_redis.aclose()
        # asyncpg's close waits for every connection to go back to the pool, and a
        # connection stuck on a dead link (no FIN, no RST) never does: stopping the
        # instance must not hang on it.
        try:
            await asyncio.wait_for(pool.close(), _POOL_CLOSE_S)
        except TimeoutError:
            log.warning("PostgreSQL connections did not close in %.0f s; terminated", _POOL_CLOSE_S)
            pool.terminate()
