"""Forward-only schema migrations, versioned with `PRAGMA user_version`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from agent_telemetryd.store.analytics_model_names import KEEP_ASKED_MODELS
from agent_telemetryd.store.analytics_schema import (
    AGENT_ANALYTICS_SCHEMA,
    METRIC_SERIES_FOLLOW_THEIR_POINTS,
)
from agent_telemetryd.store.metric_cells import METRIC_FACTS_INDEX, add_growth_columns


class MigrationError(RuntimeError):
    """The buffer was written by a newer version, or a migration failed."""


class NewerSchemaError(MigrationError):
    """The buffer's schema is newer than this version knows: a newer agent-telemetry wrote
    it, and this one (a downgrade, or an older copy on the PATH) must neither read it as
    its own nor change it. The message names both schema versions and the two ways out."""

    def __init__(self, version: int, path: Path | None = None) -> None:
        self.version = version
        self.path = path
        written = f"{path} was written" if path is not None else "the buffer was written"
        super().__init__(
            f"{written} by a newer agent-telemetry (buffer schema {version}; this version "
            f"reads up to {SCHEMA_VERSION}) and is left as it is: install the newer "
            "agent-telemetry again (e.g. pipx upgrade agent-telemetry), or move the file "
            "aside to start a fresh buffer with this version (its events stay in it)"
        )


# A migration is a SQL script, or a step that needs values only the file can give.
Migration = str | Callable[[sqlite3.Connection], None]

# The dashboard's delete trigger: migration 3 made it, migration 6 remade it with the
# error rule the reference server shares. One text, so the two differ only in that rule.
_DASH_EVENTS_DELETED = """
    CREATE TRIGGER dash_events_deleted AFTER DELETE ON events
    BEGIN
        UPDATE dash_hourly SET events = events - 1, errors = errors - (
            CASE WHEN substr(old.event, -6) = '.error' OR substr(old.event, -7) = '.failed'
                THEN 1
                WHEN NOT json_valid(old.properties) THEN 0
{error_rule}
                WHEN json_extract(old.properties, '$.status') IN ('error', 'failed') THEN 1
                ELSE 0 END)
        WHERE hour = old.received_ms / 3600000 AND agent = old.agent AND event = old.event
            AND old.id <= (SELECT folded_id FROM dash_state);
        DELETE FROM dash_hourly
        WHERE hour = old.received_ms / 3600000 AND agent = old.agent AND event = old.event
            AND events <= 0;
        UPDATE dash_durations SET n = n - 1
        WHERE hour = old.received_ms / 3600000 AND agent = old.agent AND event = old.event
            AND old.id <= (SELECT folded_id FROM dash_state)
            AND json_valid(old.properties)
            AND json_type(old.properties, '$.duration_ms') IN ('integer', 'real')
            AND json_extract(old.properties, '$.duration_ms') >= 0
            AND bucket = (
                WITH v(d) AS (SELECT json_extract(old.properties, '$.duration_ms'))
                SELECT CASE WHEN d < 1000 THEN round(d)
                    WHEN d < 10000 THEN round(d / 10) * 10
                    WHEN d < 100000 THEN round(d / 100) * 100
                    WHEN d < 1000000 THEN round(d / 1000) * 1000
                    WHEN d < 10000000 THEN round(d / 10000) * 10000
                    ELSE round(d / 100000) * 100000 END FROM v);
        DELETE FROM dash_durations
        WHERE hour = old.received_ms / 3600000 AND agent = old.agent AND event = old.event
            AND n <= 0;
        -- SQLite reuses ids above the largest left: once the top rows are gone, new
        -- events could get ids at or below folded_id and never be counted. Lower it.
        UPDATE dash_state SET folded_id = (SELECT coalesce(max(id), 0) FROM events)
        WHERE folded_id > (SELECT coalesce(max(id), 0) FROM events);
    END;
"""
_ERROR_RULE_V3 = """\
                WHEN json_type(old.properties, '$.error') NOT IN ('null', 'false') THEN 1"""
_ERROR_RULE_V6 = """\
                WHEN json_type(old.properties, '$.error') NOT IN ('null', 'false')
                    AND json_extract(old.properties, '$.error') NOT IN (0, '') THEN 1"""


def _dash_events_deleted(error_rule: str) -> str:
    return _DASH_EVENTS_DELETED.replace("{error_rule}", error_rule)


def _coarse_bucket(bucket: str) -> str:
    """The 2-significant-digit bucket of a 3-digit `bucket` column, as migration 4 spells
    it (dashboard_sql.coarse_bucket_sql is the same rule on one line)."""
    return (
        f"CASE WHEN {bucket} < 100 THEN {bucket}\n"
        f"            WHEN {bucket} < 1000 THEN round({bucket} / 10) * 10\n"
        f"            WHEN {bucket} < 10000 THEN round({bucket} / 100) * 100\n"
        f"            WHEN {bucket} < 100000 THEN round({bucket} / 1000) * 1000\n"
        f"            WHEN {bucket} < 1000000 THEN round({bucket} / 10000) * 10000\n"
        f"            WHEN {bucket} < 10000000 THEN round({bucket} / 100000) * 100000\n"
        f"            ELSE round({bucket} / 1000000) * 1000000 END"
    )


def _coarse_bucket_migration(template: str) -> str:
    """Migration 4's text: its six coarse-bucket CASEs come from `_coarse_bucket`."""
    return template.format(
        BUCKET=_coarse_bucket("bucket"),
        NEW=_coarse_bucket("new.bucket"),
        OLD=_coarse_bucket("old.bucket"),
    )


# Each entry moves the schema from version i to i + 1. Never change the SQL of a released
# entry: append a new one, so every existing buffer can be brought forward. (Their comments
# are part of the text, so they name modules as they were: `dashboard/rollup.py` is now
# `store/dashboard_sql.py`.)
# The events table's check on `upload`, as migration 1 wrote it and as migration 10 spells
# it: the same five states, but SQLite evaluates an IN list by building a temporary index
# of it for every row inserted — a third of an insert's instructions — and a chain of
# comparisons for nothing.
_UPLOAD_CHECK_IN = "CHECK (upload IN ('local', 'pending', 'sent', 'rate_limited', 'quarantined'))"
_UPLOAD_CHECK_COMPARED = (
    "CHECK (upload = 'local' OR upload = 'pending' OR upload = 'sent'"
    " OR upload = 'rate_limited' OR upload = 'quarantined')"
)


def _upload_check_compared(conn: sqlite3.Connection) -> None:
    """Rewrite the events table's check in the schema text: it allows exactly what it
    allowed before and nothing stored changes, the case SQLite documents this edit for
    (https://www.sqlite.org/lang_altertable.html, "otherwise"); a table rebuild would copy
    every row of a buffer that may hold millions. Only a speed-up: where SQLite refuses
    schema edits (a build in defensive mode), the check stays as it was."""
    (schema_version,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        edited = conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?)"
            " WHERE type = 'table' AND name = 'events' AND instr(sql, ?) > 0",
            (_UPLOAD_CHECK_IN, _UPLOAD_CHECK_COMPARED, _UPLOAD_CHECK_IN),
        ).rowcount
        if edited:
            # Every connection re-reads the schema when its version moves.
            conn.execute(f"PRAGMA schema_version = {schema_version + 1}")
    except sqlite3.DatabaseError:
        pass  # schema edits refused here: the IN list is as right, only slower
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


def _uploaded_ids_by_backend(conn: sqlite3.Connection) -> None:
    """12: which backend each id was sent to, as the sender names it (`http <endpoint>`,
    `posthog <host>`, `file <path>`): after the config changes sender, `forget` must still
    reach the backend that holds an id's data, not the one configured now. One row per id
    and backend; ids recorded before have '' (not known: the configured backend is asked,
    as before). The trigger on marking sent goes: an id is recorded with its backend
    before its first request leaves (upload/erasure.py), and the trigger, knowing no
    backend, could only add a row saying "not known". A buffer that has the column already
    (its version set back by hand) keeps its rows as they are."""
    conn.execute("DROP TRIGGER IF EXISTS uploaded_ids_on_sent")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(uploaded_ids)")}
    if "backend" in columns:
        return
    for statement in _statements(
        """
        CREATE TABLE uploaded_ids_by_backend (
            anonymous_id TEXT NOT NULL,
            backend TEXT NOT NULL,
            first_sent_ms INTEGER NOT NULL,
            PRIMARY KEY (anonymous_id, backend)
        ) WITHOUT ROWID;
        INSERT INTO uploaded_ids_by_backend (anonymous_id, backend, first_sent_ms)
            SELECT anonymous_id, '', first_sent_ms FROM uploaded_ids;
        DROP TABLE uploaded_ids;
        ALTER TABLE uploaded_ids_by_backend RENAME TO uploaded_ids;
        """
    ):
        conn.execute(statement)


def _refold_agent_analytics(conn: sqlite3.Connection) -> None:
    """14: the agent analytics counted again from the events, by today's rules (an agent's
    own span, `invoke_agent` and the like, had been folded as one more LLM call; metric
    hours kept only their last point). The
    rollups are emptied and the watermark set back, so the background fold counts every
    event again; until it has, the views read the unfolded events themselves, exact as
    ever. agent_facts is dropped and made again from migration 9's text rather than
    emptied: a DELETE would run its trigger once per row, to take from rollups that are
    emptied anyway (dropping a table fires no trigger, and drops its own)."""
    conn.execute("DROP TABLE agent_facts")
    for statement in _statements(AGENT_ANALYTICS_SCHEMA):
        if statement.startswith(("CREATE TABLE agent_facts", "CREATE TRIGGER agent_facts_")):
            conn.execute(statement)
    conn.execute(METRIC_FACTS_INDEX)
    for table in (
        "agent_models",
        "agent_tools",
        "agent_durations",
        "agent_runs",
        "agent_run_models",
        "agent_metric_hours",
    ):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("UPDATE agent_state SET folded_id = 0")


def _keep_asked_models(conn: sqlite3.Connection) -> None:
    """17: the rollups that name a model keep the name asked for too, and every event is
    folded again (store/analytics_model_names.py says why)."""
    for statement in _statements(KEEP_ASKED_MODELS):
        conn.execute(statement)
    conn.execute(METRIC_FACTS_INDEX)


MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL,
        event TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        properties TEXT NOT NULL,
        agent TEXT NOT NULL,
        pid INTEGER,
        transport TEXT NOT NULL,
        consent TEXT NOT NULL,
        upload TEXT NOT NULL
            CHECK (upload IN ('local', 'pending', 'sent', 'rate_limited', 'quarantined')),
        anonymous_id TEXT NOT NULL,
        daemon_version TEXT NOT NULL
    );
    -- Time-ordered (v7) uuids append to this index instead of splitting random pages.
    CREATE UNIQUE INDEX events_uuid ON events (uuid);
    -- The uploader reads pending rows in order; eviction reads the oldest sent rows.
    CREATE INDEX events_upload ON events (upload, id);
    -- Retention and the dashboard's time ranges.
    CREATE INDEX events_received ON events (received_ms);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    """
    -- Why the backend refused an event, so `agent-telemetry quarantine` can say.
    ALTER TABLE events ADD COLUMN quarantine_reason TEXT;
    -- One row per upload request: when, where, how many events, the body's hash, the answer.
    CREATE TABLE upload_receipts (
        id INTEGER PRIMARY KEY,
        sent_ms INTEGER NOT NULL,
        backend TEXT NOT NULL,
        events INTEGER NOT NULL,
        body_sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        http_status INTEGER,
        error TEXT
    );
    """,
    """
    -- Dashboard rollups (dashboard/rollup.py). Events are folded in by id, off the ingest
    -- path, so a trigger on INSERT never slows group commit; `dash_state.folded_id` is how
    -- far the fold got, and queries add the unfolded tail (id > folded_id) live.
    CREATE TABLE dash_state (one INTEGER PRIMARY KEY CHECK (one = 1), folded_id INTEGER NOT NULL);
    INSERT INTO dash_state (one, folded_id) VALUES (1, 0);
    -- Per UTC hour, agent and event name: how many events and how many were errors.
    CREATE TABLE dash_hourly (
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        events INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        PRIMARY KEY (hour, agent, event)
    ) WITHOUT ROWID;
    -- properties.duration_ms as a histogram: bucket = the value kept to 3 significant
    -- digits (whole ms below 1 s), so percentiles are exact below 1 s and within 0.5% above.
    CREATE TABLE dash_durations (
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        bucket REAL NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (hour, agent, event, bucket)
    ) WITHOUT ROWID;
    -- Deletes (retention, eviction, clear) take folded events out of the rollups, and
    -- cells that reach zero go, so a cleared buffer keeps no agent or event names.
    -- The expressions repeat dashboard/rollup.py's ERROR_SQL and BUCKET_SQL (a test
    -- checks they agree). Events never change event, agent, received_ms or properties.
    """
    + _dash_events_deleted(_ERROR_RULE_V3),
    _coarse_bucket_migration(
        """
    -- Long-range duration views (dashboard/aggregates.py). Sorting the hourly histogram
    -- (~400k cells at 1M events) per grouping cost 300-400 ms each; these let them stream.
    -- Per-event and overall percentiles read cells in (event, bucket) order from here, so
    -- a GROUP BY event, bucket walks the index instead of sorting (exact, 3 digits).
    CREATE INDEX dash_durations_by_event ON dash_durations (event, bucket, n);
    -- The over-time chart in day buckets: every agent and event per UTC hour, buckets
    -- kept to 2 significant digits of the 3-digit bucket (whole ms below 100 ms, within
    -- 5.5% above), ~4x fewer cells. Triggers on dash_durations keep it equal to that
    -- table summed, so the fold and the events delete trigger need no change. The
    -- expression repeats dashboard/rollup.py's COARSE_BUCKET_SQL (a test checks).
    CREATE TABLE dash_duration_hours (
        hour INTEGER NOT NULL,
        bucket REAL NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (hour, bucket)
    ) WITHOUT ROWID;
    INSERT INTO dash_duration_hours (hour, bucket, n)
        SELECT hour, {BUCKET}, sum(n)
        FROM dash_durations GROUP BY 1, 2;
    CREATE TRIGGER dash_durations_inserted AFTER INSERT ON dash_durations
    BEGIN
        INSERT INTO dash_duration_hours (hour, bucket, n) VALUES (new.hour, (
            {NEW}), new.n)
        ON CONFLICT (hour, bucket) DO UPDATE SET n = n + excluded.n;
    END;
    -- The fold's upsert and the events delete trigger change n in place.
    CREATE TRIGGER dash_durations_updated AFTER UPDATE OF n ON dash_durations
    BEGIN
        UPDATE dash_duration_hours SET n = n + new.n - old.n
        WHERE hour = new.hour AND bucket = (
            {NEW});
        -- A point lookup: `hour` alone would scan every bucket of the hour per delete.
        DELETE FROM dash_duration_hours WHERE n <= 0 AND hour = new.hour AND bucket = (
            {NEW});
    END;
    CREATE TRIGGER dash_durations_removed AFTER DELETE ON dash_durations
    BEGIN
        UPDATE dash_duration_hours SET n = n - old.n
        WHERE hour = old.hour AND bucket = (
            {OLD});
        -- A point lookup: `hour` alone would scan every bucket of the hour per delete.
        DELETE FROM dash_duration_hours WHERE n <= 0 AND hour = old.hour AND bucket = (
            {OLD});
    END;
    """
    ),
    # 5: every anonymous id something was uploaded under, kept through `clear`, retention
    # and eviction until the backend confirms erasure: `forget` must not lose track of
    # remote data because the local rows that went out are gone.
    """
    CREATE TABLE uploaded_ids (
        anonymous_id TEXT PRIMARY KEY,
        first_sent_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO uploaded_ids (anonymous_id, first_sent_ms)
        SELECT anonymous_id, min(received_ms) FROM events
        WHERE upload = 'sent' AND anonymous_id != '' GROUP BY anonymous_id;
    CREATE TRIGGER uploaded_ids_on_sent AFTER UPDATE OF upload ON events
    WHEN new.upload = 'sent' AND old.upload != 'sent' AND new.anonymous_id != ''
    BEGIN
        INSERT OR IGNORE INTO uploaded_ids (anonymous_id, first_sent_ms)
        VALUES (new.anonymous_id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
    END;
    """,
    # 6: one error rule with the reference server: `properties.error` of 0 or "" is no
    # error. The delete trigger takes the new rule, and the rollups are emptied so the
    # next fold rebuilds them under it (a one-off, like the first fold after an upgrade).
    """
    DROP TRIGGER dash_events_deleted;
    """
    + _dash_events_deleted(_ERROR_RULE_V6)
    + """
    -- dash_duration_hours first: the delete trigger on dash_durations then finds nothing
    -- to take back out, row by row.
    DELETE FROM dash_duration_hours;
    DELETE FROM dash_durations;
    DELETE FROM dash_hourly;
    UPDATE dash_state SET folded_id = 0;
    """,
    # 7: W3C trace context of spans (the shims' and OpenTelemetry's): NULL for other events.
    # The index is partial, so events without a trace cost it nothing on insert; it serves
    # the lookup of one run's spans.
    """
    ALTER TABLE events ADD COLUMN trace_id TEXT;
    ALTER TABLE events ADD COLUMN span_id TEXT;
    ALTER TABLE events ADD COLUMN parent_span_id TEXT;
    CREATE INDEX events_by_trace ON events (trace_id) WHERE trace_id IS NOT NULL;
    """,
    # 8: the upload rate limit shapes instead of discarding: an event over it waits, and
    # `eligible_ms` says when it may go. NULL when it was eligible on arrival, as every
    # event received before this column was. The index is partial, so the events that
    # never wait (nearly all) cost it nothing on insert; it serves counting what waits
    # and reading the limit's recent history back at start.
    """
    ALTER TABLE events ADD COLUMN eligible_ms INTEGER;
    CREATE INDEX events_waiting ON events (eligible_ms) WHERE eligible_ms IS NOT NULL;
    """,
    # 9: agent analytics (store/analytics_fold.py folds, store/analytics_sql.py reads).
    AGENT_ANALYTICS_SCHEMA,
    _upload_check_compared,
    # 11: the (upload, id) index leaves out local rows. Nothing reads local rows by their
    # state: pages of pending rows, the oldest sent ones, the quarantined and rate-limited
    # ones are all in it; status counts local rows as all rows less the others. Before,
    # every event of a buffer without upload consent (where all of them are local) paid
    # for an index entry no query used: ~10% of a row's insert, and four of the ~23 WAL
    # pages a group commit of 100 rows writes. A query naming one of the four states
    # (`upload = 'pending'`) uses the index as it is: SQLite takes such a term to imply
    # this OR of terms spelled the same. Run once on upgrade: building it reads the table.
    """
    DROP INDEX events_upload;
    CREATE INDEX events_upload ON events (upload, id)
        WHERE upload = 'pending' OR upload = 'sent' OR upload = 'rate_limited'
            OR upload = 'quarantined';
    """,
    _uploaded_ids_by_backend,
    # 13: each hour of a metric series keeps, per start time, its first and last point and
    # how much that running total rose inside the hour (store/metric_cells.py).
    add_growth_columns,
    # 14: every event folded again (which also counts 13's columns for past hours).
    _refold_agent_analytics,
    # 15: a metric series goes with its last point (store/analytics_schema.py). After 14,
    # whose emptied hours leave every series to be registered again by the fold.
    METRIC_SERIES_FOLLOW_THEIR_POINTS,
    # 16: the events kept local past the rate limit's backlog, by source, so `status` and
    # the dashboard count them per source by walking this index (upload_queries
    # .rate_limited_sources) instead of sorting every one of them in memory, which a
    # runaway agent can make millions. Partial: no other event pays for it on insert.
    """
    CREATE INDEX IF NOT EXISTS events_rate_limited ON events (agent)
        WHERE upload = 'rate_limited';
    """,
    # 17: a call counted under the model that answered and priced by either name.
    _keep_asked_models,
)

SCHEMA_VERSION = len(MIGRATIONS)


def newer_schema(conn: sqlite3.Connection, path: Path | None = None) -> NewerSchemaError | None:
    """The refusal of a buffer a newer version wrote, for a reader that only looks; None
    when it is this version's or older, or its version does not read (what does not read
    is worded where it is read)."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error:
        return None
    return NewerSchemaError(version, path) if version > SCHEMA_VERSION else None


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration the file has not seen; returns the resulting version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(version)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            step = MIGRATIONS[target - 1]
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back by itself (a full disk): the error that caused it
            # is the one to raise, not a failed ROLLBACK.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our back)."""
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            statements.append(joined.strip())
            current = []
    return [s for s in statements if s]
