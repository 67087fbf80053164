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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from . import i18n, views
from .accounts import Accounts
from .alarms import DEFAULT_TOILET_LIMIT_MIN, LIMIT_FIELD, ActionError, Alarms
from .auth import SESSION_COOKIE, session_of
from .board import Board

log = logging.getLogger("safebox.receiver.console")

_SCRIPT = (Path(__file__).parent / "console.js").read_text(encoding="utf-8")
LOOK_S = 1.0
PAGE = 200  # events taken in between two pushes to the screens
REFRESH_S = 15.0  # panels are pushed at least this often, so ages and lateness move on
HOMES_EVERY_S = 5.0  # the homes overview (heartbeats, last heard) is pushed at most this often


class Feed:
    """One task: projection, silence checks, and two versions every screen waits on: `urgent`
    (the queue or the toilet board changed: pushed at once) and `version` (anything did).

    `wake()` may be called from any thread (the hubs' listener runs in another, thread.py)."""

    def __init__(self, board: Board, alarms: Alarms, clock: Callable[[], float]) -> None:
        self.board = board
        self.alarms = alarms
        self.clock = clock
        self.version = 0
        self.urgent = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._silence_at = float("-inf")
        self.closed = False  # the listener is shutting down: every screen's stream ends

    async def close(self) -> None:
        self.closed = True
        await self._notify()

    def wake(self) -> None:
        loop = self._loop
        if loop is None:  # not running yet: it looks at what is stored when it starts
            return
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the feed's loop has ended
                loop.call_soon_threadsafe(self._wake.set)

    async def changed(self, urgent: bool = True) -> None:
        self.version += 1
        self.urgent += urgent
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, version: int, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.version != version or self.closed)

    def step(self, page: int = PAGE) -> bool:
        """Take in up to `page` stored events (new versions, every screen told, when something
        changed) and, once a second, look for silent hubs; True when more are waiting."""
        before, urgent = self.board.cursor(), self.board.urgent
        with self.board.store.derived():  # rebuilt from the events after a crash: no fsync each time
            self.board.project(page, once=True)
            now = self.clock()
            if now - self._silence_at >= LOOK_S:
                self._silence_at = now
                self.board.check_silence(now)
        if self.board.cursor() != before or self.board.urgent != urgent:
            self.version += 1
            self.urgent += self.board.urgent != urgent
            self._tasks.add(task := asyncio.get_running_loop().create_task(self._notify()))
            task.add_done_callback(self._tasks.discard)
        return self.board.more

    async def run(self) -> None:
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        while True:
            more = False
            try:
                more = self.step()
            except Exception:  # the screen must outlive any one bad moment
                log.exception("console feed")
            if more:  # a backlog (a burst): the screens are pushed between its pages
                await asyncio.sleep(0)
                continue
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

    def urgent_panels(self, lang: str, csrf: str) -> str:
        """The queue and the toilet board, freshly rendered (their alarms are then marked shown)."""
        queue = self.alarms.queue()
        toilet = self.board.toilet()
        homes = [v["home_id"] for v in toilet]
        html = views.text("urgent.html", lang, queue=queue, toilet=toilet, now=self.clock(), csrf=csrf,
                          residents_toilet=self.alarms.residents(homes), toilet_limits=self.alarms.toilet_limits(homes))
        self.alarms.mark_shown([a.id for a in queue if a.shown_at is None], self.clock())
        return html

    def homes_panel(self, lang: str) -> str:
        home_count, homes = self.board.homes()
        return views.text("homes.html", lang, homes=homes, home_count=home_count, now=self.clock(),
                          residents=self.alarms.residents([h["home_id"] for h in homes]))

    async def page(self, request: web.Request) -> web.Response:
        lang = i18n.choose(request)
        while self.feed.step():  # a page never shows less than is stored
            pass
        context = self._context(request)
        return views.render("screen.html", lang, urgent_html=self.urgent_panels(lang, context["csrf"]),
                            homes_html=self.homes_panel(lang), **context)

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=_SCRIPT, content_type="text/javascript", charset="utf-8")

    async def live(self, request: web.Request) -> web.StreamResponse:
        lang = i18n.choose(request)
        csrf = session_of(request).csrf
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        sent_urgent, sent_version, pushed_at, homes_at = -1, -1, 0.0, 0.0
        while not self.feed.closed:
            now = time.monotonic()
            push_urgent = self.feed.urgent != sent_urgent or now - pushed_at >= REFRESH_S
            push_homes = (self.feed.version != sent_version and now - homes_at >= HOMES_EVERY_S) \
                or now - pushed_at >= REFRESH_S
            if not (push_urgent or push_homes):
                due = REFRESH_S - (now - pushed_at)
                if self.feed.version != sent_version:
                    due = min(due, HOMES_EVERY_S - (now - homes_at))
                await self.feed.wait(self.feed.version, max(due, 0.01))
                continue
            if self.accounts.session(request.cookies.get(SESSION_COOKIE, ""), now=self.clock()) is None:
                return response  # logged out, timed out or removed: the screen goes quiet
            out = []
            if push_urgent:
                out.append(("urgent", self.urgent_panels(lang, csrf)))
                sent_urgent = self.feed.urgent
            if push_homes:
                out.append(("homes", self.homes_panel(lang)))
                sent_version, homes_at = self.feed.version, now
            pushed_at = now
            try:
                for name, html in out:
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    await response.write(f"event: {name}\n{data}\n".encode())
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                return response  # the screen was closed
        return response  # the listener is shutting down (the browser reconnects to the next one)

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

    async def home_page(self, request: web.Request, *, error: str | None = None,
                        typed: dict[str, str] | None = None) -> web.Response:
        home_id = request.match_info["home_id"]
        r = typed or self.alarms.resident(home_id) or {f: "" for f in _HOME_FORM}
        return views.render("home.html", i18n.choose(request), home_id=home_id, r=r, error=error,
                            saved=error is None and "saved" in request.query,
                            default_limit=DEFAULT_TOILET_LIMIT_MIN, status=200 if error is None else 400,
                            **self._context(request))

    async def home_save(self, request: web.Request) -> web.Response:
        home_id = request.match_info["home_id"]
        form = await request.post()
        typed = {k: str(form.get(k, "")) for k in _HOME_FORM}
        try:
            self.alarms.set_resident({"home_id": home_id, **typed})
        except ActionError as exc:
            return await self.home_page(request, error=str(exc), typed=typed)
        log.info("operator %s: directory entry of %s saved", session_of(request).operator.name, home_id)
        await self.feed.changed()  # the toilet board's highlight follows the home's limit
        return web.Response(status=303, headers={"Location": f"/homes/{home_id}?saved=1"})


_HOME_FORM = ("name", "phone", "address", "contacts", LIMIT_FIELD)
