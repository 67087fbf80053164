"""The faults made between the parts: a TCP proxy in front of the receiver, and a filter that loses acks on the air."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

from safebox.protocol import bthome


def is_ack_write_packet(data: bytes) -> bool:
    """An LE ACL packet carrying an ATT Write Request of an ack (L2CAP header, ATT channel 4,
    opcode 0x12, handle, bthome.ACK_LEN bytes)."""
    return len(data) == 4 + 3 + bthome.ACK_LEN and data[2:4] == b"\x04\x00" and data[4] == 0x12


def ack_loss(share: float, rng: random.Random) -> tuple[Callable[[str, str, bytes], bool], Counter[str]]:
    """An Air.acl_filter that loses `share` of ack writes (ATT Write Request carrying an ack,
    bthome.ACK_LEN bytes) and of write responses, and the counts of what it lost ("write",
    "response")."""
    lost = Counter[str]()

    def lose(source: str, destination: str, data: bytes) -> bool:
        if len(data) < 5 or data[2:4] != b"\x04\x00":
            return False  # not ATT
        is_ack_write = is_ack_write_packet(data)
        is_write_response = data[4] == 0x13 and len(data) == 5
        if (is_ack_write or is_write_response) and rng.random() < share:
            lost["write" if is_ack_write else "response"] += 1
            return True
        return False

    return lose, lost


class FaultProxy:
    """A TCP proxy whose mode decides what happens to the hub's HTTPS traffic.

    pass      everything goes through
    refuse    the listening socket is closed: connections are refused
    blackhole connections are accepted and nothing is forwarded either way: requests time out
    mute      requests reach the receiver, answers are swallowed: stored, but the hub never hears so
    """

    def __init__(self, target: Callable[[], int]) -> None:
        self._target = target
        self.mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        old, self.mode = self.mode, mode
        if mode in ("refuse", "blackhole", "mute"):
            for w in list(self._conns):  # kept-alive connections are cut as a failing network would
                w.transport.abort()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        if old == "refuse" and mode != "refuse":
            for _ in range(50):
                try:
                    await self.start()
                    break
                except OSError:
                    await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target())
        except (OSError, ValueError):
            writer.transport.abort()  # the receiver is down: the hub sees the connection drop
            return
        self._conns |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, "up"), self._pump(up_reader, writer, "down"),
                                 return_exceptions=True)
        finally:
            self._conns -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        while data := await reader.read(65536):
            if self.mode == "blackhole" or (self.mode == "mute" and direction == "down"):
                continue
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
