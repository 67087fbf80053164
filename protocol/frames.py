"""What an event frame means (SPEC 1.5, 1.6): a device's role and the objects of its frame ->
the event it reports. A pure function, used by the hub (hub/ingest.py) and written in the
subset of Python that MicroPython runs, so a device can use it too.

`read(role, objects)` returns a `Reading`:
  type       the event type (SPEC 2): emergency, community_service, life_service,
             door_opened, door_closed
  data       what the event body's `data` carries from the frame: battery, action
             (pendant: "press" / "long_press"), occupancy (toilet door with a PIR)
  timestamp  the 0x50 object (unix s) when the device knew the time, else None
  note       None, or a remark on a frame that is read but faulty (several buttons pressed:
             the first in protocol order wins, as an authentic emergency must never be dropped)
A frame that says nothing this protocol understands raises `MeaningError` with the reason.
"""

from collections import namedtuple

from safebox.protocol import bthome

EMERGENCY = "emergency"
COMMUNITY_SERVICE = "community_service"
LIFE_SERVICE = "life_service"
DOOR_OPENED = "door_opened"
DOOR_CLOSED = "door_closed"
DOOR_ROLES = ("front_door", "toilet_door")

BUTTON_ACTIONS = {bthome.BUTTON_PRESS: "press", bthome.BUTTON_LONG_PRESS: "long_press"}
DOOR_EVENTS = {0: DOOR_CLOSED, 1: DOOR_OPENED}

Reading = namedtuple("Reading", ("type", "data", "timestamp", "note"))


class MeaningError(ValueError):
    """An authentic frame that does not say anything this protocol understands."""


def read(role, objects):
    """(role, [(object id, value), ...]) of an event frame -> Reading; MeaningError if it means nothing."""
    values = {}
    for obj_id, value in objects:
        values.setdefault(obj_id, []).append(value)
    data = {}
    battery = _first(values, bthome.OBJ_BATTERY)
    if battery is not None:
        data["battery"] = battery
    note = None
    if role == "pendant":
        pressed = _pressed(values)
        if len(pressed) > 1:
            note = "%d buttons pressed; taking %s" % (len(pressed), pressed[0][0])
        type_, data["action"] = pressed[0]
    elif role in DOOR_ROLES:
        door = _first(values, bthome.OBJ_DOOR)
        if door is None:
            raise MeaningError("door event frame without a door object")
        if door not in DOOR_EVENTS:
            raise MeaningError("door object has unknown value %d" % door)
        type_ = DOOR_EVENTS[door]
        occupancy = _first(values, bthome.OBJ_OCCUPANCY)
        if occupancy is not None:
            data["occupancy"] = bool(occupancy)
    else:
        raise MeaningError("no events are known for role %r" % (role,))
    return Reading(type_, data, _first(values, bthome.OBJ_TIMESTAMP), note)


def door_objects(battery, is_open, occupancy=None):
    """The objects of a door sensor's frame: battery, door, and occupancy when it has a PIR."""
    objects = [(bthome.OBJ_BATTERY, battery), (bthome.OBJ_DOOR, 1 if is_open else 0)]
    if occupancy is not None:
        objects.append((bthome.OBJ_OCCUPANCY, 1 if occupancy else 0))
    return objects


def _first(values, obj_id):
    found = values.get(obj_id)
    return found[0] if found else None


def _pressed(values):
    buttons = values.get(bthome.OBJ_BUTTON, [])
    if len(buttons) != len(bthome.PENDANT_BUTTONS):
        raise MeaningError("pendant frame has %d button objects, expected %d"
                           % (len(buttons), len(bthome.PENDANT_BUTTONS)))
    pressed = []
    for name, value in zip(bthome.PENDANT_BUTTONS, buttons):
        if value == bthome.BUTTON_NONE:
            continue
        if value not in BUTTON_ACTIONS:
            raise MeaningError("button %s has unknown value 0x%02x" % (name, value))
        pressed.append((name, BUTTON_ACTIONS[value]))
    if not pressed:
        raise MeaningError("pendant event frame with no button pressed")
    return pressed
