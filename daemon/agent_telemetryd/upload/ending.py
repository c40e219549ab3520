"""How a flush ends early: the exceptions `Flush.run` raises and the uploader reports."""

from __future__ import annotations


class ConsentWithdrawnError(Exception):
    """Upload was turned off: no further request."""


class FlushEndedError(Exception):
    """The backend is unavailable or refuses us; the message says why, for the user.

    The message may quote the backend's own error text; `kind` is a fixed classification
    (`unavailable`, `redirected`, …), which is all the daemon log says of it: a backend
    that echoes what it was sent must not put event contents in the log."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class BackendWaitingError(FlushEndedError):
    """The backend asked not to be contacted yet (Retry-After, or the backoff after it
    stayed unavailable): no request was made."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "backend waiting")
