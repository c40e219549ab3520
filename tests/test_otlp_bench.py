"""`python -m bench --quick --only otlp` runs end to end and reports every OTLP row.

No figure is checked against a threshold: the rows are ratios for people to read, and
the machine running the tests is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    "OTLP/HTTP protobuf, 4 exporters, 512-span batches",
    "spans/s per daemon core used",
    "daemon CPU-seconds per 1,000 spans",
    "per span before the writer: decode, map, mask content, check (opentelemetry-proto, otlp/)",
    "per span before the writer: vocabulary (analytics/vocabulary.py)",
    "per span before the writer: scrub (privacy/scrub.py)",
    "per span before the writer: properties to JSON",
    "daemon RSS, gRPC extra installed, not configured",
    "daemon RSS, gRPC configured (otlp_grpc_port)",
]


@pytest.mark.timeout(300)
def test_quick_otlp_bench_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "otlp", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads(output.read_text())["rows"]}
    assert sorted(rows) == sorted(ROWS)
    for name in ROWS:
        assert rows[name]["value"] is not None and rows[name]["value"] > 0, rows[name]
        assert name in result.stdout
    # A daemon that is not asked for gRPC must not have loaded it, on any machine.
    assert "grpc not loaded" in rows["daemon RSS, gRPC extra installed, not configured"]["note"]
