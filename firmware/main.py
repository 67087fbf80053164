# Device entry: self-test, then the role's inputs, the sender and the sleep
# between events. The board's /main.py calls run().
#
# Lines on the serial console (the simulator and the tests read them):
#   boot safebox <version> reset_cause <n> wake <n>
#   checks ok: ...                  ready <role> next counter <n> pending <n>
#   self-test: FAIL <what>: <why>   self-test: warning: <what>   (only when something is wrong:
#                                   the installer's tools read any "self-test:" line as a problem)
#   event <counter> <what>          sending <counter>       acked <counter> kind <k>
#   linger <counter> [ended ...]    heartbeat <counter> <objects>    boot frame <counter> <objects>
#   sleep <ms> <why>                woke <pin|timer> <ms>
#   deepsleep <ms> <why>            (the next line is a boot)
#   input: <button> woke the device | held at boot      (pendant, after a boot)
#
# Boot to decision: this module reads what woke the chip before importing the
# rest, and the role's inputs are read before the radio is started (the
# slowest step), so a button held at boot is judged from the firmware's first
# look at it. The budget is in firmware/README.md ("Power").

import machine

from . import wake

WOKE = wake.read()  # first: the reset cause, the wake reason, the pins that ended a deep sleep

import asyncio  # noqa: E402 (after the wake pins, on purpose)
import sys  # noqa: E402
import time  # noqa: E402

from safebox.protocol import bthome  # noqa: E402

from . import config, feedback, health  # noqa: E402
from .feedback import Feedback  # noqa: E402
from .power import PLAUSIBLE_MV, Battery, Power  # noqa: E402
from .radio import Radio  # noqa: E402
from .sender import Sender  # noqa: E402
from .store import CounterLost, EventStore  # noqa: E402

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
        store = EventStore(max_pending=cfg["max_pending"])
    except CounterLost as exc:
        # Starting again at 1 would seal other bytes under nonces already used, and the hub
        # would refuse every frame as a replay anyway: silent, and said so (firmware/store.py).
        health.fatal("store", "%s; not sending: re-pair this device (a fresh key)" % exc.args[1], pins, wdt)
        return
    cfg["wake_pins"] = WOKE[2]
    role = _role_class(cfg["role"])(cfg, store, battery, fb)  # its inputs read now, before the radio
    try:
        radio = Radio()
    except OSError as exc:
        health.fatal("radio", "BLE did not start: %r" % (exc,), pins, wdt)
        return
    if not health.crypto_ok():
        health.fatal("crypto", "AES-CCM gives the wrong answer for the BTHome example", pins, wdt)
        return
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
    if machine.reset_cause() != machine.DEEPSLEEP_RESET:  # not at every wake: only at power-on and resets
        fb.show(feedback.WARNING if warnings else feedback.BOOT_OK, feedback.BATTERY_LOW if low else None)

    power = Power(pins["wake"], radio, role.inputs, fb, wdt, enabled=bool(cfg["sleep"]))
    role.set_wake(power)
    sender = Sender(radio, store, cfg, fb, power, role.heartbeat_objects,
                    battery_low=lambda: battery.last_mv and battery.percent() < low_pct)
    role.on_event = sender.event_made
    if WOKE[0] == machine.DEEPSLEEP_RESET and WOKE[1] == machine.TIMER_WAKE:
        sender.heartbeat_now()  # a deep sleep's timer ends at the next heartbeat
    elif WOKE[0] != machine.DEEPSLEEP_RESET and store.next_counter > 1:
        # power-on, a battery change, a reset: the hub hears it at once (SPEC 1.8); not on the
        # very first start after pairing (counter 1 is still unused: the hub has just paired it)
        sender.boot_frame(WOKE[0], VERSION)
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
    print("boot safebox", VERSION, "reset_cause", WOKE[0], "wake", WOKE[1])
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
