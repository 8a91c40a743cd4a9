"""Run ``xregion`` in this process with the SQL bridge stopped inside its crash window.

``python -m tests.integration.bridge_launcher --stop-after-submit MARKER -- adapter run ... --sql-bridge DSN``
runs the real CLI, but the first outbox row the bridge submits stops it right after the
adapter accepted the row (signed, in the adapter's outbox, on its way to JetStream) and
before the bridge marks the row ``submitted``. The event's id is written to ``MARKER``
and the bridge's pass then waits forever; the rest of the adapter (relay, consumer) keeps
running. The test SIGKILLs the process once ``MARKER`` exists: the crash lands in the window
between submitting and marking, with no hook for it in the product code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import xregion.bridge.bridge as bridge_module
from xregion.cli import main


def stop_after_submit(marker: Path) -> None:
    submit_once = bridge_module.submit_once  # AttributeError if the bridge stops calling it

    async def submit_then_stop(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], bool]:
        response, _ = await submit_once(*args, **kwargs)
        partial = marker.with_name(marker.name + ".part")
        partial.write_text(str(response["event_id"]), encoding="utf-8")
        os.replace(partial, marker)  # the test never reads a half-written marker
        await asyncio.Event().wait()  # until SIGKILL
        raise AssertionError("unreachable")

    bridge_module.submit_once = submit_then_stop


def run(argv: list[str]) -> None:
    if argv[:1] == ["--stop-after-submit"]:
        stop_after_submit(Path(argv[1]))
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    sys.argv = ["xregion", *argv]
    main()


if __name__ == "__main__":
    run(sys.argv[1:])
