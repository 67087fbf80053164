# Device entry: load the config, start the radio, the store, the sender and
# the role's inputs. The board's /main.py calls run().

import asyncio

from . import config
from .feedback import Feedback
from .power import Battery
from .radio import Radio
from .sender import Sender
from .store import EventStore


def _role_module(role):
    if role == "pendant":
        from . import pendant
        return pendant
    raise config.ConfigError("role: %s is not built yet" % role)


async def _main(cfg):
    fb = Feedback(cfg["pins"]["led"], cfg["pins"]["buzzer"])
    battery = Battery(cfg["pins"]["battery_adc"])
    store = EventStore()
    for problem in store.problems:
        print("self-test:", problem)
    radio = Radio()
    role = _role_module(cfg["role"])
    sender = Sender(radio, store, cfg["key"], fb, role.heartbeat_objects(battery), cfg["heartbeat_s"])
    tasks = [asyncio.create_task(t) for t in role.start(cfg, store, sender, battery)]
    print("ready", cfg["role"], "next counter", store.next_counter, "pending", len(store.pending))
    await sender.run()
    for t in tasks:
        t.cancel()


def run():
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        print("self-test: config:", exc)
        raise
    asyncio.run(_main(cfg))
