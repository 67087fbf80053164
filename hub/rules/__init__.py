"""The hub's safety rules: pure state machines fed with frames and the time.

  toilet.py       occupied -> vacated; toilet_overdue after 10 min (door-only or PIR)
  front_door.py   door_inactive after 24 h without an opening, with quiet windows
  supervision.py  device_offline / device_online; battery_low once per episode
  engine.py       machines per paired device, hub events, the alarm lifecycle, timers
  settings.py     the [rules] table of hub.toml
  model.py        observations in, actions out
"""

from safebox.hub.rules.engine import RulesEngine
from safebox.hub.rules.settings import (FrontDoorSettings, QuietWindow, RulesSettings, SupervisionSettings,
                                        ToiletSettings)

__all__ = ["RulesEngine", "RulesSettings", "ToiletSettings", "FrontDoorSettings", "SupervisionSettings",
           "QuietWindow"]
