"""The rules engine: feeds the hub's frames to the rule machines and keeps their promises.

The machines (toilet.py, front_door.py, supervision.py) are pure: they take an
observation or the time and answer with actions. This engine gives each paired
device its machines by role, turns their actions into hub events in the outbox
(`store.next_hub_seq` + `events.hub_event_id`), records the alarm lifecycle, and
persists every machine's state, all of one step in ONE transaction
(`HubStore.commit_rules`): a hub killed at any point restarts with either the step
done (event queued, alarm open, state saved) or not begun.

Time: the engine never polls. `next_deadline()` is the earliest moment a machine
could act; `run()` sleeps until then or until a frame arrives (`observe_outcome`
wakes it), then calls `tick()`. After a (re)start nothing falls due for
`startup_grace_s`, so frames the devices kept while the hub was away arrive first.

Buttons (`emergency`, `community_service`, `life_service`) need no rule: ingest
stores them as urgent and the hub wakes the uplink at once; the engine only counts
them as the device being heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from safebox.hub.devices import Devices
from safebox.hub.rules.front_door import FrontDoorMachine
from safebox.hub.rules.model import HEARTBEAT, Action, Clear, Emit, Observation, Subject
from safebox.hub.rules.settings import RulesSettings
from safebox.hub.rules.supervision import SupervisionMachine
from safebox.hub.rules.toilet import ToiletMachine
from safebox.hub.store import HubStore, StoreError
from safebox.protocol import events

log = logging.getLogger("safebox.hub.rules")

_MIN_SLEEP_S = 0.001
_DEVICE_CLOCK_SLACK_S = 7 * 86400  # an event stamped earlier than this before it was heard: use heard time


class Machine(Protocol):
    rule: str
    subject: Subject

    def observe(self, obs: Observation) -> list[Action]: ...
    def tick(self, now: float) -> list[Action]: ...
    def deadline(self) -> float | None: ...
    def state(self) -> dict[str, Any]: ...


class RulesEngine:
    def __init__(self, store: HubStore, devices: Devices, settings: RulesSettings, *, hub_id: str,
                 home_id: str, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._devices = devices
        self.settings = settings
        self._hub_id = hub_id
        self._home_id = home_id
        self._clock = clock
        self._machines: dict[tuple[str, str], Machine] = {}
        self._saved: dict[tuple[str, str], dict[str, Any]] = {}
        self._started_at: float | None = None
        self._wake: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Load the machines' saved state; the hub has just begun listening."""
        now = self._clock()
        self._started_at = now
        self._machines = {}
        self._saved = self._store.rule_states()
        self._sync_devices(now)
        self._commit([], self._machines.values())  # a new device's machines are saved from the start

    @property
    def started(self) -> bool:
        return self._started_at is not None

    def _sync_devices(self, now: float) -> None:
        """One set of machines per paired device, by role; re-made when a device is re-paired or moved."""
        paired = {d.id: Subject(d.id, d.role, d.room) for d in self._devices}
        for key in [k for k in self._machines if k[1] not in paired]:
            del self._machines[key]
        assert self._started_at is not None
        for subject in paired.values():
            for rule in self._rules_for(subject.role):
                key = (rule, subject.id)
                current = self._machines.get(key)
                if current is not None and current.subject == subject:
                    continue
                state = current.state() if current is not None else self._saved.get(key)
                self._machines[key] = self._make(rule, subject, state, now)

    @staticmethod
    def _rules_for(role: str) -> tuple[str, ...]:
        if role == "toilet_door":
            return ("supervision", "toilet")
        if role == "front_door":
            return ("supervision", "front_door")
        return ("supervision",)

    def _make(self, rule: str, subject: Subject, state: dict[str, Any] | None, now: float) -> Machine:
        s = self.settings
        if rule == "toilet":
            return ToiletMachine(subject, s.toilet, state)
        if rule == "front_door":
            return FrontDoorMachine(subject, s.front_door, s.timezone, state, now=now)
        assert self._started_at is not None
        return SupervisionMachine(subject, s.supervision, state, watching_since=self._started_at)

    # -- input ----------------------------------------------------------------------
    def observe_outcome(self, outcome: Any) -> bool:
        """Feed one `ingest.Outcome`; True when hub events were queued (wake the uplink).

        A failing disk is logged, not raised: this runs on the radio's path, and the
        device event itself is already stored (or the device re-sends it).
        """
        try:
            obs = self.observation(outcome)
            kept = outcome.body if getattr(outcome, "kept_at_hub", False) else None
            return False if obs is None else self.observe(obs, kept)
        except StoreError as exc:
            log.error("rules: frame not taken into account, state reloaded: %s", exc)
            self._reload()
            return False

    def observation(self, outcome: Any) -> Observation | None:
        """An ingest Outcome as the rules see it (None for repeats and refusals)."""
        device = getattr(outcome, "device", None)
        if device is None or outcome.kind not in ("event", "heartbeat"):
            return None
        subject = Subject(device.id, device.role, device.room)
        now = self._clock()
        if outcome.kind == "heartbeat":
            seen = self._store.seen(device.id)
            heard = seen.last_heard_at if seen is not None else now
            return Observation(subject, HEARTBEAT, heard, heard, battery=seen.battery if seen else None)
        raw = getattr(outcome, "body", None)  # a new event's bytes, sent or kept at the hub
        if raw is None:
            item = self._store.get(outcome.event_id) if outcome.event_id else None
            if item is None:  # already relayed and gone: only "heard" is known
                return Observation(subject, HEARTBEAT, now, now, outcome.event_id)
            raw = item.body
        body = events.decode(raw)
        at = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")).timestamp()
        if not now - _DEVICE_CLOCK_SLACK_S <= at <= now:
            at = now
        data = body.get("data", {})
        battery = data.get("battery")
        occupancy = data.get("occupancy")
        return Observation(subject, body["type"], at, now, outcome.event_id,
                           battery if isinstance(battery, int) else None,
                           occupancy if isinstance(occupancy, bool) else None)

    def observe(self, obs: Observation, kept: bytes | None = None) -> bool:
        """Feed one observation to its device's machines; True when hub events were queued.
        `kept`: the bytes of the observed event when the hub keeps it from the platform
        (hub/privacy.py); if it ends an alarm (the front door opened again) it is the news and
        goes up after all."""
        if self._started_at is None:
            self.start()
        machines = [m for (rule, dev), m in self._machines.items() if dev == obs.subject.id]
        if not machines:
            self._sync_devices(self._clock())
            machines = [m for (rule, dev), m in self._machines.items() if dev == obs.subject.id]
        actions = [a for m in machines for a in m.observe(obs)]
        queued = self._commit(actions, machines, kept)
        if self._wake is not None:
            self._wake.set()  # deadlines may have moved
        return queued

    # -- time -----------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """The earliest time a machine may act (never inside the startup grace), None if none may."""
        if self._started_at is None:
            return None
        deadlines = [d for m in self._machines.values() if (d := m.deadline()) is not None]
        if not deadlines:
            return None
        return max(min(deadlines), self._started_at + self.settings.startup_grace_s)

    def tick(self, now: float | None = None) -> bool:
        """Let every machine act on the time; True when hub events were queued. StoreError propagates."""
        if self._started_at is None:
            self.start()
        assert self._started_at is not None
        now = self._clock() if now is None else now
        if now < self._started_at + self.settings.startup_grace_s:
            return False
        self._sync_devices(now)
        touched: list[Machine] = []
        actions: list[Action] = []
        for machine in self._machines.values():
            done = machine.tick(now)
            if done:
                touched.append(machine)
                actions += done
        return self._commit(actions, touched) if touched else False

    async def run(self, notify: Callable[[], None]) -> None:
        """Tick whenever a deadline falls due; `notify()` after queuing events. Only ends by failing."""
        self._wake = asyncio.Event()
        if self._started_at is None:
            self.start()
        while True:
            self._wake.clear()
            if self.tick():
                notify()
            deadline = self.next_deadline()
            timeout = None if deadline is None else max(deadline - self._clock(), _MIN_SLEEP_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # -- output ---------------------------------------------------------------------
    def _commit(self, actions: list[Action], machines: Iterable[Machine], kept: bytes | None = None) -> bool:
        bodies: list[bytes] = []
        news: list[bytes] = []  # a kept device event that ended an alarm
        raised: list[tuple[str, str, float, str]] = []
        cleared: list[tuple[str, str, float, str | None]] = []
        for action in actions:
            if isinstance(action, Emit):
                event_id = events.hub_event_id(self._hub_id, self._store.next_hub_seq())
                body = events.make(event_id=event_id, type=action.type, hub_id=self._hub_id,
                                   home_id=self._home_id, occurred_at=action.at,
                                   data={"device": action.subject.as_data(), **action.data})
                bodies.append(events.encode(body))
                if action.raises:
                    raised.append((action.raises, action.subject.id, action.at, event_id))
                if action.clears:
                    cleared.append((action.clears, action.subject.id, action.at, event_id))
                log.info("rules: %s for %s (%s) as %s", action.type, action.subject.id, action.subject.role, event_id)
            elif isinstance(action, Clear):
                cleared.append((action.kind, action.subject.id, action.at, action.by_event))
                log.info("rules: %s of %s cleared by %s", action.kind, action.subject.id, action.by_event)
                if kept is not None and action.by_event is not None and not news \
                        and events.decode(kept)["event_id"] == action.by_event:
                    news.append(kept)
                    log.info("rules: %s goes to the platform: it ended %s", action.by_event, action.kind)
        states = {}
        for m in machines:
            key = (m.rule, m.subject.id)
            state = m.state()
            if self._saved.get(key) != state:
                states[key] = state
        if not (bodies or raised or cleared or states):
            return False
        self._store.commit_rules(bodies=bodies, raised=raised, cleared=cleared, states=states, news=news)
        self._saved.update(states)
        return bool(bodies or news)

    def _reload(self) -> None:
        try:
            self._saved = self._store.rule_states()
        except StoreError:
            return
        now = self._clock()
        self._machines = {k: self._make(k[0], m.subject, self._saved.get(k), now) for k, m in self._machines.items()}
