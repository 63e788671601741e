"""The fan-out benchmark's reconnect storm (bench/fanout.py --storm, bench/fanout_storm.py).

Its storm consoles are checked against a live server (they authenticate like any console,
read a snapshot taken undecoded, and stay for the events), and the pure parts on their
own: how the storm's consoles are dealt over worker processes and instances, how the
panics are split by the storm window, and when the servers' websocket cap is raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import fanout_storm
import fanout_worker
from e2e_cpu import CpuSample
from e2e_mdt import PostResult

from dispatch.auth import hash_token
from tests.conftest import LiveServer
from tests.test_walking_skeleton import panic, zone_point


def storm_args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "mdts": 100,
        "consoles": 10,
        "storm": 6,
        "storm_workers": 0,
        "instances": 1,
        "deflate": False,
        "source_ips": False,
        "ping_interval": 10.0,
        "open_timeout": 10.0,
        "no_free_units": False,
        "seed": 1,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


async def test_storm_consoles_connect_at_once_read_their_snapshot_and_stay(
    live: LiveServer, tmp_path: Path
) -> None:
    tokens = fanout_storm.operator_tokens(6)
    await live.db.executemany(
        "INSERT INTO operators (name, token_hash) VALUES ($1, $2)",
        [(name, hash_token(token)) for name, token in tokens.items()],
    )
    [(instance, job)] = fanout_storm.worker_jobs(tokens, [live.ws_url], storm_args(), first=0)
    assert instance == 0
    assert job["window"] == 6  # all at once
    worker = fanout_worker.Worker(job)
    # The measured consoles' command leaves the storm's alone.
    assert (await worker.connect_all("console"))["ok"] == 0

    answer = await worker.connect_all("storm")
    assert answer["ok"] == 6, answer
    assert len(answer["handshake_s"]) == 6

    # They stay, and read the city's events like any console.
    response = await live.post_panic(panic(zone_point("khandagiri"), trigger="storm-1"))
    incident_id = response.json()["incident_id"]
    for _ in range(200):
        if len(worker.record.created) == 6:
            break
        await asyncio.sleep(0.05)
    assert [i for i, _ in worker.record.created] == [incident_id] * 6

    await worker.stop(tmp_path / "result.json")
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["connected"]["storm"] == 6
    assert result["closed"] == {}
    assert result["closed_at"] == []


def test_a_snapshot_is_known_by_its_opening_as_text_or_bytes() -> None:
    snapshot = '{"type":"snapshot","position":"1-0","units":[' + '{"id":"u"},' * 50 + "{}]}"
    assert fanout_worker.first_type(snapshot) == "snapshot"
    assert fanout_worker.first_type(snapshot.encode()) == "snapshot"
    assert fanout_worker.first_type(b'{"type":"error","code":"x"}') == "error"


def test_storm_consoles_are_dealt_once_each_over_their_instances_workers() -> None:
    tokens = fanout_storm.operator_tokens(7)
    urls = ["ws://a", "ws://b"]
    jobs = fanout_storm.worker_jobs(tokens, urls, storm_args(instances=2, storm_workers=3), 5)
    assert [instance for instance, _ in jobs] == [0, 1, 0]
    dealt = [c["name"] for _, job in jobs for c in job["clients"]]
    assert sorted(dealt) == sorted(tokens)
    names = sorted(tokens)
    for instance, job in jobs:
        assert job["ws_url"] == urls[instance]
        assert job["window"] == len(job["clients"])
        assert all(c["kind"] == "storm" for c in job["clients"])
        assert {c["name"] for c in job["clients"]} <= set(names[instance::2])
    # At least one worker per instance, even for a storm smaller than one worker's share.
    assert len(fanout_storm.worker_jobs(tokens, urls, storm_args(instances=2), 0)) == 2


def test_panics_are_split_by_when_they_were_posted() -> None:
    run = fanout_storm.StormRun(
        wanted=1,
        started=10.0,
        ended=20.0,
        ok=1,
        failures=Counter(),
        handshakes=[1.0],
        server_cpu_s=1.0,
        baseline_pct=5.0,
        rss_before=0,
        rss_after=0,
        cpu=CpuSample({}, 0.0),
        others=[],
    )
    posts = [PostResult(i, sent, sent, 202, i, "offered") for i, sent in enumerate((5, 10, 20, 21))]
    windows = fanout_storm.split_posts(posts, run)
    assert {k: [p.index for p in v] for k, v in windows.items()} == {
        "before": [0],
        "during": [1, 2],
        "after": [3],
    }


def test_the_websocket_cap_is_raised_only_when_the_storm_would_pass_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(fanout_storm.CAP_SETTING, raising=False)
    roomy = fanout_storm.socket_cap(storm_args(mdts=10_000, storm=1_000), 20_000, 100)
    assert roomy.env() == {}
    assert roomy.needed == 11_010
    # 20,000 MDTs and a storm of 1,000 on one instance: past the default of 18,976.
    tight = fanout_storm.socket_cap(storm_args(mdts=20_000, storm=1_000), 20_000, 100)
    assert tight.env() == {fanout_storm.CAP_SETTING: "19900"}  # what descriptors allow
    assert "SOME WILL BE REFUSED" in tight.text()
    raised = fanout_storm.socket_cap(storm_args(mdts=18_000, storm=1_000), 20_000, 100)
    assert raised.env() == {fanout_storm.CAP_SETTING: "19010"}
    assert "REFUSED" not in raised.text()
    # Three instances share them: no raise.
    shared = fanout_storm.socket_cap(storm_args(mdts=20_000, storm=1_000, instances=3), 20_000, 100)
    assert shared.env() == {}
    # A cap the caller set is left alone.
    monkeypatch.setenv(fanout_storm.CAP_SETTING, "50")
    given = fanout_storm.socket_cap(storm_args(), 20_000, 100)
    assert given.env() == {}
    assert given.cap == 50
    assert "REFUSED" in given.text()
