# The pendant: three buttons (emergency, community service, daily-life
# service), each with press and long press, worn or kept at hand.

from safebox.protocol import bthome

from . import button
from .button import Button

_ACTION = {button.PRESS: bthome.BUTTON_PRESS, button.LONG_PRESS: bthome.BUTTON_LONG_PRESS}


def start(cfg, store, sender, battery):
    """Make the button tasks; returns them for the caller to run."""

    def on_button(name, action):
        objects = bthome.pendant_objects(battery.percent(), name, _ACTION[action])
        counter, dropped = store.add(objects, urgent=name == "emergency")
        print("event", counter, name, action, "dropped" if dropped else "")
        sender.wake()

    pins = cfg["pins"]
    return [Button(pins[name], name, on_button).run() for name in bthome.PENDANT_BUTTONS]


def heartbeat_objects(battery):
    return lambda: bthome.pendant_objects(battery.percent())
