# The firmware's debounce (firmware/inputs.py) on the micropython binary, with pin
# edges injected at exact times inside the process (the machine shim, offline).
# Run by tests/test_firmware_inputs.py: `micropython fw_inputs.py` plays every scenario at
# once (each on its own pin) and prints one JSON line: per scenario, the events the input
# reported, each [what, ms after the scenario's first edge, on its planned schedule: an edge
# injected late moves the times after it back by as much], and whether it is still busy.
import asyncio
import json
import sys
import time

import machine
from safebox.firmware import inputs

# scenario: (input kind, [(ms, level), ...], how long to run after the last edge)
# Buttons are active low (idle 1); the contact is an NC reed: 1 closed, 0 open.
SCENARIOS = {
    # contact bounce of 50 ms on press and on release: one press
    "bounce_press": ("button", [(0, 0), (8, 1), (15, 0), (30, 1), (38, 0), (50, 1), (50, 0),
                                (300, 1), (305, 0), (320, 1), (340, 0), (350, 1)], 300),
    # shorter than the 50 ms minimum: nothing; glitches: nothing
    "short_press": ("button", [(0, 0), (35, 1)], 300),
    "glitches": ("button", [(0, 0), (10, 1), (100, 0), (112, 1), (200, 0), (230, 1)], 300),
    "min_press": ("button", [(0, 0), (65, 1)], 300),
    "long_press": ("button", [(0, 0), (2600, 1)], 300),
    "release_at_1950": ("button", [(0, 0), (1950, 1)], 300),
    "two_presses": ("button", [(0, 0), (120, 1), (300, 0), (420, 1)], 300),
    # doors: open and close within a second, with bounce on both edges: two events, in order
    "door_open_close": ("contact", [(0, 0), (5, 1), (12, 0), (30, 1), (45, 0),
                                    (400, 1), (410, 0), (425, 1)], 300),
    "door_quick": ("contact", [(0, 0), (120, 1)], 300),
    "door_glitch": ("contact", [(0, 0), (30, 1)], 300),
    "door_chatter_then_back": ("contact", [(0, 0), (10, 1), (20, 0), (30, 1), (40, 0), (49, 1)], 300),
    "door_open_close_open": ("contact", [(0, 0), (200, 1), (400, 0)], 300),
}

results = {}


async def play(name, pin):
    kind, edges, tail = SCENARIOS[name]
    events = []
    t0 = [0]
    late = [0]  # how late the last edge came (a busy machine wakes this task late): not the filter's

    def seen(what):
        events.append([what, time.ticks_diff(time.ticks_ms(), t0[0]) - late[0]])

    machine._on_pin({"pin": pin, "value": 1})
    if kind == "button":
        dev = inputs.Button(pin, name, lambda n, a: seen(a))
    else:
        dev = inputs.Contact(pin, lambda is_open: seen("open" if is_open else "closed"), 0)
    task = asyncio.create_task(dev.run())
    await asyncio.sleep_ms(100)  # the contact learns its idle state
    t0[0] = time.ticks_ms()
    for at, level in edges:
        wait = at - time.ticks_diff(time.ticks_ms(), t0[0])
        if wait > 0:
            await asyncio.sleep_ms(wait)
        late[0] = max(0, time.ticks_diff(time.ticks_ms(), t0[0]) - at)
        machine._on_pin({"pin": pin, "value": level})
    await asyncio.sleep_ms(tail + 10)
    task.cancel()
    results[name] = {"events": events, "busy_after": dev.busy}


async def main(names):
    await asyncio.gather(*[play(name, 10 + i) for i, name in enumerate(names)])
    print(json.dumps(results))


asyncio.run(main(sys.argv[1:] or sorted(SCENARIOS)))
