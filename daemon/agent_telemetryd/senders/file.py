"""Append what would have been sent to a local NDJSON file (debugging, demos).

One line per event, in the custom contract's event shape plus `anonymous_id` and the
batch's `sent_at`. The file is the user's own: created 0600, nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import orjson

from agent_telemetry._paths import make_private_dirs
from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.private_file import open_private
from agent_telemetryd.senders.base import (
    ErasureResult,
    PreparedRequest,
    RequestHook,
    Sender,
    SendResult,
    contract_event,
    now_rfc3339,
)


def lines(batch: OutboundBatch, sent_at: str) -> bytes:
    return b"".join(
        orjson.dumps({"anonymous_id": batch.anonymous_id, "sent_at": sent_at, **contract_event(e)})
        + b"\n"
        for e in batch.events
    )


class FileSender(Sender):
    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backend = f"file {path}"

    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        # Nothing leaves the machine: the receipt's time is taken before the write.
        data = lines(batch, now_rfc3339())
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as error:
            return SendResult(None, error=f"cannot write {self.path}: {error.strerror}")
        return SendResult(200)

    def _append(self, data: bytes) -> None:
        make_private_dirs(self.path.parent)
        # Not a plain open: in /tmp another user may have put a file or a link there first.
        with open_private(self.path, append=True) as out:
            out.write(data)

    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        body = [orjson.loads(line) for line in lines(batch, sent_at).splitlines()]
        return PreparedRequest("APPEND", str(self.path), {}, body)

    async def erase(self, anonymous_ids: list[str]) -> ErasureResult:
        wanted = set(anonymous_ids)

        def rewrite() -> int:
            if not self.path.exists():
                return 0
            kept, removed = [], 0
            with self.path.open("rb") as handle:
                for line in handle:
                    try:
                        owner = orjson.loads(line).get("anonymous_id")
                    except orjson.JSONDecodeError:
                        owner = None
                    if owner in wanted:
                        removed += 1
                    else:
                        kept.append(line)
            # A name of its own (mkstemp: 0600, O_EXCL): a fixed one could be a link
            # another user put there, in a shared folder.
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(b"".join(kept))
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            return removed

        removed = await asyncio.to_thread(rewrite)
        return ErasureResult(True, True, f"removed {removed} lines from {self.path}")
