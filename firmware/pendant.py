# The pendant: three buttons (emergency, community service, daily-life
# service), each with press and long press, worn or kept at hand.
#
# An emergency (press or long press) is urgent: a full store never drops it.
# The hub maps a long press to the same event type with data.action "long_press".

from safebox.protocol import bthome

from . import feedback, inputs

_ACTION = {inputs.PRESS: bthome.BUTTON_PRESS, inputs.LONG_PRESS: bthome.BUTTON_LONG_PRESS}


def _unheard(counter):
    pass


class Pendant:
    def __init__(self, cfg, store, battery, fb):
        self._store = store
        self._battery = battery
        self._fb = fb
        self._pins = cfg["pins"]
        self.on_event = _unheard  # the sender's event_made, once it exists
        self.inputs = [inputs.Button(self._pins[name], name, self._on_button) for name in bthome.PENDANT_BUTTONS]

    def set_wake(self, power):
        if "button_wake" in self._pins and self._pins["wake"] == "ext0":
            power.set_wake(self._pins["button_wake"], 0)

    def _on_button(self, name, action):
        objects = bthome.pendant_objects(self._battery.percent(), name, _ACTION[action])
        try:
            counter, dropped = self._store.add(objects, urgent=name == "emergency")
        except OSError as exc:
            print("event lost: flash write failed:", exc)
            self._fb.show(feedback.FAILED)
            return
        print("event", counter, name, action)
        if dropped:
            print("store full: dropped", dropped)
        self._fb.show(feedback.LONG if action == inputs.LONG_PRESS else feedback.PRESSED)
        self.on_event(counter)

    def heartbeat_objects(self):
        return bthome.pendant_objects(self._battery.percent())
