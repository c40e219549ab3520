"""`export` as a user meets it: CSV opened in a spreadsheet, the file it writes, where it
writes when the disk or the folder is not there."""

from __future__ import annotations

import csv
import io

from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events

# Names a spreadsheet would run as formulas if a cell started with them.
FORMULA_NAMES = ['=HYPERLINK("https://example.invalid","open")', "+1+2", "-3+4", "@SUM(1,2)"]


def test_csv_cells_never_start_a_spreadsheet_formula(daemon: DaemonProcess) -> None:
    """Event and agent names are what agents sent: in CSV, one that a spreadsheet would run
    as a formula is written as text (a leading `'`), and JSON keeps it unchanged."""
    url = daemon.http_url()
    post_events(url, [{"event": name} for name in FORMULA_NAMES])
    post_events(url, [{"event": "plain.name"}], headers={"X-Agent-Name": "=cmd|' /C calc'!A0"})
    rows = list(csv.DictReader(io.StringIO(daemon.cli("export", "--format", "csv").stdout)))
    assert [row["event"] for row in rows] == [*("'" + name for name in FORMULA_NAMES), "plain.name"]
    assert rows[-1]["agent"] == "'=cmd|' /C calc'!A0"
    assert all(row["properties"] == "{}" for row in rows)
    as_json = daemon.export()
    assert [row["event"] for row in as_json] == [*FORMULA_NAMES, "plain.name"]
    assert as_json[-1]["agent"] == "=cmd|' /C calc'!A0"
