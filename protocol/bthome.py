# The BLE wire, written once: BTHome v2 encrypted service data and the
# hub's authenticated acknowledgement. Runs on MicroPython (the devices) and
# CPython (the hub, tools, tests). See protocol/SPEC.md for the prose.
#
# Keep to the subset both runtimes share: no f-strings with `=`, no
# dataclasses, no int.to_bytes keywords, plain tuples for results.

from binascii import hexlify, unhexlify

from . import ccm

SERVICE_UUID16 = 0xFCD2
SERVICE_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"

# Device-information byte (first byte of the service data).
INFO_ENCRYPTED = 0x01
INFO_EVENT = 0x04  # BTHome's "trigger based" bit: set on event frames, clear on heartbeats
INFO_RESEND_SHIFT = 3  # bits 3-4 (BTHome reserves them): the re-send number mod 4 (SPEC 1.2)
INFO_RESEND_MASK = 0x18
INFO_VERSION_2 = 0x40
_INFO_VERSION_MASK = 0xE0

# BTHome object ids this protocol uses, with their value length in bytes.
OBJ_PACKET_ID = 0x00
OBJ_BATTERY = 0x01
OBJ_TEMPERATURE = 0x02  # 0.01 degC, signed: only to read the bthome.io example
OBJ_HUMIDITY = 0x03  # 0.01 %
OBJ_COUNT = 0x09  # uint8; in a boot frame: the reset cause (SPEC 1.8)
OBJ_VOLTAGE = 0x0C
OBJ_DOOR = 0x1A
OBJ_MOTION = 0x21
OBJ_OCCUPANCY = 0x23
OBJ_BUTTON = 0x3A
OBJ_ACK_SEEN = 0x3E  # BTHome's count (uint32): in a receipt, the highest ack number accepted (SPEC 1.7)
OBJ_TIMESTAMP = 0x50
OBJ_FIRMWARE = 0xF2  # firmware version, uint24: major << 16 | minor << 8 | patch; marks a boot frame
_OBJ_LEN = {
    OBJ_PACKET_ID: 1,
    OBJ_BATTERY: 1,
    OBJ_TEMPERATURE: 2,
    OBJ_HUMIDITY: 2,
    OBJ_COUNT: 1,
    OBJ_VOLTAGE: 2,
    OBJ_DOOR: 1,
    OBJ_MOTION: 1,
    OBJ_OCCUPANCY: 1,
    OBJ_BUTTON: 1,
    OBJ_ACK_SEEN: 4,
    OBJ_TIMESTAMP: 4,
    OBJ_FIRMWARE: 3,
}
_SIGNED = (OBJ_TEMPERATURE,)

# Button event values (BTHome 0x3A).
BUTTON_NONE = 0x00
BUTTON_PRESS = 0x01
BUTTON_LONG_PRESS = 0x04

# Pendant buttons, in the fixed order they are sent.
PENDANT_BUTTONS = ("emergency", "community_service", "life_service")

# Acknowledgement kinds the hub writes to a device.
# The hub writes acks to this GATT characteristic of this service on the device (SPEC 1.7).
ACK_SERVICE_UUID = "5afe0001-8d3b-4c5e-9a4c-3b2f1e0d0c0b"
ACK_CHAR_UUID = "5afe0002-8d3b-4c5e-9a4c-3b2f1e0d0c0b"
# How long a device stays on the air (connectable) after a frame, as the hub may count on
# (SPEC 1.7): an event's burst, a heartbeat's window, and the linger after kind 1 (by role:
# only a pendant is ever owed kind 2 or 3; a door sensor is done with kind 1 and sleeps).
BURST_MS = 1500
HEARTBEAT_WINDOW_MS = 1000
LINGER_MS = {"pendant": 30000, "front_door": 0, "toilet_door": 0}
ACK_HEARD = 1  # the hub has stored the event
ACK_DELIVERED = 2  # the platform has stored the event
ACK_OPERATOR = 3  # an operator at the platform has taken it up
_ACK_NONCE_FLAG = 0x80  # never a valid BTHome v2 info byte: ack nonces cannot collide with frames

COUNTER_MAX = 0xFFFFFFFF
FRAME_OVERHEAD = 1 + 4 + ccm.TAG_LEN  # info, counter, MIC
ACK_LEN = 1 + 4 + 8 + ccm.TAG_LEN  # kind, ack number, encrypted (counter, hub time), MIC
MAX_PAYLOAD = 31 - 3 - 4 - FRAME_OVERHEAD  # legacy advertisement: flags AD, service-data AD header


class FrameError(ValueError):
    """A frame that cannot be read: the message says why."""


def mac_bytes(mac):
    """'54:48:E6:8F:80:A5' (or 12 hex digits) -> 6 bytes in display order."""
    text = mac.replace(":", "").replace("-", "")
    if len(text) != 12:
        raise ValueError("MAC must have 6 bytes: %r" % mac)
    return unhexlify(text)


def mac_text(mac):
    """6 bytes -> '54:48:E6:8F:80:A5'."""
    h = hexlify(bytes(mac)).decode().upper()
    return ":".join(h[i:i + 2] for i in range(0, 12, 2))


def _u32le(n):
    return bytes((n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF, (n >> 24) & 0xFF))


def _le(data):
    n = 0
    for i in range(len(data) - 1, -1, -1):
        n = (n << 8) | data[i]
    return n


def _range(obj_id, size):
    if obj_id in _SIGNED:
        return -(1 << (8 * size - 1)), 1 << (8 * size - 1)
    return 0, 1 << (8 * size)


def encode_objects(objects):
    """[(object id, unsigned int value), ...] in ascending id order -> bytes."""
    out = bytearray()
    last = -1
    for obj_id, value in objects:
        size = _OBJ_LEN.get(obj_id)
        if size is None:
            raise ValueError("unknown object id 0x%02x" % obj_id)
        if obj_id < last:
            raise ValueError("objects must be in ascending id order")
        low, high = _range(obj_id, size)
        if not low <= value < high:
            raise ValueError("value %d does not fit object 0x%02x" % (value, obj_id))
        last = obj_id
        out.append(obj_id)
        for i in range(size):
            out.append((value >> (8 * i)) & 0xFF)
    return bytes(out)


def decode_objects(data):
    """bytes -> [(object id, value), ...]; FrameError on unknown or cut objects."""
    objects = []
    i = 0
    while i < len(data):
        obj_id = data[i]
        size = _OBJ_LEN.get(obj_id)
        if size is None:
            raise FrameError("unknown object id 0x%02x at byte %d" % (obj_id, i))
        if i + 1 + size > len(data):
            raise FrameError("object 0x%02x cut short" % obj_id)
        value = _le(data[i + 1:i + 1 + size])
        if obj_id in _SIGNED and value >= 1 << (8 * size - 1):
            value -= 1 << (8 * size)
        objects.append((obj_id, value))
        i += 1 + size
    return objects


def nonce(mac, info, counter):
    """The 13-byte CCM nonce: MAC, UUID 0xFCD2 little-endian, info byte, counter."""
    return bytes(mac) + b"\xd2\xfc" + bytes((info,)) + _u32le(counter)


def seal(key, mac, counter, objects, event=True, resend=0):
    """Encrypt objects into BTHome v2 service data (without the UUID). `resend`: which
    re-send of the frame this is; its value mod 4 goes in info bits 3-4, so each re-send's
    bytes differ from the one before (BlueZ reports only changed data when scanning passively)."""
    if not 0 <= counter <= COUNTER_MAX:
        raise ValueError("counter out of range")
    payload = encode_objects(objects)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes does not fit an advertisement" % len(payload))
    info = INFO_VERSION_2 | INFO_ENCRYPTED | (INFO_EVENT if event else 0) | ((resend & 3) << INFO_RESEND_SHIFT)
    ct, tag = ccm.encrypt(key, nonce(mac, info, counter), payload)
    return bytes((info,)) + ct + _u32le(counter) + tag


def unseal(key, mac, service_data):
    """Service data -> (info, counter, objects); FrameError says what is wrong,
    including a MIC that does not verify (forged frame or wrong key)."""
    data = bytes(service_data)
    if len(data) < FRAME_OVERHEAD:
        raise FrameError("frame of %d bytes is too short" % len(data))
    info = data[0]
    if info & _INFO_VERSION_MASK != INFO_VERSION_2:
        raise FrameError("not BTHome v2 (info byte 0x%02x)" % info)
    if not info & INFO_ENCRYPTED:
        raise FrameError("frame is not encrypted")
    counter = _le(data[-8:-4])
    try:
        payload = ccm.decrypt(key, nonce(mac, info, counter), data[1:-8], data[-4:])
    except ccm.AuthError:
        raise FrameError("MIC mismatch: forged frame or wrong key")
    return info, counter, decode_objects(payload)


def advertisement(service_data):
    """Advertising data: flags (LE general discoverable, no BR/EDR) + service data."""
    sd = b"\xd2\xfc" + bytes(service_data)
    if 3 + 2 + len(sd) > 31:
        raise ValueError("advertisement longer than 31 bytes")
    return b"\x02\x01\x06" + bytes((len(sd) + 1, 0x16)) + sd


def service_data_in(adv):
    """Advertising data -> our service data (without the UUID), or None."""
    i = 0
    while i + 1 < len(adv):
        size = adv[i]
        if size == 0 or i + 1 + size > len(adv):
            return None
        if adv[i + 1] == 0x16 and size >= 3 and adv[i + 2] == 0xD2 and adv[i + 3] == 0xFC:
            return bytes(adv[i + 4:i + 1 + size])
        i += 1 + size
    return None


def pendant_objects(battery, button=None, action=BUTTON_PRESS):
    """Objects of a pendant frame: battery, then all three buttons in order."""
    objects = [(OBJ_BATTERY, battery)]
    for name in PENDANT_BUTTONS:
        objects.append((OBJ_BUTTON, action if name == button else BUTTON_NONE))
    return objects


def seal_ack(key, mac, kind, counter, hub_time, number):
    """The hub's acknowledgement of event `counter`, authenticated with the device key.
    `number`: the hub's ack number, in the nonce, never used twice by a hub (SPEC 1.7): a
    re-sent ack is sealed afresh under a new number, never under an old nonce."""
    if kind not in (ACK_HEARD, ACK_DELIVERED, ACK_OPERATOR):
        raise ValueError("unknown ack kind %r" % kind)
    if not 0 < number <= COUNTER_MAX:
        raise ValueError("ack number out of range")
    n = nonce(mac, _ACK_NONCE_FLAG | kind, number)
    ct, tag = ccm.encrypt(key, n, _u32le(counter) + _u32le(hub_time))
    return bytes((kind,)) + _u32le(number) + ct + tag


def unseal_ack(key, mac, data):
    """Ack bytes -> (kind, counter, hub_time, ack number); FrameError when not authentic."""
    data = bytes(data)
    if len(data) != ACK_LEN:
        raise FrameError("ack must be %d bytes, got %d" % (ACK_LEN, len(data)))
    kind = data[0]
    if kind not in (ACK_HEARD, ACK_DELIVERED, ACK_OPERATOR):
        raise FrameError("unknown ack kind %d" % kind)
    number = _le(data[1:5])
    try:
        plain = ccm.decrypt(key, nonce(mac, _ACK_NONCE_FLAG | kind, number), data[5:13], data[13:])
    except ccm.AuthError:
        raise FrameError("ack MIC mismatch")
    return kind, _le(plain[0:4]), _le(plain[4:8]), number


def ack_seen(objects):
    """The ack number a receipt reports (SPEC 1.7), or None."""
    for obj_id, value in objects:
        if obj_id == OBJ_ACK_SEEN:
            return value
    return None


# Boot frames (SPEC 1.8): a heartbeat with the reset cause and the firmware version, sent at
# every start but a deep-sleep wake. Reset causes as MicroPython's machine.reset_cause() numbers them.
RESET_POWER_ON = 1
RESET_HARD = 2
RESET_WATCHDOG = 3
RESET_DEEPSLEEP = 4
RESET_SOFT = 5


def version_code(text):
    """'0.2.0' -> the uint24 of the firmware-version object."""
    parts = [int(p) for p in text.split(".")]
    if len(parts) != 3 or not all(0 <= p < 256 for p in parts):
        raise ValueError("version must be major.minor.patch, each 0-255: %r" % text)
    return parts[0] << 16 | parts[1] << 8 | parts[2]


def version_text(code):
    return "%d.%d.%d" % (code >> 16 & 0xFF, code >> 8 & 0xFF, code & 0xFF)


def boot_objects(objects, reset_cause, version):
    """A heartbeat's objects plus the boot objects, merged in ascending id order (the
    pendant's three buttons keep theirs: MicroPython's sort is not stable)."""
    extra = [(OBJ_COUNT, reset_cause), (OBJ_FIRMWARE, version_code(version))]
    out = []
    for obj in objects:
        while extra and extra[0][0] < obj[0]:
            out.append(extra.pop(0))
        out.append(obj)
    return out + extra


def boot_info(objects):
    """(reset cause, version text) when the objects are a boot frame's, else None."""
    cause = version = None
    for obj_id, value in objects:
        if obj_id == OBJ_COUNT:
            cause = value
        elif obj_id == OBJ_FIRMWARE:
            version = version_text(value)
    if version is None:
        return None
    return cause, version

