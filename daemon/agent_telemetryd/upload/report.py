"""What one flush did: what `flush` prints and `status` shows as the last flush."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FlushReport:
    trigger: str
    started_at: str
    finished_at: str | None = None
    ok: bool = True
    events_sent: int = 0
    batches: int = 0
    requests: int = 0
    quarantined: int = 0
    error: str | None = None  # the backend failed: `flush` exits non-zero
    # How a flush that failed ended (FlushEndedError.kind): `unavailable`, `asked to wait`,
    # `backend waiting`, `redirected`, ...; a fixed word, never the backend's text.
    ended: str | None = None
    stopped: str | None = None  # consent withdrawn or daemon stopping mid-flush
    skipped: str | None = None  # nothing could be sent at all (mode, sender, backend wait)
    # When the backend may be contacted again, when it asked to wait (or stayed down).
    not_before: str | None = None
    # Pending events the rate limit still holds back when the flush ended, and why.
    waiting: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
