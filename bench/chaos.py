"""Chaos: kill an instance, restart PostgreSQL, restart Redis, under a steady stream.

    .venv/bin/python bench/chaos.py              # about 2 minutes
    .venv/bin/python bench/chaos.py --crash      # PostgreSQL and Redis crash (SIGQUIT/KILL)

All on loopback. The script starts a private PostgreSQL and Redis on free ports
(tests/servers.py: never the shared ones), loads the demo city, and runs two
``erss serve`` processes on them. Every demo unit's MDT bot holds a websocket to one of
the two (reconnecting to either when its instance goes away) and accepts every offer,
then reports the job done. A gateway sends signed panic triggers at ``--rate`` per second,
alternating between the instances as a balancer would, open loop. Then, in turn:

1. ``kill``: instance A gets SIGKILL, stays down ``--down-s``, is started again;
2. ``postgres``: PostgreSQL is stopped (fast, or a crash) and started again;
3. ``redis``: Redis is stopped (SIGTERM, or SIGKILL) and started again.

Per fault it prints the reports sent while the fault lasted and the settle time after
it, the 2xx, the other answers by code (``conn``: no answer at all), and the time from the
restart to both instances' ``/readyz`` saying ready, and ``flaps``: the /readyz answers
other than ready among 10 bursts of 8 concurrent checks right after that. At the end
every refused delivery is sent again with its Idempotency-Key (a gateway's retry), and
the database is checked: lost (answered 2xx, no report row), duplicated (one delivery,
two reports), double-assigned units (sampled twice a second: two active assignments of
one unit), reports whose incident was never offered a unit (``no unit``) and never
accepted by an MDT (``untaken``: an offer that did not reach a socket, say). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# bench/ is not a package (see fanout.py); the repository root holds tests/servers.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chaos_checks import (
    SCHEMA,
    Delivery,
    Phase,
    check_store,
    drain,
    sample_double_assignments,
    summarise,
)
from e2e import (
    MdtBot,
    MdtLog,
    ServerProcess,
    child_env,
    erss_command,
    exit_with,
    free_port,
    panic_body,
    sample_points,
    signed_headers,
)

from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from tests.servers import PrivatePostgres, PrivateRedis


@dataclass
class Cluster:
    """The two instances, their stores and the demo credentials."""

    pg: PrivatePostgres
    redis: PrivateRedis
    workdir: Path
    credentials: dict[str, Any]
    ports: list[int]
    procs: list[ServerProcess] = field(default_factory=list)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def start_instance(self, n: int) -> ServerProcess:
        env = child_env(
            {
                "ERSS_DATABASE_URL": self.pg.url,
                "ERSS_REDIS_URL": self.redis.url,
                "ERSS_DB_SCHEMA": SCHEMA,
                "ERSS_REDIS_PREFIX": f"{SCHEMA}:",
                "ERSS_RELAY_POLL_S": "0.2",
                "ERSS_OFFER_TIMEOUT_S": "5",
            }
        )
        argv = [*erss_command(), "serve", "--port", str(self.ports[n])]
        log = self.workdir / f"instance-{n}-{int(time.time())}.log"
        proc = ServerProcess(f"instance {n}", argv, env, log)
        proc.start()
        if n < len(self.procs):
            self.procs[n] = proc
        else:
            self.procs.append(proc)
        return proc


class Gateway:
    """Open-loop sender: a report every 1/rate s, alternating instances."""

    def __init__(self, cluster: Cluster, rate: float) -> None:
        self.cluster = cluster
        self.rate = rate
        self.deliveries: list[Delivery] = []
        self._secret: str = cluster.credentials["gateways"]["panic"]
        self._points = sample_points(4096, seed=7)
        self._clients = [
            httpx.AsyncClient(base_url=cluster.url(n), timeout=10, trust_env=False)
            for n in range(2)
        ]
        self._inflight: set[asyncio.Task[None]] = set()

    async def post(self, delivery: Delivery, instance: int) -> None:
        headers = signed_headers(self._secret, delivery.body, delivery.key)
        try:
            response = await self._clients[instance].post(
                "/v1/gateways/panic", content=delivery.body, headers=headers
            )
        except httpx.HTTPError:
            delivery.status = None
            delivery.first = delivery.first or "conn"
            return
        delivery.status = response.status_code
        delivery.first = delivery.first or str(response.status_code)
        with contextlib.suppress(ValueError):
            delivery.payload = response.json()

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        began = time.monotonic()
        while not stop.is_set():
            trigger = uuid.uuid4().hex[:16]
            body = panic_body(trigger, self._points[n % len(self._points)])
            delivery = Delivery(uuid.uuid4().hex, trigger, body, time.monotonic())
            self.deliveries.append(delivery)
            task = asyncio.create_task(self.post(delivery, n % 2))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            n += 1
            await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
        await asyncio.gather(*self._inflight)

    async def retry_refused(self) -> int:
        """Send every refused delivery again, same key; returns how many now got 2xx."""
        accepted = 0
        for delivery in self.deliveries:
            if delivery.accepted:
                continue
            delivery.retried = True
            for attempt in range(5):
                await self.post(delivery, attempt % 2)
                if delivery.accepted:
                    accepted += 1
                    break
                await asyncio.sleep(1)
        return accepted

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


async def mdt_fleet(cluster: Cluster, log: MdtLog, stop: asyncio.Event) -> None:
    """Every unit's MDT, half on each instance, reconnecting to either when dropped."""

    async def one(n: int, unit_id: str, token: str) -> None:
        target = n % 2
        while not stop.is_set():
            ws_url = cluster.url(target).replace("http://", "ws://")
            bot = MdtBot(unit_id, token, ws_url, log, free=True)
            with contextlib.suppress(Exception):
                await bot.connect()
                await bot.run()
            await bot.close()
            target = 1 - target
            await asyncio.sleep(0.5)

    units = sorted(cluster.credentials["units"].items())
    tasks = [asyncio.create_task(one(n, u, t)) for n, (u, t) in enumerate(units)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def both_ready(cluster: Cluster, since: float, within: float = 60.0) -> float:
    """Seconds from ``since`` until both instances' /readyz said 200."""
    async with httpx.AsyncClient(timeout=3, trust_env=False) as client:
        deadline = time.monotonic() + within
        pending = {0, 1}
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(cluster.url(n) + "/readyz")).status_code == 200:
                        pending.discard(n)
            await asyncio.sleep(0.1)
    return time.monotonic() - since if not pending else float("nan")


async def flaps(cluster: Cluster, bursts: int = 10, size: int = 8) -> int:
    """/readyz answers other than 200 in bursts of concurrent checks of both instances
    (each check takes its own pooled connection, so a dead one shows)."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:

        async def one(n: int) -> bool:
            try:
                return (await client.get(cluster.url(n) + "/readyz")).status_code != 200
            except httpx.HTTPError:
                return True

        bad = 0
        for _ in range(bursts):
            bad += sum(await asyncio.gather(*(one(k % 2) for k in range(size))))
            await asyncio.sleep(0.1)
        return bad


async def run_fault(
    name: str,
    cluster: Cluster,
    down: Callable[[], Awaitable[None]],
    up: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
) -> Phase:
    phase = Phase(name, time.monotonic())
    print(f"fault {name}: down", flush=True)
    await down()
    await asyncio.sleep(args.down_s)
    await up()
    restarted = time.monotonic()
    phase.ready_s = await both_ready(cluster, restarted)
    phase.flaps = await flaps(cluster)
    print(f"fault {name}: back, ready after {phase.ready_s:.2f} s", flush=True)
    await asyncio.sleep(args.settle_s)
    phase.end = time.monotonic()
    return phase


async def chaos(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="erss-chaos-"))
    pg, redis = PrivatePostgres(), PrivateRedis()
    stop = asyncio.Event()  # the stream and the sampler
    fleet_stop = asyncio.Event()  # the MDTs stay until the retries are served
    cluster: Cluster | None = None
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(redis.start)
        pool = await create_pool(pg.url, SCHEMA, min_size=1, max_size=1)
        async with pool.acquire() as conn:
            await migrate(conn, SCHEMA)
            credentials = await load_demo(conn, base_url="")
        await pool.close()
        cluster = Cluster(pg, redis, workdir, credentials, [free_port(), free_port()])
        for n in range(2):
            await cluster.start_instance(n).wait_healthy(cluster.url(n), 60)
        mdt_log = MdtLog()
        gateway = Gateway(cluster, args.rate)
        doubles: set[str] = set()
        background = [
            asyncio.create_task(mdt_fleet(cluster, mdt_log, fleet_stop)),
            asyncio.create_task(gateway.run(stop)),
            asyncio.create_task(sample_double_assignments(pg.url, stop, doubles)),
        ]
        steady = Phase("none", time.monotonic(), ready_s=0.0)
        await asyncio.sleep(args.settle_s)  # steady state before the first fault, to compare
        steady.end = time.monotonic()
        active = cluster  # for the closures below

        async def kill() -> None:
            proc = active.procs[0].proc
            assert proc is not None
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

        async def restart() -> None:
            active.start_instance(0)

        pg_mode = "immediate" if args.crash else "fast"
        redis_signal = signal.SIGKILL if args.crash else signal.SIGTERM
        phases = [
            steady,
            await run_fault("kill", cluster, kill, restart, args),
            await run_fault(
                "postgres", cluster,
                lambda: asyncio.to_thread(pg.stop, pg_mode), lambda: asyncio.to_thread(pg.start),
                args,
            ),
            await run_fault(
                "redis", cluster,
                lambda: asyncio.to_thread(redis.stop, redis_signal),
                lambda: asyncio.to_thread(redis.start), args,
            ),
        ]  # fmt: skip
        stop.set()
        retried_ok = await gateway.retry_refused()
        await gateway.close()
        await drain(cluster.pg.url)
        fleet_stop.set()
        await asyncio.gather(*background)
        await drain(cluster.pg.url)  # the MDTs' last status changes
        store = await check_store(cluster.pg.url, gateway.deliveries)
        summarise(phases, gateway.deliveries, store)
        print(
            f"retries accepted {retried_ok}; MDT offers received {mdt_log.offers}; "
            f"double-assigned units {len(doubles)}; logs in {workdir}"
        )
        return 0
    finally:
        stop.set()
        fleet_stop.set()
        if cluster is not None:
            for proc in cluster.procs:
                proc.stop()
        pg.destroy()
        redis.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second")
    parser.add_argument("--down-s", type=float, default=5.0, help="seconds each fault lasts")
    parser.add_argument("--settle-s", type=float, default=10.0, help="seconds after each")
    parser.add_argument("--crash", action="store_true", help="crash the stores, not stop them")
    args = parser.parse_args(argv)
    return asyncio.run(chaos(args))


if __name__ == "__main__":
    exit_with(main)
