"""The screen's words in Chinese (zh-CN) and English, and its times in the platform's zone.

The language is the operator's choice (`?lang=zh-CN|en`, kept in a cookie), else the
browser's Accept-Language; times are shown in one zone for the whole platform
(Asia/Shanghai unless `serve --tz` says otherwise), never the browser's.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from aiohttp import web

LANGS = ("zh-CN", "en")
LANG_COOKIE = "sbx-lang"
DEFAULT_ZONE = "Asia/Shanghai"

_EN = {
    "title": "Call centre", "login": "Log in", "logout": "Log out", "name": "Name", "password": "Password",
    "login_refused": "Wrong name or password.", "login_locked": "Too many failed attempts: this account is "
    "locked for 15 minutes.", "login_expired": "The form expired: please try again.",
    "queue": "Alarm queue", "toilet": "In the toilet now", "homes": "Homes", "nothing": "Nothing waiting.",
    "nobody": "Nobody is in the toilet.", "home": "Home", "resident": "Resident", "room": "Room",
    "device": "Device", "waited": "Waiting", "deadline": "Deadline", "state": "State", "late": "LATE",
    "take": "Take up", "resolve": "Resolve", "note": "Add note", "handover": "Hand over", "to": "to",
    "outcome": "Outcome", "timeline": "Timeline", "export": "Export (CSV)", "back": "Back to the screen",
    "since": "since {time} ({age})", "over_limit": "over {limit} min", "test": "TEST",
    "open": "waiting", "taken": "taken up by {who}", "resolved": "resolved by {who}",
    "last_heard": "Last heard", "battery": "Battery", "hub": "Hub", "heartbeat": "Heartbeat",
    "phone": "Phone", "address": "Address", "contacts": "Emergency contacts", "operator": "Operator",
    "live": "live", "offline": "connection lost, retrying", "minutes": "{n} min", "seconds": "{n} s",
    "hours": "{h} h {m} min", "never": "never", "unknown": "not on file", "language": "中文",
    "t_occurred": "occurred on the device", "t_stored_hub": "stored at the hub",
    "t_stored": "stored at the platform", "t_shown": "shown on a screen", "t_taken": "taken up by {who}",
    "t_note": "note by {who}: {text}", "t_handover": "handed over by {who} to {to}",
    "t_resolved": "resolved by {who}: {text}", "t_cleared": "cleared: {text}",
    "save": "Save", "directory": "Home directory", "toilet_limit": "Toilet limit (minutes)",
    "minutes_default": "empty: {limit}", "saved": "Saved.",
    "emergency": "Emergency", "toilet_overdue": "Toilet overdue", "door_inactive": "Front door inactive",
    "device_offline": "Device offline", "battery_low": "Battery low", "hub_silent": "Hub silent",
    "community_service": "Community service", "life_service": "Daily-life service", "test_alarm": "Test alarm",
    "pendant": "pendant", "front_door": "front door", "toilet_door": "toilet door",
}
_ZH = {
    "title": "呼叫中心", "login": "登录", "logout": "退出", "name": "用户名", "password": "密码",
    "login_refused": "用户名或密码错误。", "login_locked": "失败次数过多：此帐户已锁定 15 分钟。",
    "login_expired": "表单已过期，请重试。",
    "queue": "报警队列", "toilet": "正在如厕", "homes": "家庭", "nothing": "没有待处理的报警。",
    "nobody": "目前没有人在卫生间。", "home": "家庭", "resident": "居民", "room": "房间",
    "device": "设备", "waited": "已等待", "deadline": "时限", "state": "状态", "late": "超时",
    "take": "接单", "resolve": "办结", "note": "添加备注", "handover": "转交", "to": "给",
    "outcome": "处理结果", "timeline": "时间线", "export": "导出 (CSV)", "back": "返回主屏",
    "since": "{time} 起（{age}）", "over_limit": "超过 {limit} 分钟", "test": "测试",
    "open": "待接单", "taken": "{who} 已接单", "resolved": "{who} 已办结",
    "last_heard": "最后联系", "battery": "电量", "hub": "网关", "heartbeat": "心跳",
    "phone": "电话", "address": "地址", "contacts": "紧急联系人", "operator": "话务员",
    "live": "实时", "offline": "连接中断，正在重试", "minutes": "{n} 分钟", "seconds": "{n} 秒",
    "hours": "{h} 小时 {m} 分钟", "never": "从未", "unknown": "未登记", "language": "English",
    "t_occurred": "设备上发生", "t_stored_hub": "网关已保存", "t_stored": "平台已保存", "t_shown": "已显示在屏幕上",
    "t_taken": "{who} 接单", "t_note": "{who} 备注：{text}", "t_handover": "{who} 转交给 {to}",
    "t_resolved": "{who} 办结：{text}", "t_cleared": "已解除：{text}",
    "save": "保存", "directory": "家庭档案", "toilet_limit": "如厕时限（分钟）",
    "minutes_default": "留空：{limit}", "saved": "已保存。",
    "emergency": "紧急求助", "toilet_overdue": "如厕超时", "door_inactive": "大门长时间未开",
    "device_offline": "设备离线", "battery_low": "电量低", "hub_silent": "网关失联",
    "community_service": "社区服务", "life_service": "生活服务", "test_alarm": "测试报警",
    "pendant": "居家宝", "front_door": "大门传感器", "toilet_door": "卫生间门传感器",
}
WORDS = {"en": _EN, "zh-CN": _ZH}
assert set(_EN) == set(_ZH), sorted(set(_EN) ^ set(_ZH))


def choose(request: web.Request) -> str:
    asked = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGS:
        return asked
    return "zh-CN" if request.headers.get("Accept-Language", "").lower().startswith("zh") else "en"


class Words:
    """`words("since", time=..., age=...)` in one language; plus its time formatting."""

    def __init__(self, lang: str, zone: tzinfo) -> None:
        self.lang = lang
        self.zone = zone
        self._table = WORDS[lang]

    def __call__(self, key: str, **values: object) -> str:
        text = self._table.get(key, key)
        return text.format(**values) if values else text

    def clock(self, t: float | None) -> str:
        """14:02:07, in the platform's zone."""
        if t is None:
            return self("never")
        when = datetime.fromtimestamp(t, self.zone)
        return when.strftime("%H:%M:%S")

    def stamp(self, t: float | None) -> str:
        if t is None:
            return "-"
        return datetime.fromtimestamp(t, self.zone).isoformat(sep=" ", timespec="milliseconds")

    def age(self, seconds: float) -> str:
        seconds = max(0, int(seconds))
        if seconds < 60:
            return self("seconds", n=seconds)
        if seconds < 3600:
            return self("minutes", n=seconds // 60)
        return self("hours", h=seconds // 3600, m=seconds % 3600 // 60)


def zone(name: str) -> tzinfo:
    return ZoneInfo(name)
