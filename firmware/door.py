# The door sensors: front door and toilet door, a reed contact each; the
# toilet door optionally with a PIR module for occupancy.
#
# Every change of the contact that holds (firmware/inputs.py) is an event:
# door (0x1A) 1 open / 0 closed, with the battery and, on a toilet door with a
# PIR, occupancy (0x23) as the PIR sees it at that moment. The level reported
# is kept on flash (door_state), and every boot judges the contact against it:
# a door that moved while the device was off (a deep sleep, a reset, a battery
# change) is an event as soon as it is back. The heartbeat carries the same
# objects too.
# Door events are never urgent: when the store is full the oldest goes.

import machine
from machine import Pin

from safebox.protocol import bthome

from . import feedback, inputs
from .store import _read, _replace

STATE_PATH = "door_state"  # the contact level last reported, for the next boot


def _saved_level():
    text = _read(STATE_PATH)
    return int(text) if text in ("0", "1") else None


def _unheard(counter):
    pass


class Door:
    def __init__(self, cfg, store, battery, fb):
        self._store = store
        self._battery = battery
        self._fb = fb
        self._pins = cfg["pins"]
        self._contact = inputs.Contact(self._pins["contact"], self._on_change, cfg["contact_open_level"])
        self._pir = None
        if cfg["role"] == "toilet_door" and cfg["pir"]:
            self._pir = Pin(self._pins["pir"], Pin.IN)
        self.on_event = _unheard  # the sender's event_made, once it exists
        self.inputs = [self._contact]
        self._deep = cfg["deep_sleep"]
        self._awake_after_ms = cfg["awake_after_event_ms"]
        self._power = None
        self._saved = _saved_level()
        if self._saved is not None:
            # Any boot (a deep-sleep wake, a reset, a battery change): the door is judged
            # against the state last reported, so a change while it was off is an event.
            # Blind spot: a door that moved and came back meanwhile is not seen.
            self._contact.state = self._saved
            if self._contact.pin.value() != self._saved:
                self._contact.poke()
        else:
            self._save_state(self._contact.state)  # the first boot: the level found, for the next

    def set_wake(self, power):
        power.set_wake(self._pins["contact"], wake_from=self._contact)
        self._power = power
        if self._deep:
            power.set_deep(self._contact, self._save_state, self._awake_after_ms)
            if machine.reset_cause() != machine.DEEPSLEEP_RESET:
                power.stay_awake()  # after power-on too: light sleep only, for the same window

    def _save_state(self, level):
        if level == self._saved:
            return True
        try:
            _replace(STATE_PATH, str(level))
        except OSError as exc:
            print("door state not saved (no deep sleep, the next boot cannot compare):", exc)
            return False
        self._saved = level
        return True

    def _objects(self, is_open):
        objects = [(bthome.OBJ_BATTERY, self._battery.percent()), (bthome.OBJ_DOOR, 1 if is_open else 0)]
        if self._pir is not None:
            objects.append((bthome.OBJ_OCCUPANCY, self._pir.value()))
        return objects

    def _on_change(self, is_open):
        try:
            counter, dropped = self._store.add(self._objects(is_open), urgent=False)
        except OSError as exc:
            print("event lost: flash write failed:", exc)
            self._fb.show(feedback.FAILED)
            return
        print("event", counter, "door", "open" if is_open else "closed")
        self._save_state(self._contact.state)  # the next boot compares the contact with it
        if self._power is not None:
            self._power.stay_awake()
        if dropped:
            print("store full: dropped", dropped)
        self.on_event(counter)

    def heartbeat_objects(self):
        return self._objects(self._contact.is_open)
