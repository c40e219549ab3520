"""The README and docs/ explain things in their own words: a reader of the repository has
no design file beside it, no section numbers and no issue tracker to follow."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The same pattern as `grep -rnE "DESIGN|\.\./shared|[Ii]ssue [0-9]"`, plus bare section
# numbers (`§9`), which point into the same missing file.
CITATION = re.compile(r"DESIGN|\.\./shared|[Ii]ssue [0-9]|§ ?[0-9]")
# In code, `§` also cites RFCs and SQLite's file format, which a reader can look up.
CODE_CITATION = re.compile(r"DESIGN\b|\.\./shared|[Ii]ssue [0-9]")


def _documents() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*") if p.is_file())
    return [ROOT / "README.md", ROOT / "client_shim" / "node" / "README.md", *docs]


def test_the_documents_are_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _documents()}
    assert {"README.md", "docs/architecture.md", "client_shim/node/README.md"} <= names


def test_no_document_cites_what_a_reader_does_not_have() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _documents()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CITATION.search(line)
    ]
    assert not found, "\n".join(found)


def test_no_source_comment_cites_what_a_reader_does_not_have() -> None:
    """Docstrings and comments too: a reader of the code has the code and docs/ only."""
    sources = [
        path
        for top in ("daemon", "client_shim", "server", "bench", "scripts")
        for suffix in ("*.py", "*.js", "*.html")
        for path in (ROOT / top).rglob(suffix)
        if "node_modules" not in path.parts
    ]
    assert len(sources) > 100
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CODE_CITATION.search(line)
    ]
    assert not found, "\n".join(found)
