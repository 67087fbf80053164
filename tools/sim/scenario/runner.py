"""Run a scenario in one process on the virtual clock and judge what the platform stored.

`run(scenario)` builds the World (world.py), powers the devices on at 0s, carries out
each step at its time, runs until the scenario's duration, and then checks every
expectation against the events the platform stored (times relative to 0s).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from safebox.tools.sim.scenario import vtime
from safebox.tools.sim.scenario.spec import HUB_CLOCK, Expectation, Scenario, Step, format_duration, parse_duration
from safebox.tools.sim.scenario.world import LONG_PRESS_HOLD_S, PRESS_HOLD_S, World

log = logging.getLogger("safebox.sim.scenario")
_STEP_TIMEOUT_S = 30.0
_END_SLACK_S = 1e-3  # run this long past the duration (see run())
# A reed contact bouncing: a change every 4 ms for 40 ms, settling where it was (firmware/inputs.py
# debounces 50 ms, so a bounce alone must make no event).
BOUNCE_CHANGES = 10
BOUNCE_EVERY_S = 0.004


def run(scenario: Scenario, *, workdir: Path | None = None) -> dict[str, Any]:
    """The scenario's result (see `render`); `passed` is True only when every expectation holds."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="safebox-scenario-") as tmp:
        result = vtime.run(_run(scenario, Path(workdir or tmp)), start=0.0)
    result["wall_s"] = round(time.perf_counter() - started, 3)
    return result


async def _run(scenario: Scenario, workdir: Path) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    world = World(workdir, clock_offset=scenario.start - t0, hub_settings=scenario.hub,
                  heartbeat_s=scenario.heartbeat_s, seed=scenario.seed, modem=scenario.modem,
                  router=scenario.has_router)
    log_lines: list[str] = []
    async with world:
        await world.start_hub()
        for d in scenario.devices:
            world.add_device(d.id, d.role, d.room, d.battery)
        for d in scenario.devices:
            if d.powered:
                world.power_on(d.id)
        pending: set[asyncio.Task[None]] = set()
        for step in scenario.steps:
            delay = t0 + step.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            log_lines.append(step.describe())
            task = asyncio.create_task(_do(world, step))
            pending.add(task)
            task.add_done_callback(pending.discard)
        rest = t0 + scenario.duration - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)
        # What falls due at the very end is included: a timer computed as clock + (deadline -
        # clock) may land a rounding error after it.
        await asyncio.sleep(_END_SLACK_S)
        for task in list(pending):
            task.cancel()
        stored = world.stored_events()
        names = {d.device.id: name for name, d in world.devices.items()}
        consoles = {name: d.board.lines[-200:] for name, d in world.devices.items()}
        hub_failures = list(world.hub_failures)
        cellular = None if world.cellular is None else world.cellular.report(
            scenario.start, world.hub.cellular.health() if world.hub is not None and world.hub.cellular else None)
    events = [_event_view(e, names, scenario.start) for e in stored]
    checks = [_check(x, events) for x in scenario.expectations]
    if hub_failures:
        checks.append({"expectation": "the hub keeps running", "passed": False, "detail": "; ".join(hub_failures)})
    return {
        "scenario": scenario.name,
        "file": str(scenario.path) if scenario.path else None,
        "description": scenario.description,
        "passed": all(c["passed"] for c in checks),
        "seed": scenario.seed,
        "virtual_s": scenario.duration,
        "steps": log_lines,
        "events": events,
        "expectations": checks,
        "device_consoles": consoles,
        **({"cellular": cellular} if cellular is not None else {}),
    }


async def _do(world: World, step: Step) -> None:
    try:
        async with asyncio.timeout(_STEP_TIMEOUT_S):
            if step.target == "hub":
                if step.action == HUB_CLOCK:
                    offset = step.arg or "0s"
                    sign = -1.0 if offset.startswith("-") else 1.0
                    world.hub_clock_offset_s = sign * parse_duration(offset.lstrip("-"), "clock")
                elif step.action == "kill":
                    await world.kill_hub()
                elif step.action == "stop":
                    await world.stop_hub()
                elif step.action == "start":
                    await world.start_hub()
                else:  # restart: whatever it was doing, a new hub on the same state
                    await world.kill_hub()
                    await world.start_hub()
                return
            if step.target == "platform":
                await (world.platform_down() if step.action == "down" else world.platform_up())
                return
            if step.target == "internet":
                await world.internet(step.action == "up")
                return
            if step.target == "modem":
                assert world.cellular is not None, "modem steps need [home.modem]"
                (world.cellular.modem.plug if step.action == "plug" else world.cellular.modem.unplug)()
                return
            device = world.devices[step.device or ""]
            board = device.board
            if step.action in ("press", "long_press"):
                hold = PRESS_HOLD_S if step.action == "press" else LONG_PRESS_HOLD_S
                await device.press(step.arg or "", hold)
            elif step.action in ("open", "close"):
                board.set_pin(device.pin("contact"), device.door_level(step.action == "open"))
            elif step.action == "bounce":
                pin = device.pin("contact")
                rest = board.pin_levels[pin]
                for n in range(BOUNCE_CHANGES):
                    board.set_pin(pin, 1 - rest if n % 2 == 0 else rest)
                    await asyncio.sleep(BOUNCE_EVERY_S)
                board.set_pin(pin, rest)
            elif step.action == "battery":
                board.set_adc(device.pin("battery_adc"), world.battery_uv(board, int(step.arg or 0)))
            elif step.action == "power_off":
                board.power_off()
            elif step.action == "power_on":
                world.power_on(device.name)
            elif step.action == "reboot":
                world.reboot(device.name)
    except Exception:
        log.exception("step %s failed", step.describe())


def _seconds(text: str, start: float) -> float:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - start, 3)


def _event_view(e: dict[str, Any], names: dict[str, str], start: float) -> dict[str, Any]:
    body = e["body"]
    device = body.get("device") or body.get("data", {}).get("device") or {}
    return {
        "event_id": e["event_id"],
        "type": e["type"],
        "device": names.get(device.get("id"), device.get("id")),
        "occurred_s": _seconds(e["occurred_at"], start),
        "received_s": _seconds(e["received_at"], start),
        "occurred": format_duration(_seconds(e["occurred_at"], start)),
        "received": format_duration(_seconds(e["received_at"], start)),
        "data": body.get("data", {}),
        "channel": e.get("channel", "https"),
    }


def _check(x: Expectation, events: list[dict[str, Any]]) -> dict[str, Any]:
    key = "received_s" if x.by == "received" else "occurred_s"
    same = [e for e in events if e["type"] == x.type and (x.device is None or e["device"] == x.device)
            and (x.channel is None or e["channel"] == x.channel)]
    inside = [e for e in same if (x.earliest is None or e[key] >= x.earliest)
              and (x.latest is None or e[key] <= x.latest)]
    if not x.present:
        passed = not inside
    elif x.count is not None:
        passed = len(inside) == x.count
    else:
        passed = bool(inside)
    seen = ", ".join(f"{e['event_id']} at {format_duration(e[key])}" for e in same) or "none"
    return {"expectation": x.describe(), "passed": passed, "found": len(inside),
            "detail": f"{len(inside)} in the window; all {x.type}{' from ' + x.device if x.device else ''} "
                      f"{x.by}: {seen}"}


def render(result: dict[str, Any]) -> str:
    lines = [f"scenario {result['scenario']}: {'PASSED' if result['passed'] else 'FAILED'} "
             f"({format_duration(result['virtual_s'])} simulated in {result.get('wall_s', 0):.1f} s)"]
    lines.append("platform stored:")
    for e in result["events"]:
        via = "" if e.get("channel", "https") == "https" else f", by {e['channel']}"
        lines.append(f"  {e['received']:>12}  {e['type']:<18} {e['device'] or '-':<10} {e['event_id']}"
                     f"  (occurred {e['occurred']}{via})")
    if not result["events"]:
        lines.append("  nothing")
    if "cellular" in result:
        lines.append("SMS on the cellular network:")
        for m in result["cellular"]["sms"]:
            when = "lost" if m["lost"] else f"delivered {format_duration(m['delivered_s'])}" \
                if m["delivered_s"] is not None else "on its way"
            lines.append(f"  {format_duration(m['submitted_s']):>12}  to {m['to']}: {when}: {m['text'][:40]}")
    lines.append("expectations:")
    for c in result["expectations"]:
        lines.append(f"  [{'ok' if c['passed'] else 'FAILED'}] {c['expectation']}"
                     + ("" if c["passed"] else f" -- {c['detail']}"))
    return "\n".join(lines)
