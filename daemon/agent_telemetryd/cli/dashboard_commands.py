"""dashboard, report: your own data in a browser, live or as one offline file."""

from __future__ import annotations

import html
import time
import webbrowser
from datetime import datetime
from pathlib import Path

import click

from agent_telemetryd.cli.buffer_access import read_buffer, refuse_buffer_as_output
from agent_telemetryd.cli.common import call_api, daemon_pid, get_config, read_status
from agent_telemetryd.private_file import written_privately


@click.command()
@click.option("--no-browser", is_flag=True, help="Print the URL; do not open a browser.")
def dashboard(no_browser: bool) -> None:
    """Open the local dashboard (a tokenised http://127.0.0.1 URL) in your browser.

    The URL holds the dashboard token: anyone with it can read your events.

    \b
    Example:
        agent-telemetry dashboard --no-browser
    """
    config = get_config()
    if daemon_pid(config) is None:
        raise click.ClickException(
            "the daemon is not running: start it with `agent-telemetry daemon`"
            " (or `agent-telemetry service install`); `agent-telemetry report -o report.html`"
            " works without it"
        )
    url = call_api(config, "GET", "/dashboard/url").get("url")
    if not url:
        raise click.ClickException(
            "the daemon's HTTP listener is off (AGENT_TELEMETRY_HTTP_PORT=off or http_port"
            " in the config), so there is no dashboard URL; set a port and restart the daemon,"
            " or use `agent-telemetry report -o report.html`"
        )
    click.echo(url)
    if not no_browser and not webbrowser.open(_redirect_file(config.paths.runtime_dir, url)):
        click.echo("(no browser found: open the URL above yourself)", err=True)


def _redirect_file(runtime_dir: Path, url: str) -> str:
    """A file:// URL of a private page that forwards to `url`, as Jupyter opens it: the
    browser's command line, which every local user can read in `ps`, never holds the token."""
    page = runtime_dir / "dashboard-open.html"
    target = html.escape(url, quote=True)
    _write_private(
        page,
        f'<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
        f'<meta http-equiv="refresh" content="0;url={target}">'
        f'<title>agent-telemetry</title><a href="{target}">Open the dashboard</a>\n',
    )
    return page.as_uri()


def _write_private(path: Path, text: str) -> None:
    """Readable by the user alone from the first byte, whatever the umask; removed again
    when it cannot be written whole."""
    with written_privately(path) as out:
        out.write(text.encode("utf-8"))


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML file.",
)
@click.option(
    "--since",
    help="Only events from this far back: `30m`, `24h`, `7d`, `2w`, epoch ms or RFC 3339.",
)
@click.option("--until", help="Only events before this time (exclusive), as --since.")
@click.option("--agent", help="Only this agent's events.")
@click.option("--event", "event_name", help="Only events with this name.")
@click.option("--model", help="Models, runs and events: only calls naming this model.")
@click.option("--tool", help="Tools and events: only calls of this tool.")
@click.option(
    "--bucket",
    type=click.Choice(["auto", "minute", "hour", "day"]),
    default="auto",
    show_default=True,
    help="Chart buckets (auto: minutes up to 6 hours, hours up to 3 days, then days).",
)
def report(
    output: Path,
    since: str | None,
    until: str | None,
    agent: str | None,
    event_name: str | None,
    model: str | None,
    tool: str | None,
    bucket: str,
) -> None:
    """Write the dashboard's views into one self-contained HTML file.

    It opens from disk with no server and no network (charts, script and data are all
    inside: the overview, models and cost, tools, the latest runs with their spans, the
    latest events and the metric series), and works with the daemon down: the buffer is
    read read-only. Without --since it holds all the buffer's events.

    \b
    Example:
        agent-telemetry report -o report.html --since 7d
    """
    # Imported when this command runs: `dashboard` only asks the daemon for its URL and
    # must not load the dashboard package (aiohttp, the daemon's context) to do so.
    from agent_telemetryd.analytics.prices import price_book
    from agent_telemetryd.dashboard.filters import Filters
    from agent_telemetryd.dashboard.page import report_page
    from agent_telemetryd.dashboard.views import report_data

    config = get_config()
    refuse_buffer_as_output(config, output)
    now_ms = int(time.time() * 1000)
    offset = datetime.now().astimezone().utcoffset()
    query = {
        "since": since or "",
        "until": until or "",
        "agent": agent or "",
        "event": event_name or "",
        "model": model or "",
        "tool": tool or "",
        "bucket": bucket,
        "tz": str(int(offset.total_seconds() // 60) if offset else 0),
    }
    try:
        filters = Filters.from_query(query, now_ms)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    # A daemon that runs but does not answer (stopped, stuck) is no reason to go without
    # the report, which reads the buffer itself: its health then comes from the files,
    # as `status` tells it.
    status = read_status(config, from_files_if_silent=True)
    if status.get("unanswered"):
        click.echo(f"Warning: {status['unanswered']}; the report is read from the files", err=True)
    with read_buffer(config) as conn:
        data = report_data(conn, filters, status, now_ms, price_book(config.prices))
    try:
        # The report holds event and agent names and counts: the user's data, like the buffer.
        _write_private(output, report_page(data))
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    events = data["totals"]["events"]
    click.echo(f"wrote {output} ({events} events; open it in any browser, no network needed)")
