"""The operator screen in a real browser (Debian's headless Chromium via Selenium) on the
simulated home: the real pendant and door firmware on the micropython binary, the hub and
the receiver as their own processes over TLS. Screenshots land in build/screenshots/."""

from __future__ import annotations

import asyncio
import re

from safebox.tools.browser import Browser
from safebox.tools.sim.home import SimHome

PASSWORD = "correct horse battery"


async def test_login_live_alarm_take_up_to_the_pendant_toilet_board_and_chinese(tmp_path) -> None:
    home = SimHome(tmp_path / "home", console=True)
    home.hub_settings = {"relay": {"operator_poll_s": 1}}  # the hub asks for operator acks every 1 s
    async with home:
        await home.add_operator("li", PASSWORD)
        pendant = await home.add_device("pendant", "bedroom", settings={"heartbeat_s": 3})
        toilet = await home.add_device("toilet_door", "toilet")
        async with Browser(home.workdir / "tls" / "server-chain.pem") as b:
            # an operator page without a session: sent to the login form
            await b.get(home.console_url + "/")
            assert await b.call(lambda: b.driver.current_url) == home.console_url + "/login"
            await b.fill("#name", "li")
            await b.fill("#password", "not the password")
            await b.click("#login")
            await b.wait_text("#login-error", "Wrong name or password.")
            await b.screenshot("console-login-refused")
            await b.fill("#name", "li")
            await b.fill("#password", PASSWORD)
            await b.click("#login")
            await b.wait_text("#queue", "Nothing waiting.")
            await b.wait_text("#live-status", "live")

            # an emergency pressed in the home appears on the open screen, without a reload
            await home.press(pendant, "emergency")
            await b.wait_for(lambda: b.driver.find_elements("css selector", "tr.alarm[data-kind=emergency]"),
                             timeout=15, what="the emergency row")
            row = await b.text("tr.alarm[data-kind=emergency]")
            assert "Emergency" in row and "bedroom" in row and "waiting" in row
            await b.screenshot("console-emergency-live")
            assert await b.script("return window.sbxUpdates || 0") >= 1

            # take it up: the pendant shows "help is coming" (ack kind 3), through the hub
            event_id = await b.script("return document.querySelector('tr.alarm[data-kind=emergency]').dataset.event")
            counter = int(event_id.rsplit("-", 1)[1])
            await b.click("tr.alarm[data-kind=emergency] button.take")
            await b.wait_text("tr.alarm[data-kind=emergency]", "taken up by li")
            await pendant.firmware.wait_for_line(rf"^ack {counter} kind 3 shown$", timeout=20)

            # notes, resolve, and the alarm's timeline
            await b.click("tr.alarm[data-kind=emergency] a.open")
            await b.fill("#note-text", "called the resident: she fell, ambulance on its way")
            await b.click("#note")
            await b.wait_text("#timeline", "ambulance on its way")
            await b.fill("#outcome", "120 came; daughter informed")
            await b.click("#resolve")
            await b.wait_text("#state", "resolved by li")
            timeline = await b.text("#timeline")
            for step in ("occurred on the device", "stored at the platform", "shown on a screen",
                         "taken up by li", "note by li", "resolved by li"):
                assert step in timeline, (step, timeline)
            await b.screenshot("console-timeline")
            await b.click("#back")
            await b.wait_text("#queue", "Nothing waiting.")

            # the toilet board: the door shuts behind the resident, then opens as they come out
            shut_at = len(toilet.firmware.lines)
            toilet.set_door(True)
            # opened again once the board (woken from deep sleep by the first edge) counted it
            await toilet.firmware.wait_for_line(r"^event \d+ door open$", timeout=15, start=shut_at)
            toilet.set_door(False)
            await b.wait_for(lambda: b.driver.find_elements("css selector", "tr.toilet"), timeout=20,
                             what="the toilet line")
            line = await b.text("tr.toilet")
            assert "home-sim-0001" in line and re.search(r"since \d\d:\d\d", line)
            assert "over" not in await b.script("return document.querySelector('tr.toilet').className")
            await b.screenshot("console-toilet-board")
            # this home's own limit, 1 minute in its directory entry (the default is 10): the
            # line is highlighted once the resident has been inside longer than that
            await b.click("tr.toilet a")
            await b.fill("#toilet-limit", "1")
            await b.click("#save")
            await b.wait_text("#home-saved", "Saved.")
            assert await b.call(lambda: b.driver.find_element("css selector", "#toilet-limit").get_attribute("value")) == "1"
            await b.click("a[href='/']")
            await b.wait_for(lambda: b.driver.find_elements("css selector", "tr.toilet.over"), timeout=90,
                             what="the toilet line highlighted past the home's 1-minute limit")
            await b.wait_text("tr.toilet", "over 1 min", timeout=30)
            await b.screenshot("console-toilet-over-limit")
            # the Chinese screen, the resident still inside
            await b.click("#lang")
            await b.wait_text("#toilet", "正在如厕")
            assert re.search(r"\d\d:\d\d 起", await b.text("tr.toilet"))
            assert "呼叫中心" in await b.text("header") and "居家宝" in await b.text("#homes")
            await b.screenshot("console-zh-CN")
            toilet.set_door(True)
            await b.wait_gone("tr.toilet", timeout=20)
            await b.wait_text("#toilet", "目前没有人在卫生间")
            await b.wait_text("#queue", "没有待处理的报警")
            await b.click("#logout")
            await b.wait_text("body", "登录")
            await b.get(home.console_url + "/")
            assert await b.call(lambda: b.driver.current_url) == home.console_url + "/login"
