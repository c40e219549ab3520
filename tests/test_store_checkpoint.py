"""The WAL under a steady stream of commits: checkpointed when it holds the limit's worth
of frames, not after every commit once the file has once been that large."""

from __future__ import annotations

import time
from pathlib import Path

from agent_telemetryd.store.buffer_file import BufferFile
from agent_telemetryd.store.checkpoint import Checkpointer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.insert_rows import insert_rows
from agent_telemetryd.store.wal_identity import wal_path
from tests.test_store_failures import buffer_row

LIMIT_PAGES = 64


def test_a_rewound_wal_shrinks_back_and_is_not_checkpointed_at_every_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path, autocheckpoint=False)
    checkpointer = Checkpointer(path, limit=LIMIT_PAGES * 4096)
    # As on a large file system, where a complete checkpoint is not followed by truncating
    # the WAL (the limit is small here only so the test is quick).
    checkpointer.small_disk = False
    file = BufferFile(path, conn, checkpointer=checkpointer)
    sizes = []
    commits = 600
    try:
        for number in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, [buffer_row(number * 10 + i, number) for i in range(10)])
            conn.execute("COMMIT")
            file.after_write()
            sizes.append(wal_path(path).stat().st_size)
            # As between the daemon's group commits (milliseconds apart), a checkpoint of
            # this small WAL is over before the next commit: then every one is complete,
            # the next transaction rewinds the WAL, and the count below is exact.
            deadline = time.monotonic() + 10
            while checkpointer._busy and time.monotonic() < deadline:
                time.sleep(0.001)
    finally:
        checkpointer.close()
        conn.close()
    limit = checkpointer.limit
    first_full = next(i for i, size in enumerate(sizes) if size >= limit)
    # After a rewind the file is cut back under the limit instead of staying at its
    # largest size (by which every later commit looked like a full WAL).
    assert min(sizes[first_full:]) < limit, "the WAL file never shrank after a rewind"
    # Each commit adds a few pages: the limit's worth is many commits, so checkpoints are
    # a small fraction of them (before: one after every commit once the file was full).
    assert 2 <= checkpointer.checkpoints <= commits // 5, checkpointer.checkpoints
