"""Acks back to devices: the policy (which kind, when, owed) and the writer (one GATT write)."""

from safebox.hub.acks.policy import ACK_TTL_S, AckPolicy
from safebox.hub.acks.writer import AckWriter

__all__ = ["ACK_TTL_S", "AckPolicy", "AckWriter"]
