"""The uploader's pure parts with plain values: batching, halving, backoff, Retry-After,
verdicts, endpoint rules, schedule jitter, what may be shown of a backend's words."""

from __future__ import annotations

import pytest

from agent_telemetryd.config_values import EndpointError, check_endpoint
from agent_telemetryd.outbound import Outbound, batch_id
from agent_telemetryd.senders.transport import backend_text, parse_retry_after, public_url
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.batching import halves
from agent_telemetryd.upload.scheduler import jitter_for
from agent_telemetryd.upload.verdicts import Verdict, classify
from tests.test_upload_paging import batches_at_once


def _row(n: int, anon: str = "a", props: str = "{}") -> Outbound:
    return Outbound(n, f"u{n}", "e", 0, 0, props, "agent", anon)


def test_batches_respect_count_and_keep_order() -> None:
    batches = batches_at_once([_row(i) for i in range(250)], 100, 10**9)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [e.id for b in batches for e in b.events] == list(range(250))


def test_batches_never_mix_anonymous_ids() -> None:
    rows = [_row(1, "old"), _row(2, "old"), _row(3, "new"), _row(4, "old")]
    assert [(b.anonymous_id, len(b)) for b in batches_at_once(rows, 100, 10**9)] == [
        ("old", 2),
        ("new", 1),
        ("old", 1),
    ]


def test_batches_respect_the_byte_budget() -> None:
    rows = [_row(i, props="x" * 1000) for i in range(10)]
    batches = batches_at_once(rows, 100, 3000)
    assert all(sum(e.approx_bytes for e in b.events) <= 3000 for b in batches)
    assert sum(len(b) for b in batches) == 10


def test_an_event_over_the_budget_still_gets_a_batch() -> None:
    assert [len(b) for b in batches_at_once([_row(1, props="x" * 5000)], 100, 1000)] == [1]


def test_halves_and_batch_id() -> None:
    assert halves([1, 2, 3]) == ([1, 2], [3])
    with pytest.raises(ValueError):
        halves([1])
    assert batch_id(["b", "a"]) == batch_id(["a", "b"]) != batch_id(["a"])


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0)
    assert backoff.delay(1, 0.0) == 0.5 and backoff.delay(1, 0.999) < 1.0
    assert backoff.delay(3, 0.0) == 2.0
    assert backoff.delay(10, 0.999) < 8.0 and backoff.delay(10, 0.0) == 4.0
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2", now=0) == 2.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    # HTTP's two older date forms: RFC 850 and asctime (which names no zone: GMT).
    assert parse_retry_after("Thursday, 01-Jan-70 00:00:10 GMT", now=4.0) == 6.0
    assert parse_retry_after("Thu Jan  1 00:00:10 1970", now=4.0) == 6.0


def test_retry_after_is_taken_for_a_day_at_most() -> None:
    """A wait past the year 9999 has no date to be kept as; `9` * 400 is infinity."""
    day = 86400.0
    assert parse_retry_after("300000000000", now=0) == day
    assert parse_retry_after("9" * 400, now=0) == day
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=0) == day
    assert parse_retry_after("86399", now=0) == 86399.0


def test_retry_after_seconds_are_ascii_digits_only() -> None:
    """`²` is a digit to str.isdigit() but not to float(); `١٢` is twelve to both."""
    assert parse_retry_after("\u00b2", now=0) is None
    assert parse_retry_after("\u0661\u0662", now=0) is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.ACCEPTED),
        (202, Verdict.ACCEPTED),
        (None, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (429, Verdict.RETRY),
        (408, Verdict.RETRY),
        (413, Verdict.SPLIT),
        (400, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (401, Verdict.REFUSED),
        (403, Verdict.REFUSED),
        (404, Verdict.REFUSED),
        (301, Verdict.REDIRECTED),
        (307, Verdict.REDIRECTED),
        (308, Verdict.REDIRECTED),
    ],
)
def test_verdicts(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict


def test_a_2xx_whose_answer_was_not_read_is_not_success() -> None:
    assert classify(200, answer_read=False) is Verdict.RETRY
    assert classify(503, answer_read=False) is Verdict.RETRY


def test_a_redirect_target_is_shown_without_credentials_query_or_fragment() -> None:
    assert public_url("https://ops:pw@eu.example.com:8443/batch/?token=x#y") == (
        "https://eu.example.com:8443/batch/"
    )
    assert public_url("http://[::1]/a") == "http://[::1]/a"


def test_the_backend_s_words_are_cut_and_scrubbed_like_stored_data() -> None:
    said = backend_text("bad event from bob@corp.example at 10.1.2.3 " + "x" * 500)
    assert said.startswith("bad event from [email] at [ip] ") and len(said) == 200


def test_endpoints_https_or_loopback_only() -> None:
    assert check_endpoint("https://us.i.posthog.com/", "x") == "https://us.i.posthog.com"
    assert check_endpoint("http://127.0.0.1:8080", "x") == "http://127.0.0.1:8080"
    assert check_endpoint("http://localhost:8080", "x") == "http://localhost:8080"
    assert check_endpoint("http://[::1]:8080", "x") == "http://[::1]:8080"
    for bad in ("http://example.com", "ftp://127.0.0.1", "https://u:p@example.com", "nope"):
        with pytest.raises(EndpointError):
            check_endpoint(bad, "x")


def test_a_refused_endpoint_is_named_without_its_secrets() -> None:
    """The message goes to the log: a password in the URL, or a key pasted into the
    endpoint setting, must not be in it."""
    for bad in ("ftp://user:hunter2@host", "https://user:hunter2@host", "phc_hunter2"):
        with pytest.raises(EndpointError) as refused:
            check_endpoint(bad, "http.endpoint")
        assert "hunter2" not in str(refused.value)
        assert str(refused.value).startswith("http.endpoint: ")


def test_jitter_is_a_tenth_capped_at_five_minutes() -> None:
    assert jitter_for(1.0) == 0.1
    assert jitter_for(3600.0) == 300.0
