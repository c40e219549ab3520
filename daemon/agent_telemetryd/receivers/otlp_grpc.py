"""OTLP/gRPC in: the trace, logs and metrics `Export` services on a loopback port.

Part of the `[otlp-grpc]` extra (grpcio), and imported only when `otlp_grpc_port` is set,
so a daemon without it never loads gRPC. The server is grpcio's asyncio server on the
daemon's own event loop. Requests arrive as the same protobuf bytes OTLP/HTTP carries and
go through the same decoding, mapping, masking and accounting (`otlp_export`); only the
answers differ, as the OTLP spec gives them for gRPC:
- OK with an `Export*ServiceResponse`, `partial_success` saying how many items were
  refused and why.
- INVALID_ARGUMENT for a message that is not an OTLP request (not retried).
- RESOURCE_EXHAUSTED when the buffer is at its cap, UNAVAILABLE when a write failed: both
  with a RetryInfo (5 s), which exporters honour before they send the request again.
- PERMISSION_DENIED for a peer that is not on loopback (the port binds loopback only, so
  this is a second lock on the same door), and, as on the HTTP port, for a connection
  another local user opened (its owner uid from the kernel's socket table, looked up for
  each call on the thread the HTTP ports use).
- UNAUTHENTICATED without the per-install token (`authorization: Bearer <token>`
  metadata) when `http_require_token` asks for it.

Like the HTTP listeners it has a connection budget (`limits.max_connections`, fitted under
the file limit with theirs), a connection that never completes gRPC's handshake is closed
after `limits.header_timeout`, and one with no call under way after `limits.idle_timeout`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from grpc import aio

from agent_telemetryd.config_values import is_loopback_ip
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.ingest import Source
from agent_telemetryd.otlp.answers import export_answer
from agent_telemetryd.otlp.decode import PROTOBUF, UndecodableError
from agent_telemetryd.otlp.signals import LOGS, METRICS, TRACES, Signal
from agent_telemetryd.receivers.http_guard import bearer_token, token_matches
from agent_telemetryd.receivers.http_ingest import MAX_BODY_BYTES, RETRY_AFTER_SECONDS
from agent_telemetryd.receivers.otlp_export import (
    TRANSPORT,
    OtlpState,
    RetryLater,
    commit,
    decode_off_loop,
    reject_body,
)
from agent_telemetryd.receivers.sites import Sites

AGENT_METADATA = "x-agent-name"  # as the X-Agent-Name header on HTTP
NOT_LOOPBACK = "only processes on this machine (loopback) may export to this daemon"
NOT_OWNER = "only the daemon's own user may use this port"
NO_TOKEN = "exporting here needs the per-install token (http_require_token)"
GRACE_SECONDS = 2.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
Handler = Callable[[bytes, aio.ServicerContext], Awaitable[bytes]]


class BindError(RuntimeError):
    """The port could not be listened on; the message says which and why."""


@dataclass
class GrpcReceiver:
    server: aio.Server
    address: str  # host:port as bound, the port resolved when 0 was asked for

    async def stop(self) -> None:
        # Requests under way get the grace period to commit and answer; then cancelled.
        await self.server.stop(GRACE_SECONDS)


async def start(
    context: DaemonContext, state: OtlpState, sites: Sites, host: str, port: int
) -> GrpcReceiver:
    """Serve the three OTLP services on host:port (loopback) on the running loop."""
    limits = sites.limits["otlp_grpc"]
    server = aio.server(
        options=[
            # The same bound as an HTTP body, counted after gzip is undone.
            ("grpc.max_receive_message_length", MAX_BODY_BYTES),
            # gRPC sets SO_REUSEPORT by default: a second process (another daemon, a real
            # collector) could then bind the same port and take half the connections.
            ("grpc.so_reuseport", 0),
            # Over the budget gRPC closes the newest connection, as the HTTP listeners do.
            ("grpc.max_allowed_incoming_connections", limits.max_connections),
            ("grpc.server_handshake_timeout_ms", int(limits.header_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000)),
        ]
    )
    shown = f"[{host}]" if ":" in host else host
    try:
        bound = server.add_insecure_port(f"{shown}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        await server.stop(None)
        raise BindError(
            f"cannot listen for OTLP/gRPC on {shown}:{port} (in use?); set"
            " AGENT_TELEMETRY_OTLP_GRPC_PORT to another port, 0, or off"
        )
    refusal = _refusal(context, sites, host, bound)
    server.add_generic_rpc_handlers(
        [_service(signal, _export_handler(context, state, signal, refusal)) for signal in SIGNALS]
    )
    await server.start()
    return GrpcReceiver(server, f"{shown}:{bound}")


SIGNALS = (TRACES, LOGS, METRICS)


def service_name(signal: Signal) -> str:
    """`opentelemetry.proto.collector.trace.v1.TraceService` and its siblings, from the
    official protos: the one service declared beside each request message."""
    (service,) = signal.request.DESCRIPTOR.file.services_by_name.values()
    return str(service.full_name)


def _service(signal: Signal, handler: Handler) -> grpc.GenericRpcHandler:
    # No (de)serializers: the handler gets the request's bytes, as OTLP/HTTP does, and
    # decodes them on a thread with the same code; it answers with encoded bytes.
    method = grpc.unary_unary_rpc_method_handler(handler)
    return grpc.method_handlers_generic_handler(service_name(signal), {"Export": method})


# Why a call may not export here, as the status code and message to abort it with.
Refusal = Callable[[aio.ServicerContext], Awaitable[tuple[grpc.StatusCode, str] | None]]


def _refusal(context: DaemonContext, sites: Sites, host: str, port: int) -> Refusal:
    """Not loopback, another user's connection (where the socket table says), or no
    token where one is required: the HTTP port's rules, for a call."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    uid_of = sites.uid_of_addresses(family, (host, port))

    async def refusal(call: aio.ServicerContext) -> tuple[grpc.StatusCode, str] | None:
        peer = call.peer()
        if not is_loopback_peer(peer):
            return grpc.StatusCode.PERMISSION_DENIED, NOT_LOOPBACK
        if uid_of is not None and await uid_of(_peer_address(peer)) != os.geteuid():
            return grpc.StatusCode.PERMISSION_DENIED, NOT_OWNER
        if sites.token_required:
            given = dict(call.invocation_metadata() or ()).get("authorization")
            token = bearer_token(given) if isinstance(given, str) else None
            if not token_matches(token, context.dashboard_token):
                return grpc.StatusCode.UNAUTHENTICATED, NO_TOKEN
        return None

    return refusal


def _peer_address(peer: str) -> tuple[str, int]:
    """(host, port) of `ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000`."""
    rest = unquote(peer).partition(":")[2]
    host, _, port = rest.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _export_handler(
    context: DaemonContext, state: OtlpState, signal: Signal, refusal: Refusal
) -> Handler:
    async def export(body: bytes, call: aio.ServicerContext) -> bytes:
        refused = await refusal(call)
        if refused is not None:
            await call.abort(*refused)
        source = Source(TRANSPORT, agent=agent_from_metadata(call.invocation_metadata()))
        try:
            decoded = await decode_off_loop(context, state, signal, body, PROTOBUF)
        except UndecodableError as error:
            reject_body(context, str(error), source)
            await call.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            committed = await commit(context, state, decoded, source)
        except RetryLater as error:
            code = (
                grpc.StatusCode.RESOURCE_EXHAUSTED
                if error.buffer_full
                else grpc.StatusCode.UNAVAILABLE
            )
            await call.abort(code, str(error), trailing_metadata=retry_metadata(code, str(error)))
        return export_answer(signal, committed.refused, committed.items, PROTOBUF)

    return export


def retry_metadata(code: grpc.StatusCode, message: str) -> tuple[tuple[str, bytes], ...]:
    """How long to wait before sending again, where exporters look for it: a RetryInfo in
    the status details (the OTLP spec; Go and Java exporters), and the same RetryInfo
    alone under the key the Python exporter reads."""
    info = RetryInfo(retry_delay=Duration(seconds=int(RETRY_AFTER_SECONDS)))
    detail = AnyMessage()
    detail.Pack(info)
    status = Status(code=code.value[0], message=message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )


def is_loopback_peer(peer: str) -> bool:
    """`ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000` (brackets may come %-encoded)."""
    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return False
    host = rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = host.removeprefix("[").removesuffix("]")
    return is_loopback_ip(host)


def agent_from_metadata(metadata: object) -> str | None:
    """The source name an exporter may send as `x-agent-name` (OTEL_EXPORTER_OTLP_HEADERS),
    for items whose resource has no `service.name`."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == AGENT_METADATA and isinstance(value, str):
            return _CONTROL.sub("", value)[:100] or None
    return None
