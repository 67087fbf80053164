# The door sensors: front door and toilet door, a reed contact each; the
# toilet door optionally with a PIR module for occupancy.
#
# Every change of the contact that holds (firmware/inputs.py) is an event:
# door (0x1A) 1 open / 0 closed, with the battery and, on a toilet door with a
# PIR, occupancy (0x23) as the PIR sees it at that moment. The heartbeat
# carries the same objects, so the hub learns the door's state even when an
# event was lost with the power (a battery change while the door moved).
# Door events are never urgent: when the store is full the oldest goes.

from machine import Pin

from safebox.protocol import bthome

from . import feedback, inputs


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

    def set_wake(self, power):
        power.set_wake(self._pins["contact"], wake_from=self._contact)

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
        if dropped:
            print("store full: dropped", dropped)
        self.on_event(counter)

    def heartbeat_objects(self):
        return self._objects(self._contact.is_open)
