"""What BlueZ, D-Bus and bleak say, in words an owner can act on (the journal, `safebox-hub status`)."""

from __future__ import annotations

from bleak.exc import BleakBluetoothNotAvailableError

# (a piece of the error's text, the words put before it)
_WORDS = (
    ("org.bluez was not provided", "bluetoothd is not running (systemctl start bluetooth)"),
    ("--experimental", "passive scanning needs bluetoothd --experimental"),
    ("No Bluetooth adapters found", "no Bluetooth adapter"),
    ("No powered Bluetooth adapters", "the Bluetooth adapter is off (rfkill unblock bluetooth)"),
)


def in_words(exc: BaseException) -> str:
    """The error's text, with what it means for an owner put before it when it is one we know."""
    text = str(exc.args[0]) if isinstance(exc, BleakBluetoothNotAvailableError) else str(exc)  # (text, reason)
    text = text or type(exc).__name__
    for piece, words in _WORDS:
        if piece in text:
            return f"{words}: {text}"
    return text
