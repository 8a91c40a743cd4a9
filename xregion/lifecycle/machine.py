"""A small engine for referral lifecycles: ``state × step → state | LifecycleError``.

A referral is opened by its origin and owned by it. Every later event is sent either by
the origin or by an addressee. Two shapes exist:

* **one addressee** (lead, assist): the referral has one state;
* **per-addressee tracks** (recognition, share): the origin's events move the referral's
  overall state; each addressee's events move that addressee's own *track*, so the
  coordinator can see who has answered what. A broadcast (``ALL``) gets a track for every
  region that answers.

Everything here is pure: no I/O, no clock. Adapters refuse an illegal event before sending
it, the coordinator's projection and the auditor's replay fold the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from xregion.errors import DuplicateReferral, LifecycleError, Misaddressed, RoleViolation, UnknownReferral
from xregion.regions import AUDITOR, BROADCAST, COORDINATOR


class Role(StrEnum):
    ORIGIN = "origin"
    ADDRESSEE = "addressee"


@dataclass(frozen=True)
class Step:
    """What the lifecycle needs to know of one event."""

    event_type: str  # "<family>.<event>"
    sender: str
    to: str
    referral_id: str
    event_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    handling: tuple[str, ...] = ()  # the event's handling codes (H0-H3)

    @property
    def family(self) -> str:
        return self.event_type.split(".", 1)[0]

    @property
    def event(self) -> str:
        return self.event_type.split(".", 1)[1]


@dataclass(frozen=True)
class ReferralState:
    """Where a referral stands. ``tracks`` is empty for one-addressee families.

    ``handling`` holds the handling codes of the opening event, which bind the whole
    referral; ``permissions`` those the origin granted against them (``judicial_use``,
    ``onward_sharing:<region>``, ...).
    """

    referral_id: str
    family: str
    origin: str
    addressee: str
    state: str
    tracks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    events: int = 1
    last_event_id: str = ""
    handling: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset()

    @property
    def is_broadcast(self) -> bool:
        return self.addressee == BROADCAST


Guard = Callable[[ReferralState, Step], str | None]
"""Extra condition on a transition: returns why it is refused, or None (or raises a more
specific :class:`~xregion.errors.LifecycleError` itself)."""

Effect = Callable[[ReferralState, Step], ReferralState]
"""What a transition records besides the state (e.g. a permission granted)."""


@dataclass(frozen=True)
class Transition:
    """``event`` sent by ``by`` moves ``source`` → ``target``.

    For track families, an addressee's transition reads and writes the sender's track and
    may require the overall state to be one of ``when``.
    """

    event: str
    by: Role
    source: frozenset[str]
    target: str
    when: frozenset[str] = frozenset()
    guard: Guard | None = None
    effect: Effect | None = None


def t(
    event: str,
    by: Role,
    source: str | Iterable[str],
    target: str,
    *,
    when: Iterable[str] = (),
    guard: Guard | None = None,
    effect: Effect | None = None,
) -> Transition:
    """Shorthand for a :class:`Transition`; ``target='='`` keeps the state."""
    sources = frozenset([source] if isinstance(source, str) else source)
    return Transition(event, by, sources, target, frozenset(when), guard, effect)


@dataclass(frozen=True)
class Lifecycle:
    """The lifecycle of one family."""

    family: str
    openings: Mapping[str, str]  # opening event -> initial state
    transitions: tuple[Transition, ...]
    terminal: frozenset[str]
    tracked: bool = False  # per-addressee tracks (recognition, share)
    track_initial: str = "pending"
    track_terminal: frozenset[str] = frozenset()
    broadcast: str = "never"  # "never" | "allowed" | "required"
    senders: str = "regions"  # who sends its events: "regions" | "coordinator"

    @property
    def events(self) -> frozenset[str]:
        return frozenset(self.openings) | {tr.event for tr in self.transitions}

    def role_of(self, event: str) -> Role:
        """Who sends ``event``: the origin (openings included) or an addressee."""
        if event in self.openings:
            return Role.ORIGIN
        for tr in self.transitions:
            if tr.event == event:
                return tr.by
        raise KeyError(event)

    # --- opening ------------------------------------------------------------------------

    def open(self, step: Step) -> ReferralState:
        if step.event not in self.openings:
            raise LifecycleError(
                f"{self.family} referral {step.referral_id} is unknown; it can only be opened "
                f"by {', '.join(sorted(self.openings))}, not {step.event!r}",
                referral_id=step.referral_id,
                state=None,
                event=step.event,
                sender=step.sender,
            )
        if step.to == BROADCAST and self.broadcast == "never":
            raise Misaddressed(
                f"{step.event_type} cannot be broadcast; name one addressee region",
                referral_id=step.referral_id,
                event=step.event,
                sender=step.sender,
            )
        if step.to != BROADCAST and self.broadcast == "required":
            raise Misaddressed(
                f"{step.event_type} is a broadcast and must be addressed to {BROADCAST}",
                referral_id=step.referral_id,
                event=step.event,
                sender=step.sender,
            )
        if step.to == step.sender:
            raise Misaddressed(
                f"{step.event_type} from {step.sender} cannot be addressed to its own sender",
                referral_id=step.referral_id,
                state=None,
                event=step.event,
                sender=step.sender,
            )
        if not step.referral_id.startswith(f"{step.sender}-"):
            raise LifecycleError(
                f"referral id {step.referral_id} is not owned by its sender {step.sender}",
                referral_id=step.referral_id,
                state=None,
                event=step.event,
                sender=step.sender,
            )
        return ReferralState(
            referral_id=step.referral_id,
            family=self.family,
            origin=step.sender,
            addressee=step.to,
            state=self.openings[step.event],
            events=1,
            last_event_id=step.event_id,
            handling=tuple(step.handling),
        )

    # --- later events -------------------------------------------------------------------

    def apply(self, state: ReferralState, step: Step) -> ReferralState:
        if step.referral_id != state.referral_id:
            raise LifecycleError(
                f"event for referral {step.referral_id} applied to {state.referral_id}",
                referral_id=state.referral_id,
                state=state.state,
                event=step.event,
                sender=step.sender,
            )
        if step.event in self.openings and step.event not in {tr.event for tr in self.transitions}:
            raise DuplicateReferral(
                f"referral {state.referral_id} is already open (state {state.state!r}); "
                f"{step.event!r} from {step.sender} opens a new one",
                referral_id=state.referral_id,
                state=state.state,
                event=step.event,
                sender=step.sender,
            )
        role = self._role(state, step)
        current = self._current(state, step, role)
        for tr in self.transitions:
            if tr.event != step.event or tr.by != role or current not in tr.source:
                continue
            if tr.when and state.state not in tr.when:
                continue
            if tr.guard is not None and (why := tr.guard(state, step)) is not None:
                raise LifecycleError(
                    f"{self.family} referral {state.referral_id}: {step.event!r} from "
                    f"{step.sender} refused in state {current!r}: {why}",
                    referral_id=state.referral_id,
                    state=current,
                    event=step.event,
                    sender=step.sender,
                    role=role.value,
                )
            moved = self._move(state, step, role, current, tr.target)
            return moved if tr.effect is None else tr.effect(moved, step)
        raise self._illegal(state, step, role, current)

    def _role(self, state: ReferralState, step: Step) -> Role:
        if step.sender == state.origin:
            if step.to != state.addressee:
                raise Misaddressed(
                    f"{step.event_type} from the origin {step.sender} of referral "
                    f"{state.referral_id} (state {state.state!r}) must be addressed to "
                    f"{state.addressee}, not {step.to}",
                    referral_id=state.referral_id,
                    state=state.state,
                    event=step.event,
                    sender=step.sender,
                )
            return Role.ORIGIN
        if state.addressee in (step.sender, BROADCAST):
            if step.to != state.origin:
                raise Misaddressed(
                    f"{step.event_type} from addressee {step.sender} of referral "
                    f"{state.referral_id} (state {state.state!r}) must be addressed to its "
                    f"origin {state.origin}, not {step.to}",
                    referral_id=state.referral_id,
                    state=state.state,
                    event=step.event,
                    sender=step.sender,
                )
            return Role.ADDRESSEE
        raise LifecycleError(
            f"{step.event_type} refused: {step.sender} is neither origin ({state.origin}) nor "
            f"addressee ({state.addressee}) of referral {state.referral_id} "
            f"(state {state.state!r})",
            referral_id=state.referral_id,
            state=state.state,
            event=step.event,
            sender=step.sender,
        )

    def _current(self, state: ReferralState, step: Step, role: Role) -> str:
        if self.tracked and role is Role.ADDRESSEE:
            return state.tracks.get(step.sender, self.track_initial)
        return state.state

    def _move(self, state: ReferralState, step: Step, role: Role, current: str, target: str) -> ReferralState:
        target = current if target == "=" else target
        if self.tracked and role is Role.ADDRESSEE:
            tracks = MappingProxyType({**state.tracks, step.sender: target})
            return replace(state, tracks=tracks, events=state.events + 1, last_event_id=step.event_id)
        return replace(state, state=target, events=state.events + 1, last_event_id=step.event_id)

    def _illegal(self, state: ReferralState, step: Step, role: Role, current: str) -> LifecycleError:
        allowed = sorted(self.allowed(state, role, step.sender))
        where = f"track of {step.sender} is {current!r}" if current != state.state else f"state {current!r}"
        if current in self.terminal or current in self.track_terminal:
            why = "it is terminal"
        else:
            why = f"allowed for the {role.value} now: {', '.join(allowed) or 'nothing'}"
        return LifecycleError(
            f"{self.family} referral {state.referral_id}: event {step.event!r} from "
            f"{step.sender} ({role.value}) is illegal in {where}; {why}",
            referral_id=state.referral_id,
            state=current,
            event=step.event,
            sender=step.sender,
            role=role.value,
            allowed=allowed,
        )

    def allowed(self, state: ReferralState, role: Role, sender: str | None = None) -> set[str]:
        """Events ``role`` (the addressee ``sender``, for tracks) may send now."""
        if self.tracked and role is Role.ADDRESSEE:
            current = state.tracks.get(sender or "", self.track_initial)
        else:
            current = state.state
        return {
            tr.event
            for tr in self.transitions
            if tr.by == role and current in tr.source and (not tr.when or state.state in tr.when)
        }


class Lifecycles:
    """The lifecycles of all families, by family name."""

    def __init__(self, lifecycles: Iterable[Lifecycle]) -> None:
        self._by_family = {lc.family: lc for lc in lifecycles}

    def __getitem__(self, family: str) -> Lifecycle:
        try:
            return self._by_family[family]
        except KeyError:
            raise LifecycleError(f"no lifecycle for family {family!r}", family=family) from None

    def __iter__(self) -> Any:
        return iter(self._by_family.values())

    def check_role(self, event_type: str, sender: str, to: str) -> None:
        """Who may send what to whom, from the roles alone (ARCHITECTURE §2): the regions send
        every family but the coordinator's (escalations), the coordinator sends nothing else,
        the auditor sends nothing, and no event is addressed to either role. Raises
        :class:`RoleViolation`; checked before anything else of a step."""
        family = event_type.split(".", 1)[0]
        lifecycle = self[family]
        why = None
        if sender == AUDITOR:
            why = f"the auditor {AUDITOR} publishes nothing"
        elif to in (COORDINATOR, AUDITOR):
            why = f"events are addressed to regions or {BROADCAST}, never to the role {to}"
        elif sender == COORDINATOR and lifecycle.senders != "coordinator":
            why = f"the coordinator {COORDINATOR} sends escalations only, not {event_type}"
        elif sender != COORDINATOR and lifecycle.senders == "coordinator":
            why = f"only the coordinator {COORDINATOR} sends {family} events, not the region {sender}"
        if why is not None:
            raise RoleViolation(
                f"{event_type} from {sender} to {to} refused: {why}",
                event=event_type,
                sender=sender,
                to=to,
            )

    def apply(self, state: ReferralState | None, step: Step) -> ReferralState:
        """Fold one step: open the referral when ``state`` is None."""
        self.check_role(step.event_type, step.sender, step.to)
        lifecycle = self[step.family]
        if state is None:
            return lifecycle.open(step)
        if state.family != step.family:
            raise LifecycleError(
                f"referral {state.referral_id} is a {state.family} referral; {step.event_type} does not apply",
                referral_id=state.referral_id,
                state=state.state,
                event=step.event,
                sender=step.sender,
            )
        return lifecycle.apply(state, step)

    def replay(self, steps: Iterable[Step]) -> ReferralState:
        """The state after ``steps`` (all of one referral, in stream order)."""
        state: ReferralState | None = None
        for step in steps:
            state = self.apply(state, step)
        if state is None:
            raise UnknownReferral("no events to replay")
        return state
