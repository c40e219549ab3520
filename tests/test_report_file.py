"""The static report with names chosen to break out of the data it embeds, opened from
disk in real headless Chromium with the network off."""

from __future__ import annotations

import signal
import stat
import subprocess
from pathlib import Path

from tests.chromium_cdp import chromium
from tests.daemon_process import DaemonProcess
from tests.test_dashboard_browser import post_events, read_page

# The report's data is JSON inside a <script> element: a name that ends that element, or
# opens a comment in it, must stay a name.
BREAKOUT_AGENT = "</script><script>document.body.dataset.pwned = 1</script>"
BREAKOUT_EVENT = "<!--<script>document.body.dataset.pwned = 2</script>-->\u2028end"


async def test_names_that_close_the_script_element_stay_text(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Agent and event names holding `</script>`, `<!--` and a line separator are shown
    as they are; nothing in them runs, and the page reports no problem."""
    post_events(
        daemon,
        [
            {"event": BREAKOUT_EVENT, "agent": BREAKOUT_AGENT},
            {"event": "plain.event", "agent": "planner"},
        ],
    )
    daemon.stop()
    report = tmp_path / "report.html"
    daemon.cli("report", "-o", str(report))
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert BREAKOUT_AGENT not in report.read_text()  # the raw markup is never in the file

    async with chromium(tmp_path / "profile") as page:
        await page.open_offline(report)
        shown = await read_page(page)
        assert shown["agents"] == {BREAKOUT_AGENT: 1, "planner": 1}
        assert shown["names"] == {BREAKOUT_EVENT: 1, "plain.event": 1}
        assert await page.evaluate("document.body.dataset.pwned === undefined") is True
        assert page.requested_urls() == [report.as_uri()]
        assert page.problems() == []


def test_a_daemon_that_does_not_answer_still_gets_a_report(daemon: DaemonProcess) -> None:
    """The report reads the buffer itself; with a daemon that runs but does not answer
    (stopped here), it failed outright ("the daemon did not answer"), where `status`
    and `export` go on from the files. Now it is made from the files, with a warning."""
    post_events(daemon, [{"event": "kept.event", "agent": "planner"}] * 3)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        out = daemon.home / "report.html"
        env = {**daemon.env, "AGENT_TELEMETRY_API_TIMEOUT": "1s"}
        result = subprocess.run(
            [daemon.program, "report", "-o", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (3 events;")
    assert "did not answer" in result.stderr and "read from the files" in result.stderr
    assert "kept.event" in out.read_text()


async def test_an_infinite_sum_does_not_blank_the_report(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Two metric points near the largest double sum to infinity in the metrics view. The
    live dashboard sends that as null; the report embedded `Infinity`, which is not JSON,
    and opened on nothing but a load error. Now it draws, the sum shown as no value."""
    point = {"metric.type": "sum", "metric.temporality": "delta", "metric.value": 1.7e308}
    post_events(
        daemon,
        [
            {"event": "queue.bytes", "agent": "planner", "properties": point},
            {"event": "queue.bytes", "agent": "planner", "properties": {**point, "n": 1}},
        ],
    )
    report = tmp_path / "report.html"
    daemon.cli("report", "-o", str(report))
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(report.as_uri())
        shown = await read_page(page)
        assert shown["agents"] == {"planner": 2}
        assert page.problems() == []
