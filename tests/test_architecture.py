"""The daemon's shape, read from its source with `ast`.

Data flows one way: receivers → ingest → store → upload → senders. Senders know nothing
of SQLite or of the uploader; the store reaches up to none of the parts that use it; and
the store owns the `events` table: its SQL and the names of its upload states appear
nowhere else. Each check first proves it can fail (on a snippet that breaks the rule) and
that it looked at real code, so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent_telemetryd

PACKAGE = Path(agent_telemetryd.__file__).resolve().parent
ROOT = "agent_telemetryd"
UPLOAD_STATES = frozenset({"local", "pending", "sent", "rate_limited", "quarantined"})
EVENTS_SQL = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|ON)\s+events\b")
QUOTED_STATE = re.compile(r"'(?:local|pending|sent|rate_limited|quarantined)'")
# Imports that would send data flow backwards, by the package they start in.
FORBIDDEN = {
    "senders": ("upload", "receivers", "ingest", "store", "dashboard"),
    "store": ("upload", "senders", "receivers", "ingest", "dashboard", "config", "consent"),
    "receivers": ("upload", "senders"),
}


def _modules() -> dict[str, ast.Module]:
    """Every module of the package, by path relative to it ("senders/http.py")."""
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


MODULES = _modules()


def _dotted(relative: str) -> str:
    parts = [ROOT, *Path(relative).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, relative: str) -> set[str]:
    """Every module name `tree` imports, absolute; `from a import b` counts `a` and `a.b`
    (b may be a submodule). Relative imports are resolved against the module's package."""
    package = _dotted(relative).split(".")
    if not relative.endswith("__init__.py"):
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def backward_imports(tree: ast.Module, relative: str) -> list[str]:
    """The imports of the module at `relative` that go against the flow of data."""
    top = relative.split("/")[0]
    banned = [f"{ROOT}.{name}" for name in FORBIDDEN.get(top, ())]
    return sorted(
        name
        for name in imported(tree, relative)
        if any(name == b or name.startswith(b + ".") for b in banned)
    )


def _strings(tree: ast.Module) -> Iterator[tuple[ast.Constant, ast.AST | None]]:
    """Every string constant with its parent node (f-string parts included)."""
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                yield child, parent


def events_sql(tree: ast.Module) -> list[str]:
    return [node.value for node, _ in _strings(tree) if EVENTS_SQL.search(node.value)]


def _mode_names(tree: ast.Module) -> set[int]:
    """ids of the constants that define the consent modes (`class Mode`): `local` is a
    mode's name too, and this is the one place it may be spelled."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Mode":
            found.update(id(child) for child in ast.walk(node) if isinstance(child, ast.Constant))
    return found


def _is_key_lookup(parent: ast.AST | None, node: ast.Constant) -> bool:
    """`mapping.get("sent")`: a field name too."""
    return (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Attribute)
        and parent.func.attr in ("get", "pop", "setdefault")
        and bool(parent.args)
        and parent.args[0] is node
    )


def _is_environment_value(parent: ast.AST | None, node: ast.Constant) -> bool:
    """`("GEMINI_TELEMETRY_TARGET", "local")`: another program's setting, not a state."""
    if not isinstance(parent, ast.Tuple) or len(parent.elts) != 2 or parent.elts[1] is not node:
        return False
    name = parent.elts[0]
    return isinstance(name, ast.Constant) and bool(
        isinstance(name.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", name.value)
    )


def upload_state_literals(tree: ast.Module) -> list[str]:
    """Upload states written as text: a bare `"pending"` used as a value (dict keys and
    subscripts are field names, as in `status["sent"]`; an environment variable's value is
    another program's word), or a quoted state inside SQL."""
    modes = _mode_names(tree)
    found = []
    for node, parent in _strings(tree):
        if QUOTED_STATE.search(node.value):
            found.append(node.value)
            continue
        if node.value not in UPLOAD_STATES or id(node) in modes:
            continue
        if isinstance(parent, ast.Dict) and any(key is node for key in parent.keys):
            continue
        if isinstance(parent, ast.Subscript) and parent.slice is node:
            continue
        if _is_key_lookup(parent, node) or _is_environment_value(parent, node):
            continue
        found.append(node.value)
    return found


def _outside_store() -> dict[str, ast.Module]:
    return {path: tree for path, tree in MODULES.items() if not path.startswith("store/")}


def test_the_package_was_read() -> None:
    folders = {path.split("/")[0] for path in MODULES if "/" in path}
    assert {"senders", "upload", "store", "receivers", "dashboard", "cli"} <= folders
    assert len([p for p in MODULES if p.startswith("senders/")]) >= 6
    assert len(MODULES) >= 60


def test_the_checks_catch_what_they_forbid() -> None:
    sender = ast.parse(
        "from agent_telemetryd.upload.batching import OutboundBatch\n"
        "from ..store import queries\n"
        "import agent_telemetryd.receivers.http_ingest\n"
    )
    assert backward_imports(sender, "senders/example.py") == [
        "agent_telemetryd.receivers.http_ingest",
        "agent_telemetryd.store",
        "agent_telemetryd.store.queries",
        "agent_telemetryd.upload.batching",
        "agent_telemetryd.upload.batching.OutboundBatch",
    ]
    assert backward_imports(ast.parse("from ..config import Config\n"), "store/x.py") == [
        "agent_telemetryd.config",
        "agent_telemetryd.config.Config",
    ]
    outside = ast.parse(
        "def f(conn, row, report):\n"
        "    conn.execute(f\"UPDATE events SET upload = 'sent' WHERE id = {row}\")\n"
        "    counts = {'sent': 1}\n"  # a field name: allowed
        "    total = report['quarantined'] + report.get('rate_limited', 0)\n"  # field names
        "    return row.upload == 'pending'\n"
    )
    assert events_sql(outside) == ["UPDATE events SET upload = 'sent' WHERE id = "]
    assert sorted(upload_state_literals(outside)) == [
        "UPDATE events SET upload = 'sent' WHERE id = ",
        "pending",
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_goes_against_the_flow_of_data(package: str) -> None:
    checked = {p: t for p, t in MODULES.items() if p.startswith(package + "/")}
    assert len(checked) >= 3, f"found too few modules under {package}/"
    wrong = {path: backward_imports(tree, path) for path, tree in checked.items()}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_senders_reach_only_shared_leaves_of_the_package() -> None:
    """What senders use of the package: the batch types, the config, themselves."""
    used = set()
    for path, tree in MODULES.items():
        if path.startswith("senders/"):
            used |= {n for n in imported(tree, path) if n.startswith(ROOT + ".")}
    assert f"{ROOT}.outbound" in used  # the batches senders turn into requests
    assert not {n for n in used if n.startswith(f"{ROOT}.upload")}


def test_sql_on_the_events_table_lives_in_the_store() -> None:
    in_store = {p: events_sql(t) for p, t in MODULES.items() if p.startswith("store/")}
    holders = {path for path, found in in_store.items() if found}
    assert {
        "store/group_commit.py",
        "store/rows.py",
        "store/queries.py",
        "store/upload_queries.py",
        "store/dashboard_sql.py",
    } <= holders
    assert sum(len(found) for found in in_store.values()) >= 20
    elsewhere = {path: events_sql(tree) for path, tree in _outside_store().items()}
    assert {path: found for path, found in elsewhere.items() if found} == {}


def test_upload_states_are_named_only_in_the_store() -> None:
    in_store = [
        s for p, t in MODULES.items() if p.startswith("store/") for s in upload_state_literals(t)
    ]
    assert set(UPLOAD_STATES) <= set(in_store)  # UploadState is defined there
    elsewhere = {path: upload_state_literals(tree) for path, tree in _outside_store().items()}
    assert {path: found for path, found in elsewhere.items() if found} == {}
