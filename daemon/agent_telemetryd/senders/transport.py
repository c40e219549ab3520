"""One gzip-encoded JSON request over the shared aiohttp session, as a SendResult.

Network trouble becomes a result, never an exception, so the uploader decides every
retry in one place. An answer is read whole, however it arrives (a `rejected` list cut
where the first chunk ended would mark refused events sent), up to a bound: a
misbehaving backend cannot make the daemon hold more than that, and an answer over it
is reported as unread (`answer_read`), never taken as what it would have said.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import orjson

from agent_telemetryd.senders.base import RequestHook, SendResult

# Large enough for the `rejected` list of a big batch with long reasons (1,000 events at
# a few hundred bytes each), small enough to hold for the moment it is decoded.
MAX_ANSWER_BYTES = 1024 * 1024
# The backend's own error text kept in receipts and quarantine reasons.
MAX_BACKEND_TEXT = 200
# The longest wait a Retry-After is taken for. The backend's number is kept as a date
# (`backend_wait`), across restarts: an unbounded one (`Retry-After: 300000000000`) is
# a year past 9999, which no date parser reads back, and would hold every upload for
# good. A backend that still wants quiet after a day says so again.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
# gzip of a large body takes milliseconds; off the event loop so ingest never waits on it.
_COMPRESS_IN_THREAD_BYTES = 256 * 1024


async def gzip_body(payload: bytes) -> bytes:
    if len(payload) >= _COMPRESS_IN_THREAD_BYTES:
        return await asyncio.to_thread(gzip.compress, payload, 6)
    return gzip.compress(payload, 6)


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    payload: bytes | None = None,
    headers: dict[str, str] | None = None,
    on_request: RequestHook | None = None,
) -> tuple[SendResult, Any]:
    """(result, decoded JSON answer or None). `payload` is sent gzip-compressed;
    `on_request` is called with its sha256 as the request leaves."""
    sha = hashlib.sha256(payload).hexdigest() if payload is not None else ""
    all_headers = dict(headers or {})
    data = None
    if payload is not None:
        data = await gzip_body(payload)
        all_headers["Content-Type"] = "application/json"
        all_headers["Content-Encoding"] = "gzip"
    if on_request is not None:
        on_request(sha)
    try:
        # Redirects are not followed: they could take the events, and the key, elsewhere.
        async with session.request(
            method, url, data=data, headers=all_headers, allow_redirects=False
        ) as response:
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            location = response.headers.get("Location")
            answer = await _read_answer(response)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return SendResult(None, error=_network_reason(error), body_sha256=sha), None
    decoded = _decode(answer) if answer is not None else None
    result = SendResult(
        status,
        error=_error(status, decoded, answer is not None),
        retry_after=retry_after,
        body_sha256=sha,
        location=public_url(urljoin(url, location)) if location and 300 <= status < 400 else None,
        answer_read=answer is not None,
    )
    return result, decoded


async def _read_answer(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole answer, however many chunks it comes in; None when it is longer than
    MAX_ANSWER_BYTES (what is past the bound is not read)."""
    if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        # One byte over the bound is enough to know the answer is too long.
        chunk = await response.content.read(MAX_ANSWER_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)


def _error(status: int, decoded: Any, read: bool) -> str | None:
    if not read:
        return f"HTTP {status} with an answer over {MAX_ANSWER_BYTES // 1024} KiB, not read"
    if 200 <= status < 300:
        return None
    return f"HTTP {status}{_answer_reason(decoded)}"


def public_url(url: str) -> str:
    """`url` without credentials, query or fragment: what may be shown of where a redirect
    points (a signed link or a token in the query is not ours to repeat)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an address that does not parse"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), at most
    MAX_RETRY_AFTER_SECONDS, else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    # HTTP's delay-seconds is ASCII digits: str.isdigit() alone also takes `²`, which
    # float() refuses (an exception out of a request), and `١٢`, which it reads as 12.
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # An HTTP-date is always GMT; the asctime form HTTP still accepts
        # (`Sun Nov  6 08:49:37 1994`) just does not say so.
        moment = moment.replace(tzinfo=UTC)
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER_SECONDS)


def _decode(answer: bytes) -> Any:
    try:
        return orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        return None


def _answer_reason(decoded: Any) -> str:
    """The backend's own short error text, when it sent one (it goes to receipts)."""
    if isinstance(decoded, dict):
        for key in ("error", "detail", "message"):
            value = decoded.get(key)
            if isinstance(value, str) and value:
                return f": {backend_text(value)}"
    return ""


def backend_text(value: str) -> str:
    """The backend's own words as they may be kept locally: cut, and scrubbed as stored
    events are, since a backend may echo what it was sent (addresses, paths, tokens)."""
    return _scrubber().text(value[: MAX_BACKEND_TEXT * 2])[:MAX_BACKEND_TEXT]


@functools.cache
def _scrubber() -> Any:
    # Loaded at the first error text: a backend that always answers 2xx never needs it.
    from agent_telemetryd.privacy.scrub import default_scrubber

    return default_scrubber(MAX_BACKEND_TEXT * 2)


def _network_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    # The class name says what failed (connection refused, reset, TLS) without the URL's
    # query or any header; str(error) of aiohttp errors can include the URL.
    return f"network error ({type(error).__name__})"
