# Checks protocol/vectors/ble.json against the codec. Runs on the micropython
# binary and on CPython alike; prints one line per failure and a summary, and
# exits 1 when anything failed.
import json
import sys
from binascii import hexlify, unhexlify

from safebox.protocol import bthome, ccm

failures = []
checked = 0


def check(name, got, want):
    global checked
    checked += 1
    if got != want:
        failures.append("%s: got %s, want %s" % (name, got, want))


def h(b):
    return hexlify(b).decode()


with open(sys.argv[1]) as f:
    doc = json.load(f)

for v in doc["ccm"]:
    key, mac = unhexlify(v["key"]), bthome.mac_bytes(v["mac"])
    ct, tag = ccm.encrypt(key, bthome.nonce(mac, v["info"], v["counter"]), unhexlify(v["plaintext"]))
    check(v["source"] + " ciphertext", h(ct), v["ciphertext"])
    check(v["source"] + " mic", h(tag), v["mic"])
    info, counter, objects = bthome.unseal(key, mac, unhexlify(v["service_data"]))
    check(v["source"] + " unseal", (counter, objects), (v["counter"], [tuple(o) for o in v["objects"]]))

for v in doc["frames"]:
    key, mac = unhexlify(v["key"]), bthome.mac_bytes(v["mac"])
    objects = [tuple(o) for o in v["objects"]]
    check(v["name"] + " payload", h(bthome.encode_objects(objects)), v["payload"])
    resend = v.get("resend", 0)
    sd = bthome.seal(key, mac, v["counter"], objects, v["event"], resend)
    check(v["name"] + " seal", h(sd), v["service_data"])
    check(v["name"] + " advertisement", h(bthome.advertisement(sd)), v["advertisement"])
    check(v["name"] + " found in advertisement", h(bthome.service_data_in(unhexlify(v["advertisement"]))), v["service_data"])
    try:
        info, counter, got = bthome.unseal(key, mac, unhexlify(v["service_data"]))
        check(v["name"] + " unseal", (counter, bool(info & bthome.INFO_EVENT), got), (v["counter"], v["event"], objects))
        check(v["name"] + " re-send number", (info & bthome.INFO_RESEND_MASK) >> bthome.INFO_RESEND_SHIFT, resend)
    except bthome.FrameError as exc:
        check(v["name"] + " unseal", str(exc), "accepted")
    boot = v.get("boot")
    if boot is not None:  # SPEC 1.8: a heartbeat's objects plus the reset cause and the version
        base = [o for o in objects if o[0] not in (bthome.OBJ_COUNT, bthome.OBJ_FIRMWARE)]
        check(v["name"] + " boot objects", bthome.boot_objects(base, boot["reset_cause"], boot["version"]), objects)
        check(v["name"] + " boot info", bthome.boot_info(objects), (boot["reset_cause"], boot["version"]))
    else:
        check(v["name"] + " not a boot frame", bthome.boot_info(objects), None)
    check(v["name"] + " ack seen", bthome.ack_seen(objects), v.get("ack_seen"))

for v in doc["acks"]:
    key, mac = unhexlify(v["key"]), bthome.mac_bytes(v["mac"])
    check("ack %d seal" % v["kind"], h(bthome.seal_ack(key, mac, v["kind"], v["counter"], v["hub_time"], v["number"])),
          v["ack"])
    check("ack %d unseal" % v["kind"], bthome.unseal_ack(key, mac, unhexlify(v["ack"])),
          (v["kind"], v["counter"], v["hub_time"], v["number"]))

for v in doc["bad_frames"]:
    try:
        bthome.unseal(unhexlify(v["key"]), bthome.mac_bytes(v["mac"]), unhexlify(v["service_data"]))
        check("bad frame " + v["why"], "accepted", "refused")
    except bthome.FrameError as exc:
        check("bad frame reason", v["why"] in str(exc), True)

for line in failures:
    print("FAIL", line)
print("%d passed, %d failed" % (checked - len(failures), len(failures)))
sys.exit(1 if failures else 0)
