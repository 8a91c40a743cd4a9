"""Helpers shared by the tests: throw-away keys, a roster, origin chains, example events.

Import as ``from tests.support import ...`` (``tests/conftest.py`` puts the project root on
``sys.path`` so this works however pytest is started).

TEST-ONLY: every key here is derived from a public, fixed seed
(``sha256(b"xregion-test-key-" + party)``). Anyone can recompute the private keys. They
exist to make tests deterministic and must never sign anything outside a test.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from xregion import codec
from xregion.codec import DecodedEvent
from xregion.compose import compose, seal
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.envelope import GENESIS_HASH
from xregion.errors import ContractError
from xregion.examples import PAYLOADS
from xregion.ids import new_referral_id
from xregion.lifecycle import LIFECYCLES, Role
from xregion.regions import BROADCAST, RegionRegistry
from xregion.signing import KeyRoster, RosterKey, Signer, event_hash

PARTIES: tuple[str, ...] = ("BJ", "TJ", "HE", "COORD")
"""The parties that get a throw-away test key."""

DEFAULT_VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLE_TIME = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
"""The default ``time`` of :func:`example_event`: fixed, so tests do not depend on the clock."""

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "docs" / "signing-recipe.md"
_RECIPE_BLOCK = re.compile(r"<!-- recipe:([a-z0-9-]+) -->\n```[a-z]*\n(.*?)\n```", re.DOTALL)


def dev_seed(party: str) -> bytes:
    """TEST-ONLY: the public, fixed 32-byte seed of ``party``'s throw-away key."""
    return hashlib.sha256(b"xregion-test-key-" + party.encode("ascii")).digest()


def dev_signers(parties: tuple[str, ...] = PARTIES) -> dict[str, Signer]:
    """TEST-ONLY throw-away Ed25519 signers for BJ, TJ, HE and COORD (fixed, public seeds)."""
    return {party: Signer.from_seed(party, dev_seed(party)) for party in parties}


def roster_key(
    signer: Signer,
    valid_from: datetime = DEFAULT_VALID_FROM,
    valid_until: datetime | None = None,
    revoked_at: datetime | None = None,
) -> RosterKey:
    """The roster entry of ``signer``'s public key."""
    return RosterKey(
        key_id=signer.key_id,
        party=signer.party,
        public_key=bytes(signer.verify_key),
        valid_from=valid_from,
        valid_until=valid_until,
        revoked_at=revoked_at,
    )


def dev_roster(signers: dict[str, Signer] | None = None, valid_from: datetime = DEFAULT_VALID_FROM) -> KeyRoster:
    """A roster holding the public keys of ``signers`` (default: :func:`dev_signers`)."""
    chosen = dev_signers() if signers is None else signers
    return KeyRoster(roster_key(s, valid_from) for s in chosen.values())


@dataclass
class OriginChain:
    """Seals successive events of one origin: ``originseq`` 1, 2, 3, ... hash-linked.

    ``chain.seal(compose(...))`` returns the decoded, signed event and advances the chain.
    """

    signer: Signer
    registry: RegionRegistry | None = None
    catalog: Catalog = CATALOG
    seq: int = 0
    prevhash: str = GENESIS_HASH
    sealed: list[DecodedEvent] = field(default_factory=list)
    links: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Per addressee: (linkseq, hash) of the last event on that link."""

    @property
    def origin(self) -> str:
        return self.signer.party

    def seal(self, event: dict[str, Any]) -> DecodedEvent:
        linkseq, linkprev = self.links.get(event["addressee"], (0, GENESIS_HASH))
        decoded = seal(
            event,
            seq=self.seq + 1,
            prevhash=self.prevhash,
            linkseq=linkseq + 1,
            linkprev=linkprev,
            signer=self.signer,
            catalog=self.catalog,
            registry=self.registry,
        )
        self.seq += 1
        self.prevhash = event_hash(decoded.wire)
        self.links[event["addressee"]] = (linkseq + 1, self.prevhash)
        self.sealed.append(decoded)
        return decoded


def write_keys_dir(keys_dir: Path, signers: dict[str, Signer], roster: KeyRoster) -> Path:
    """A keys directory (as ``xregion keys init`` writes it) holding ``signers``' TEST-ONLY
    private keys and ``roster``."""
    from xregion.keys import ROSTER_FILE, write_private_key

    keys_dir.mkdir(parents=True, exist_ok=True)
    for signer in signers.values():
        write_private_key(keys_dir, signer)
    roster.save(keys_dir / ROSTER_FILE)
    return keys_dir


def example_payload(name: str) -> dict[str, Any]:
    """A deep copy of the example ``data`` of ``<family>.<event>``, free to modify."""
    return copy.deepcopy(PAYLOADS[name])


def example_event(
    name: str,
    sender: str = "BJ",
    to: str | None = None,
    referral_id: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """An unsigned event of ``<family>.<event>`` ``name`` carrying its example payload.

    ``to`` defaults to ``ALL`` for an origin's event of a family that must broadcast
    (share), otherwise to ``TJ``. ``referral_id`` defaults to a fresh id owned by the
    origin of the referral (the sender of an origin event, else the addressee). Other
    keyword arguments go to :func:`xregion.compose.compose` (``payload`` replaces the
    example data; ``agency`` defaults to ``amr``, ``time`` to :data:`EXAMPLE_TIME`).
    ``sealed=True`` seals its personal data (:func:`seal_personal_data`), as a peer publishing
    to an adapter must.
    """
    family, event = name.split(".", 1)
    lifecycle = LIFECYCLES[family]
    role = lifecycle.role_of(event)
    if to is None:
        to = BROADCAST if role is Role.ORIGIN and lifecycle.broadcast == "required" else "TJ"
    if referral_id is None:
        referral_id = new_referral_id(sender if role is Role.ORIGIN or to == BROADCAST else to)
    payload = kw.pop("payload", None)
    sealed = kw.pop("sealed", False)
    event = compose(
        CATALOG.get(family, event),
        example_payload(name) if payload is None else payload,
        sender=sender,
        agency=kw.pop("agency", "amr"),
        time=kw.pop("time", EXAMPLE_TIME),
        to=to,
        referral_id=referral_id,
        **kw,
    )
    return seal_personal_data(event) if sealed else event


def seal_personal_data(event: dict[str, Any], roster: KeyRoster | None = None) -> dict[str, Any]:
    """``event`` (unsigned, as composed) with its personal-data fields sealed as every producer
    must seal them (docs/signing-recipe.md §8): to the addressee's keys in ``roster`` (default:
    the TEST-ONLY :func:`dev_roster`) valid at the event's ``time``, to every other configured
    region's for a broadcast. A test that plays a peer publishing to an adapter uses it (or
    ``example_event(..., sealed=True)``): adapters refuse personal data sent in the clear."""
    from xregion.config import load_config
    from xregion.envelope import SOURCE
    from xregion.sealing import FieldSealing

    match = SOURCE.match(event["source"])
    assert match is not None, event["source"]
    sender, to = match[1], event["addressee"]
    regions = [r for r in load_config().regions.codes if r != sender] if to == BROADCAST else [to]
    at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    keys = dev_roster() if roster is None else roster
    model = CATALOG.by_ce_type(event["type"]).model
    return {**event, "data": FieldSealing(lambda: keys, tuple).seal(model, event["data"], regions, at)}


def sealed_example(name: str, signer: Signer, **kw: Any) -> DecodedEvent:
    """An example event of ``name`` sent by ``signer``'s party as the first of its chain."""
    return OriginChain(signer).seal(example_event(name, sender=signer.party, **kw))


@cache
def recipe_blocks() -> dict[str, str]:
    """The fenced blocks of docs/signing-recipe.md, by their ``<!-- recipe:NAME -->`` marker.

    A block's text is its content without the final line break.
    """
    found: dict[str, str] = {}
    for name, body in _RECIPE_BLOCK.findall(RECIPE.read_text(encoding="utf-8")):
        if name in found:
            raise ValueError(f"recipe block {name} appears twice in {RECIPE}")
        found[name] = body
    return found


def strictly(raw: bytes) -> tuple[str, Any]:
    """What the strict parser alone makes of ``raw`` (as :func:`~xregion.codec.parse_json` read
    it before the quick reading): ("value", v) or ("fault", (type, message, details))."""
    try:
        value = codec._loads(raw)
        if codec._SURROGATE_ESCAPE.search(raw):
            codec._canonical_form(value)
        return "value", value
    except ContractError as exc:
        return "fault", (type(exc), exc.message, exc.details)


def stored(raw: bytes) -> tuple[str, Any]:
    """What :func:`~xregion.codec.parse_stored` (the quick reading first) makes of ``raw``, in
    :func:`strictly`'s terms."""
    try:
        return "value", codec.parse_stored(raw)[0]
    except ContractError as exc:
        return "fault", (type(exc), exc.message, exc.details)
