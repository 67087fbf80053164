# Device entry: self-test, then the role's inputs, the sender and the sleep
# between events. The board's /main.py calls run().
#
# Lines on the serial console (the simulator and the tests read them):
#   boot safebox <version> reset_cause <n> wake <n>
#   checks ok: ...                  ready <role> next counter <n> pending <n>
#   self-test: FAIL <what>: <why>   self-test: warning: <what>   (only when something is wrong:
#                                   the installer's tools read any "self-test:" line as a problem)
#   event <counter> <what>          sending <counter>       acked <counter> kind <k>
#   linger <counter> [ended ...]    heartbeat <counter> <objects>
#   sleep <ms> <why>                woke <pin|timer> <ms>
#   deepsleep <ms> <why>            (doors; the next line is a boot)

import asyncio
import sys
import time

import machine

from safebox.protocol import bthome

from . import config, feedback, health
from .feedback import Feedback
from .power import PLAUSIBLE_MV, Battery, Power
from .radio import Radio
from .sender import Sender
from .store import EventStore

VERSION = "0.2.0"


def _role_class(role):
    if role == "pendant":
        from .pendant import Pendant

        return Pendant
    from .door import Door

    return Door


def _print_exception(exc):
    show = getattr(sys, "print_exception", None)
    if show is not None:
        show(exc)
    else:
        print(repr(exc))


async def _main(cfg):
    pins = cfg["pins"]
    wdt = health.Watchdog(cfg["wdt_ms"])
    fb = Feedback(pins["led"], pins["buzzer"], door=cfg["role"] != "pendant")
    battery = Battery(pins["battery_adc"])
    pct = battery.percent()  # before the radio is on: an unloaded reading
    mv = battery.last_mv
    try:
        radio = Radio()
    except OSError as exc:
        health.fatal("radio", "BLE did not start: %r" % (exc,), pins, wdt)
        return
    if not health.crypto_ok():
        health.fatal("crypto", "AES-CCM gives the wrong answer for the BTHome example", pins, wdt)
        return
    store = EventStore(max_pending=cfg["max_pending"])
    warnings = list(store.problems)
    if not PLAUSIBLE_MV[0] <= mv <= PLAUSIBLE_MV[1]:
        warnings.append("battery reading %d mV is implausible (divider or ADC pin?)" % mv)
    if machine.reset_cause() == machine.WDT_RESET:
        warnings.append("the last reset was the watchdog's")
    for w in warnings:
        print("self-test: warning:", w)
    print("checks %s: config, radio %s, crypto, store, battery %d%% (%d mV)"
          % ("ok" if not warnings else "passed with %d warning(s)" % len(warnings), bthome.mac_text(radio.mac), pct, mv))
    low_pct = cfg["battery_low_pct"]
    low = pct < low_pct
    if low:
        print("battery low", pct)
    fb.show(feedback.WARNING if warnings else feedback.BOOT_OK, feedback.BATTERY_LOW if low else None)

    role = _role_class(cfg["role"])(cfg, store, battery, fb)
    power = Power(pins["wake"], radio, role.inputs, fb, wdt, enabled=bool(cfg["sleep"]))
    role.set_wake(power)
    sender = Sender(radio, store, cfg, fb, power, role.heartbeat_objects,
                    battery_low=lambda: battery.last_mv and battery.percent() < low_pct)
    role.on_event = sender.event_made
    if machine.reset_cause() == machine.DEEPSLEEP_RESET and machine.wake_reason() == machine.TIMER_WAKE:
        sender.heartbeat_now()  # a door's deep sleep ends at its next heartbeat
    tasks = [asyncio.create_task(wdt.run())]
    for i in role.inputs:
        tasks.append(asyncio.create_task(i.run()))
    print("ready", cfg["role"], "next counter", store.next_counter, "pending", len(store.pending))
    try:
        await sender.run()
    finally:
        for t in tasks:
            t.cancel()


def run():
    print("boot safebox", VERSION, "reset_cause", machine.reset_cause(), "wake", machine.wake_reason())
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        health.fatal("config", str(exc), config.fallback_pins())
        return
    try:
        asyncio.run(_main(cfg))
    except Exception as exc:  # a bug: say so, then start again (the watchdog would, later)
        print("crash:", repr(exc))
        _print_exception(exc)
        time.sleep_ms(1000)
        machine.reset()
