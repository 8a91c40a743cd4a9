"""The regional systems of the site test, importable by ``xregion adapter run --handler``.

``record`` appends one line per *invocation* — ``<event id> <event type> <sender>`` — to the
file named by ``XREGION_SITE_HANDLED`` (read on every call, so each adapter subprocess writes
its own file). The line is written outside the adapter's transaction, opened in append mode,
flushed and fsynced before the handler returns: an event handed to the regional system twice
shows up as two lines, even if the second time came after a crash or a restore.
"""

from __future__ import annotations

import os

from xregion.runtime.consumer import Delivery

HANDLED_ENV = "XREGION_SITE_HANDLED"


async def record(delivery: Delivery) -> None:
    env = delivery.event.envelope
    path = os.environ.get(HANDLED_ENV)
    if not path:
        raise RuntimeError(f"{HANDLED_ENV} is not set")
    with open(path, "a", encoding="ascii") as fh:
        fh.write(f"{env.id} {env.event_type} {env.sender}\n")
        fh.flush()
        os.fsync(fh.fileno())
