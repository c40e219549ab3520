"""Which backend URLs the daemon may talk to. Pure: no I/O.

Events leave the machine only over TLS. Plain http is allowed to loopback alone, for a
backend (or a test double) on this machine, where there is no network to eavesdrop on.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class EndpointError(ValueError):
    """The URL cannot be used; the message names the setting and the fix."""


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, setting: str) -> str:
    """The URL without a trailing slash; raises EndpointError unless https or loopback http."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointError(f"{setting}: {url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise EndpointError(f"{setting}: put credentials in the API key setting, not the URL")
    if parts.query or parts.fragment:
        raise EndpointError(f"{setting}: the URL must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise EndpointError(
            f"{setting}: {parts.hostname} is not loopback; use https:// "
            "(plain http is allowed only to 127.0.0.1, ::1 or localhost)"
        )
    return url.strip().rstrip("/")
