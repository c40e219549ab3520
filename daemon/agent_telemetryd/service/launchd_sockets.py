"""Listening sockets handed over by launchd: ``launch_activate_socket(3)`` through ctypes.

A LaunchAgent's ``Sockets`` dictionary makes launchd bind the sockets at load and start
the job when a connection arrives; the job then asks for each socket by its key in that
dictionary::

    int launch_activate_socket(const char *name, int **fds, size_t *cnt);

0 on success with ``*fds`` a malloc'd array of ``*cnt`` descriptors (the caller frees it),
else an errno value: ENOENT (no socket of that name for this job), ESRCH (the caller is
not a launchd job; some macOS releases also answer ESRCH for a name the plist lacks),
EALREADY (this process already took that socket).

The daemon asks only when the LaunchAgent says so (:data:`LAUNCHD_SOCKETS_VARIABLE` in its
``EnvironmentVariables``): a daemon started by hand never calls into launchd, and never
loads ctypes.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["LAUNCHD_SOCKETS_VARIABLE", "activate_socket", "launchd_fds"]

log = logging.getLogger(__name__)

#: Set to ``1`` by the LaunchAgent that holds the sockets; removed once read.
LAUNCHD_SOCKETS_VARIABLE = "AGENT_TELEMETRY_LAUNCHD_SOCKETS"

# launch_activate_socket and free live in libSystem, which every macOS process has loaded.
_LIBSYSTEM = "/usr/lib/libSystem.B.dylib"
# What launch_activate_socket answers for a name the job's plist does not have.
_NOT_IN_PLIST = (errno.ENOENT, errno.ESRCH)


def activate_socket(name: str, library: Any = None) -> list[int]:
    """The descriptors launchd holds for the ``Sockets`` entry ``name``, in launchd's order.

    ``library`` provides ``launch_activate_socket`` and the ``free`` that releases its
    array: libSystem on macOS; elsewhere the symbols already loaded into the process (none,
    unless a library that provides them was preloaded). Raises :class:`OSError` with the
    errno launchd returned, or :class:`AttributeError` when there is no such function.
    """
    import ctypes  # only here: a daemon that launchd did not start never needs it

    library = _default_library() if library is None else library
    int_array = ctypes.POINTER(ctypes.c_int)
    activate = library.launch_activate_socket
    activate.argtypes = (
        ctypes.c_char_p,
        ctypes.POINTER(int_array),
        ctypes.POINTER(ctypes.c_size_t),
    )
    activate.restype = ctypes.c_int
    free = library.free
    free.argtypes = (ctypes.c_void_p,)
    free.restype = None

    array = int_array()
    count = ctypes.c_size_t(0)
    status = activate(name.encode(), ctypes.byref(array), ctypes.byref(count))
    if status != 0:
        raise OSError(status, f"launch_activate_socket({name!r}): {os.strerror(status)}")
    if not array:
        return []
    try:
        return [array[index] for index in range(count.value)]
    finally:
        free(ctypes.cast(array, ctypes.c_void_p))


def launchd_fds(
    names: Iterable[str],
    environ: MutableMapping[str, str] = os.environ,
    library: Any = None,
) -> list[tuple[int, str]]:
    """``(fd, name)`` for every socket launchd holds under one of ``names``.

    Empty unless :data:`LAUNCHD_SOCKETS_VARIABLE` is set, which is then removed from
    ``environ`` so a child process never asks on our behalf. A name the plist lacks is
    skipped (the daemon binds that one itself); anything else that goes wrong is logged
    once and leaves the daemon to bind its own sockets.
    """
    if environ.pop(LAUNCHD_SOCKETS_VARIABLE, None) is None:
        return []
    try:
        library = _default_library() if library is None else library
    except OSError as error:
        log.warning("launchd sockets asked for, but libSystem cannot be loaded (%s)", error)
        return []
    passed: list[tuple[int, str]] = []
    refused: dict[str, int] = {}
    for name in names:
        try:
            fds = activate_socket(name, library)
        except AttributeError:
            log.warning("launchd sockets asked for, but launch_activate_socket is not available")
            return passed
        except OSError as error:
            refused[name] = error.errno or 0
            continue
        passed += [(fd, name) for fd in fds]
    # ENOENT (and, on some releases, ESRCH) only says the plist lacks that name: worth a
    # word when nothing at all came, or when launchd said something else.
    unexpected = any(code not in _NOT_IN_PLIST for code in refused.values())
    if refused and (unexpected or not passed):
        reasons = ", ".join(
            f"{name}: {errno.errorcode.get(code, str(code))}" for name, code in refused.items()
        )
        log.warning("launchd did not hand over sockets (%s); binding them here", reasons)
    return passed


def _default_library() -> Any:
    import ctypes

    if sys.platform == "darwin":
        return ctypes.CDLL(_LIBSYSTEM)
    return ctypes.CDLL(None)
