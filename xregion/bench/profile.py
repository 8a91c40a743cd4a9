"""``xregion bench --profile``: where each path's CPU goes, per event, by stage.

Stage timers, not a general profiler. :func:`install` wraps the functions of :data:`STAGES`
(sealing, signing, verifying, canonical JSON, hashing, validation, lifecycle, the outbox's
append, the inbox's record, ...) in every loaded ``xregion`` module that holds them, so each
call adds the CPU time its thread spent in it (``time.thread_time``: a thread waiting for
the disk's sync or the network costs nothing) to its stage, minus the time of the stages it
calls (each stage counts its own time once). What the stages leave of each thread's CPU time
(Linux ``/proc/self/task``) is that thread's rest: on the event loop's thread the NATS
client, asyncio and the glue between stages; on the store's thread SQLite's statements and
commits. The sum is the process's CPU time (``os.times``) over the interval.

Why not a sampling or tracing profiler: in one Python process a sampling thread only runs
when the GIL is released, so it charges a C call (a pydantic validation, a libsodium box)
to whatever Python line runs next; ``cProfile`` costs microseconds per Python call and
turns the event loop's many small calls into the largest stage. Stage timers cost two clock
reads per stage call (~1 µs) and are exact for what they time.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STAGES: tuple[tuple[str, str, str], ...] = (
    # (module, function or Class.method, stage)
    ("xregion.compose", "compose_validated", "validate payload, compose"),
    ("xregion.compose", "compose", "validate payload, compose"),
    ("xregion.compose", "seal_encoded", "chain + sign + validate signed"),
    ("xregion.compose", "seal", "chain + sign + validate signed"),
    ("xregion.deadlines", "DeadlinePolicy.default_answer_by", "deadline (working days)"),
    ("xregion.sealing", "FieldSealing.seal", "seal personal data"),
    ("xregion.sealing", "FieldSealing.open", "open personal data"),
    ("xregion.signing", "Signer.sign_encoded", "sign Ed25519"),
    ("xregion.signing", "Signer.sign", "sign Ed25519"),
    ("xregion.signing", "KeyRoster.verify", "verify Ed25519"),
    ("xregion.signing", "canonical", "canonical JSON (JCS)"),
    ("xregion.jcs", "dumps", "canonical JSON (JCS)"),
    ("xregion.signing", "hash_of_canonical", "hash SHA-256"),
    ("xregion.signing", "event_hash", "hash SHA-256"),
    ("xregion.codec", "decode_dict", "validate event (envelope, payload)"),
    ("xregion.codec", "decode_data", "validate payload"),
    ("xregion.codec", "DecodedEvent.opened", "validate opened payload"),
    ("xregion.codec", "parse_strict", "parse JSON strictly"),
    ("xregion.codec", "parse_json", "parse JSON strictly"),
    ("xregion.codec", "parse_stored", "parse JSON strictly"),
    ("xregion.codec", "check_canonical", "canonical check"),
    ("xregion.chain", "ChainTracker.accept", "chains"),
    ("xregion.chain", "ChainTracker.accept_link", "chains"),
    ("xregion.lifecycle.machine", "Lifecycles.apply", "lifecycle"),
    ("xregion.lifecycle.machine", "Lifecycles.check_role", "lifecycle"),
    ("xregion.runtime.outbox", "Outbox._append", "outbox append (SQL, rest)"),
    ("xregion.runtime.consumer", "Consumer._envelope", "envelope (validate)"),
    ("xregion.runtime.consumer", "Consumer._inspect", "consumer inspection (rest)"),
    ("xregion.runtime.consumer", "Consumer._record", "inbox record (SQL)"),
    ("xregion.runtime.store", "Store.save_referral", "referral state (SQL)"),
    ("xregion.runtime.store", "Store.load_referral", "referral state (SQL)"),
    ("xregion.coordinator.projection", "Projection._fold", "projection fold (rest)"),
    ("xregion.coordinator.projection", "Projection.apply_many", "projection (SQL, rest)"),
)
"""Timed functions: synchronous ones only (a coroutine's thread time would count others')."""

REST_OF = {"MainThread": "event loop, NATS client, glue (main thread rest)", "store-": "SQLite (store thread rest)"}


@dataclass
class _Thread:
    stack: list[list[float]] = field(default_factory=list)
    own: dict[str, float] = field(default_factory=dict)


_threads: dict[int, _Thread] = {}
"""Each thread's stage times, by native thread id."""
_patched: list[tuple[Any, str, Any]] = []


def _state() -> _Thread:
    native = threading.get_native_id()
    state = _threads.get(native)
    if state is None:
        state = _threads[native] = _Thread()
    return state


def _timed(fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
    clock = time.thread_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        state = _state()
        frame = [0.0]
        state.stack.append(frame)
        started = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = clock() - started
            state.stack.pop()
            state.own[stage] = state.own.get(stage, 0.0) + spent - frame[0]
            if state.stack:
                state.stack[-1][0] += spent

    timed.__wrapped__ = fn  # type: ignore[attr-defined]
    timed.__name__ = getattr(fn, "__name__", "timed")
    return timed


def install() -> None:
    """Time the :data:`STAGES` from now on (idempotent)."""
    if _patched:
        return
    for module_name, name, stage in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner_name, _, attr = name.rpartition(".")
        if owner_name:
            owner = getattr(module, owner_name, None)
            original = owner.__dict__.get(attr) if owner is not None else None
            if original is None:
                continue
            func = original.__func__ if isinstance(original, staticmethod | classmethod) else original
            if inspect.iscoroutinefunction(func):
                continue
            wrapped: Any = _timed(func, stage)
            if isinstance(original, staticmethod):
                wrapped = staticmethod(wrapped)
            elif isinstance(original, classmethod):
                wrapped = classmethod(wrapped)
            setattr(owner, attr, wrapped)
            _patched.append((owner, attr, original))
            continue
        original = getattr(module, attr, None)
        if original is None or inspect.iscoroutinefunction(original):
            continue
        wrapped = _timed(original, stage)
        for other in list(sys.modules.values()):  # every ``from module import name`` too
            if getattr(other, "__name__", "").startswith("xregion") and getattr(other, attr, None) is original:
                setattr(other, attr, wrapped)
                _patched.append((other, attr, original))


def uninstall() -> None:
    """Put the timed functions back."""
    while _patched:
        owner, attr, original = _patched.pop()
        setattr(owner, attr, original)


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system, every thread)."""
    times = os.times()
    return times.user + times.system


def process_cpu_seconds(pid: int, path: str | None = None) -> float:
    """A process's (or, with ``path``, a thread's) CPU time so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(path or f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _threads_cpu() -> dict[int, float]:
    out: dict[int, float] = {}
    for thread in threading.enumerate():
        native = thread.native_id
        if native is not None:
            out[native] = process_cpu_seconds(0, f"/proc/self/task/{native}/stat")
    return out


def _rest_stage(native: int) -> str:
    name = next((t.name for t in threading.enumerate() if t.native_id == native), "")
    for prefix, stage in REST_OF.items():
        if name.startswith(prefix):
            return stage
    return "other threads (rest)"


@dataclass
class Profile:
    """One process over one measured interval: its CPU seconds by stage and in all."""

    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def per_event(self, events: int) -> dict[str, Any]:
        """``{"cpu_us_per_event", "stages": [{stage, share, us_per_event}]}``, largest first."""
        total = sum(self.stage_cpu_s.values()) or 1.0
        per = 1e6 / events if events else 0.0
        stages = [
            {"stage": stage, "share": round(cpu / total, 4), "us_per_event": round(cpu * per, 1)}
            for stage, cpu in sorted(self.stage_cpu_s.items(), key=lambda kv: -kv[1])
            if cpu * per >= 0.05
        ]
        return {
            "cpu_us_per_event": round(self.cpu_s * per, 1),
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "stages": stages,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Profile:
        return cls(dict(doc["stage_cpu_s"]), doc["cpu_s"], doc["wall_s"])

    def to_json(self) -> dict[str, Any]:
        return {"stage_cpu_s": self.stage_cpu_s, "cpu_s": self.cpu_s, "wall_s": self.wall_s}


def _own_times() -> dict[int, dict[str, float]]:
    return {native: dict(state.own) for native, state in list(_threads.items())}


class Sampler:
    """A measured interval of this process: ``Sampler().start()`` … ``.stop()`` → :class:`Profile`
    (stages timed only once :func:`install` ran)."""

    def __init__(self) -> None:
        self._own0: dict[int, dict[str, float]] = {}
        self._threads0: dict[int, float] = {}
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def start(self) -> Sampler:
        self._own0 = _own_times()
        self._threads0 = _threads_cpu()
        self._cpu0, self._wall0 = cpu_seconds(), time.perf_counter()
        return self

    def stop(self) -> Profile:
        cpu, wall = cpu_seconds() - self._cpu0, time.perf_counter() - self._wall0
        threads1 = _threads_cpu()
        own1 = _own_times()
        stages: dict[str, float] = {}
        accounted = 0.0
        for native in set(own1) | set(threads1):
            before = self._own0.get(native, {})
            timed = 0.0
            for stage, seconds in own1.get(native, {}).items():
                spent = seconds - before.get(stage, 0.0)
                if spent > 0:
                    stages[stage] = stages.get(stage, 0.0) + spent
                    timed += spent
            if native in threads1:
                thread_cpu = threads1[native] - self._threads0.get(native, 0.0)
                accounted += max(thread_cpu, timed)
                if thread_cpu > timed:
                    rest = _rest_stage(native)
                    stages[rest] = stages.get(rest, 0.0) + thread_cpu - timed
            else:
                accounted += timed
        if cpu > accounted:
            stages["threads that ended meanwhile"] = cpu - accounted
        return Profile({k: v for k, v in stages.items() if v > 0}, cpu, wall)


def merge(profiles: list[Profile]) -> Profile:
    """Several intervals of one process as one."""
    out = Profile()
    for p in profiles:
        for stage, cpu in p.stage_cpu_s.items():
            out.stage_cpu_s[stage] = out.stage_cpu_s.get(stage, 0.0) + cpu
        out.cpu_s += p.cpu_s
        out.wall_s += p.wall_s
    return out


__all__ = ["STAGES", "Profile", "Sampler", "cpu_seconds", "install", "merge", "process_cpu_seconds", "uninstall"]
