"""Geocoding what callers say: the gazetteer, the fuzzy matcher, Nominatim, the REST route.

The Nominatim tests run a tiny fake Nominatim server (``http.server`` on 127.0.0.1 in a
thread) that answers ``/search`` as Nominatim does. A real Nominatim cannot be had here
(no internet, no self-hosted instance), so this local fake of an external service is the
boundary the tests stop at; everything on our side of it (geopy, the request it sends,
the parsing, the fallback) is real.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from shapely.geometry import Point as ShapelyPoint
from shapely.ops import unary_union

from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, load_demo
from dispatch.settings import Settings
from geo.distance import distance_m
from geo.geocode import (
    METHOD_GAZETTEER,
    METHOD_NOMINATIM,
    PLACE_KINDS,
    USER_AGENT,
    BoundingBox,
    FallbackGeocoder,
    GazetteerError,
    GazetteerGeocoder,
    GeocodeError,
    Geocoder,
    NominatimGeocoder,
    PlaceMatcher,
    build_geocoder,
    load_gazetteer,
    normalize,
    parse_gazetteer,
    phonetic_key,
)
from geo.points import GeoPoint
from geo.zones import slugify
from tests.conftest import FIXTURES, LiveServer, start_server, stop_server
from tests.test_walking_skeleton import rows_written

OSM_POLICE_POINTS = FIXTURES / "geo" / "osm_police_points_bhubaneswar.geojson"

PLACES = load_gazetteer()
BY_ID = {place.id: place for place in PLACES}
MATCHER = PlaceMatcher(PLACES)
ZONES = demo_zones()


def top(query: str) -> str | None:
    """The id of the best match, or None."""
    hits = MATCHER.search(query, limit=1)
    return hits[0][0].id if hits else None


# --- The gazetteer file -------------------------------------------------------------------


def test_gazetteer_covers_every_kind_of_place_callers_name() -> None:
    assert 60 <= len(PLACES) <= 100
    assert {place.kind for place in PLACES} == set(PLACE_KINDS)
    assert len(BY_ID) == len(PLACES)


def test_every_place_lies_inside_the_demo_city() -> None:
    """Hand-entered coordinates: a swapped lat/lon or a slipped digit lands outside."""
    city = unary_union([zone.geometry for zone in ZONES])
    outside = [p.id for p in PLACES if not city.covers(p.point.to_shapely())]
    assert outside == []


def test_each_jurisdiction_has_its_police_station_near_it() -> None:
    """Station names match the jurisdiction layer, and each station lies within its
    radius plus 1 km of its own zone: a station building need not sit inside its
    jurisdiction (OSM puts Nandankanan's in the Infocity polygon), but a gross error
    puts it kilometres away."""
    stations = [p for p in PLACES if p.kind == "police_station"]
    by_zone = {slugify(p.name): p for p in stations}
    assert sorted(by_zone) == sorted(zone.id for zone in ZONES)
    for zone in ZONES:
        station = by_zone[zone.id]
        gap_m = _metres_to(zone.geometry, station.point)
        assert gap_m <= station.radius_m + 1000, (station.id, round(gap_m))


def test_localities_named_after_a_jurisdiction_lie_in_it() -> None:
    """A cross-check of hand-entered points against the surveyed polygons: the locality
    a station is named after is inside that station's jurisdiction."""
    zones = {zone.id: zone for zone in ZONES}
    checked = [p for p in PLACES if p.kind == "locality" and p.id in zones]
    assert len(checked) >= 8
    for place in checked:
        assert zones[place.id].contains(place.point), place.id


def test_gazetteer_agrees_with_openstreetmap_where_osm_has_the_place() -> None:
    """Three entries were placed from the only Bhubaneswar police nodes in OpenStreetMap
    (© OSM contributors, ODbL; config/README.md says which): they stay within 500 m."""
    osm = json.loads(OSM_POLICE_POINTS.read_text())
    nodes = {
        f["properties"].get("name"): GeoPoint(
            lat=f["geometry"]["coordinates"][1], lon=f["geometry"]["coordinates"][0]
        )
        for f in osm["features"]
    }
    pairs = {
        "Khandagiri Police Station": "ps-khandagiri",
        "Nandankanan Police Station": "ps-nandankanan",
        # The Government Railway Police post is in the station building.
        "Govt. Railway Police Station, Bhubaneswar": "bhubaneswar-railway-station",
    }
    for osm_name, place_id in pairs.items():
        assert distance_m(nodes[osm_name], BY_ID[place_id].point) < 500, place_id


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"id": "Kalpana Square"}, "id must be"),
        ({"kind": "shrine"}, "kind 'shrine'"),
        ({"lat": 120.0}, "latitude outside"),
        ({"lat": 0.0, "lon": 0.0}, "placeholder"),
        ({"lat": "20.27"}, "must be numbers"),
        ({"radius_m": 0}, "radius_m 0"),
        ({"aliases": "Kalpana"}, "aliases must be"),
        ({"zone": "capital"}, "unknown fields"),
    ],
)
def test_a_broken_gazetteer_entry_is_refused_by_name(entry: dict[str, Any], reason: str) -> None:
    base: dict[str, Any] = {
        "id": "kalpana-square",
        "name": "Kalpana Square",
        "kind": "landmark",
        "lat": 20.2555,
        "lon": 85.843,
    }
    with pytest.raises(GazetteerError, match=re.escape(reason)) as caught:
        parse_gazetteer([{**base, **entry}])
    assert "#0" in str(caught.value)


def test_duplicate_ids_and_default_radius() -> None:
    entry = {"id": "a", "name": "A Chhak", "kind": "locality", "lat": 20.27, "lon": 85.84}
    assert parse_gazetteer([entry])[0].radius_m == 700.0
    with pytest.raises(GazetteerError, match="duplicate id 'a'"):
        parse_gazetteer([entry, entry])


# --- Matching names as callers say them -------------------------------------------------


@pytest.mark.parametrize(
    ("query", "place_id"),
    [
        ("Jaydev Vihar", "jaydev-vihar"),
        ("Jayadev Vihar", "jaydev-vihar"),
        ("jaidev bihar", "jaydev-vihar"),
        ("Khandagiri", "khandagiri"),
        ("Khandgiri", "khandagiri"),
        ("Sahid Nagar", "saheed-nagar"),
        ("Shahid Nagar", "saheed-nagar"),
        ("Saheed Nagar", "saheed-nagar"),
        ("Shaheed nagar", "saheed-nagar"),
        ("Acharya Vihar", "acharya-vihar"),
        ("acharya bihar chhak", "acharya-vihar"),
        ("Master Canteen", "master-canteen-square"),
        ("MASTER CANTEEN!!", "master-canteen-square"),
        ("master cantin", "master-canteen-square"),
        ("Master Canteen ke paas", "master-canteen-square"),
        ("Master Canteen, Bhubaneswar", "master-canteen-square"),
        ("Kalpana Square", "kalpana-square"),
        ("Kalpana Chhak", "kalpana-square"),
        ("near Kalpana chhak", "kalpana-square"),
        ("opposite kalpana chowk", "kalpana-square"),
        ("Kalpaná Squaré", "kalpana-square"),
        ("behind Lingaraj mandir", "lingaraj-temple"),
        ("lingraj temple", "lingaraj-temple"),
        ("Sahid Nagar thana", "ps-sahidnagar"),
        ("saheed nagar police station", "ps-sahidnagar"),
        ("Bani Bihar", "vani-vihar"),
        ("Nayapali", "nayapalli"),
        ("naya palli", "nayapalli"),
        ("Lakshmi sagar", "laxmisagar"),
        ("Mancheshwar", "mancheswar"),
        ("Bhubaneswar station", "bhubaneswar-railway-station"),
        ("Baramunda bus stand", "baramunda-bus-stand"),
        ("beside Ram Mandir", "ram-mandir"),
        ("plot 42, Saheed Nagar", "saheed-nagar"),
    ],
)
def test_spoken_variants_resolve_to_the_place(query: str, place_id: str) -> None:
    assert top(query) == place_id


def test_variants_are_found_by_the_matcher_not_listed_as_aliases() -> None:
    """These spellings appear nowhere in the gazetteer: the matcher's folding (phonetic
    key, synonyms, typo tolerance) finds them, so the same works for places and
    spellings nobody listed."""
    listed = {normalize(text) for p in PLACES for text in (p.name, *p.aliases)}
    for query in ("jaidev bihar", "Khandgiri", "Shaheed nagar", "master cantin", "Bani Bihar"):
        assert normalize(query) not in listed, query
        assert 0.8 <= MATCHER.search(query)[0][1] < 1.0, query


def test_fillers_synonyms_and_the_city_name_are_normalised_away() -> None:
    assert normalize("near Kalpana chhak ke paas") == ("kalpana", "square")
    assert normalize("Opp. KALPANA Chowk, Bhubaneswar") == ("kalpana", "square")
    assert normalize("peeche Ram Mandira") == ("ram", "temple")
    assert normalize("Sahidnagar police station") == ("sahid", "nagar", "thana")
    assert normalize("Bhubaneswar railway station") == ("bhubaneswar", "railway", "station")


@pytest.mark.parametrize(
    "variants",
    [
        ("khandagiri", "khandgiri"),
        ("jayadevvihar", "jaydevvihar", "jaydevbihar"),
        ("sahid", "shahid", "saheed", "shaheed"),
        ("laxmisagar", "lakshmisagar"),
        ("nayapalli", "nayapali"),
        ("mancheswar", "mancheshwar"),
        ("chandrasekharpur", "chandrashekharpur"),
    ],
)
def test_romanisations_share_a_phonetic_key(variants: tuple[str, ...]) -> None:
    assert len({phonetic_key(v) for v in variants}) == 1


def test_exact_name_scores_one_and_the_fuller_match_ranks_first() -> None:
    """'Sahid Nagar thana' is the police station, not just the locality; both are shown."""
    hits = MATCHER.search("Sahid Nagar thana")
    assert [(p.id, s) for p, s in hits[:1]] == [("ps-sahidnagar", 1.0)]
    assert hits[1][0].id == "saheed-nagar"
    assert hits[1][1] < 1.0
    assert MATCHER.search("Master Canteen")[0][1] == 1.0


@pytest.mark.parametrize(
    "query",
    [
        "asdfgh qwerty",
        "pizza hut",
        "hello",
        "my house is near the big tree",
        "Mumbai",
        "near the temple",
        "police station",
        "hospital",
        "ke paas",
        "Bhubaneswar, Odisha",
        "",
        "!!!",
    ],
)
def test_garbage_and_generic_words_match_nothing(query: str) -> None:
    assert MATCHER.search(query) == []


def test_garbage_scores_low_even_with_no_threshold() -> None:
    for query in ("asdfgh qwerty", "pizza hut", "xyz"):
        hits = MATCHER.search(query, min_score=0.0)
        assert all(score < 0.7 for _, score in hits), (query, hits[:2])


def test_short_names_need_an_exact_match() -> None:
    """One letter turns KIIT into IIT and AIIMS into KIMS."""
    assert [p.id for p, _ in MATCHER.search("KIIT")] == ["kiit-university"]
    assert [p.id for p, _ in MATCHER.search("AIIMS")] == ["aiims"]


def test_limit_is_respected_and_checked() -> None:
    assert len(MATCHER.search("nagar vihar square temple sahid", limit=2)) <= 2
    with pytest.raises(ValueError, match="limit"):
        MATCHER.search("Kalpana", limit=0)


async def test_gazetteer_geocoder_returns_located_candidates() -> None:
    results = await GazetteerGeocoder(PLACES).geocode("near Kalpana chhak", limit=3)
    best = results[0]
    place = BY_ID["kalpana-square"]
    assert (best.name, best.kind, best.source, best.score) == (
        "Kalpana Square",
        "landmark",
        "gazetteer",
        1.0,
    )
    assert best.location.point == place.point
    assert best.location.radius_m == place.radius_m
    assert best.location.method == METHOD_GAZETTEER
    assert len(results) <= 3
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


# --- Nominatim, against a local fake ----------------------------------------------------

MASTER_CANTEEN = {
    "place_id": 101,
    "osm_type": "node",
    "lat": "20.2690",
    "lon": "85.8410",
    "class": "highway",
    "type": "junction",
    "addresstype": "junction",
    "name": "Master Canteen Square",
    "display_name": "Master Canteen Square, Kharavel Nagar, Bhubaneswar, Khordha, Odisha, "
    "751001, India",
    "boundingbox": ["20.2685", "20.2695", "85.8405", "85.8415"],
    "importance": 0.31,
}


@dataclass
class FakeNominatim:
    """What the fake answers, and the requests it got."""

    url: str
    status: int = 200
    body: Any = field(default_factory=lambda: [MASTER_CANTEEN])
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def fake_nominatim() -> Iterator[FakeNominatim]:
    """A Nominatim stand-in on a free loopback port (see the module docstring)."""
    state = FakeNominatim(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            state.requests.append((parts.path, query, dict(self.headers)))
            payload = json.dumps(state.body if state.status == 200 else {"error": "boom"})
            data = payload.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


BOX = BoundingBox.around(ZONES)


async def test_nominatim_result_is_parsed_and_the_request_is_bounded(
    fake_nominatim: FakeNominatim,
) -> None:
    geocoder = NominatimGeocoder(fake_nominatim.url, viewbox=BOX)
    results = await geocoder.geocode("  Master   Canteen chhak ", limit=3)

    assert len(results) == 1
    result = results[0]
    assert result.name.startswith("Master Canteen Square, Kharavel Nagar")
    assert (result.kind, result.source, result.score) == ("junction", "nominatim", 1.0)
    assert result.location.point == GeoPoint(lat=20.269, lon=85.841)
    assert result.location.method == METHOD_NOMINATIM
    # Half the diagonal of a 0.001-degree box at this latitude.
    assert result.location.radius_m is not None
    assert 60 < result.location.radius_m < 90

    [(path, query, headers)] = fake_nominatim.requests
    assert path == "/search"
    assert query["q"] == "Master Canteen chhak"
    assert query["limit"] == "3"
    assert query["bounded"] == "1"
    assert query["countrycodes"] == "in"
    west, south, east, north = (float(v) for v in query["viewbox"].split(","))
    assert (south, west) == pytest.approx((20.0682, 85.6228), abs=1e-3)
    assert (north, east) == pytest.approx((20.4356, 86.0806), abs=1e-3)
    assert headers["User-Agent"] == USER_AGENT


async def test_a_nominatim_url_with_a_path_prefix_is_honoured(
    fake_nominatim: FakeNominatim,
) -> None:
    geocoder = NominatimGeocoder(fake_nominatim.url + "/nominatim/", viewbox=BOX)
    assert await geocoder.geocode("Master Canteen")
    assert fake_nominatim.requests[0][0] == "/nominatim/search"


async def test_a_failing_nominatim_raises_an_actionable_error(
    fake_nominatim: FakeNominatim,
) -> None:
    fake_nominatim.status = 500
    geocoder = NominatimGeocoder(fake_nominatim.url, viewbox=BOX)
    with pytest.raises(GeocodeError, match="ERSS_NOMINATIM_URL") as caught:
        await geocoder.geocode("Master Canteen")
    assert fake_nominatim.url in str(caught.value)


async def test_chained_geocoder_falls_back_to_the_gazetteer_on_error(
    fake_nominatim: FakeNominatim, caplog: pytest.LogCaptureFixture
) -> None:
    geocoder = build_geocoder(nominatim_url=fake_nominatim.url, zones=ZONES)
    assert isinstance(geocoder, FallbackGeocoder)

    assert (await geocoder.geocode("Master Canteen"))[0].source == "nominatim"

    fake_nominatim.status = 500
    with caplog.at_level(logging.WARNING, logger="geo.geocode"):
        results = await geocoder.geocode("Master Canteen")
    assert (results[0].name, results[0].source) == ("Master Canteen Square", "gazetteer")
    assert "answering from the fallback" in caplog.text


async def test_chained_geocoder_falls_back_when_nominatim_finds_nothing(
    fake_nominatim: FakeNominatim,
) -> None:
    fake_nominatim.body = []
    geocoder = build_geocoder(nominatim_url=fake_nominatim.url, zones=ZONES)
    results = await geocoder.geocode("Khandgiri chhak")
    assert (results[0].name, results[0].source) == ("Khandagiri", "gazetteer")
    assert len(fake_nominatim.requests) == 1


async def test_unreachable_nominatim_falls_back() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    geocoder = build_geocoder(nominatim_url="http://127.0.0.1:9", zones=ZONES)
    results = await geocoder.geocode("Kalpana chhak")
    assert results[0].source == "gazetteer"


def test_a_malformed_nominatim_url_fails_at_start_up() -> None:
    with pytest.raises(GeocodeError, match="not an http"):
        build_geocoder(nominatim_url="nominatim:8080", zones=ZONES)
    assert isinstance(build_geocoder(nominatim_url=None, zones=ZONES), GazetteerGeocoder)


async def test_geocoders_check_the_limit() -> None:
    geocoders: list[Geocoder] = [
        GazetteerGeocoder(PLACES),
        NominatimGeocoder("http://127.0.0.1:9", viewbox=BOX),
        FallbackGeocoder(GazetteerGeocoder(PLACES), GazetteerGeocoder([])),
    ]
    for geocoder in geocoders:
        with pytest.raises(ValueError, match="limit"):
            await geocoder.geocode("Kalpana", limit=0)


# --- The operator REST route ------------------------------------------------------------


def _auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def test_operators_geocode_a_spoken_address(live: LiveServer) -> None:
    before = await rows_written(live)
    no_token = await live.http.get("/v1/geocode", params={"q": "Master Canteen"})
    assert no_token.status_code == 401

    for params in ({"q": ""}, {"q": "   "}, {"q": "x" * 201}, {"q": "Patia", "limit": "0"}):
        refused = await live.http.get("/v1/geocode", params=params, headers=_auth(live))
        assert refused.status_code == 422, (params, refused.text)
    missing = await live.http.get("/v1/geocode", headers=_auth(live))
    assert missing.status_code == 422

    answer = await live.http.get(
        "/v1/geocode", params={"q": "Master Canteen", "limit": 3}, headers=_auth(live)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "Master Canteen"
    best = body["results"][0]
    place = BY_ID["master-canteen-square"]
    assert best == {
        "name": "Master Canteen Square",
        "kind": "landmark",
        "lat": place.point.lat,
        "lon": place.point.lon,
        "radius_m": place.radius_m,
        "score": 1.0,
        "source": "gazetteer",
    }
    assert len(body["results"]) <= 3

    nothing = await live.http.get("/v1/geocode", params={"q": "asdfgh qwerty"}, headers=_auth(live))
    assert nothing.json() == {"query": "asdfgh qwerty", "results": []}
    assert await rows_written(live) == before


@pytest.fixture
async def live_with_nominatim(
    settings: Settings, fake_nominatim: FakeNominatim
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """The demo served with ERSS_NOMINATIM_URL pointing at the fake Nominatim."""
    configured = settings.model_copy(update={"nominatim_url": fake_nominatim.url})
    assert configured.database_url
    db = await create_pool(configured.database_url, configured.db_schema, min_size=1, max_size=2)
    try:
        async with db.acquire() as conn:
            await migrate(conn, configured.db_schema)
            credentials = await load_demo(conn, base_url="http://127.0.0.1")
        server, task, port = await start_server(configured)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                yield http, credentials
        finally:
            await stop_server(server, task)
    finally:
        await db.close()


async def test_configured_nominatim_answers_the_route_and_the_gazetteer_backs_it_up(
    live_with_nominatim: tuple[httpx.AsyncClient, dict[str, Any]],
    fake_nominatim: FakeNominatim,
) -> None:
    http, credentials = live_with_nominatim
    headers = {"Authorization": f"Bearer {credentials['operators']['dispatcher']}"}
    answer = (await http.get("/v1/geocode", params={"q": "Master Canteen"}, headers=headers)).json()
    assert answer["results"][0]["source"] == "nominatim"
    assert fake_nominatim.requests

    fake_nominatim.status = 500
    answer = (await http.get("/v1/geocode", params={"q": "Master Canteen"}, headers=headers)).json()
    assert (answer["results"][0]["name"], answer["results"][0]["source"]) == (
        "Master Canteen Square",
        "gazetteer",
    )


def _metres_to(geometry: Any, point: GeoPoint) -> float:
    """Distance from a point to a polygon (0 inside), in metres."""
    if geometry.covers(point.to_shapely()):
        return 0.0
    nearest = geometry.exterior.interpolate(geometry.exterior.project(point.to_shapely()))
    return distance_m(point, GeoPoint.from_shapely(ShapelyPoint(nearest.x, nearest.y)))
