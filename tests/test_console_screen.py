"""The screen's content: the queue's order and deadlines, the toilet board, homes, a silent
hub, tests shown as tests, the live feed (SSE), and Chinese with Shanghai times."""

from __future__ import annotations

import asyncio
import time

from safebox.protocol import events
from safebox.tools.receiver.console.alarms import Alarms
from safebox.tools.receiver.console.board import Board

from .console_world import console_running

HUB = "hub-test-0001"
T0 = 1_790_000_000.0  # 2026-09-21 22:13:20 in Shanghai (14:13:20 UTC)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(store, n: int, type_: str, at: float, *, hub: str = HUB, home: str = "home-0001", role: str = "pendant",
           room: str = "bedroom", device: str = "240ac4000001", **data) -> str:
    if type_ in ("hub_heartbeat", "toilet_overdue", "test_alarm"):
        body = events.make(event_id=f"{hub}-{n}", type=type_, hub_id=hub, home_id=home, occurred_at=at,
                           data={**data, **({"device": {"id": device, "role": role, "room": room}}
                                            if type_ == "toilet_overdue" else {})})
    else:
        body = events.make(event_id=f"{device}-{n}", type=type_, hub_id=hub, home_id=home, occurred_at=at,
                           device={"id": device, "role": role, "room": room}, counter=n, data=data)
    store.record_event(hub, events.encode(body), body, now=at + 0.2)
    return body["event_id"]


def test_queue_order_deadlines_toilet_board_and_tests(tmp_path) -> None:
    from safebox.tools.receiver.store import Store
    store = Store(tmp_path / "events.db")
    board, alarms = Board(store), Alarms(store)
    record(store, 1, "life_service", T0)
    record(store, 2, "emergency", T0 + 10)
    record(store, 3, "emergency", T0 + 20, test=True)  # a walk-test press
    record(store, 4, "battery_low", T0 + 30, battery=9)
    record(store, 1, "door_opened", T0 + 40, role="toilet_door", room="toilet", device="240ac4000002")
    record(store, 2, "toilet_occupied", T0 + 40, role="toilet_door", room="toilet", device="240ac4000002")
    board.project()
    queue = alarms.queue()
    assert [(a.kind, a.test) for a in queue] == [("emergency", False), ("life_service", False),
                                                 ("battery_low", False), ("emergency", True)]
    emergency = queue[0]
    assert not emergency.late(T0 + 60) and emergency.late(T0 + 71)  # taken up within 60 s
    assert queue[1].late(T0 + 181) and not queue[1].late(T0 + 179)  # a service request: called back in 3 min
    [inside] = board.toilet()
    assert (inside["home_id"], inside["since"]) == ("home-0001", T0 + 40)
    [home] = board.homes()[1]
    assert {d["role"]: d["battery"] for d in home["devices"]} == {"pendant": 9, "toilet_door": None}
    record(store, 3, "toilet_vacated", T0 + 100, role="toilet_door", room="toilet", device="240ac4000002")
    board.project()
    assert board.toilet() == []
    # the cursor is kept: a second Board on the file takes nothing in twice
    assert Board(store).project() == [] and len(alarms.queue()) == 4
    alarms.resolve(emergency.id, "li", "ambulance sent", T0 + 50)
    steps = [step for _, step, _ in alarms.timeline(emergency.id)]
    assert steps == ["t_occurred", "t_stored", "t_taken", "t_resolved"]
    assert [a["event_id"] for a in store.operator_acks(HUB)] == ["240ac4000001-2"]  # resolving took it up
    store.close()


def test_a_hub_silent_for_three_intervals_is_an_alarm_until_it_is_heard(tmp_path) -> None:
    from safebox.tools.receiver.store import Store
    store = Store(tmp_path / "events.db")
    board, alarms = Board(store), Alarms(store)
    record(store, 1, "hub_heartbeat", T0, interval_s=60, outbox_depth=0)
    board.project()
    assert board.check_silence(T0 + 180) == []
    [opened] = board.check_silence(T0 + 181)
    assert board.check_silence(T0 + 300) == []  # one alarm, not one per look
    assert [a.kind for a in alarms.queue()] == ["hub_silent"] and board.homes()[1][0]["silent"]
    record(store, 2, "hub_heartbeat", T0 + 400, interval_s=60)
    board.project()
    assert alarms.queue() == [] and not board.homes()[1][0]["silent"]
    assert [step for _, step, _ in alarms.timeline(opened)][-1] == "t_cleared"
    store.close()


async def test_an_open_screen_gets_new_alarms_live_in_chinese_with_shanghai_times(tmp_path) -> None:
    clock = Clock(T0 + 60)
    async with console_running(tmp_path, clock=clock) as console:
        async with console.session() as http:
            assert (await console.login(http)).status == 303
            async with http.get("/live?lang=zh-CN") as live:
                assert live.headers["Content-Type"] == "text/event-stream"
                first = await _next_panels(live)
                assert "没有待处理的报警" in first
                assert "家庭 (0)" in await _next_panels(live, "homes")  # the overview follows
                record(console.store, 5, "emergency", T0)
                pushed = await _next_panels(live)  # at once: not waiting for the overview's turn
                assert "紧急求助" in pushed and "59 秒" in pushed  # waited since it was stored
                assert "22:13:20" in pushed  # occurred at, in Shanghai (UTC+8)
                record(console.store, 6, "toilet_occupied", T0, role="toilet_door", room="toilet",
                       device="240ac4000002")
                pushed = await _next_panels(live)
                assert "22:13 起（1 分钟）" in pushed
                assert "家庭 (1)" in await _next_panels(live, "homes", timeout=8)


async def _next_panels(live, event: str = "urgent", timeout: float = 5) -> str:
    """The next pushed `event` (urgent: the queue and toilet board; homes: the overview)."""
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await live.content.readline()).decode().rstrip("\n")
            if line == "" and lines:
                if lines[0] == f"event: {event}":
                    return "\n".join(l.removeprefix("data: ") for l in lines if l.startswith("data: "))
                lines = []
            elif line:
                lines.append(line)


async def test_deadlines_are_configurable_and_the_feed_ends_with_the_session(tmp_path) -> None:
    from safebox.tools.receiver.console.alarms import parse_deadline
    clock = Clock(T0 + 30)
    async with console_running(tmp_path, clock=clock, deadlines=dict([parse_deadline("emergency=20,600")])) as console:
        record(console.store, 5, "emergency", T0)
        record(console.store, 6, "emergency", T0, test=True)
        async with console.session() as http:
            assert (await console.login(http)).status == 303
            async with http.get("/", headers={"Accept": "text/html"}) as r:
                page = await r.text()
            assert page.count("LATE") == 2 and 'data-waiting="1"' in page  # the test pages nobody
            csrf = await console.csrf(http)
            async with http.get("/live") as live:
                await _next_panels(live)
                async with http.post("/logout", data={"csrf": csrf}, allow_redirects=False) as r:
                    assert r.status == 303
                record(console.store, 7, "emergency", T0 + 1)  # a change: the feed looks at the session
                async with asyncio.timeout(5):
                    rest = await live.content.read()  # to its end: the stream ended
                assert b"event: urgent" not in rest  # nothing pushed after the logout


async def test_each_home_has_its_own_toilet_limit_and_the_timeline_shows_the_hubs_store_time(tmp_path) -> None:
    from safebox.tools.receiver.console.alarms import ActionError
    clock = Clock(T0 + 6 * 60)  # six minutes inside: past home-0002's 5, within home-0001's default 10
    async with console_running(tmp_path, clock=clock) as console:
        alarms = Alarms(console.store)
        assert alarms.import_csv("home_id,name,phone,address,contacts,toilet_limit_min\n"
                                 "home-0002,张桂兰,13700000000,幸福路 2 号,儿子,5\n") == 1
        for bad in ("0", "241", "ten", "５"):
            try:
                alarms.import_csv(f"home_id,name,phone,address,contacts,toilet_limit_min\nhome-0003,a,b,c,d,{bad}\n")
            except ActionError as exc:
                assert "line 2: toilet_limit_min" in str(exc)
            else:
                raise AssertionError(f"a limit of {bad!r} minutes was taken")
        for n, home in enumerate(("home-0001", "home-0002")):
            record(console.store, 1, "toilet_occupied", T0, hub=f"hub-test-000{n + 1}", home=home, role="toilet_door",
                   room="toilet", device=f"240ac400000{n + 1}")
        record(console.store, 5, "emergency", T0, hub_stored_at=events.timestamp(T0 + 0.05))
        async with console.session() as http:
            assert (await console.login(http)).status == 303
            async with http.get("/", headers={"Accept": "text/html"}) as r:
                page = await r.text()
            rows = {home: page.split(f'id="toilet-{home}"')[0].rsplit("<tr", 1)[1] for home in ("home-0001", "home-0002")}
            assert "over" not in rows["home-0001"] and 'class="toilet over"' in rows["home-0002"]
            assert "over 5 min" in page and "over 10 min" not in page
            # the directory's form keeps the limit, and refuses one that is not whole minutes
            csrf = await console.csrf(http)
            form = {"csrf": csrf, "name": "王秀英", "phone": "", "address": "", "contacts": ""}
            async with http.post("/homes/home-0001", data={**form, "toilet_limit_min": "half"}) as r:
                assert r.status == 400 and "whole minutes" in await r.text()
            async with http.post("/homes/home-0001", data={**form, "toilet_limit_min": "3"}) as r:
                assert r.status == 200 and 'value="3"' in await r.text()
            async with http.get("/", headers={"Accept": "text/html"}) as r:
                assert "over 3 min" in await r.text()
            [emergency] = [a for a in alarms.queue() if a.kind == "emergency"]
            async with http.get(f"/alarms/{emergency.id}", headers={"Accept": "text/html"}) as r:
                assert "stored at the hub" in await r.text()
        assert [step for _, step, _ in alarms.timeline(emergency.id)][:3] == ["t_occurred", "t_stored_hub", "t_stored"]
