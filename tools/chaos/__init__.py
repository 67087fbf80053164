"""The chaos run: thousands of events from a simulated home while faults are injected at random.

    python -m safebox.tools.chaos [--seed 1] [--events 10000] [--devices 16] [--mix pendant:12,...]
                                  [--fault-scale 1] [--faults platform,air,devices] [--pace S]
                                  [--max-minutes 45] [--json] [--write [RESULTS.md]] [--workdir DIR]

A simulated home (tools/sim/home.SimHome: the real firmware on the `micropython` binary, the
hub and the receiver as real processes, real TLS) with --devices devices. Residents press
pendant buttons and open and close doors, concurrently, as fast as the firmware takes them
(each device keeps at most a few events waiting for their ack): 10,000 events are weeks of
a real home's presses, door openings and visits, compressed into minutes. Meanwhile, from a
seeded random schedule:

  platform   hub SIGKILLed and restarted; receiver killed and down for a while; receiver
             answering 500 or 503 to its next requests; requests timing out (a proxy that
             swallows them); answers lost after the platform stored the event (the hub must
             re-send and be told "duplicate"); the network refusing connections
  air        advertisements dropped (a share of them, for a while); acknowledgements lost
             (the ATT write carrying the ack, or its response, lost and the link cut)
  devices    rebooted mid-send (power cycle with events waiting); battery changed (off for
             a few seconds, flash kept)
  broadband  the home's broadband lost for 8-25 s while the hub has a cellular modem: urgent
             events go by SMS and, once the line heals, over HTTPS too (cellular.py); only
             when asked for (`--faults platform,air,devices,broadband`): it adds the modem,
             the SMS gateway and the hub's `[cellular]` table to the home

Between the hub and the receiver sits a TCP proxy in this process (the hub's platform URL
points at it; TLS passes through it untouched), which is how timeouts, lost answers and
refused connections are made.

At the end every fault is undone, the home is given time to drain, and the counts are made:

  created        events the devices stored, from each firmware's own `event <counter> ...` lines
  stored         device events at the platform (its SQLite file)
  not yet        created, not stored, but still waiting in a device's flash or in the
                 hub's outbox at the end (late, not lost; the run is not ok)
  lost           created, not stored and nowhere waiting                    must be 0
  stored twice   more than one row for a (device, counter)                  must be 0
  wrong content  stored with another type than the firmware made           must be 0
  phantom        stored but never created by a firmware                     must be 0
  dead letters   events the hub gave up on (platform refused them)          must be 0
  dropped        events a device dropped because its store was full         must be 0
  alarms         toilet_overdue judged by what the hub heard (the times it put on the two
                 door events of each visit): missed (due, not raised)       must be 0
                 unexpected (raised, not due)                               must be 0
                 and how late they reached the platform (worst delay); visits that faults
                 hid from the hub, or made look long, counted apart with their cause

Exit status 1 when a must-be-zero count is not zero or an event is still waiting. The load
phase stops at --max-minutes, or at SIGINT/SIGTERM (a second one stops at once); the home
then drains as usual and the counts are made. Fixed seed: the same choices of buttons,
doors, faults and their timing; the interleaving of processes still varies from run to run.

The package: records (constants, what happened), residents (the devices as the simulator sees
them, and the people using them), proxy (the TCP proxy and the ack filter), injectors (the
seeded faults), runner (one run, start to counts), counts (the counts and the toilet alarms),
report (the tables), cli (the command line).
"""

from safebox.tools.chaos.counts import alarms, count
from safebox.tools.chaos.proxy import FaultProxy, ack_loss
from safebox.tools.chaos.records import (DEFAULT_MIX, PENDANT_TYPES, PENDING_CAP, STARTUP_GRACE_S, TOILET_LIMIT_S,
                                         Created, Fault, Result, Visit)
from safebox.tools.chaos.report import tables
from safebox.tools.chaos.residents import DrivenDevice
from safebox.tools.chaos.runner import ChaosRun, parse_mix, run
from safebox.tools.chaos.cli import main  # noqa: E402 - after the names it uses

__all__ = ["DEFAULT_MIX", "PENDANT_TYPES", "PENDING_CAP", "STARTUP_GRACE_S", "TOILET_LIMIT_S", "ChaosRun", "Created",
           "DrivenDevice", "Fault", "FaultProxy", "Result", "Visit", "ack_loss", "alarms", "count", "main", "parse_mix",
           "run", "tables"]
