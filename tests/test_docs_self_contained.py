"""The README and docs/ explain things in their own words: a reader of the repository has
no design file beside it, no section numbers and no issue tracker to follow."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The same pattern as `grep -rnE "DESIGN|\.\./shared|[Ii]ssue [0-9]"`, plus bare section
# numbers (`§9`), which point into the same missing file.
CITATION = re.compile(r"DESIGN|\.\./shared|[Ii]ssue [0-9]|§ ?[0-9]")


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
