"""Bearer keys, compared in constant time against every configured key."""

from __future__ import annotations

import hmac


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def match_key(token: str | None, keys: tuple[str, ...]) -> int | None:
    """Index of the key equal to `token`, else None.

    Every key is compared, so the time taken does not say which key (or how much of it) matched.
    """
    if token is None:
        return None
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates; "surrogatepass"
    # turns them into bytes no UTF-8 key can equal, so such a header is a wrong key (401).
    presented = token.encode("utf-8", "surrogatepass")
    found: int | None = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(presented, key.encode()) and found is None:
            found = index
    return found
