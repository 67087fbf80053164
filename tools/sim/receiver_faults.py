"""Fault injection for the reference receiver, for the simulator, the chaos run and tests only.

The receiver's own handlers hold no trace of it: this is an aiohttp middleware handed to
`make_app(middlewares=...)`, and a process entry point that serves the receiver with it:

    python -m safebox.tools.sim.receiver_faults serve --db ... [--fail-first N] [--fail-status 500|503]
                                                       [--answer-delay-ms MS] [any `safebox-receiver serve` option]

* `fail_plan`: HTTP statuses (500 or 503) that the next event or batch POSTs answer, one each,
  before anything else, to prove that a retrying hub ends with exactly one stored event.
* `answer_delay_s`: each stored event (or batch) is answered that much later, so a test can kill
  a hub between the platform storing and the hub hearing so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

log = logging.getLogger("safebox.sim.receiver_faults")

FAULT_STATUSES = frozenset({500, 503})
RETRY_AFTER_S = 1  # what an injected 503 asks for: short, so tests stay fast
EVENT_PATHS = frozenset({"/v1/events", "/v1/events:batch"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fault_middleware(fail_plan: Iterable[int] = (), answer_delay_s: float = 0.0) -> Callable[..., Awaitable]:
    """A middleware answering the next event/batch POSTs with `fail_plan`'s statuses, and holding
    back each stored event's answer `answer_delay_s`."""
    plan = deque(fail_plan)
    unknown = set(plan) - FAULT_STATUSES
    if unknown:
        raise ValueError(f"fail_plan statuses must be in {sorted(FAULT_STATUSES)}, got {sorted(unknown)}")

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path not in EVENT_PATHS:
            return await handler(request)
        event_id = request.headers.get("Idempotency-Key")
        if plan:
            status = plan.popleft()
            log.warning("injected fault %d from %s event_id=%r (test fail plan)", status, request.remote, event_id)
            body = {"status": "retry_later" if status == 503 else "error", "event_id": event_id,
                    "reason": "injected fault (test fail plan)"}
            headers = {}
            if status == 503:
                body["retry_after"] = RETRY_AFTER_S
                headers["Retry-After"] = str(RETRY_AFTER_S)
            return web.json_response(body, status=status, headers=headers)
        response = await handler(request)
        if answer_delay_s and response.status in (200, 201):
            await asyncio.sleep(answer_delay_s)  # stored, not yet answered: a hub killed now resends
        return response

    return faults


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`safebox-receiver` with the fault flags: they are taken here, the rest goes to the receiver."""
    from safebox.tools.receiver import cli

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--fail-first", type=_count, default=0, metavar="N",
                        help="answer the first N event/batch POSTs with --fail-status")
    parser.add_argument("--fail-status", type=int, choices=sorted(FAULT_STATUSES), default=500)
    parser.add_argument("--answer-delay-ms", type=_count, default=0, metavar="MS",
                        help="answer each stored event this long after storing it")
    faults, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    middleware = fault_middleware([faults.fail_status] * faults.fail_first, faults.answer_delay_ms / 1000)
    return cli.main(rest, middlewares=[middleware])


if __name__ == "__main__":
    sys.exit(main())
