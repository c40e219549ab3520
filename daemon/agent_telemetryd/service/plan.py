"""Install and uninstall as an ordered list of steps, planned first and then carried out.

A dry run shows the plan and stops, so what it prints is exactly what a real run does.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent_telemetry._paths import make_private_dirs
from agent_telemetryd.service.layout import Platform, ServiceError
from agent_telemetryd.service.manager import Runner, first_line

__all__ = ["Plan", "Step", "execute", "folder"]


@dataclass(frozen=True)
class Step:
    """One thing install or uninstall does, in order.

    ``kind`` is ``write`` (``path`` gets ``content``, with ``mode``), ``remove`` (``path``
    is deleted), ``mkdir`` (``path`` is created with ``mode`` if missing; an existing
    folder keeps its mode, and ``exists`` says it was there when planned) or ``run``
    (``argv`` is executed; a failure stops the plan unless ``may_fail``, which marks
    clean-up commands whose failure only means there was nothing to clean up). ``shown``
    is what a dry run prints instead of ``content`` when the content holds keys.
    """

    kind: Literal["write", "remove", "mkdir", "run"]
    path: Path | None = None
    content: str | None = None
    argv: tuple[str, ...] = ()
    may_fail: bool = False
    mode: int = 0o644
    shown: str | None = None
    exists: bool = False

    def describe(self) -> str:
        if self.kind == "run":
            return " ".join(self.argv)
        return str(self.path)

    @property
    def printable(self) -> str | None:
        """The content as it may be shown on a terminal or in JSON."""
        return self.shown if self.shown is not None else self.content

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "run":
            return {"run": list(self.argv), "may_fail": self.may_fail}
        data: dict[str, Any] = {self.kind: str(self.path)}
        if self.kind in ("write", "mkdir"):
            data["mode"] = f"{self.mode:04o}"
        if self.kind == "mkdir":
            data["exists"] = self.exists
        if self.content is not None:
            data["content"] = self.printable
        return data


@dataclass(frozen=True)
class Plan:
    """What ``install``/``uninstall`` does (or, in a dry run, would do).

    ``refusals`` are the reasons a real run would stop before changing anything (no
    service manager, an environment file others can read); a dry run reports them.
    """

    action: Literal["install", "uninstall"]
    platform: Platform
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()
    dry_run: bool = False
    refusals: tuple[str, ...] = ()
    # Commands that failed but were allowed to (``may_fail``): command → first error line.
    tolerated: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.steps if s.kind in ("write", "remove") and s.path]

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [s.argv for s in self.steps if s.kind == "run"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "platform": self.platform,
            "dry_run": self.dry_run,
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
            "refusals": list(self.refusals),
            "tolerated_failures": dict(self.tolerated),
        }


def folder(path: Path, mode: int = 0o700) -> Step:
    """A ``mkdir`` step, knowing whether the folder is there already (then it is kept).

    0700 by default, as the XDG base directory spec asks of folders a program makes: a
    folder needs its owner's x bit to be entered (0644 would refuse the unit file written
    into it next), and no one else needs into the user's unit or log folders."""
    return Step("mkdir", path=path, mode=mode, exists=path.is_dir())


def execute(plan: Plan, run: Runner) -> Plan:
    """Carry the steps out in order; the first failure stops with a one-line error."""
    for step in plan.steps:
        try:
            if step.kind == "mkdir" and step.path:
                if step.path in make_private_dirs(step.path):
                    os.chmod(step.path, step.mode)
            elif step.kind == "write" and step.path and step.content is not None:
                _write_atomically(step.path, step.content, step.mode)
            elif step.kind == "remove" and step.path:
                step.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot {step.kind} {step.path}: {exc.strerror or exc}") from exc
        if step.kind != "run":
            continue
        result = run(step.argv)
        if result.returncode == 0:
            continue
        if step.may_fail:
            plan.tolerated[step.describe()] = first_line(result)
            continue
        undo = " (undo with: agent-telemetry service uninstall)" if plan.action == "install" else ""
        raise ServiceError(f"`{step.describe()}` failed: {first_line(result)}{undo}")
    return plan


def _write_atomically(path: Path, content: str, mode: int) -> None:
    # A half-written unit file would be loaded as-is by a concurrent daemon-reload. mkstemp
    # makes the file 0600, so a file meant to be private never exists with a wider mode.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
