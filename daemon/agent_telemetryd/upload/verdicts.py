"""What to do with a backend's answer to one batch. Pure: no I/O.

The statuses follow PostHog's capture API and the custom contract:
2xx is success; 413 means the request is too large, so the batch is split; 429, 5xx,
408 and network errors are the backend's trouble, so the same batch is retried later;
401/403/404/405 say the configuration is wrong (key, host, path), which no event
causes, so nothing is quarantined and the flush ends; a 3xx says the same of the host:
redirects are not followed (they could take the events, and the key, elsewhere), so the
configured address must be the final one and the flush ends; any other 4xx says
something in the batch is bad, so after a few tries the batch is bisected to find the
event. An answer too long to read is not taken for what it would have said: a 2xx of
the custom contract lists the events it refused, so an unread one is retried, never
counted as success.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    SPLIT = "split"
    REJECTED = "rejected"
    REFUSED = "refused"
    REDIRECTED = "redirected"


_TRANSIENT_4XX = frozenset({408, 425, 429})
_CONFIGURATION_4XX = frozenset({401, 403, 404, 405, 407})


def classify(status: int | None, *, answer_read: bool = True) -> Verdict:
    """`status` is the HTTP status, or None when no answer came (network error, timeout);
    `answer_read` is False when the answer's body was over the bound and not read."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.ACCEPTED if answer_read else Verdict.RETRY
    if 300 <= status < 400:
        return Verdict.REDIRECTED
    if status == 413:
        return Verdict.SPLIT
    if status in _TRANSIENT_4XX or status >= 500:
        return Verdict.RETRY
    if status in _CONFIGURATION_4XX:
        return Verdict.REFUSED
    if 400 <= status < 500:
        return Verdict.REJECTED
    # 1xx, or a status outside HTTP's range: not an answer we understand; try later.
    return Verdict.RETRY
