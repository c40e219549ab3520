"""The README and docs/ name what the program has, and nothing it does not: every setting
and environment variable, every command-line option, every HTTP route of the daemon and of
the reference server, and the shims' functions, each against the code that has them."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

import agent_telemetry
from agent_telemetry_server.cli import main as server_main
from agent_telemetry_server.config import CONFIG_ENV
from agent_telemetry_server.config import Settings as ServerSettings
from agent_telemetry_server.routes_ingest import routes as server_ingest_routes
from agent_telemetry_server.routes_read import routes as server_read_routes
from agent_telemetry_server.team.routes import routes as team_routes
from agent_telemetryd import config as config_module
from agent_telemetryd import dashboard, reload
from agent_telemetryd.analytics.price_overrides import PRICE_KEYS
from agent_telemetryd.cli import main
from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.dashboard import views
from agent_telemetryd.ratelimit import describe_rules
from agent_telemetryd.receivers import (
    api_routes,
    debug_routes,
    http_ingest,
    otlp_routes,
    posthog_capture,
)
from agent_telemetryd.upload import routes as upload_routes
from tests.daemon_process import DaemonProcess
from tests.tools import required_tool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md")}
# Where a user looks for a command's options.
EVERYTHING = "\n\n".join([README, *DOCS.values()])
NODE_SHIM = ROOT / "client_shim" / "node"
# Set by the service definitions `service install` writes, never by a user.
SERVICE_ONLY_VARIABLES = {"AGENT_TELEMETRY_LAUNCHD_SOCKETS"}
VARIABLE = re.compile(r"\bAGENT_TELEMETRY_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def _section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in `text`, each a list of cells (`\\|` inside a
    cell is not a separator); a table's header row, the one above its `|---|` line, is not
    one of them."""
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines):
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        if following.startswith("|") and set(following) <= set("|-: "):
            continue  # a header
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


# -- settings and variables -----------------------------------------------------------------


def _configuration_table() -> list[list[str]]:
    return _rows(_section(README, "Configuration"))


def _code_variables() -> set[str]:
    """Every AGENT_TELEMETRY_ variable the daemon, the CLI or either shim reads, plus the
    other variables the settings take (keys, DO_NOT_TRACK, CI)."""
    sources = [
        path
        for top in ("daemon", "client_shim")
        for suffix in ("*.py", "*.js")
        for path in (ROOT / top).rglob(suffix)
        if "node_modules" not in path.parts and not path.name.endswith(".test.js")
    ]
    found = {name for path in sources for name in VARIABLE.findall(path.read_text("utf-8"))}
    return found | {env for _, _, env, _ in config_module._SETTINGS if env}


def test_every_variable_the_code_reads_is_in_the_configuration_table() -> None:
    documented = {
        name for row in _configuration_table() for name in re.findall(r"`([A-Z][A-Z0-9_]+)", row[0])
    }
    code = _code_variables()
    assert {"AGENT_TELEMETRY_HOME", "AGENT_TELEMETRY_AGENT", "DO_NOT_TRACK", "CI"} <= code
    assert code - SERVICE_ONLY_VARIABLES - documented == set(), "read but not in the table"
    assert documented - code == set(), "in the table but read nowhere"
    for name in SERVICE_ONLY_VARIABLES:
        assert name in DOCS["service.md"]


def test_every_config_key_is_in_the_configuration_table() -> None:
    documented: set[str] = set()
    price_keys: set[str] = set()
    for row in _configuration_table():
        keys = re.findall(r"`([^`]+)`", row[1])
        if keys and keys[0].startswith("[prices."):
            documented.add("prices")
            price_keys.update(keys[1:])
        else:
            documented.update(keys)
    code = {key for _, key, _, _ in config_module._SETTINGS if key}
    assert code - documented == set(), "accepted but not in the table"
    assert documented - code == set(), "in the table but not accepted"
    assert price_keys == {*PRICE_KEYS, "provider"}


def test_each_row_pairs_a_variable_with_the_key_it_sets() -> None:
    pairs = {(env, key) for _, key, env, _ in config_module._SETTINGS if env and key}
    table = {
        (env, key)
        for row in _configuration_table()
        for env, key in zip(
            re.findall(r"`([A-Z][A-Z0-9_]+)", row[0]),
            re.findall(r"`([a-z][a-z_.]+)`", row[1]),
            strict=False,
        )
    }
    assert pairs <= table


def _renderings(value: Any) -> set[str]:
    """How the table may write a default: `100`, `10,000`, `2 GiB`, `1h`, `30s`, `off`."""
    if isinstance(value, bool):
        return {"on"} if value else {"off"}
    if isinstance(value, tuple):
        return {describe_rules(value)}
    if isinstance(value, int):
        found = {str(value), f"{value:,}"}
        for unit, size in (("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3)):
            if value % size == 0:
                found.add(f"{value // size} {unit}")
        return found
    if isinstance(value, float):
        found = {f"{value:g}"}
        for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
            if value % size == 0:
                found.add(f"{value / size:g}{unit}")
        return found
    return {str(value)}


def test_each_default_in_the_configuration_table_is_the_code_default() -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(config_module.Config)}
    by_key = {key: field for field, key, _, _ in config_module._SETTINGS if key}
    checked = []
    for row in _configuration_table():
        keys = [key for key in re.findall(r"`([a-z][a-z_.]+)`", row[1]) if key in by_key]
        cell = row[3].replace("`", "")
        parts = cell.split(", ") if len(cell.split(", ")) == len(keys) else [cell] * len(keys)
        for key, part in zip(keys, parts, strict=True):
            value = defaults[by_key[key]]
            if value is None or value == () or by_key[key] in ("sender", "prices"):
                continue  # no default to state (a key, an endpoint), or stated in words
            shown = [
                r
                for r in _renderings(value)
                if re.search(rf"(?<![\w.,]){re.escape(r)}(?![\w.,])", part)
            ]
            assert shown, f"{key}: the table says {part!r}, the code's default is {value!r}"
            checked.append(key)
    assert {"upload_interval", "store.max_bytes", "limits.ingest_idle_timeout"} <= set(checked)


def test_the_server_configuration_table_lists_every_setting_and_only_those() -> None:
    section = _section(DOCS["server.md"], "Configuration")
    documented = {key for row in _rows(section) for key in re.findall(r"`([a-z_]+)`", row[0])}
    code = {field.name for field in dataclasses.fields(ServerSettings)}
    assert "retention_days" in code
    assert code - documented == set(), "the server reads these but docs/server.md omits them"
    assert documented - code == set(), "docs/server.md lists settings the server does not read"
    for name in ("DATABASE_URL", "TELEMETRY_API_KEYS", "TELEMETRY_READ_KEYS", CONFIG_ENV):
        assert name in section


def test_the_server_api_section_names_every_route_and_only_those() -> None:
    """Every route of the reference server has its heading under "## API" (`GET
    /api/v1/analytics/agents|errors|performance` names three), and the team page is
    described where it is served."""
    code = {
        (route.method, _path(route.path))
        for table in (server_ingest_routes, server_read_routes, team_routes)
        for route in table
    }
    text = DOCS["server.md"]
    headings = re.findall(r"^### `([A-Z]+) ([^`? ]+)", _section(text, "API"), re.M)
    documented = set()
    for method, path in headings:
        stem, _, names = path.rpartition("/")
        for name in names.split("|"):
            documented.add((method, _path(f"{stem}/{name}")))
    api = {(method, path) for method, path in code if not path.startswith("/team")}
    assert len(api) >= 12
    assert api - documented == set(), "served but without a heading in docs/server.md"
    assert documented - api == set(), "a heading in docs/server.md for a route not served"
    assert "`http://HOST:PORT/team`" in text and "team/assets/" in text


# -- command-line options -------------------------------------------------------------------


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def _long_options(command: click.Command) -> list[str]:
    return [
        option
        for param in command.params
        if isinstance(param, click.Option)
        for option in param.opts
        if option.startswith("--") and option != "--help"
    ]


OPTIONS = [
    pytest.param(" ".join(path), param.opts, id=f"{' '.join(path)} {param.opts[-1]}")
    for path, command in [((), main), *_commands(main), *_commands(server_main)]
    for param in command.params
    if isinstance(param, click.Option) and "--help" not in param.opts
]


@pytest.mark.parametrize(("command", "spellings"), OPTIONS)
def test_every_option_is_documented_with_its_command(command: str, spellings: list[str]) -> None:
    """The option follows its command in one code span or line (`report --bucket day`),
    as a user would type it; either spelling (`-o` or `--output`) will do. The reference
    server's commands (`agent-telemetry-server serve`) too."""
    word = re.escape(command.split()[-1] if command else "agent-telemetry")
    typed = [
        re.compile(rf"(?<![\w-]){word}(?![\w-])[^`\n]*(?<![\w-]){re.escape(option)}(?![\w-])")
        for option in spellings
    ]
    assert any(pattern.search(EVERYTHING) for pattern in typed), (
        f"`agent-telemetry {command} {spellings[-1]}` is documented nowhere"
    )


def test_the_commands_table_names_only_options_there_are() -> None:
    by_path = {path: command for path, command in _commands(main)}
    rows = _rows(_section(README, "Commands"))
    assert len(rows) >= len(main.list_commands(click.Context(main)))
    for row in rows:
        usage = row[0].strip("`").replace("\\|", "|")
        words = usage.split()[1:]
        command: click.Command = main
        for length in (2, 1):
            if tuple(words[:length]) in by_path:
                command = by_path[tuple(words[:length])]
                break
        else:
            # `service install|uninstall|status`: the group's subcommands share the row.
            alternatives = words[1].split("|") if len(words) > 1 else []
            if words and alternatives and (words[0], alternatives[0]) in by_path:
                command = by_path[(words[0], alternatives[0])]
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", usage):
            assert flag in _long_options(command) or flag in _long_options(main), (
                f"README: `{usage}` names {flag}, which that command does not have"
            )


# -- HTTP routes ----------------------------------------------------------------------------


def _path(route: str) -> str:
    """`/dashboard/api/{name}` and `/dashboard/api/<view>` alike; a trailing slash aside."""
    return re.sub(r"[{<][^}>]+[}>]", "{}", route).rstrip("/") or "/"


def _code_routes() -> dict[str, tuple[set[str], set[str]]]:
    """Path → (methods, listeners) as the daemon registers them (http_apps.build_apps):
    the ingest routes and the dashboard on both listeners, the CLI's API on api.sock."""
    both = [
        *((route.method, route.path) for route in http_ingest.routes),
        *((route.method, route.path) for route in posthog_capture.routes),
        *(("POST", path) for path in otlp_routes.SIGNAL_PATHS),
        *(("GET", path) for path in dashboard.PATHS),
    ]
    api_only = [
        *(
            (route.method, route.path)
            for table in (api_routes.routes, debug_routes.routes)
            for route in table
        ),
        *((route.method, route.path) for route in upload_routes.routes),
        ("POST", reload.ROUTE),
        *(("GET", path) for path in dashboard.API_SOCKET_ONLY),
    ]
    routes: dict[str, tuple[set[str], set[str]]] = {}
    for listeners, found in (({"api.sock", "port"}, both), ({"api.sock"}, api_only)):
        for method, path in found:
            methods, where = routes.setdefault(_path(path), (set(), set()))
            methods.add(method)
            where.update(listeners)
    return routes


def _documented_routes() -> dict[str, tuple[set[str], set[str]]]:
    """The routes table of docs/architecture.md: `METHOD /path` and where it is served."""
    routes: dict[str, tuple[set[str], set[str]]] = {}
    for row in _rows(_section(DOCS["architecture.md"], "HTTP routes")):
        where = {name for name in ("api.sock", "port") if name in row[1]}
        for method, path in re.findall(r"`([A-Z*]+) (/[^`]*)`", row[0]):
            methods, listeners = routes.setdefault(_path(path), (set(), set()))
            methods.add(method)
            listeners.update(where)
    return routes


def test_the_routes_table_lists_every_route_and_only_those() -> None:
    code = _code_routes()
    assert {"/v1/events", "/v1/status", "/v1/reload", "/dashboard/api/{}"} <= set(code)
    documented = _documented_routes()
    assert set(code) - set(documented) == set(), "served but not in docs/architecture.md"
    assert set(documented) - set(code) == set(), "in docs/architecture.md but not served"
    for path, (methods, listeners) in code.items():
        assert documented[path] == (methods, listeners), path


def test_each_dashboard_view_has_its_section_in_the_api_document() -> None:
    headings = re.findall(r"^## .*$", DOCS["dashboard-api.md"], re.M)
    sections = {
        view for line in headings for view in re.findall(r"`GET /dashboard/api/([^`]+)`", line)
    }
    assert sections == set(views.NAMES)


def _status(url: str) -> int:
    request = urllib.request.Request(url, method="PATCH")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_running_daemon_serves_the_documented_routes_where_documented(
    daemon: DaemonProcess,
) -> None:
    """PATCH, which no route takes but the `*` of PostHog's flags: 405 (or the flags'
    answer) where the path is served, 404 where it is not; nothing is changed."""
    api = ApiClient(daemon.api_socket)
    base = daemon.http_url()
    for path, (_, listeners) in _documented_routes().items():
        concrete = path.replace("{}", "x")
        on_api = api.request("PATCH", concrete)
        on_api.read()
        on_port = _status(base + concrete)
        assert (on_api.status != 404) == ("api.sock" in listeners), (path, on_api.status)
        assert (on_port != 404) == ("port" in listeners), (path, on_port)
    assert api.request("PATCH", "/v1/no-such-route").status == 404


# -- the shims' API -------------------------------------------------------------------------


def _plain_signature(function: Any) -> str:
    """`(*, agent=None, disabled=None)`: as the README writes it, without annotations."""
    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


def test_the_python_shim_table_names_each_export_with_its_signature() -> None:
    section = README[README.index("### The Python shim") : README.index("#### Spans")]
    documented = dict(re.findall(r"^\| `([a-z_]+)(\([^`]*\))", section, re.M))
    named = set(re.findall(r"`([A-Za-z_0-9]+)(?:\(|`)", section))
    for name in agent_telemetry.__all__:
        assert name in named, f"agent_telemetry.{name} is not in the README's table"
    for name in ("span", "current_span", "flush", "stats", "configure"):
        assert documented[name] == _plain_signature(getattr(agent_telemetry, name)), name


def test_the_node_shim_readme_names_each_export() -> None:
    node = required_tool("nodejs", "node")
    script = "console.log(JSON.stringify(Object.keys(require(process.argv[1]))))"
    result = subprocess.run(
        [node, "-e", script, str(NODE_SHIM)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    exports = json.loads(result.stdout)
    text = (NODE_SHIM / "README.md").read_text(encoding="utf-8")
    assert "track" in exports
    for name in exports:
        assert re.search(rf"`{name}\(", text), f"{name} is not in client_shim/node/README.md"
