"""Server-rendered HTML: Jinja2 templates (autoescaped) with the operator's words and zone."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from . import i18n

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ZONE: list[tzinfo] = [i18n.zone(i18n.DEFAULT_ZONE)]  # the platform's zone, set by make_console_app


def text(template: str, lang: str, **context: Any) -> str:
    words = i18n.Words(lang, ZONE[0])
    return _ENV.get_template(template).render(t=words, lang=lang, **context)


def render(template: str, lang: str, *, status: int = 200, **context: Any) -> web.Response:
    response = web.Response(text=text(template, lang, **context), status=status, content_type="text/html",
                            charset="utf-8")
    response.set_cookie(i18n.LANG_COOKIE, lang, path="/", secure=True, samesite="Strict", max_age=365 * 86400)
    return response
