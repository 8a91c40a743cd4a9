"""The permission sets and the accounts are derived from the subject grammar, the event
catalog and the region registry: no party may create or rewrite a consumer, every event
subject is enumerated (no wildcard in a token), each party reaches the bus only through the
imports of what it may publish, and a new region is a configuration change."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import xregion
from xregion.contracts.catalog import CATALOG
from xregion.errors import ConfigError, XRegionError
from xregion.ops.identities import imports, render_accounts
from xregion.permissions import (
    BUS_ACCOUNT,
    OPERATOR,
    auditor_permissions,
    coordinator_permissions,
    event_subjects,
    parties,
    party_uri,
    permissions_for,
    region_permissions,
)
from xregion.reasons import REASON_CODES

REGIONS = ["BJ", "TJ", "HE"]


def test_region_publishes_only_its_own_enumerated_events() -> None:
    perms = region_permissions("BJ", regions=REGIONS)
    events = [p for p in perms.publish if p.startswith("xregion.v")]
    assert all(".BJ." in e and e.split(".")[4] == "BJ" for e in events)
    assert not [e for e in events if "*" in e or ">" in e], "no wildcard in an event subject"
    kinds = {t for t in CATALOG if t.family != "escalation"}
    assert len(events) == len(kinds) * 3  # to TJ, HE, ALL — never to itself, never an escalation
    assert "xregion.v1.lead.submitted.BJ.TJ" in events and "xregion.v1.lead.submitted.BJ.BJ" not in events
    assert not [e for e in events if ".escalation." in e]
    assert "xregion.dlq.BJ.bad_signature" in perms.publish and "xregion.alert.BJ.chain_gap" in perms.publish
    assert not [p for p in perms.publish if p.startswith(("xregion.dlq", "xregion.alert")) and p.endswith((".*", ">"))]
    assert "xregion.checkpoint.BJ" in perms.publish
    assert perms.subscribe == ("xregion.*.*.*.*.BJ", "xregion.*.*.*.*.ALL", "_INBOX_BJ.>")


@pytest.mark.parametrize("party", ["BJ", "TJ", "HE", "COORD", "AUDIT"])
def test_nobody_but_the_operator_creates_consumers_or_deletes(party: str) -> None:
    perms = permissions_for(party, REGIONS)
    assert "$JS.API.>" not in perms.publish
    for pattern in perms.publish:
        assert ".CONSUMER.CREATE." not in pattern and ".CONSUMER.DURABLE.CREATE." not in pattern, pattern
        assert not pattern.startswith(("$JS.API.STREAM.CREATE", "$JS.API.STREAM.UPDATE", "$JS.API.STREAM.PURGE"))
        assert not pattern.startswith(("$JS.API.STREAM.DELETE", "$JS.API.STREAM.MSG.DELETE", "$JS.FC."))
        assert not pattern.startswith(("$JS.API.STREAM.SNAPSHOT", "$JS.API.STREAM.RESTORE", "$JS.SNAPSHOT"))
    assert permissions_for(OPERATOR, []).publish == ("$JS.API.>", "$JS.SNAPSHOT.>")


def test_region_reads_its_own_durable_and_writes_its_own_evidence_only() -> None:
    perms = region_permissions("TJ", regions=REGIONS)
    assert "$JS.API.CONSUMER.MSG.NEXT.XREGION.region-TJ" in perms.publish
    assert not [p for p in perms.publish if ".XREGION.region-" in p and "region-TJ" not in p]
    assert not [
        p for p in perms.publish if p.startswith(("$JS.API.STREAM.MSG.GET.XREGION", "$JS.API.DIRECT.GET.XREGION."))
    ]
    assert "$JS.API.DIRECT.GET.XREGION" not in perms.publish
    # of the dead-letter stream, a witness reads the log's latest checkpoint and nothing else
    assert [p for p in perms.publish if p.startswith("$JS.API.DIRECT.GET.XREGION_DLQ")] == [
        "$JS.API.DIRECT.GET.XREGION_DLQ.xregion.checkpoint.AUDIT"
    ]
    assert [p for p in perms.publish if p.startswith("$O.")] == ["$O.XREGION_EVIDENCE_TJ.>"]
    for region in REGIONS:  # reads every region's evidence by direct get
        assert f"$JS.API.DIRECT.GET.OBJ_XREGION_EVIDENCE_{region}.>" in perms.publish


def test_coordinator_and_auditor() -> None:
    coord, audit = coordinator_permissions(regions=REGIONS), auditor_permissions(regions=REGIONS)
    escalations = [p for p in coord.publish if p.startswith("xregion.")]
    assert escalations and all(p.split(".")[2] == "escalation" and p.split(".")[4] == "COORD" for p in escalations)
    assert "xregion.>" in coord.subscribe and "xregion.>" in audit.subscribe
    # the auditor publishes one subject under xregion.: the verifiable log's checkpoints
    assert [p for p in audit.publish if p.startswith("xregion.")] == ["xregion.checkpoint.AUDIT"]
    assert audit.publish_deny == ("xregion.*.*.>",)  # events, dead letters, alerts: four tokens or more
    for perms in (coord, audit):
        assert "$JS.API.DIRECT.GET.XREGION" in perms.publish and "$JS.API.DIRECT.GET.XREGION_DLQ" in perms.publish


def test_a_new_region_is_configuration() -> None:
    assert parties(["BJ", "TJ", "HE", "SD"]) == ["BJ", "TJ", "HE", "SD", "COORD", "AUDIT", "ADMIN"]
    assert region_permissions("SD").subscribe[0] == "xregion.*.*.*.*.SD"
    assert "xregion.v1.lead.submitted.BJ.SD" in event_subjects("BJ", ["SD"])
    with pytest.raises(ConfigError):
        permissions_for("XX", ["BJ"])
    for reserved in ("ADMIN", BUS_ACCOUNT):
        with pytest.raises(ConfigError):
            parties(["BJ", reserved])


def test_accounts_import_exactly_what_each_party_may_publish() -> None:
    text = render_accounts(REGIONS)
    for party in ("BJ", "TJ", "HE", "COORD", "AUDIT"):
        assert f"  {party}: {{" in text and f'user: "{party_uri(party)}"' in text
        for subject in imports(permissions_for(party, REGIONS), party):
            assert f'{{ service: {{ account: BUS, subject: "{subject}" }} }}' in text
    assert f'user: "{party_uri("ADMIN")}"' in text and "jetstream: enabled" in text
    assert text.count("jetstream: enabled") == 1  # only the bus account has JetStream
    assert '{ service: "$JS.API.CONSUMER.MSG.NEXT.XREGION.region-BJ", accounts: ["BJ"], response_type: stream }' in text
    assert "nkey" not in text


def test_reason_codes_are_every_code_the_package_defines() -> None:
    for module in pkgutil.walk_packages(xregion.__path__, "xregion."):
        importlib.import_module(module.name)

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    assert {c.code for c in subclasses(XRegionError)} | {XRegionError.code} == set(REASON_CODES)
