"""A released migration's SQL never changes: buffers already at version N were made by
exactly that text, and every later migration assumes it. Each entry is compared with
the text it was released with (by hash), so a refactor of how the text is put together
cannot change what it says."""

from __future__ import annotations

import hashlib

from agent_telemetryd.store.migrations import MIGRATIONS

RELEASED = {
    1: "b75df1c41b2de18ddb967966e704f8f841d847c3ed2dfdaad295acd9873093ef",
    2: "d289dac512dbd34c5c7bb9d73c39198769a62cc918f3bbe4b0873610ab59669e",
    3: "4300d27d86aec46b0ba710882eb0ba12976dd52d682844203c61538c84dc4579",
    4: "e85766c8e8a33438b8e2559425796860c78da4486f669b671402b4a6c82073f0",
    5: "524af2aa09543110c9286eaaa8945eef6626ce7c47011652100486a8260a2e0a",
    6: "bbacd54d9574ca3f36623647a4e454d9800811c97d7184512d6400e965964f74",
}


def test_released_migrations_keep_their_text() -> None:
    found = {
        version: hashlib.sha256(text.encode()).hexdigest()
        for version, text in enumerate(MIGRATIONS, start=1)
        if version in RELEASED
    }
    assert found == RELEASED


def test_migration_4_spells_each_coarse_bucket_as_released() -> None:
    """The six coarse-bucket CASE expressions now come from one helper; the text around
    the trigger's `new.bucket` is the released one, line breaks and indentation included."""
    expected = (
        "        UPDATE dash_duration_hours SET n = n + new.n - old.n\n"
        "        WHERE hour = new.hour AND bucket = (\n"
        "            CASE WHEN new.bucket < 100 THEN new.bucket\n"
        "            WHEN new.bucket < 1000 THEN round(new.bucket / 10) * 10\n"
        "            WHEN new.bucket < 10000 THEN round(new.bucket / 100) * 100\n"
        "            WHEN new.bucket < 100000 THEN round(new.bucket / 1000) * 1000\n"
        "            WHEN new.bucket < 1000000 THEN round(new.bucket / 10000) * 10000\n"
        "            WHEN new.bucket < 10000000 THEN round(new.bucket / 100000) * 100000\n"
        "            ELSE round(new.bucket / 1000000) * 1000000 END);\n"
    )
    assert expected in MIGRATIONS[3]
    assert MIGRATIONS[3].count("CASE WHEN") == 6
    assert "{" not in MIGRATIONS[3]
