"""What the OTLP receivers (the main port, OTLP's own port, gRPC) keep between requests.

One per daemon, on its context: gRPC starts with the daemon, the HTTP routes only when a
first HTTP connection builds them, and both must share it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_telemetryd.privacy.content import ContentMask

if TYPE_CHECKING:
    from agent_telemetryd.otlp.event_checks import EventChecks

# Resources recorded by this process, by uuid: at most this many, then forgotten (the
# uuid still dedupes one recorded again).
MAX_RESOURCES_REMEMBERED = 1024


@dataclass
class OtlpState:
    """What the OTLP receivers keep between requests; one per daemon, shared by them all."""

    # Content is masked here, before validation, so that its size limit counts what is
    # stored: a 200 KB prompt must not cost the span its place when only its length stays.
    mask: ContentMask = field(default_factory=ContentMask)
    resources_recorded: set[str] = field(default_factory=set)
    # Made by the first request, with the ingestor's limits (`otlp_export.event_checks`).
    checks: EventChecks | None = None

    _decoder: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def decoder(self) -> ThreadPoolExecutor:
        """The one thread every OTLP body is decoded on, made by the first request.

        One, not the event loop's pool of several: decoding is Python under the GIL, so
        bodies decoded side by side only take turns on it, and pay for the switching
        (4 exporters, alternated in one run: 5–8% more spans per CPU-second on one thread).
        It also keeps the checks' and the mask's caches to one thread."""
        if self._decoder is None:
            self._decoder = ThreadPoolExecutor(1, thread_name_prefix="otlp-decode")
        return self._decoder

    def close(self) -> None:
        """At shutdown, after the listeners drained: a decode still running ends unread."""
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._decoder = None

    def recorded(self, uuids: list[str]) -> None:
        if len(self.resources_recorded) + len(uuids) > MAX_RESOURCES_REMEMBERED:
            self.resources_recorded.clear()
        self.resources_recorded.update(uuids)
