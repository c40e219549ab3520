"""`python -m bench --quick` runs end to end and reports every row: the bench cannot rot.

No figure is checked against a threshold here; these machines are shared and noisy, and
the benchmark's figures are ratios read by people, not pass/fail conditions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OWN_SECTIONS = (
    "overhead",
    "ingest",
    "growth",
    "idle",
    "startup",
    "spool",
    "steady",
    "activation",
)
EXPECTED = {
    "agent overhead": [
        "posthog capture() median (host unreachable)",
        "track() median, daemon up",
        "track() median, daemon down",
        "track() median, daemon SIGSTOPped",
        "track() p99.9, daemon SIGSTOPped",
        "agent run to exit, 10,000 track(), daemon up",
        "agent run to exit, 10,000 track(), daemon down",
        "agent run to exit, 10,000 track(), daemon SIGSTOPped",
    ],
    "ingest": [
        "sqlite3 executemany (ceiling)",
        "ingest.sock, 1 producer",
        "ingest.sock, 4 producers",
        "ingest.sock, 16 producers",
        "ingest.sock, best of the above",
        "HTTP /v1/events, batches of 500",
        "send -> commit p50 (4 x ~5k/s steady)",
        "send -> commit p99 (4 x ~5k/s steady)",
        "scrub one 30 KB value, worst hostile shape",
    ],
    "growth": [
        "flush 1,000 pending, 1,000 sent before",
        "flush 1,000 pending, 10,000 sent before",
        "dashboard query (24 h), 10,000 sent before",
    ],
    "idle": [
        "daemon RSS",
        "daemon RSS after one status request",
        "daemon RSS, mode upload with a sender",
        "daemon RSS vs its dependencies imported",
        "daemon CPU time over 1 s",
        "daemon wake-ups (context switches)",
    ],
    "startup": [
        "exec -> accepting, empty buffer",
        "exec -> accepting, 20,000 pending",
        "agent-telemetry status, daemon running: CPU",
        "agent-telemetry export, 1,000 events, daemon running: CPU",
    ],
    "spool": [
        "agent run to exit, 5,000 track(), daemon SIGSTOPped",
        "events stored once the daemon runs again",
        "spool files at start, 4 x 5,000 events",
    ],
    "steady": [
        f"{rate} events/s, 4 agents: {measure}"
        for rate in ("10,000", "1,000", "100")
        for measure in (
            "daemon CPU, % of one core",
            "daemon peak RSS",
            "daemon wake-ups a second",
            "send -> commit p50",
            "send -> commit p99",
        )
    ]
    + [
        "10,000 events/s: daemon CPU per event",
        "10,000 events/s: daemon CPU, % of one core, against receive + insert alone",
    ],
    "activation": [
        "event sent -> committed, daemon started by it after an idle exit",
        "event sent -> committed, first start (new buffer)",
        "daemon RSS between bursts",
    ],
}


@pytest.mark.timeout(180)
def test_quick_bench_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--idle-seconds", "1",
         "--only", ",".join(OWN_SECTIONS), "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpus"]
    names = {(row["section"], row["name"]) for row in report["rows"]}
    for section, rows in EXPECTED.items():
        for name in rows:
            assert (section, name) in names, f"missing row {section} / {name}"
    # Every own row carries a figure, and the printed table shows each of them.
    for row in report["rows"]:
        assert row["value"] is not None, row
        assert row["name"] in result.stdout


@pytest.mark.timeout(120)
def test_wal_count_names_every_page_a_commit_writes() -> None:
    """`bench.ingest_stages --wal` reads a real WAL back: every committed row's page is
    there, each named by its table or index, and the parts add up to the total."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.ingest_stages", "--wal", "--group", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    record = float(lines[0].split("(")[1].split()[0])
    named = [line.split(" pages of ") for line in lines if " pages of " in line]
    pages = {name: float(count) for count, name in named}
    total = float(lines[-1].split()[0])
    assert {"events", "events_uuid", "events_received"} <= set(pages)
    assert "other" not in pages  # no page left unnamed
    # 20 rows of `record` bytes each need at least that many 4 KiB pages of the table.
    assert pages["events"] >= 20 * record / 4096
    assert abs(sum(pages.values()) - total) < 0.2


@pytest.mark.timeout(120)
def test_cold_work_times_a_turn_back_to_back_and_after_each_pause() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cold_work", "--lines", "1,3", "--runs", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["lines", "a", "read", "after", "0", "ms", "after", "1", "ms",
                              "after", "10", "ms", "after", "50", "ms"]  # fmt: skip
    assert [row.split()[0] for row in rows] == ["1", "3"]
    for row in rows:
        figures = [float(word) for word in row.split("(")[0].split()[1:] if word != "µs"]
        assert len(figures) == 4 and all(figure > 0 for figure in figures)
