"""The form every POST must have before its body is read: one check for every endpoint.

Judged from the raw headers, not aiohttp's parsed view: a Content-Type aiohttp cannot
parse, or a Content-Encoding it would try to undo, must end in the SPEC's JSON refusal,
never in a 500 or aiohttp's plain-text 400.
"""

from __future__ import annotations

from aiohttp import web

from safebox.protocol.signing import CONTENT_TYPE


def problem(request: web.Request) -> str | None:
    """Why this request cannot be read (answer 415), or None."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        # The digest covers the bytes as sent; nothing is decompressed.
        return "Content-Encoding is not supported"
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type != CONTENT_TYPE:
        shown = request.headers.get("Content-Type", "")[:80]
        return f"Content-Type must be {CONTENT_TYPE}, got {shown!r}"
    return None
