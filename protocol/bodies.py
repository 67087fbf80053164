"""Reading an HTTP body whole: the one way the receiver reads one (the hub's uplink reads its
answers through h11, whole, in hub/uplink/https.py).

`read(n)` on a stream returns what has arrived so far, which for a body that came in two
TCP segments (or two TLS records) is only its first part: a signed body read that way fails
its Content-Digest, and a JSON answer read that way does not parse. Every body is read here,
to its end, and never beyond `limit + 1` bytes, so a caller can tell "too long" from "whole".
"""

from __future__ import annotations

from typing import Protocol


class Stream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_whole(stream: Stream, limit: int) -> bytes:
    """The body to its end, at most `limit` bytes (pass `limit + 1` to detect an oversized one)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
