"""The buffer file as the commands reach it: read beside a running daemon or with it down,
written with it down (holding the buffer's lock), and the store's errors as one line each.

Kept apart from cli/common.py: the store is about a sixth of a command's start, which a
command that only asks the running daemon (`status` above all) does not need to pay.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from agent_telemetry._paths import make_private_dirs
from agent_telemetryd import lazy_log
from agent_telemetryd.cli.common import daemon_pid
from agent_telemetryd.config import Config
from agent_telemetryd.consent import decide, read_stored
from agent_telemetryd.lock import AlreadyRunningError, DaemonLock, running_pid
from agent_telemetryd.status import BufferFacts, build_status, read_facts
from agent_telemetryd.store import offline_reads, offline_writes
from agent_telemetryd.store.buffer_file import BufferFile
from agent_telemetryd.store.database import BufferOpenError, connect, is_corrupt, is_full
from agent_telemetryd.store.migrations import MigrationError, NewerSchemaError, newer_schema


def offline_status(config: Config) -> dict[str, Any]:
    """`status` with the daemon down: what the buffer file says. A file that cannot be
    read is named in `buffer_error`; the mode, the sender and the paths are still told,
    since they are what a user needs to decide what to do about it."""
    problem = None
    try:
        with read_buffer(config) as conn:
            facts = read_facts(conn)
    except click.ClickException as error:
        facts, problem = BufferFacts(), error.message
    status = build_status(
        config=config,
        consent=decide(config, read_stored(config.paths.consent_file)),
        running=False,
        pid=None,
        facts=facts,
        memory_counters={},
        http_url=None,
    )
    if problem is not None:
        status["buffer_error"] = problem
    return status


@contextlib.contextmanager
def read_buffer(config: Config) -> Iterator[sqlite3.Connection | None]:
    """The buffer opened read-only, or None. Beside a running daemon, as its own readers do
    (WAL lets them); with the daemon down, as it is on disk and nothing else: no side file
    made, no write-ahead log read that is not the buffer's (store/offline_reads.py)."""
    database = config.paths.database
    if not database.exists():
        yield None
        return
    try:
        # A daemon serving another runtime folder may be writing it: not "down" either.
        if daemon_pid(config) is not None or running_pid(config.paths.buffer_lock) is not None:
            conn = connect(database, readonly=True)
        else:
            reader = offline_reads.open_reader(database)
            conn = reader.conn
            if reader.foreign_wal is not None:
                _warn_foreign_wal(database, reader.foreign_wal)
    except BufferOpenError as error:
        raise click.ClickException(str(error)) from None
    except sqlite3.Error as error:
        raise click.ClickException(f"cannot read {database}: {error}") from None
    refuse_newer_schema(conn, database)
    try:
        yield conn
    except sqlite3.DatabaseError as error:
        raise click.ClickException(f"cannot read {config.paths.database}: {error}") from None
    finally:
        conn.close()


def refuse_newer_schema(conn: sqlite3.Connection, database: Path) -> None:
    """A buffer a newer agent-telemetry wrote (a downgrade) is not read as this version's:
    its tables may mean other things now, and status, export and the rest would say what
    is not so. One line naming both schema versions and the way out; the connection is
    read-only, so the file stays as it is."""
    newer = newer_schema(conn, database)
    if newer is not None:
        conn.close()
        raise click.ClickException(str(newer))


def refuse_buffer_as_output(config: Config, output: Path) -> None:
    """`-o` naming the buffer or a file of its own (its WAL, lock, reserve) would truncate
    it before a row was read: every event, the anonymous id and the ids `forget` must
    reach, gone without a word. One line instead, and nothing touched."""
    database = config.paths.database
    target = output.resolve()
    own = target.parent == database.parent.resolve() and target.name.startswith(f"{database.stem}.")
    with contextlib.suppress(OSError):
        own = own or os.path.samefile(target, database)  # a hard link to it
    if own:
        raise click.ClickException(
            f"{output} is one of the buffer's own files: writing there would destroy the"
            " events it holds; name another file"
        )


@functools.cache
def _warn_foreign_wal(database: Path, reason: str) -> None:
    """Once per command, however many times it reads the buffer."""
    click.echo(
        f"Warning: {database}-wal is not this buffer's write-ahead log ({reason}): "
        "not read, left in place; the daemon moves it aside when it starts",
        err=True,
    )


def _damaged(database: Path, error: sqlite3.Error, running: bool) -> str:
    start = "restart the daemon" if running else "start the daemon (agent-telemetry daemon)"
    return (
        f"{database} is damaged ({error}); {start}: "
        "it keeps the damaged file aside and starts a fresh buffer"
    )


@contextlib.contextmanager
def offline_file(config: Config) -> Iterator[BufferFile]:
    """Write access with the daemon down, as its writer has it (store/offline_writes.py),
    on a full disk too: hold the buffer's lock so no daemon opens it meanwhile. Whatever
    fails is one line naming the file and the way out."""
    store_errors_to_stderr()
    database = config.paths.database
    # The buffer's own lock, the one a daemon takes before it opens the buffer, whatever
    # runtime folder it uses: it cannot start writing the file while this command does.
    lock = DaemonLock(config.paths.buffer_lock)
    try:
        make_private_dirs(config.paths.data_dir)
        lock.acquire()
    except AlreadyRunningError as error:
        raise click.ClickException(f"{error}; try again") from None
    except OSError as error:
        raise click.ClickException(_cannot_write(database, error)) from None
    try:
        try:
            file = offline_writes.open_alone(database)
        except BufferOpenError as error:
            raise click.ClickException(str(error)) from None
        except NewerSchemaError as error:
            raise click.ClickException(str(error)) from None
        except (MigrationError, sqlite3.Error) as error:
            raise click.ClickException(f"cannot open {database}: {error}") from None
        try:
            yield file
            file.restore_reserve()  # as the daemon does, once the disk has room for it
        except (sqlite3.Error, OSError) as error:
            raise click.ClickException(_cannot_write(database, error)) from None
        finally:
            file.close()
    finally:
        lock.release()


def _cannot_write(database: Path, error: sqlite3.Error | OSError) -> str:
    if is_full(error):
        return (
            f"cannot change the buffer at {database}: no space left on device; "
            "free some space on that disk, then run the command again"
        )
    if isinstance(error, sqlite3.Error) and is_corrupt(error):
        return _damaged(database, error, running=False)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"cannot change the buffer at {database}: {reason}"


def store_errors_to_stderr() -> None:
    """The store logs for the daemon's journal (structlog prints to stdout unless told
    otherwise, among a command's output). In a command only its errors are worth a line
    to the user — a foreign WAL or a damaged file moved aside — and on stderr; its
    warnings (the reserve given back, salts not recorded) are the daemon log's detail.
    Applied when a module first logs (lazy_log.py): most commands never load structlog."""
    lazy_log.configure_when_loaded(_errors_to_stderr)


def _errors_to_stderr() -> None:
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, pad_level=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
