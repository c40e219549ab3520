"""What a flush is given: its settings, and every input it reads from outside (sender,
consent, buffer, clock, sleep, randomness), so a test can give each one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent_telemetryd.config_values import RateRule
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.senders.base import Sender
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.upload.backoff import Backoff


@dataclass(frozen=True)
class UploadSettings:
    batch_size: int = 100
    # The official PostHog SDK keeps batches under 5 MiB (its API takes 20 MB).
    max_batch_bytes: int = 5 * 1024 * 1024
    # Tries of one request on network errors, timeouts, 5xx and 429; then the flush ends
    # and the next scheduled run resumes where it stopped (the events stay pending).
    max_attempts: int = 5
    # Tries of a batch answered with a "bad request" 4xx before it is bisected.
    max_rejections: int = 3
    # A Retry-After longer than this ends the flush instead of holding it open; no
    # request goes to that backend until it has passed (`backend_wait`).
    max_retry_after: float = 120.0
    backoff: Backoff = field(default_factory=Backoff)
    # The upload rate limit, to say why events wait (the ingestor applies it).
    rate_limit: tuple[RateRule, ...] = ()
    rate_limit_backlog: int = 10_000
    # Why nothing may be uploaded whatever the mode, when something says so: the config
    # has keys this version does not know, which may limit what is sent.
    held: str | None = None


@dataclass(frozen=True)
class FlushInputs:
    """Everything a flush reads from outside, so a test can give each one."""

    sender: Sender
    settings: UploadSettings
    consent: Callable[[], ConsentState]
    buffer: Callable[[], Buffer | None]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]
