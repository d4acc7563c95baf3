"""The console on a cheap phone: static files versioned, compressed and kept; lists that
answer 304 while unchanged; numbers and spans of time in the page's language; a focus ring
that can be seen. Against fake services, as tests/unit/test_console.py."""

import gzip
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console import formats
from console.assets import Assets, accepts_gzip, versioned_name
from tests.fake_sessions import MemorySessions
from tests.unit.test_console import (
    CASE_ID,
    ORIGIN,
    STATS,
    FakeServices,
    _referral,
    console_app,
    sign_in,
)

STATIC = Path(__file__).parents[2] / "services/console/src/console/static"


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(fake: FakeServices) -> Iterator[TestClient]:
    app = console_app(fake, MemorySessions())
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


# --- static files ---------------------------------------------------------------------------


def test_a_static_files_url_names_its_content() -> None:
    one = versioned_name("console.css", b"a { }")
    assert re.fullmatch(r"console\.[0-9a-f]{12}\.css", one)
    assert versioned_name("console.css", b"a { }") == one
    assert versioned_name("console.css", b"b { }") != one
    assets = Assets([("console.css", b"a { }")])
    assert assets.url("console.css") == f"/static/{one}"
    with pytest.raises(KeyError):
        assets.url("missing.css")


@pytest.mark.parametrize(
    ("header", "taken"),
    [
        ("gzip, deflate, br, zstd", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, br", False),
        ("identity", False),
        ("", False),
        (None, False),
    ],
)
def test_gzip_is_sent_only_where_the_browser_takes_it(header: str | None, taken: bool) -> None:
    assert accepts_gzip(header) is taken


def _stylesheet_url(page: str) -> str:
    found = re.search(r'<link rel="stylesheet" href="(/static/console\.[0-9a-f]{12}\.css)">', page)
    assert found, "the page links no versioned stylesheet"
    return found.group(1)


def test_pages_link_versioned_static_files_kept_a_year_and_sent_compressed(
    client: TestClient,
) -> None:
    page = client.get("/signin")
    assert page.headers["cache-control"] == "no-store"  # a page is never kept
    for name in ("htmx-2.0.11.min", "refresh", "countdown"):
        assert re.search(rf'src="/static/{re.escape(name)}\.[0-9a-f]{{12}}\.js"', page.text)
    url = _stylesheet_url(page.text)
    css = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert css.status_code == 200
    assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert css.headers["content-encoding"] == "gzip"
    assert css.headers["vary"] == "Accept-Encoding"
    assert css.headers["content-type"].startswith("text/css")
    raw = (STATIC / "console.css").read_bytes()
    assert css.content == raw  # the client undid the gzip
    assert int(css.headers["content-length"]) < len(raw) / 2
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == raw
    again = client.get(url, headers={"If-None-Match": css.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_a_static_file_by_its_plain_name_is_asked_about_each_time(client: TestClient) -> None:
    plain = client.get("/static/console.css")
    assert plain.status_code == 200
    assert plain.headers["cache-control"] == "public, no-cache"
    assert client.get("/static/console.0123456789ab.css").status_code == 404
    assert client.get("/static/..%2Fhttp.py").status_code == 404


def test_pages_go_compressed_to_a_browser_that_takes_gzip(
    client: TestClient, fake: FakeServices
) -> None:
    referrals = [_referral(f"r-{n}", "routine", n) for n in range(10)]
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": referrals})
    sign_in(client, "pt")
    page = client.get("/inbox", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    assert page.headers["cache-control"] == "no-store"
    assert "r-9" in page.text


# --- lists: 304 while unchanged -------------------------------------------------------------


def _section_etag(page: str, section: str) -> str:
    found = re.search(rf'<section id="{section}"[^>]*data-etag="([^"]+)"', page)
    assert found, f"section {section} carries no ETag"
    return found.group(1).replace("&#34;", '"')


def test_the_inbox_answers_304_while_its_referrals_stay_the_same(
    client: TestClient, fake: FakeServices
) -> None:
    referrals = [_referral("r-1", "urgent", 5)]
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": referrals})
    sign_in(client, "pt")
    etag = _section_etag(client.get("/inbox").text, "inbox")
    htmx = {"HX-Request": "true"}
    same = client.get("/inbox/items", headers={**htmx, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    assert len(fake.sent("routing", "/v1/referrals")) == 2  # routing was asked all the same

    referrals.append(_referral("r-2", "emergency", 1))
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": referrals})
    changed = client.get("/inbox/items", headers={**htmx, "If-None-Match": etag})
    assert changed.status_code == 200
    assert 'data-item="r-2"' in changed.text
    assert changed.headers["etag"] != etag
    assert _section_etag(changed.text, "inbox") == changed.headers["etag"]

    # The same referrals in the other language are another list.
    client.get("/lang?to=en&next=/inbox")
    english = client.get("/inbox/items", headers={**htmx, "If-None-Match": changed.headers["etag"]})
    assert english.status_code == 200


def test_a_referral_going_past_its_deadline_changes_the_inbox(
    client: TestClient, fake: FakeServices
) -> None:
    nearly = _referral("r-1", "urgent", 5)
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": [nearly]})
    sign_in(client, "pt")
    etag = _section_etag(client.get("/inbox").text, "inbox")
    past = {**nearly, "deadline_missed": True}
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": [past]})
    late = client.get("/inbox/items", headers={"If-None-Match": etag})
    assert late.status_code == 200
    assert "overdue" in late.text


def test_a_revoked_token_is_still_refused_on_a_conditional_refresh(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    sign_in(client, "pt")
    etag = _section_etag(client.get("/inbox").text, "inbox")
    fake.answer("routing", "GET", "/v1/referrals", 401, json={"detail": "revoked"})
    refused = client.get(
        "/inbox/items",
        headers={"HX-Request": "true", "If-None-Match": etag},
        follow_redirects=False,
    )
    assert refused.status_code == 204
    assert refused.headers["hx-redirect"] == "/signin?expired=1"


def test_the_case_status_and_the_coordinators_lists_answer_304_while_unchanged(
    client: TestClient, fake: FakeServices
) -> None:
    status = {"case_id": CASE_ID, "status": "routed", "reported_at": "2026-11-23T01:00:00Z",
              "channel": "hotline", "violence_types": ["physical"], "referrals": []}  # fmt: skip
    fake.answer("intake", "GET", f"/v1/cases/{CASE_ID}", 200, json=status)
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    sign_in(client, "co")
    case_etag = _section_etag(client.get(f"/cases/{CASE_ID}").text, "case-status")
    fragment = f"/cases/{CASE_ID}/status"
    assert client.get(fragment, headers={"If-None-Match": case_etag}).status_code == 304
    page = client.get("/coordinator").text
    for section, url in (("open", "/coordinator/open"), ("unrouted", "/coordinator/unrouted")):
        etag = _section_etag(page, section)
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304, section
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_lists_refresh_by_script_less_often_while_unchanged_and_hidden(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    sign_in(client, "pt")
    page = client.get("/inbox").text
    section = re.search(r'<section id="inbox"[^>]*>', page)
    assert section
    assert 'hx-trigger="poll"' in section.group(0)
    assert 'data-poll="3" data-poll-max="30" data-poll-hidden="120"' in section.group(0)
    assert 'data-news="inbox-news"' in section.group(0)
    assert re.search(r'<p id="inbox-news" class="visually-hidden" role="status"', page)
    assert '{"code": "304", "swap": false}' in page  # htmx keeps the list on a 304


# --- numbers and spans of time in the page's language ---------------------------------------


def test_spans_of_time_are_written_as_each_language_writes_them() -> None:
    span = timedelta(hours=1, minutes=57, seconds=9)
    assert formats.duration(span, "id") == "1 j 57 mnt"
    assert formats.duration(span, "en") == "1h 57m"
    assert formats.duration(timedelta(minutes=4, seconds=2), "id") == "4 mnt 02 dtk"
    assert formats.duration(timedelta(days=3, hours=2), "en") == "3d 02h"
    assert formats.duration(timedelta(seconds=-40), "en") == "40s"  # the sign is left out
    assert formats.unit_patterns("id") == {
        "day": "{0} hr",
        "hour": "{0} j",
        "minute": "{0} mnt",
        "second": "{0} dtk",
    }


def test_numbers_and_shares_use_the_languages_decimal_mark() -> None:
    assert formats.percent(1.0, "id") == "100,0%"
    assert formats.percent(0.875, "en") == "87.5%"
    assert formats.number(0.5, "id", 1) == "0,5"
    assert formats.number(12345, "id") == "12.345"
    assert formats.number(12345, "en") == "12,345"
    assert formats.in_unit(0.5, "minute", "id", 1) == "0,5 mnt"


def test_the_inbox_countdown_is_written_in_the_pages_language(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer(
        "routing", "GET", "/v1/referrals", 200, json={"referrals": [_referral("r", "urgent", 1)]}
    )
    sign_in(client, "pt")
    indonesian = client.get("/inbox").text
    countdown = re.search(r'class="countdown"[^>]*>([^<]+)<', indonesian)
    assert countdown
    assert re.fullmatch(r"(29 mnt [0-5][0-9] dtk|30 mnt 00 dtk)", countdown.group(1))
    assert """data-units='{"day": "{0} hr", "hour": "{0} j",""" in indonesian
    client.get("/lang?to=en&next=/inbox")
    english = re.search(r'class="countdown"[^>]*>([^<]+)<', client.get("/inbox").text)
    assert english
    assert re.fullmatch(r"(29m [0-5][0-9]s|30m 00s)", english.group(1))


# --- seen and touched -----------------------------------------------------------------------


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_ring_stands_out_3_to_1_from_every_background_it_sits_on() -> None:
    css = (STATIC / "console.css").read_text()
    variables = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    ring = re.search(r":focus-visible\s*\{\s*outline:\s*3px solid var\(--([a-z-]+)\)", css)
    assert ring, "no 3 px focus ring"
    colour = variables[ring.group(1)]
    for background in ("#ffffff", variables["bg"], variables["warn-bg"]):
        assert contrast(colour, background) >= 3, (colour, background)
    assert contrast("#f5a623", "#ffffff") < 3  # the check would have caught the old ring


def test_static_files_served_are_what_the_folder_holds() -> None:
    assets = Assets.of_folder(STATIC)
    names = {asset.name for asset in assets}
    assert {"console.css", "refresh.js", "countdown.js", "htmx-2.0.11.min.js"} <= names
    for asset in assets:
        if asset.gzipped is not None:
            assert gzip.decompress(asset.gzipped) == asset.content
