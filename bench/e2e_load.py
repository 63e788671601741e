"""The full-path mode's load generator, a process of its own: signed panic triggers at a
fixed rate, open loop, each POST started at its scheduled time whether or not earlier
ones were answered (a slow server shows as latency and backlog, not as a lower rate).

    ERSS_BENCH_GATEWAY_SECRET=... python bench/e2e_load.py --url http://127.0.0.1:8112 \\
        --rate 100 --duration 8 --tag r1 --out posts.json

Requests are signed and serialised before the clock starts (bench/e2e_http.py sends
prebuilt bytes). It writes, for every POST: its scheduled and actual send times
(``time.monotonic()``, the same clock as the MDT fleet's in another process on Linux),
the answer time, the HTTP status, the incident id and status of the 202; and its own CPU
time and achieved send rate, which show whether the generator kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_common import PANIC_PATH, panic_body, run_loop, sample_points, signed_headers
from e2e_http import HttpError, HttpPool


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def post(pool: HttpPool, raw: bytes, scheduled: float) -> list[Any]:
    """[scheduled, sent, answered, http status, incident id, incident status, joined, error]"""
    try:
        answer = await pool.send(raw)
    except (HttpError, OSError) as err:
        now = time.monotonic()
        return [scheduled, now, now, 0, None, None, False, repr(err)[:200]]
    answered = time.monotonic()
    if answer.status != 202:
        return [
            scheduled,
            answer.written_at,
            answered,
            answer.status,
            None,
            None,
            False,
            answer.body[:200].decode(errors="replace"),
        ]
    body = json.loads(answer.body)
    # The floor app (the generator's self-check) answers no incident.
    incident = body.get("incident_id")
    return [
        scheduled,
        answer.written_at,
        answered,
        202,
        None if incident is None else int(incident),
        str(body.get("status")),
        body.get("duplicate_of") is not None,
        None,
    ]


async def generate(args: argparse.Namespace, secret: str) -> dict[str, Any]:
    url = urlsplit(args.url)
    assert url.hostname is not None
    assert url.port is not None
    pool = HttpPool(url.hostname, url.port, limit=args.connections)
    count = max(1, round(args.rate * args.duration))
    points = sample_points(count, args.seed)
    requests = []
    for i, point in enumerate(points):
        key = f"{args.tag}-{i}"
        body = panic_body(key, point)
        requests.append(
            pool.request_bytes("POST", PANIC_PATH, signed_headers(secret, body, key), body)
        )
    cpu0 = cpu_seconds()
    start = time.monotonic() + 0.05
    tasks: list[asyncio.Task[list[Any]]] = []
    for i, raw in enumerate(requests):
        scheduled = start + i / args.rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(pool, raw, scheduled)))
    sending_done = time.monotonic()
    cpu_sending = cpu_seconds() - cpu0
    try:
        async with asyncio.timeout(args.answer_timeout):
            posts = list(await asyncio.gather(*tasks))
    except TimeoutError:
        posts = [t.result() for t in tasks if t.done() and not t.cancelled()]
        print(
            f"e2e_load: {len(tasks) - len(posts)} POSTs unanswered after"
            f" {args.answer_timeout} s (left out)",
            file=sys.stderr,
        )
    end = time.monotonic()
    pool.close()
    return {
        "rate": args.rate,
        "posts": posts,
        "cpu_s": cpu_seconds() - cpu0,
        "wall_s": end - start,
        "cpu_sending_s": cpu_sending,
        "sending_s": sending_done - start,
        "connection_waits": pool.waits,
        "connections_opened": pool.opened,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="panics per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--tag", required=True, help="unique prefix of trigger ids and keys")
    parser.add_argument("--seed", type=int, default=112)
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--answer-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # From the environment, never argv: a command line is visible to every user.
    secret = os.environ["ERSS_BENCH_GATEWAY_SECRET"]

    async def run() -> int:
        result = await generate(args, secret)
        args.out.write_text(json.dumps(result))
        return 0

    return run_loop(run())


if __name__ == "__main__":
    sys.exit(main())
