"""Sealing v2 (xregion.sealing): one X25519 agreement per event and recipient, a key per
field derived with HKDF-SHA256 bound to the event id, field path and recipient key id, one
ChaCha20-Poly1305 box per field. Receivers open v1 and v2; senders choose by configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from unittest import mock

import pytest
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt
from nacl.public import PrivateKey

from tests.support import EXAMPLE_TIME, dev_roster, dev_signers, example_payload
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG
from xregion.contracts.common import Sealed
from xregion.errors import ConfigError, UnsealFailed
from xregion.examples import PAYLOADS
from xregion.runtime.settings import RuntimeSettings
from xregion.sealing import (
    FieldSealing,
    OpeningKey,
    field_info,
    is_sealed,
    open_data,
    recipients,
    seal_data,
    sensitive_values,
)

SIGNERS = dev_signers()
ROSTER = dev_roster(SIGNERS)
REGISTRY = load_config().regions
SUBMITTED = CATALOG.get("lead", "submitted").model
UPSERTED = CATALOG.get("share", "blacklist_upserted").model
EVENT = "01a21266-2a95-7ab6-acd3-9944e2600e69"


def sealed_v2(data: Any, regions: tuple[str, ...] = ("TJ",), event_id: str = EVENT) -> dict[str, Any]:
    return seal_data(SUBMITTED, data, recipients(ROSTER, regions, EXAMPLE_TIME), version=2, event_id=event_id)


def test_v2_round_trip_and_shape() -> None:
    data = example_payload("lead.submitted")
    sealed = sealed_v2(data)
    values = [v for _, v in sensitive_values(SUBMITTED, sealed)]
    assert values and all(is_sealed(v) and v["v"] == 2 for v in values)
    assert len({v["epk"] for v in values}) == 1  # one ephemeral key for the whole event
    for value in values:
        Sealed.model_validate(value)  # the contract admits it
        assert list(value["sealed"]) == [SIGNERS["TJ"].key_id]
    assert SUBMITTED.model_validate(sealed, context={"regions": REGISTRY})  # valid sealed payload
    opened = open_data(SUBMITTED, sealed, [OpeningKey.of(SIGNERS["TJ"])], event_id=EVENT)
    assert opened == PAYLOADS["lead.submitted"]


def test_one_key_agreement_per_event_and_recipient() -> None:
    """Sealing a lead's fields to two regions makes two X25519 agreements (one per
    recipient), not one per field and recipient; opening makes one per event."""
    import xregion.sealing as sealing

    data = example_payload("lead.submitted")
    fields = len(sensitive_values(SUBMITTED, data))
    assert fields >= 4
    with mock.patch.object(sealing, "crypto_scalarmult", wraps=sealing.crypto_scalarmult) as agree:
        sealed = sealed_v2(data, ("TJ", "HE"))
        assert agree.call_count == 2
        agree.reset_mock()
        open_data(SUBMITTED, sealed, [OpeningKey.of(SIGNERS["HE"])], event_id=EVENT)
        assert agree.call_count == 1


def test_a_v2_box_is_bound_to_its_event_field_and_recipient() -> None:
    data = example_payload("lead.submitted")
    sealed = sealed_v2(data)
    tj = [OpeningKey.of(SIGNERS["TJ"])]
    with pytest.raises(UnsealFailed):  # another event's id
        open_data(SUBMITTED, sealed, tj, event_id="01a21266-2a95-7ab6-acd3-9944e2600e70")
    with pytest.raises(UnsealFailed):  # no event id at all
        open_data(SUBMITTED, sealed, tj)
    swapped = json.loads(json.dumps(sealed))  # the name box moved to the address field
    first = swapped["suspects"][0]
    first["name"], first["address"] = first["address"], first["name"]
    with pytest.raises(UnsealFailed) as failed:
        open_data(SUBMITTED, swapped, tj, event_id=EVENT)
    assert failed.value.details["field"] in ("data.suspects.0.name", "data.suspects.0.address")
    relabelled = json.loads(json.dumps(sealed))  # TJ's box presented as HE's
    name = relabelled["suspects"][0]["name"]
    name["sealed"] = {SIGNERS["HE"].key_id: name["sealed"][SIGNERS["TJ"].key_id]}
    with pytest.raises(UnsealFailed):
        open_data(SUBMITTED, relabelled, [OpeningKey.of(SIGNERS["HE"])], event_id=EVENT)


def test_the_key_schedule_as_documented() -> None:
    """What another language implements (docs/signing-recipe.md §8, v2): HKDF-SHA256 with salt
    epk || recipient public key over X25519(recipient secret, epk), info = label, event id,
    field path, key id joined by NUL; ChaCha20-Poly1305 with a zero nonce and info as AAD."""
    from nacl.bindings import crypto_scalarmult

    sealed = sealed_v2(example_payload("lead.submitted"))
    value = sealed["suspects"][1]["name"]
    key = OpeningKey.of(SIGNERS["TJ"])
    epk = base64.b64decode(value["epk"])
    secret, public = bytes(key.private_key), bytes(key.private_key.public_key)
    prk = hmac.new(epk + public, crypto_scalarmult(secret, epk), hashlib.sha256).digest()
    info = b"xregion-seal-v2\x00" + EVENT.encode() + b"\x00data.suspects.1.name\x00" + key.key_id.encode()
    assert info == field_info(EVENT, "data.suspects.1.name", key.key_id)
    field_key = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    box = base64.b64decode(value["sealed"][key.key_id])
    text = crypto_aead_chacha20poly1305_ietf_decrypt(box, info, bytes(12), field_key)
    assert json.loads(text) == "张某"


def test_field_sealing_by_configuration_opens_both() -> None:
    v1 = FieldSealing(lambda: ROSTER, lambda: [SIGNERS["BJ"]])
    v2 = FieldSealing(lambda: ROSTER, lambda: [SIGNERS["BJ"]], version=2)
    tj = FieldSealing(lambda: ROSTER, lambda: [SIGNERS["TJ"]])
    data = example_payload("lead.submitted")
    old = v1.seal(SUBMITTED, data, ["TJ"], EXAMPLE_TIME, event_id=EVENT)
    new = v2.seal(SUBMITTED, data, ["TJ"], EXAMPLE_TIME, event_id=EVENT)
    assert all("v" not in v for _, v in sensitive_values(SUBMITTED, old))
    assert all(v["v"] == 2 for _, v in sensitive_values(SUBMITTED, new))
    assert tj.open(SUBMITTED, old, EVENT) == tj.open(SUBMITTED, new, EVENT) == PAYLOADS["lead.submitted"]
    assert tj.open(SUBMITTED, old) == PAYLOADS["lead.submitted"]  # v1 needs no event id


def test_broadcast_v2_each_region_opens_its_own() -> None:
    data = example_payload("share.blacklist_upserted")
    sealed = seal_data(UPSERTED, data, recipients(ROSTER, ("BJ", "TJ"), EXAMPLE_TIME), version=2, event_id=EVENT)
    for region in ("BJ", "TJ"):
        opened = open_data(UPSERTED, sealed, [OpeningKey.of(SIGNERS[region])], event_id=EVENT)
        assert opened == PAYLOADS["share.blacklist_upserted"]


def test_the_contract_refuses_half_a_v2_value() -> None:
    value = sealed_v2(example_payload("lead.submitted"))["suspects"][0]["name"]
    for member in ("v", "epk"):
        broken = {k: v for k, v in value.items() if k != member}
        with pytest.raises(ValueError):
            Sealed.model_validate(broken)
    assert not is_sealed({**value, "v": 3})


def test_the_setting_and_unknown_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XREGION_SEAL_VERSION", raising=False)
    assert RuntimeSettings().seal_version == 1
    assert RuntimeSettings(seal_version=2).seal_version == 2
    monkeypatch.setenv("XREGION_SEAL_VERSION", "2")
    assert RuntimeSettings().seal_version == 2
    monkeypatch.setenv("XREGION_SEAL_VERSION", "3")
    with pytest.raises(ValueError):
        RuntimeSettings()
    with pytest.raises(ConfigError):
        FieldSealing(lambda: ROSTER, list, version=3)
    with pytest.raises(ConfigError):
        seal_data(SUBMITTED, example_payload("lead.submitted"), recipients(ROSTER, ("TJ",), EXAMPLE_TIME), version=3)


def test_low_order_recipient_key_is_refused() -> None:
    from xregion.sealing import Recipient, SealingV2

    zero = Recipient("TJ:0000000000000000", PrivateKey(bytes(32)).public_key.__class__(bytes(32)))
    with pytest.raises(ConfigError):
        SealingV2.new(EVENT, [zero])


def test_a_given_ephemeral_secret_gives_test_vectors() -> None:
    """Deterministic sealing (conformance kits, test vectors): the same secret, the same boxes."""
    from xregion.sealing import SealingV2

    to = recipients(ROSTER, ("TJ",), EXAMPLE_TIME)
    secret = hashlib.sha256(b"xregion-conformance-ephemeral").digest()
    one, two = (SealingV2.new(EVENT, to, secret).seal("张某", "data.suspects.1.name") for _ in range(2))
    assert one == two
    from xregion.sealing import open_value

    assert open_value(one, [OpeningKey.of(SIGNERS["TJ"])], "data.suspects.1.name", event_id=EVENT) == "张某"
