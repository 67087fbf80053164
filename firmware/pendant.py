# The pendant: three buttons (emergency, community service, daily-life
# service), each with press and long press, worn or kept at hand.
#
# An emergency (press or long press) is urgent: a full store never drops it.
# The hub maps a long press to the same event type with data.action "long_press".
#
# Buttons switch 3V3 onto their pins (pull-downs): any of them wakes the
# device from light or deep sleep (firmware/power.py, boards.py). After a deep
# sleep the buttons whose pins woke the chip (cfg["wake_pins"], read first
# thing at boot: firmware/wake.py) count as pressed even when they are already
# released (a short press ends long before the firmware runs); two buttons
# pressed together while asleep are two events, emergency first.

from safebox.protocol import bthome

from . import feedback, inputs, wake

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
        woke = cfg.get("wake_pins", ())
        self._deep = bool(cfg["deep_sleep"]) and wake.pins_readable(self._pins["buttons"])
        self.inputs = [inputs.Button(self._pins[name], name, self._on_button, active=1,
                                     woke=self._pins[name] in woke)
                       for name in bthome.PENDANT_BUTTONS]
        for b in self.inputs:  # emergency first
            if self._pins[b.name] in woke:
                print("input:", b.name, "woke the device", "(released)" if b.released_in_sleep else "(held)")
            elif b.wants_attention():
                print("input:", b.name, "held at boot")
            if b.released_in_sleep:
                self._on_button(b.name, inputs.PRESS)  # the press is over: counted now

    def set_wake(self, power):
        power.set_buttons([b.pin for b in self.inputs], self._pins["buttons"], self._deep)

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
