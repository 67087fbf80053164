"""The operator's pages and actions, and the live feed that keeps open screens current.

The `Feed` task takes in stored events as soon as the hubs' listener stores them (the store
wakes it; it also looks every second, and checks for silent hubs), then pushes freshly
rendered panels to every open screen over Server-Sent Events (`GET /live`), in each
screen's language. Every action is a form POST with the session's CSRF token, answered
with a redirect (so a reload does not repeat it).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from . import i18n, views
from .accounts import Accounts
from .alarms import ActionError, Alarms
from .auth import SESSION_COOKIE, session_of
from .board import TOILET_LIMIT_S, Board

log = logging.getLogger("safebox.receiver.console")

_SCRIPT = (Path(__file__).parent / "console.js").read_text(encoding="utf-8")
LOOK_S = 1.0
REFRESH_S = 15.0  # panels are pushed at least this often, so ages and lateness move on


class Feed:
    """One task: projection, silence checks, and a version every screen waits on."""

    def __init__(self, board: Board, alarms: Alarms, clock: Callable[[], float]) -> None:
        self.board = board
        self.alarms = alarms
        self.clock = clock
        self.version = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()

    def wake(self) -> None:
        self._wake.set()

    async def changed(self) -> None:
        self.version += 1
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, version: int, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.version != version)

    def step(self) -> bool:
        before = self.board.cursor()
        opened = self.board.project()
        opened += self.board.check_silence(self.clock())
        return bool(opened) or self.board.cursor() != before

    async def run(self) -> None:
        while True:
            try:
                if self.step():
                    await self.changed()
            except Exception:  # the screen must outlive any one bad moment
                log.exception("console feed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOOK_S):
                    await self._wake.wait()
            self._wake.clear()


class Screen:
    def __init__(self, feed: Feed, accounts: Accounts, clock: Callable[[], float]) -> None:
        self.feed = feed
        self.alarms = feed.alarms
        self.board = feed.board
        self.accounts = accounts
        self.clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([
            web.get("/", self.page), web.get("/live", self.live), web.get("/console.js", self.script),
            web.get("/alarms/{id:\\d+}", self.alarm_page),
            web.get("/alarms/{id:\\d+}/timeline.csv", self.timeline_csv),
            web.post("/alarms/{id:\\d+}/{action:take|note|handover|resolve}", self.act),
            web.get("/homes/{home_id}", self.home_page), web.post("/homes/{home_id}", self.home_save),
        ])

    def _context(self, request: web.Request) -> dict[str, Any]:
        session = session_of(request)
        return {"me": session.operator, "csrf": session.csrf, "now": self.clock()}

    def panels(self, lang: str, csrf: str) -> str:
        self.feed.step()  # never show less than is stored
        queue = self.alarms.queue()
        home_count, homes = self.board.homes()
        residents = self.alarms.residents([h["home_id"] for h in homes])
        toilet = self.board.toilet()
        html = views.text("panels.html", lang, queue=queue, toilet=toilet, homes=homes, home_count=home_count,
                          residents=residents, residents_toilet=self.alarms.residents([v["home_id"] for v in toilet]),
                          now=self.clock(), csrf=csrf, toilet_limit=TOILET_LIMIT_S)
        self.alarms.mark_shown([a.id for a in queue if a.shown_at is None], self.clock())
        return html

    async def page(self, request: web.Request) -> web.Response:
        lang = i18n.choose(request)
        context = self._context(request)
        return views.render("screen.html", lang, panels_html=self.panels(lang, context["csrf"]), **context)

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=_SCRIPT, content_type="text/javascript", charset="utf-8")

    async def live(self, request: web.Request) -> web.StreamResponse:
        lang = i18n.choose(request)
        csrf = session_of(request).csrf
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        version = -1
        while True:
            if version == self.feed.version:
                await self.feed.wait(version, REFRESH_S)
            version = self.feed.version
            if self.accounts.session(request.cookies.get(SESSION_COOKIE, ""), now=self.clock()) is None:
                return response  # logged out, timed out or removed: the screen goes quiet
            html = self.panels(lang, csrf)
            data = "".join(f"data: {line}\n" for line in html.splitlines())
            try:
                await response.write(f"event: panels\n{data}\n".encode())
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                return response  # the screen was closed

    def _alarm_id(self, request: web.Request) -> int:
        return int(request.match_info["id"])

    async def alarm_page(self, request: web.Request, *, error: str | None = None) -> web.Response:
        try:
            alarm = self.alarms.get(self._alarm_id(request))
        except ActionError:
            raise web.HTTPNotFound(text="no such alarm") from None
        return views.render("alarm.html", i18n.choose(request), a=alarm, error=error,
                            timeline=self.alarms.timeline(alarm.id), operators=self.accounts.list(),
                            status=200 if error is None else 409, **self._context(request))

    async def act(self, request: web.Request) -> web.Response:
        alarm_id, action = self._alarm_id(request), request.match_info["action"]
        operator = session_of(request).operator
        me = operator.name
        form = await request.post()
        now = self.clock()
        try:
            owner = self.alarms.get(alarm_id).taken_by
            if action in ("handover", "resolve") and owner not in (None, me) and operator.role != "supervisor":
                raise ActionError(f"{owner} has taken this alarm up: only they or a supervisor may {action} it")
            if action == "take":
                self.alarms.take(alarm_id, me, now)
            elif action == "note":
                self.alarms.note(alarm_id, me, str(form.get("text", "")), now)
            elif action == "handover":
                to = str(form.get("to", ""))
                if to not in {o.name for o in self.accounts.list()}:
                    raise ActionError(f"no operator {to!r}")
                self.alarms.hand_over(alarm_id, me, to, now)
            else:
                self.alarms.resolve(alarm_id, me, str(form.get("outcome", "")), now)
        except ActionError as exc:
            return await self.alarm_page(request, error=str(exc))
        log.info("operator %s: %s alarm %d", me, action, alarm_id)
        await self.feed.changed()
        back = "/" if action == "take" and request.query.get("from") != "alarm" else f"/alarms/{alarm_id}"
        return web.Response(status=303, headers={"Location": back})

    async def timeline_csv(self, request: web.Request) -> web.Response:
        try:
            alarm = self.alarms.get(self._alarm_id(request))
        except ActionError:
            raise web.HTTPNotFound(text="no such alarm") from None
        words = i18n.Words(i18n.choose(request), views.ZONE[0])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["alarm", "type", "home", "device", "event_id", "time", "step"])
        for at, step, values in self.alarms.timeline(alarm.id):
            writer.writerow([alarm.id, alarm.kind, alarm.home_id, alarm.device_id or alarm.hub_id,
                             alarm.event_id or "", words.stamp(at), words(step, **values)])
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="alarm-{alarm.id}-timeline.csv"'})

    async def home_page(self, request: web.Request) -> web.Response:
        home_id = request.match_info["home_id"]
        r = self.alarms.resident(home_id) or {f: "" for f in ("name", "phone", "address", "contacts")}
        return views.render("home.html", i18n.choose(request), home_id=home_id, r=r, **self._context(request))

    async def home_save(self, request: web.Request) -> web.Response:
        home_id = request.match_info["home_id"]
        form = await request.post()
        self.alarms.set_resident({"home_id": home_id, **{k: str(form.get(k, "")) for k in
                                                         ("name", "phone", "address", "contacts")}})
        log.info("operator %s: directory entry of %s saved", session_of(request).operator.name, home_id)
        await self.feed.changed()
        return web.Response(status=303, headers={"Location": f"/homes/{home_id}"})
