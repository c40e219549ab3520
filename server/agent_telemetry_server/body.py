"""Reading a request body: its size limits, and gzip or deflate decoded here, not by aiohttp.

aiohttp's own decoding is turned off (`auto_decompress=False` in app.py) because of what
it does with a corrupt stream: the handler sees the error and answers 400, but aiohttp
then drains the rest of the body, meets the same error again and logs it as an unhandled
exception with a traceback. Decoded here, a bad stream is one clean 400 and the raw bytes
left over are drained quietly.
"""

from __future__ import annotations

import zlib

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from agent_telemetry_server.responses import ApiError

# We decode these ourselves; anything else is refused.
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
_CHUNK = 64 * 1024
_GZIP = 16 + zlib.MAX_WBITS


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress | None:
    """A decompressor for the body's encoding (None: as is), chosen on its first bytes."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(_GZIP)
    if encoding == "deflate":
        # HTTP's deflate is the zlib format (RFC 1950), whose first byte says "deflate" in
        # its low four bits; some clients send a raw deflate stream instead, as aiohttp
        # also accepts.
        zlib_header = bool(first) and first[0] & 0x0F == 8
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
    return None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The decoded body, or 413 as soon as it passes `limit` (a gzip bomb stops early too)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body is over the {limit}-byte limit")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ENCODINGS:
        raise ApiError(415, f"unsupported Content-Encoding {encoding[:40]!r}: use gzip")
    decoded = bytearray()
    received = 0
    decompressor: zlib._Decompress | None = None
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            if received == 0:
                decompressor = _decompressor(encoding, chunk)
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"body is over the {limit}-byte limit")
            if decompressor is None:
                decoded += chunk
            else:
                # Never more than one byte past the limit: enough to know it is over.
                decoded += decompressor.decompress(chunk, limit - len(decoded) + 1)
            if len(decoded) > limit:
                raise ApiError(413, f"decoded body is over the {limit}-byte limit")
    except zlib.error:
        raise ApiError(400, "body could not be decoded") from None
    except (RequestPayloadError, HttpProcessingError, ConnectionError):
        # A broken chunked encoding, or a client gone mid-body: nothing usable arrived.
        raise ApiError(400, "body could not be read") from None
    # A stream cut short, or bytes after its end, is as unusable as a corrupt one.
    if decompressor is not None and (not decompressor.eof or decompressor.unused_data):
        raise ApiError(400, "body could not be decoded")
    return bytes(decoded)
