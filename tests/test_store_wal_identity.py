"""Which write-ahead log belongs to the buffer: the rule, on real SQLite files.

The buffer's own WAL must be taken at every moment a crash could freeze it — through many
checkpoints and rewinds — and a WAL of any other database never.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from agent_telemetryd.store.buffer_file import BufferFile
from agent_telemetryd.store.checkpoint import Checkpointer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.fresh import EMPTIED_TABLES, KEPT_TABLES
from agent_telemetryd.store.rows import INSERT_EVENT
from agent_telemetryd.store.wal_identity import (
    NO_WAL,
    foreign_wal_reason,
    read_header,
    read_sidecar,
    sidecar_path,
    wal_path,
    write_sidecar,
)
from tests.test_store_failures import buffer_row


def crash_image(path: Path, into: Path) -> Path:
    """The buffer's files as a kill -9 would leave them at this instant."""
    into.mkdir(exist_ok=True)
    copy = into / path.name
    for suffix in ("", "-wal", "-shm", ".wal-salts"):
        source = Path(f"{path}{suffix}")
        target = Path(f"{copy}{suffix}")
        if source.exists():
            shutil.copyfile(source, target)
        elif target.exists():
            target.unlink()
    return copy


def commit_row(conn: sqlite3.Connection, file: BufferFile, number: int) -> None:
    """One event committed as the writer commits it, and the file told of the write."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INSERT_EVENT, tuple(buffer_row(number, number)))
    conn.execute("COMMIT")
    file.after_write()


def note_recorded_salts(path: Path, salts: set[tuple[int, int]], number: int) -> None:
    """The WAL's salts now, added to `salts`; the record must hold exactly them."""
    header, _ = read_header(wal_path(path))
    if header is not None:
        salts.add((header.salt1, header.salt2))
        assert read_sidecar(path) == (header.salt1, header.salt2), number


def test_the_buffers_own_wal_is_taken_at_every_point_through_many_rewinds(
    tmp_path: Path,
) -> None:
    """And the record holds the WAL's salts exactly after every commit, though the header
    is read only around checkpoints, whenever the checkpointer thread finishes."""
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path, autocheckpoint=False)
    checkpointer = Checkpointer(path, limit=6 * 4096)
    file = BufferFile(path, conn, checkpointer=checkpointer)
    salts = set()
    try:
        for number in range(400):
            commit_row(conn, file, number)
            note_recorded_salts(path, salts, number)
            image = crash_image(path, tmp_path / "image")
            assert foreign_wal_reason(image) is None, number
            # Commits at an uneven pace: checkpoints end before, between and during them.
            time.sleep((number % 7) * 0.0005)
    finally:
        checkpointer.close()
        conn.close()
    assert len(salts) > 5, "the WAL was never rewound: the test proves nothing"
    # And the crash image opens with every committed row.
    image = crash_image(path, tmp_path / "final")
    reopened = open_buffer(image)
    assert reopened.execute("SELECT count(*) FROM events").fetchone()[0] == 400
    reopened.close()


def test_a_rewind_right_after_a_checkpoint_is_recorded_at_its_own_commit(
    tmp_path: Path,
) -> None:
    """The two moments when reading the header only around checkpoints could miss a rewind,
    made to happen: a checkpoint that ends between a commit and its note (the rewind then
    comes with the next commit, after the note that saw the checkpoint end), and one whose
    end the writer meets before the checkpointer has counted it."""
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path, autocheckpoint=False)
    checkpointer = Checkpointer(path, limit=1 << 40)  # never on its own: run by hand here
    checkpointer.small_disk = False
    file = BufferFile(path, conn, checkpointer=checkpointer)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    rows = iter(range(1000))

    def commit(before_note: object = None) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT_EVENT, tuple(buffer_row(next(rows), 1)))
        conn.execute("COMMIT")
        if callable(before_note):
            before_note()
        file.after_write()

    def recorded_exactly() -> tuple[int, int]:
        header, _ = read_header(wal_path(path))
        assert header is not None
        assert read_sidecar(path) == (header.salt1, header.salt2)
        return header.salt1, header.salt2

    def checkpoint_by_the_checkpointer() -> None:
        checkpointer._busy = True  # as `wal_size_seen` marks it before handing it over
        checkpointer._checkpoint()

    try:
        for _ in range(5):
            commit()
        before = recorded_exactly()
        # 1. The checkpoint ends after a commit, before its note: that commit did not
        # rewind, the next one does.
        commit(before_note=checkpoint_by_the_checkpointer)
        assert recorded_exactly() == before
        commit()
        assert recorded_exactly() != before, "the WAL was not rewound: nothing was tested"
        for _ in range(3):
            commit()
        before = recorded_exactly()
        # 2. Every frame copied, but the checkpointer has not yet counted it as ended.
        checkpointer._busy = True
        busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert not busy and frames == copied
        commit()
        assert recorded_exactly() != before
        checkpointer.ended += 1
        checkpointer._busy = False
        commit()
        recorded_exactly()
    finally:
        other.close()
        checkpointer.close()
        conn.close()


def _other_wal(tmp_path: Path) -> Path:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    image = crash_image(other, tmp_path / "other-image")
    conn.close()
    return wal_path(image)


def test_a_wal_of_another_database_is_never_taken(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    open_buffer(path).close()
    assert sidecar_path(path).exists()
    shutil.copyfile(_other_wal(tmp_path), wal_path(path))
    assert foreign_wal_reason(path) == "its salts are not the ones this buffer recorded"


def test_after_a_fresh_start_no_wal_is_the_buffers(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    open_buffer(path).close()
    write_sidecar(path, NO_WAL)
    shutil.copyfile(_other_wal(tmp_path), wal_path(path))
    assert foreign_wal_reason(path) == "the buffer had no write-ahead log"


def test_without_a_record_the_wal_is_trusted_as_sqlite_would(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    open_buffer(path).close()
    sidecar_path(path).unlink()
    shutil.copyfile(_other_wal(tmp_path), wal_path(path))
    assert foreign_wal_reason(path) is None


def test_a_wal_without_its_database_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    shutil.copyfile(_other_wal(tmp_path), wal_path(path))
    assert foreign_wal_reason(path) == "a write-ahead log without its database"
    conn = open_buffer(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None
    conn.close()
    assert list(tmp_path.glob("buffer.sqlite3.foreign-*-wal"))


def test_a_torn_or_empty_wal_is_left_to_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    open_buffer(path).close()
    write_sidecar(path, NO_WAL)
    wal_path(path).write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 60)  # a bad header checksum
    assert foreign_wal_reason(path) is None


def test_every_table_is_either_kept_or_emptied_by_a_fresh_start(tmp_path: Path) -> None:
    """A migration that adds a table must say whether `clear` keeps it."""
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    conn.close()
    assert tables == set(KEPT_TABLES) | set(EMPTIED_TABLES)
    assert not set(KEPT_TABLES) & set(EMPTIED_TABLES)


def test_while_the_salts_cannot_be_recorded_the_wal_stays_the_buffers(tmp_path: Path) -> None:
    """A record that cannot be written (a full disk; here its temporary file is a folder)
    must not let the WAL rewind past what the next open takes for the buffer's: a crash at
    any point keeps every committed row. Once it can be written again, checkpoints resume."""
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path, autocheckpoint=False)
    checkpointer = Checkpointer(path, limit=6 * 4096)
    file = BufferFile(path, conn, checkpointer=checkpointer)
    blocker = Path(f"{sidecar_path(path)}.tmp")
    salts = set()
    try:
        for number in range(30):  # recorded as usual first
            commit_row(conn, file, number)
        blocker.mkdir()
        for number in range(30, 400):
            commit_row(conn, file, number)
            image = crash_image(path, tmp_path / "image")
            assert foreign_wal_reason(image) is None, number
            time.sleep((number % 7) * 0.0005)
        image = crash_image(path, tmp_path / "blocked")
        blocker.rmdir()
        for number in range(400, 500):
            commit_row(conn, file, number)
            note_recorded_salts(path, salts, number)
            time.sleep((number % 7) * 0.0005)
    finally:
        checkpointer.close()
        conn.close()
    assert len(salts) > 2, "checkpoints did not resume once the record could be written"
    # Opened while its record still cannot be written: it opens, with every row.
    Path(f"{sidecar_path(image)}.tmp").mkdir()
    reopened = open_buffer(image)
    assert reopened.execute("SELECT count(*) FROM events").fetchone()[0] == 400
    reopened.close()


def test_a_record_that_cannot_name_a_new_wal_is_removed_not_left_to_judge_it(
    tmp_path: Path,
) -> None:
    """A fresh start records that no WAL is the buffer's; when the first WAL's salts cannot
    be recorded, that record would make it foreign after a crash: it is removed instead."""
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path, autocheckpoint=False)
    write_sidecar(path, NO_WAL)  # as if the WAL the open began were not recorded yet
    Path(f"{sidecar_path(path)}.tmp").mkdir()
    file = BufferFile(path, conn)
    try:
        commit_row(conn, file, 1)
        image = crash_image(path, tmp_path / "image")
    finally:
        conn.close()
    assert foreign_wal_reason(image) is None
    reopened = open_buffer(image)
    assert reopened.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    reopened.close()
