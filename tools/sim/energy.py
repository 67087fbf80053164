"""Energy model of a safebox device: charge per event, per heartbeat and per day, battery life.

What the firmware *does* is measured in the simulator (`Activity.measure`: the firmware's own
"sleep"/"woke" lines, the radio's advertising and connections as the bridge saw them, the LED
and buzzer pins); what each state *costs* is the current below, from the datasheets. The two
together give charge per event and per heartbeat; a usage profile gives charge per day; a cell
gives the battery life.

Currents (mA), with their sources. ESP32: "ESP32 Series Datasheet" v3.5/v4.x, Espressif,
Table "Power Consumption by Power Modes" and Table "RF Power-Consumption Specifications".
ESP32-C3: "ESP32-C3 Series Datasheet" v1.x, Espressif, Tables "Current Consumption in
Modem-sleep Mode", "... in Low-Power Modes" and "... Depending on RF Modes".

| state                                   | ESP32  | ESP32-C3 | datasheet says                       |
|-----------------------------------------|--------|----------|--------------------------------------|
| CPU awake, radio idle (modem-sleep)     | 35.5   | 20       | ESP32 160 MHz dual-core 27-44 (mid); C3 160 MHz 20 (peripheral clocks off) |
| radio transmitting, BLE 0 dBm           | 130    | 130      | ESP32 "Wi-Fi/BT Tx packet 0 dBm"; C3 lists Wi-Fi only: ESP32 figure used (an upper bound) |
| radio receiving / listening, BLE        | 100    | 84       | ESP32 "Rx and listening 95-100"; C3 Wi-Fi Rx 802.11n 84 |
| light sleep                             | 0.8    | 0.130    | "Light-sleep" |
| deep sleep, RTC timer + RTC memory      | 0.010  | 0.005    | "Deep-sleep" |

Assumptions (stated, not measured; change them here):
* an advertising event is one legacy ADV_IND on each of the 3 channels: 47 bytes at 1 Mbit/s
  = 376 us of TX, then 250 us listening for a request, per channel;
* a GATT write from the hub (connect, MTU exchange, discovery, write, disconnect) is 12
  connection events of 0.4 ms TX + 0.4 ms RX;
* bringing NimBLE up after a light sleep (`ble.active(True)`) keeps the CPU awake 150 ms
  more than the simulator's instant bring-up;
* each light-sleep slice costs 1 ms awake to wake, feed the watchdog and read the inputs
  (the firmware sleeps in slices of 4 s when a pin can wake it: doors on ext0 boards, the
  pendant everywhere (EXT1 / GPIO wake); 30 ms for doors on poll boards);
* a deep-sleep wake is a boot: 350 ms awake at the CPU current before the firmware's own work,
  once per wake (events and heartbeats). Source: ESP-IDF's `deep_sleep_wake_stub` example
  README (Espressif) logs "cpu_start: Starting scheduler on PRO CPU" at 309 ms after reset with
  the default bootloader (image validated on every wake); MicroPython's start and importing the
  frozen firmware are taken as the other ~40 ms (an assumption, not measured on a board; the
  CPython port's BOOT_S is 0.3 s). `CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP` would shorten it;
* a door stays in light sleep for `awake_window_s` after each change (config
  `awake_after_event_ms`, 10 s), so a quick close is seen by the running firmware; counted per
  event at the light-sleep current (pairs within one window counted twice: an upper bound);
* board: low-Iq LDO (HT7833-class, 4 uA), battery divider 2 uA, indicator LED 3 mA,
  active buzzer 25 mA; no USB-serial chip (a dev board's CP2102 + AMS1117 draw ~5-10 mA:
  dev boards are for the bench, never for a home);
* the cell: one 18650 Li-ion, 2600 mAh, 85 % usable above the firmware's 3.3 V empty point,
  self-discharge 2 % a month.

* the pendant's press is counted at its boot (the pins that woke it), then sent, acknowledged
  and lingered on as measured; it stays in light sleep only while that lasts (and, with
  heartbeats more often than every 15 minutes, until the next one: not the production profile).
* a door's change is counted at its boot (EXT0), advertised in a burst until kind 1 and then
  slept on at once: the hub owes a door nothing more (SPEC 1.7), so it does not linger and
  sends no receipt; a door's heartbeat is its 10 advertisements at 30 ms (0.3 s), not the
  pendant's 1 s window at 100 ms (firmware/sender.py). As measured, the hub answers at once:
  the bench's stand-in connects when it hears the first advertisement. A hub that is slower
  keeps the door in its burst longer: `full_burst` gives the event as if kind 1 came only at
  the end of the 1.5 s burst, and the benchmark prints the days for that case too.

As built (firmware/power.py, `built_mode`): the door sensors deep-sleep between events on the
ESP32 (EXT0 on the contact + the heartbeat timer); the pendant deep-sleeps on the ESP32 (EXT1
ANY_HIGH on its three buttons + the timer) and on the ESP32-C3 (GPIO wake; needs MicroPython 1.29+
for machine.wake_pins(), else it light-sleeps, woken by the same source); doors on the C3
light-sleep and poll (no EXT0 there).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from safebox.tools.sim import lines as console

DAY_S = 86400.0


@dataclass(frozen=True)
class Chip:
    name: str
    cpu_ma: float  # awake, radio idle (modem-sleep)
    tx_ma: float
    rx_ma: float
    light_sleep_ma: float
    deep_sleep_ma: float
    wake: str  # how light sleep is ended by a pin: "ext0" or "poll" (firmware/boards.py)


ESP32 = Chip("ESP32 (WROOM-32)", cpu_ma=35.5, tx_ma=130.0, rx_ma=100.0, light_sleep_ma=0.8, deep_sleep_ma=0.010,
             wake="ext0")
ESP32_C3 = Chip("ESP32-C3 (MINI-1)", cpu_ma=20.0, tx_ma=130.0, rx_ma=84.0, light_sleep_ma=0.130, deep_sleep_ma=0.005,
                wake="poll")
CHIPS = (ESP32, ESP32_C3)


@dataclass(frozen=True)
class Assumptions:
    adv_tx_s: float = 376e-6
    adv_rx_s: float = 250e-6
    adv_channels: int = 3
    connection_events: int = 12
    connection_event_s: float = 0.4e-3  # each of TX and RX
    ble_up_s: float = 0.150
    slice_wake_s: float = 1.0e-3
    ext0_slice_s: float = 4.0  # firmware/power.py _SLICE_MS
    poll_slice_s: float = 0.030  # firmware/power.py _POLL_MS
    deep_boot_s: float = 0.350
    awake_window_s: float = 10.0  # firmware/config.py awake_after_event_ms (doors, deep sleep)
    ldo_iq_ma: float = 0.004
    divider_ma: float = 0.002
    led_ma: float = 3.0
    buzzer_ma: float = 25.0


@dataclass(frozen=True)
class Cell:
    name: str = "18650 Li-ion"
    capacity_mah: float = 2600.0
    usable: float = 0.85
    self_discharge_per_month: float = 0.02


@dataclass(frozen=True)
class Profile:
    """A day of one device."""

    role: str
    events_per_day: float
    heartbeats_per_day: float = 24.0
    note: str = ""


DEEP_SLEEP_ROLES = ("front_door", "toilet_door")  # doors: deep sleep on EXT0 chips, a light window after changes
PIN_WAKE_ROLES = ("pendant",)  # woken by a pin on every chip (EXT1 / GPIO wake): deep sleep everywhere


def built_mode(role: str, chip: Chip) -> str:
    """How the firmware as built sleeps between events: "deep" for a door on an EXT0 chip and for
    the pendant (on the C3 with MicroPython 1.29+)."""
    return "deep" if role in PIN_WAKE_ROLES or (role in DEEP_SLEEP_ROLES and chip.wake == "ext0") else "light"


def light_slice_s(role: str, chip: Chip, a: Assumptions = Assumptions()) -> float:
    """The light-sleep slice: long when a pin ends the sleep, short when the inputs are polled."""
    return a.ext0_slice_s if chip.wake == "ext0" or role in PIN_WAKE_ROLES else a.poll_slice_s


PROFILES = (
    Profile("pendant", 2, note="two presses a day (a service call, a test press)"),
    Profile("front_door", 8, note="four outings or visits a day: open + close each"),
    Profile("toilet_door", 24, note="six visits a day: open, close, open, close each"),
)


@dataclass
class Activity:
    """What a device did over a span of simulated time (seconds, counts)."""

    span_s: float = 0.0
    awake_s: float = 0.0
    asleep_s: float = 0.0
    sleeps: int = 0  # light sleeps begun (each is at least one slice)
    radio_ups: int = 0  # times the radio was brought up
    adv_events: float = 0.0
    connections: int = 0
    led_s: float = 0.0
    buzzer_s: float = 0.0

    @classmethod
    def measure(cls, recorder: LineRecorder, bridge: Any, t0: float, t1: float, *, led_pin: int,
                buzzer_pin: int) -> Activity:
        """The activity between monotonic times t0 and t1 (a press and the sleep after it, say)."""
        a = cls(span_s=t1 - t0)
        asleep = recorder.asleep(t0, t1)
        a.asleep_s = sum(e - s for s, e in asleep)
        a.awake_s = a.span_s - a.asleep_s
        a.sleeps = sum(1 for s, _e in asleep if s > t0)
        adverts = [ad for ad in bridge.advertising if t0 <= ad.t <= t1]
        for i, ad in enumerate(adverts):
            if not ad.interval_us:
                continue
            end = adverts[i + 1].t if i + 1 < len(adverts) else t1
            end = min([end] + [s for s, _e in asleep if s >= ad.t])
            a.adv_events += max(0.0, end - ad.t) / (ad.interval_us / 1e6) + 1
        awake_spans = _complement(asleep, t0, t1)
        a.radio_ups = sum(1 for s, e in awake_spans if any(s <= ad.t <= e and ad.interval_us for ad in adverts))
        a.connections = sum(1 for t, event, _args in bridge.irq_log if t0 <= t <= t1 and event == 1)
        a.led_s = _on_time(bridge.output_levels(led_pin), t0, t1)
        a.buzzer_s = _on_time(bridge.output_levels(buzzer_pin), t0, t1)
        return a


def _complement(spans: list[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    out, cursor = [], t0
    for s, e in sorted(spans):
        if s > cursor:
            out.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < t1:
        out.append((cursor, t1))
    return out


def _on_time(levels: list[tuple[float, int]], t0: float, t1: float) -> float:
    total, on_since = 0.0, None
    for t, v in levels:
        t = min(max(t, t0), t1)
        if v and on_since is None:
            on_since = t
        elif not v and on_since is not None:
            total += t - on_since
            on_since = None
    if on_since is not None:
        total += t1 - on_since
    return total


class LineRecorder(logging.Handler):
    """The firmware's output lines with the monotonic time each arrived (attach to a FirmwareProcess)."""

    def __init__(self, firmware: Any) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []
        firmware.log.setLevel(logging.INFO)
        firmware.log.addHandler(self)
        firmware.log.propagate = False  # recorded here; not printed twice

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.monotonic(), record.getMessage()))

    def asleep(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """(start, end) of each light sleep overlapping [t0, t1], clipped to it."""
        spans, start = [], None
        for t, line in self.lines:
            if console.Sleep.read(line):
                start = t
            elif (woke := console.Woke.read(line)) and start is not None:
                # the line comes after the wake: its own figure says how long it slept
                spans.append((t - woke.ms / 1000, t))
                start = None
        if start is not None:
            spans.append((start, t1))
        return [(max(s, t0), min(e, t1)) for s, e in spans if e > t0 and s < t1]

    def first(self, pattern: str, after: float = 0.0) -> float | None:
        """When the first line from `after` on matching the regex `pattern` arrived (see lines.X.pattern())."""
        regex = re.compile(pattern)
        return next((t for t, line in self.lines if t >= after and regex.search(line)), None)


@dataclass
class Charge:
    """Charge of one activity, by what drew it (mA*s)."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total_mas(self) -> float:
        return sum(self.parts.values())

    @property
    def total_uah(self) -> float:
        return self.total_mas / 3.6


def sleep_current_ma(chip: Chip, mode: str = "light", a: Assumptions = Assumptions(),
                     slice_s: float | None = None) -> float:
    """Average current while asleep, with the slice wake-ups, and the board's quiescent draw."""
    board = a.ldo_iq_ma + a.divider_ma
    if mode == "deep":
        return chip.deep_sleep_ma + board
    if slice_s is None:
        slice_s = a.ext0_slice_s if chip.wake == "ext0" else a.poll_slice_s
    duty = a.slice_wake_s / slice_s
    return chip.light_sleep_ma * (1 - duty) + chip.cpu_ma * duty + board


def charge(act: Activity, chip: Chip, mode: str = "light", a: Assumptions = Assumptions()) -> Charge:
    adv = a.adv_channels * (a.adv_tx_s * chip.tx_ma + a.adv_rx_s * chip.rx_ma)
    conn = a.connection_events * a.connection_event_s * (chip.tx_ma + chip.rx_ma)
    parts = {
        "cpu awake": act.awake_s * chip.cpu_ma,
        "radio bring-up": act.radio_ups * a.ble_up_s * chip.cpu_ma,
        "advertising": act.adv_events * adv,
        "connections": act.connections * conn,
        "asleep": act.asleep_s * sleep_current_ma(chip, mode, a),
        "led": act.led_s * a.led_ma,
        "buzzer": act.buzzer_s * a.buzzer_ma,
    }
    if mode == "deep":
        # every wake is a boot; the firmware's own awake time comes on top
        parts["boot"] = max(1, act.radio_ups) * a.deep_boot_s * chip.cpu_ma
    return Charge(parts)


@dataclass
class Day:
    event_mah: float
    heartbeat_mah: float
    sleep_mah: float
    total_mah: float


def per_day(profile: Profile, event: Activity, heartbeat: Activity, chip: Chip, mode: str = "light",
            a: Assumptions = Assumptions()) -> Day:
    """mAh a day: the events and heartbeats (awake, and light sleep within them), and sleep (in
    `mode`) for the rest."""
    ev = charge(Activity(**{**event.__dict__, "asleep_s": 0.0}), chip, mode, a)
    hb = charge(Activity(**{**heartbeat.__dict__, "asleep_s": 0.0}), chip, mode, a)
    asleep_s = max(0.0, DAY_S - profile.events_per_day * event.span_s - profile.heartbeats_per_day * heartbeat.span_s)
    slice_s = light_slice_s(profile.role, chip, a)
    sleep = asleep_s * sleep_current_ma(chip, mode, a, slice_s)
    # light sleep inside an event (backoff, linger) at the light-sleep current, in either mode
    light_s = profile.events_per_day * event.asleep_s + profile.heartbeats_per_day * heartbeat.asleep_s
    sleep += light_s * sleep_current_ma(chip, "light", a, slice_s)
    if mode == "deep" and profile.role in DEEP_SLEEP_ROLES:
        # light sleep, not deep, for the window after each change
        window_s = min(asleep_s, profile.events_per_day * a.awake_window_s)
        sleep += window_s * (sleep_current_ma(chip, "light", a, slice_s) - sleep_current_ma(chip, "deep", a))
    e_mah = profile.events_per_day * ev.total_mas / 3600
    h_mah = profile.heartbeats_per_day * hb.total_mas / 3600
    s_mah = sleep / 3600
    return Day(e_mah, h_mah, s_mah, e_mah + h_mah + s_mah)


def full_burst(event: Activity, burst_s: float = 1.5, interval_s: float = 0.030) -> Activity:
    """`event` as if kind 1 had come only at the end of the burst (firmware/sender.py BURST_MS,
    BURST_INTERVAL_MS): awake and advertising at the burst's interval for the rest of it."""
    more = max(0.0, burst_s - event.awake_s)
    return replace(event, span_s=event.span_s + more, awake_s=event.awake_s + more,
                   adv_events=event.adv_events + more / interval_s)


def battery_days(day: Day, cell: Cell = Cell()) -> float:
    """Days until the usable charge is gone, counting self-discharge of the full capacity."""
    daily = day.total_mah + cell.capacity_mah * cell.self_discharge_per_month / 30.0
    return cell.capacity_mah * cell.usable / daily


def slow_hub_days(events: dict[str, Activity], heartbeats: dict[str, Activity]) -> dict[str, float]:
    """The doors' days on the ESP32 as built if every event waited its whole burst for kind 1."""
    out = {}
    for profile in PROFILES:
        if profile.role in events and profile.role in DEEP_SLEEP_ROLES:
            day = per_day(profile, full_burst(events[profile.role]), heartbeats[profile.role], ESP32,
                          built_mode(profile.role, ESP32))
            out[profile.role] = round(battery_days(day), 1)
    return out
