"""Everything between the outbox and the platform: the client (sign, send, a typed answer),
the relay loop, hub heartbeats and the operator-ack poll."""

from safebox.hub.uplink.client import PlatformClient, Reply, Unreachable, batch_key, classify
from safebox.hub.uplink.heartbeats import Heartbeats
from safebox.hub.uplink.held import HeldUrgent
from safebox.hub.uplink.operator import OperatorAcks
from safebox.hub.uplink.relay import ROUTINE, Relay

__all__ = ["ROUTINE", "Heartbeats", "HeldUrgent", "OperatorAcks", "PlatformClient", "Relay", "Reply", "Unreachable", "batch_key",
           "classify"]
