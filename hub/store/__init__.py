"""The hub's durable state: one SQLite file (hub.db), every change one transaction.

Everything that must survive a power cut lives here:
  counters      per device, the highest counter accepted: the replay guard (SPEC 1.4)
  outbox        events waiting for the platform, body stored as the exact bytes to send
  dead_letter   events the platform refused for good, with its reason
  hub_seq       the sequence behind the ids of events the hub makes itself
  devices_seen  last heard time, battery and RSSI per device, for `status` and the rules
  alarms        (v2) the lifecycle of each alarm the rules raise: raised, acknowledged by
                the platform (its event delivered), cleared
  rule_state    (v2) each rule machine's state per device, so timers survive a restart
  owed_acks     (v3) acks of kind 2 (delivered) and 3 (operator) a device is owed
  awaiting_operator (v3) urgent pendant events delivered but not yet taken up by an operator
  hub_settings  (v3) small values the relay keeps across restarts (heartbeat interval, cursors)

The store offers tables, not policy: which ack is owed is decided in hub/acks/policy.py, what
goes out when in hub/uplink. Modules: database (the file, transactions, migrations), schema,
records (what reads return), counters, outbox, acks, rules.
"""

from safebox.hub.store.acks import AckTables
from safebox.hub.store.counters import CountersTable
from safebox.hub.store.database import BUSY_TIMEOUT_S, COUNTER_MAX, StoreError
from safebox.hub.store.records import (Alarm, Awaiting, DeadLetter, Owe, OutboxItem, OwedAck, SeenDevice, Settled,
                                       Verdict)
from safebox.hub.store.rules import RulesTables
from safebox.hub.store.schema import SCHEMA_VERSION


class HubStore(CountersTable, AckTables, RulesTables):
    """The hub database. Open with `HubStore.open(path)`; usable as a context manager."""


__all__ = ["BUSY_TIMEOUT_S", "COUNTER_MAX", "SCHEMA_VERSION", "Alarm", "Awaiting", "DeadLetter", "HubStore", "Owe",
           "OutboxItem", "OwedAck", "SeenDevice", "Settled", "StoreError", "Verdict"]
