"""Whether the config file may be used at all: one that others can change, or one that
holds an API key others can read, is not.

Others who can change the file decide where events go (an endpoint of their own on this
machine's loopback) and with which key; a key others can read is theirs to use. Either
way nothing in the file can be trusted to be the user's, so the daemon refuses to start
on it and every other command runs as if it were not there — the same settings whichever
program reads them, and never the key in it. One thing in it is still honoured:
`mode = "off"`, since keeping and sending less is safe whoever wrote it, and ignoring a
user's off would collect against their choice.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent_telemetryd.config_problems import ConfigProblem

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY = 0o077  # a key is private only when no one else has any access


def unsafe_file_problems(
    path: Path, held_keys: Sequence[str], my_uid: int | None = None
) -> list[ConfigProblem]:
    """A problem for each reason the config file at `path` must not be used; `held_keys`
    are the secret settings it has a value for."""
    try:
        info = path.stat()
    except OSError:
        return []  # no file (or none to read): nothing from it is used anyway
    uid = os.getuid() if my_uid is None else my_uid
    mode = stat.S_IMODE(info.st_mode)
    not_used = "the file is not used (every setting in it at its default but mode off)"
    problems = []
    if info.st_uid != uid:
        fix = f"cp {path} {path}.mine && mv {path}.mine {path} && chmod 600 {path}"
        problems.append(
            ConfigProblem(
                str(path),
                "",
                f"belongs to uid {info.st_uid}, not you, so its owner decides where your "
                f"events go: {not_used} until it is yours; run: {fix}",
                others_can_write=True,
                fix=fix,
            )
        )
    elif others_can_change(info, uid) is not None:
        fix = f"chmod 600 {path}"
        problems.append(
            ConfigProblem(
                str(path),
                "",
                f"others can change this file (mode {mode:o}), and with it where your events "
                f"go: {not_used} until only you can; run: {fix}",
                others_can_write=True,
                fix=fix,
            )
        )
    if held_keys and mode & _OTHERS_ANY:
        fix = f"chmod 600 {path}"
        problems.append(
            ConfigProblem(
                str(path),
                held_keys[0],
                f"an API key in a file others can read (mode {mode:o}): {not_used} "
                f"until it is private; run: {fix}",
                exposes_secret=True,
                fix=fix,
            )
        )
    return problems


def others_can_change(info: os.stat_result, uid: int) -> str | None:
    """Who besides `uid` could change a file (its `os.stat`): its owner, when that is
    someone else, or group and others by its mode (the user's own group aside); None when
    no one could."""
    if info.st_uid != uid:
        return f"belongs to uid {info.st_uid}"
    mode = stat.S_IMODE(info.st_mode)
    if mode & _OTHERS_WRITE and not (mode & stat.S_IWOTH == 0 and _private_group(info.st_gid, uid)):
        return f"others can change it (mode {mode:o})"
    return None


def _private_group(gid: int, uid: int) -> bool:
    """True when group `gid` is the user's own: their primary group, named as they are, with
    no other member. Systems that give every user such a group often set umask 002, so
    files an editor makes are group-writable (664) without anyone else being able to write
    them; refusing those would refuse a safe file."""
    try:
        user = pwd.getpwuid(uid)
        group = grp.getgrgid(gid)
    except KeyError:
        return False  # a group or user the system cannot name: not known to be private
    return (
        gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}
    )


def what_an_unsafe_file_may_say(document: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an unsafe file that is still used: `mode = "off"`, and nothing else."""
    mode = document.get("mode")
    if isinstance(mode, str) and mode.strip().lower() == "off":
        return {"mode": mode}
    return {}
