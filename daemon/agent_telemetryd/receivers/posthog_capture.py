"""PostHog-compatible routes: an unmodified PostHog SDK pointed at the daemon as its host
lands in the same buffer, and stays quiet.

Capture (`/batch/`, `/capture/`, `/e/`, `/i/v0/e/`): the SDK's `distinct_id` and
`api_key` are not kept — the daemon stands for one anonymous installation, and a distinct
id is often a real person's e-mail or account id; uploads carry the installation's
anonymous id instead. The source an event is counted and rate-limited under is its
`agent` property when it has one, else the request's `X-Agent-Name` header, else the SDK's
`$lib` (`posthog-python`, `posthog-node`, …). With `http_require_token`, an SDK (which can
add no header) gives the per-install token as its project key; any other key is PostHog's
own 401 `invalid_api_key`, and nothing of the request is kept.

Feature flags (`/flags`, `/decide` in every version the SDKs call, and the definitions a
server-side SDK polls for local evaluation): the daemon has none, and says so in the shapes
the SDKs parse, so they log no error. A `$feature_flag_called` event that reports no value
(the flag was missing: the SDK only echoes the daemon's "no flags") is not kept, and is
counted as `dropped.flag_not_evaluated`; one that carries a value the SDK really evaluated
is an event like any other.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Source
from agent_telemetryd.receivers.http_guard import BODY_TOKEN, token_matches
from agent_telemetryd.receivers.http_ingest import (
    MAX_BODY_BYTES,
    BodyError,
    agent_from_headers,
    answer,
    check_count,
    clean_agent_name,
    read_body,
    refuse_body,
    too_large,
)
from agent_telemetryd.web_context import CONTEXT

routes = web.RouteTableDef()
GZIP_MAGIC = b"\x1f\x8b"
_JSON_OPENERS = (b"{", b"[")
# What PostHog's own capture puts on an event and the daemon does not keep.
_DROPPED_KEYS = ("distinct_id", "$ip", "$set", "$set_once", "token")
FLAG_CALLED = "$feature_flag_called"
FLAG_NOT_EVALUATED = "flag_not_evaluated"

# "No flags", in every shape an SDK reads: `flags` (the /flags v2 answer, parsed by
# posthog-python 7 and posthog-node 5), `featureFlags`/`featureFlagPayloads` (/decide v3
# and older SDKs), no errors, and no other feature switched on for the client.
NO_FLAGS: dict[str, Any] = {
    "flags": {},
    "featureFlags": {},
    "featureFlagPayloads": {},
    "errorsWhileComputingFlags": False,
    "quotaLimited": [],
    "sessionRecording": False,
    "supportedCompression": ["gzip", "gzip-js"],
}
# No flag definitions, for SDKs that evaluate flags locally (a personal API key given).
NO_DEFINITIONS: dict[str, Any] = {"flags": [], "group_type_mapping": {}, "cohorts": {}}


def to_wire_event(item: Any, *, header_names_source: bool = False) -> Any:
    """One PostHog capture item → the daemon's wire event (left alone if not an object).

    The source: the item's `agent` property, else (when `header_names_source`) the
    request's X-Agent-Name, which the caller gives as the default, else `$lib`."""
    if not isinstance(item, dict):
        return item
    properties = item.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else properties
    if isinstance(properties, dict):
        for key in _DROPPED_KEYS:
            properties.pop(key, None)
    event: dict[str, Any] = {"event": item.get("event"), "properties": properties}
    for key in ("timestamp", "uuid"):
        if item.get(key) is not None:
            event[key] = item[key]
    if isinstance(properties, dict):
        agent = clean_agent_name(properties.get("agent"))
        if agent is None and not header_names_source:
            agent = clean_agent_name(properties.get("$lib"))
        if agent is not None:
            event["agent"] = agent
    return event


def is_flag_echo(item: Any) -> bool:
    """A `$feature_flag_called` with no value: the SDK reporting the daemon's "no flags"."""
    if not isinstance(item, dict) or item.get("event") != FLAG_CALLED:
        return False
    properties = item.get("properties")
    return not isinstance(properties, dict) or properties.get("$feature_flag_response") is None


def inflate_gzip(compressed: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
    """Undo gzip, refusing (413) a body that inflates past `limit` before it is inflated:
    half a MiB of gzip can hold a GiB, and gzip.decompress would hold all of it."""
    inflated = bytearray()
    rest = compressed
    while rest:  # gzip allows several members one after another, as gzip.decompress does
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # expect the gzip header
        try:
            # One byte over the limit is enough to know; zlib stops there, whatever is left.
            inflated += inflater.decompress(rest, limit + 1 - len(inflated))
        except zlib.error as error:
            raise BodyError(f"request body is not valid gzip ({error})") from None
        if len(inflated) > limit:
            raise too_large("request body inflates to")
        if not inflater.eof:
            raise BodyError("request body is not valid gzip (it ends early)")
        rest = inflater.unused_data
    return bytes(inflated)


def _decode_body(raw: bytes, content_type: str, query: dict[str, list[str]]) -> Any:
    if raw[:2] == GZIP_MAGIC:  # gzip, whatever the headers claim (posthog-js gzip-js)
        raw = inflate_gzip(raw)
    if _is_form(raw, content_type):
        raw = _form_data(raw)
        if (query.get("compression") or [""])[0] == "gzip-js" or raw[:2] == GZIP_MAGIC:
            raw = inflate_gzip(raw)
    try:
        return parse_line(raw)
    except EventError as error:
        raise BodyError(f"request body is {error}") from None


def _is_form(raw: bytes, content_type: str) -> bool:
    """A `data=` form, as posthog-js sends with base64. A body that opens as JSON is JSON
    whatever its Content-Type: `curl -d` labels every body a form."""
    if raw.lstrip()[:1] in _JSON_OPENERS:
        return False
    return content_type == "application/x-www-form-urlencoded" or raw.startswith(b"data=")


def _form_data(raw: bytes) -> bytes:
    """The `data` field of a form: JSON as it is (PostHog takes that too), else base64."""
    # Latin-1 both ways keeps every byte as sent, percent-encoded or not.
    form = parse_qs(raw.decode("latin-1"), encoding="latin-1")
    data = (form.get("data") or [""])[0].encode("latin-1")
    if data.lstrip()[:1] in _JSON_OPENERS:
        return data
    # A `+` the client did not percent-encode arrives as a space; PostHog reads it back.
    data = data.replace(b" ", b"+")
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return data


async def capture(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    assert context.ingestor is not None
    header_agent = agent_from_headers(request)
    source = Source("posthog", agent=header_agent)
    # With http_require_token, and no token in a header: the SDK's project key must be it.
    expected_key = request.get(BODY_TOKEN)
    try:
        document = _decode_body(
            await read_body(request), request.content_type, parse_qs(request.query_string)
        )
        items = _items_in(document)
    except BodyError as error:
        # Counted only when the sender is known: with the key unread, it may be anyone's.
        if expected_key is None:
            refuse_body(request, error, source)
        return web.json_response(
            {"type": "validation_error", "detail": str(error)}, status=error.status
        )
    if expected_key is not None and not _keyed_with(expected_key, document, items):
        return _wrong_key()
    positions = [index for index, item in enumerate(items) if not is_flag_echo(item)]
    documents = [
        to_wire_event(items[index], header_names_source=header_agent is not None)
        for index in positions
    ]
    echoes = {FLAG_NOT_EVALUATED: len(items) - len(positions)}
    outcome = context.ingestor.accept_documents(documents, source, ack=True, dropped=echoes)
    response = await answer(outcome.renumbered(positions), context)
    if response.status == 202:
        # PostHog's SDKs treat exactly this as success.
        return web.json_response({"status": 1})
    return response


CAPTURE_PATHS = frozenset(
    f"{path}{slash}" for path in ("/batch", "/capture", "/e", "/i/v0/e") for slash in ("/", "")
)
for _path in sorted(CAPTURE_PATHS):
    routes.post(_path)(capture)


def _keyed_with(expected: str, document: Any, items: list[Any]) -> bool:
    """Whether the request's project key is `expected`: the body's `api_key` (the server
    SDKs' batch, a single capture), else each event's `token` property (posthog-js)."""
    if isinstance(document, dict) and document.get("api_key") is not None:
        keys = [document["api_key"]]
    else:
        keys = [_event_key(item) for item in items]
    return bool(keys) and all(isinstance(key, str) and token_matches(key, expected) for key in keys)


def _event_key(item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    properties = item.get("properties")
    key = properties.get("token") if isinstance(properties, dict) else None
    return key if key is not None else item.get("api_key")


def _wrong_key() -> web.Response:
    # PostHog's own answer to a project key it does not know; the SDKs log it and drop.
    return web.json_response(
        {
            "type": "authentication_error",
            "code": "invalid_api_key",
            "detail": "this daemon requires its per-install token (http_require_token): give"
            " it to the SDK as the project API key",
        },
        status=401,
    )


def _items_in(document: Any) -> list[Any]:
    if isinstance(document, dict) and "batch" in document:
        items = document["batch"]
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    if not isinstance(items, list):
        raise BodyError("'batch' must be an array")
    return check_count("batch", items)


@routes.route("*", "/flags")
@routes.route("*", "/flags/")
@routes.route("*", "/decide")
@routes.route("*", "/decide/")
async def no_flags(request: web.Request) -> web.Response:
    """Every version (`?v=2`, `?v=3`, `?v=4`) gets the same answer; the body (a distinct
    id, the project key) is not read, so nothing of it is kept or logged."""
    return web.json_response(NO_FLAGS)


@routes.get("/flags/definitions")
@routes.get("/api/feature_flag/local_evaluation")
@routes.get("/api/feature_flag/local_evaluation/")
async def no_flag_definitions(request: web.Request) -> web.Response:
    return web.json_response(NO_DEFINITIONS)
