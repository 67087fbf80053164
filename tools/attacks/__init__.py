"""The attack table: forged, replayed and malformed input at both hops, each refused, nothing harmed.

    python -m safebox.tools.attacks [--json] [--write [RESULTS.md]] [--workdir DIR]

Runs against the real simulated home (tools/sim/home.SimHome): the pendant firmware on the
`micropython` binary, the hub and the receiver as their own processes, real TLS.

* BLE: frames put on the air by an attacker's radio (`SimHome.transmit`) claiming a paired
  device's address or its own. The refusal reason is read from the hub's log
  ("refused frame from <address>: <reason>").
* HTTPS: requests sent straight to the receiver over TLS. Several need a signature that
  verifies except for the one thing under test; those are signed with the hub's real key,
  standing for a request captured on the wire or a hub that misbehaves. The refusal reason
  is the receiver's JSON answer.

Every attempt is judged twice: was it refused (the expected status or log line), and is
the stored data intact: the platform's rows (id and body digest), the hub's replay counters
and the device events in its outbox are compared before and after. A few controls (genuine
requests) are run alongside to show the refusals are not a receiver that refuses everything.

Exit status: 0 when every attack was refused and left the data intact, 1 otherwise.

The package: ledger (the stored data before and after an attempt), attacker (one attempt at
either hop, judged; frames and signatures with knobs), ble and https (the attempts), cli (the
run, the table, the command line).
"""

from safebox.tools.attacks.attacker import Attacker, Attempt, Report
from safebox.tools.attacks.ble import ble_attacks
from safebox.tools.attacks.https import https_attacks
from safebox.tools.attacks.ledger import Ledger, platform_rows
from safebox.tools.attacks.cli import main, run, table  # noqa: E402 - after the names it uses

__all__ = ["Attacker", "Attempt", "Ledger", "Report", "ble_attacks", "https_attacks", "main", "platform_rows", "run",
           "table"]
