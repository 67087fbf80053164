"""The operators' listener: accounts, sessions, CSRF, lock-out, and no route open without a session."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from safebox.protocol import events
from safebox.tools.receiver.console import auth
from safebox.tools.receiver.console.accounts import MAX_FAILURES, Accounts, AccountError

from .console_world import PASSWORD, console_running

HUB = "hub-test-0001"


def _record(store, counter: int = 1, type_: str = "emergency", **data) -> str:
    body = events.make(event_id=f"240ac4000001-{counter}", type=type_, hub_id=HUB, home_id="home-0001",
                       occurred_at=time.time(), device={"id": "240ac4000001", "role": "pendant", "room": "bedroom"},
                       counter=counter, data=data)
    store.record_event(HUB, events.encode(body), body, now=time.time())
    return body["event_id"]


def _example(path: str) -> str:
    return (path.replace("{id}", "1").replace("{action}", "take").replace("{home_id}", "home-0001"))


async def test_every_operator_route_is_refused_without_a_session_and_every_post_without_csrf(tmp_path) -> None:
    async with console_running(tmp_path) as console:
        _record(console.store)
        routes = []
        for route in console.app.router.routes():
            info = route.resource.get_info() if route.resource else {}
            path = info.get("path") or info.get("formatter")
            path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
            for method in ((route.method,) if route.method != "*" else ("GET", "POST")):
                if method != "HEAD":
                    routes.append((method, path))
        public = {(m, p) for m, p in routes if (m, p) in auth.PUBLIC}
        assert public == {("GET", "/login"), ("POST", "/login")}
        guarded = sorted(set(routes) - public)
        # the screen, the feed, alarms, actions, exports, the directory, logout: all there
        assert {("GET", "/"), ("GET", "/live"), ("POST", "/alarms/{id}/{action}"), ("GET", "/alarms/{id}"),
                ("GET", "/alarms/{id}/timeline.csv"), ("GET", "/homes/{home_id}"), ("POST", "/homes/{home_id}"),
                ("POST", "/logout"), ("GET", "/console.js")} <= set(guarded)
        async with console.session() as anonymous:
            for method, path in guarded:
                for accept in ("text/html", "application/json"):
                    async with anonymous.request(method, _example(path), headers={"Accept": accept},
                                                 allow_redirects=False) as r:
                        body = await r.text()
                        assert r.status in (401, 303), (method, path, r.status)
                        if r.status == 303:
                            assert (method, r.headers["Location"]) == ("GET", "/login")
                        assert "240ac4000001" not in body and "home-0001" not in body
        assert console.store.operator_acks(HUB) == []
        async with console.session() as http:
            assert (await console.login(http)).status == 303
            for method, path in guarded:
                if method == "POST":
                    async with http.post(_example(path), data={"text": "x", "csrf": "forged"},
                                         allow_redirects=False) as r:
                        assert r.status == 403, (method, path)
                    async with http.post(_example(path), data={"text": "x"}, allow_redirects=False) as r:
                        assert r.status == 403, (method, path)
            assert console.store.operator_acks(HUB) == []
            async with http.get("/", headers={"Accept": "text/html"}) as r:
                assert r.status == 200 and "240ac4000001" in await r.text()


async def test_login_sets_a_strict_cookie_logout_ends_it_and_taking_up_acks_the_event(tmp_path) -> None:
    async with console_running(tmp_path) as console:
        event_id = _record(console.store)
        async with console.session() as http:
            answer = await console.login(http)
            assert answer.status == 303 and answer.headers["Location"] == "/"
            cookie = answer.headers.getall("Set-Cookie")
            [session] = [c for c in cookie if c.startswith(auth.SESSION_COOKIE)]
            for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
                assert flag in session
            async with http.get("/", headers={"Accept": "text/html"}) as r:
                page = await r.text()
                assert "李明" in page and r.headers["X-Frame-Options"] == "DENY"
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            alarm_id = int(re.search(r'id="alarm-(\d+)"', page).group(1))
            csrf = await console.csrf(http)
            async with http.post(f"/alarms/{alarm_id}/take", data={"csrf": csrf}, allow_redirects=False) as r:
                assert r.status == 303
            [ack] = console.store.operator_acks(HUB)
            assert ack["event_id"] == event_id
            async with http.post(f"/alarms/{alarm_id}/note", headers={"X-CSRF-Token": csrf},
                                 data={"text": "called the daughter"}, allow_redirects=False) as r:
                assert r.status == 303
            # another operator may not resolve what li took up; a supervisor may hand it over
            async with console.session() as other:
                assert (await console.login(other, name="zhou")).status == 303
                token = await console.csrf(other)
                async with other.post(f"/alarms/{alarm_id}/resolve", data={"csrf": token, "outcome": "x"}) as r:
                    assert r.status == 409 and "only they or a supervisor" in await r.text()
            async with console.session() as boss:
                assert (await console.login(boss, name="wang")).status == 303
                token = await console.csrf(boss)
                async with boss.post(f"/alarms/{alarm_id}/handover", data={"csrf": token, "to": "zhou"},
                                     allow_redirects=False) as r:
                    assert r.status == 303
            async with http.get(f"/alarms/{alarm_id}/timeline.csv") as r:
                text = await r.text()
                assert "taken up by li" in text and "called the daughter" in text
                assert "handed over by wang to zhou" in text
            # the home directory, kept on the screen: the queue then names the resident
            async with http.post("/homes/home-0001", data={"csrf": csrf, "name": "王秀英", "phone": "13800000000",
                                                           "address": "幸福路 1 号", "contacts": "女儿 13900000000"},
                                 allow_redirects=False) as r:
                assert r.status == 303
            async with http.get(f"/alarms/{alarm_id}", headers={"Accept": "text/html"}) as r:
                assert "王秀英" in (page := await r.text()) and "13800000000" in page and "女儿" in page
            async with http.post("/logout", data={"csrf": csrf}, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, "/login")
            async with http.get("/", headers={"Accept": "text/html"}, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, "/login")


async def test_wrong_passwords_lock_the_account_and_a_new_password_opens_it(tmp_path) -> None:
    async with console_running(tmp_path) as console:
        async with console.session() as http:
            r = await console.login(http, password="wrong password!")
            assert r.status == 401 and "Wrong name or password." in await r.text()
            r = await console.login(http, name="nobody", password="wrong password!")
            assert r.status == 401 and "Wrong name or password." in await r.text()
            for _ in range(MAX_FAILURES - 2):
                assert (await console.login(http, password="wrong password!")).status == 401
            r = await console.login(http, password="wrong password!")
            assert r.status == 403 and "locked" in await r.text()
            r = await console.login(http)  # the right password, but locked
            assert r.status == 403
            Accounts(console.store).set_password("li", "a new long password")
            assert (await console.login(http, password="a new long password")).status == 303
        # a login form posted without its own cookie's token is refused (login CSRF)
        async with console.session() as other:
            async with other.post("/login", data={"csrf": "x", "name": "li", "password": "a new long password"},
                                  allow_redirects=False) as r:
                assert r.status == 403


def test_operator_commands_read_the_password_from_stdin(tmp_path) -> None:
    db = str(tmp_path / "events.db")

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "safebox.tools.receiver.cli", *args], input=stdin,
                              capture_output=True, text=True, timeout=60)

    assert cli("operator", "add", "--db", db, "zhao", "--role", "supervisor", stdin=PASSWORD + "\n").returncode == 0
    done = cli("operator", "add", "--db", db, "zhao", stdin=PASSWORD + "\n")
    assert done.returncode == 2 and "exists" in done.stderr
    done = cli("operator", "add", "--db", db, "qian", stdin="short\n")
    assert done.returncode == 2 and "at least 10 characters" in done.stderr
    assert cli("operator", "passwd", "--db", db, "zhao", stdin="another long one\n").returncode == 0
    assert "zhao\tsupervisor" in cli("operator", "list", "--db", db).stdout
    assert cli("operator", "remove", "--db", db, "zhao").returncode == 0
    assert cli("operator", "remove", "--db", db, "zhao").returncode == 2
    csv_file = tmp_path / "homes.csv"
    csv_file.write_text("home_id,name,phone,address,contacts\nhome-0001,王秀英,13800000000,幸福路 1 号,女儿 13900000000\n",
                        encoding="utf-8")
    done = cli("homes", "import", "--db", db, str(csv_file))
    assert done.returncode == 0 and "1 home(s)" in done.stdout
    with pytest.raises(AccountError):
        from safebox.tools.receiver.store import Store
        Accounts(Store(db)).add("Bad Name", PASSWORD, now=0)
