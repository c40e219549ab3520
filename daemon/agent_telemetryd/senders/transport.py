"""One gzip-encoded JSON request over the shared aiohttp session, as a SendResult.

Network trouble becomes a result, never an exception, so the uploader decides every
retry in one place. Response bodies are read up to a small limit: a misbehaving backend
cannot make the daemon hold megabytes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from agent_telemetryd.senders.base import SendResult

MAX_ANSWER_BYTES = 64 * 1024
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
) -> tuple[SendResult, Any]:
    """(result, decoded JSON answer or None). `payload` is sent gzip-compressed."""
    sha = hashlib.sha256(payload).hexdigest() if payload is not None else ""
    all_headers = dict(headers or {})
    data = None
    if payload is not None:
        data = await gzip_body(payload)
        all_headers["Content-Type"] = "application/json"
        all_headers["Content-Encoding"] = "gzip"
    try:
        async with session.request(
            method, url, data=data, headers=all_headers, allow_redirects=False
        ) as response:
            answer = await response.content.read(MAX_ANSWER_BYTES)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return SendResult(None, error=_network_reason(error), body_sha256=sha), None
    decoded = _decode(answer)
    error = None if 200 <= status < 300 else f"HTTP {status}{_answer_reason(decoded)}"
    return SendResult(status, error=error, retry_after=retry_after, body_sha256=sha), decoded


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def _decode(answer: bytes) -> Any:
    try:
        return orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        return None


def _answer_reason(decoded: Any) -> str:
    """The backend's own short error text, when it sent one (cut: it goes to receipts)."""
    if isinstance(decoded, dict):
        for key in ("error", "detail", "message"):
            value = decoded.get(key)
            if isinstance(value, str) and value:
                return f": {value[:200]}"
    return ""


def _network_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    # The class name says what failed (connection refused, reset, TLS) without the URL's
    # query or any header; str(error) of aiohttp errors can include the URL.
    return f"network error ({type(error).__name__})"
