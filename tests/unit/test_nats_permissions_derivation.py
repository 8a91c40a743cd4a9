"""The permission sets are derived from the subject grammar and the region registry: no
party may create or rewrite a consumer on the event stream except the operator, and a new
region is a configuration change."""

from __future__ import annotations

import pytest

from xregion.errors import ConfigError
from xregion.permissions import (
    OPERATOR,
    auditor_permissions,
    coordinator_permissions,
    parties,
    permissions_for,
    region_permissions,
)
from xregion.runtime.identities import new_seed, public_key, render_authorization


def test_region_publishes_only_as_itself_and_reads_only_its_own() -> None:
    perms = region_permissions("BJ")
    events = [
        p
        for p in perms.publish
        if p.startswith("xregion.") and not p.startswith(("xregion.dlq", "xregion.alert", "xregion.checkpoint"))
    ]
    assert events == ["xregion.*.*.*.BJ.*"]
    assert "xregion.dlq.BJ.>" in perms.publish and "xregion.alert.BJ.>" in perms.publish
    assert "xregion.checkpoint.BJ" in perms.publish  # its own signed checkpoints only
    assert perms.publish_deny == ("xregion.dlq.*.*.BJ.*", "xregion.alert.*.*.BJ.*", "xregion.checkpoint.*.*.BJ.*")
    assert perms.subscribe == ("xregion.*.*.*.*.BJ", "xregion.*.*.*.*.ALL", "_INBOX_BJ.>")


@pytest.mark.parametrize("party", ["BJ", "TJ", "HE", "COORD", "AUDIT"])
def test_nobody_but_the_operator_can_touch_event_stream_consumers(party: str) -> None:
    perms = permissions_for(party, ["BJ", "TJ", "HE"])
    assert "$JS.API.>" not in perms.publish
    for pattern in perms.publish:
        if pattern.startswith(("$JS.API.CONSUMER.CREATE.XREGION", "$JS.API.CONSUMER.DURABLE.CREATE.XREGION")):
            assert pattern.split(".")[5] == "audit" and party == "AUDIT", pattern
        assert not pattern.startswith(("$JS.API.STREAM.CREATE", "$JS.API.STREAM.UPDATE", "$JS.API.STREAM.PURGE"))
        assert not pattern.startswith(("$JS.API.STREAM.DELETE", "$JS.API.STREAM.MSG.DELETE"))
        assert not pattern.startswith(("$JS.API.STREAM.SNAPSHOT", "$JS.API.STREAM.RESTORE", "$JS.SNAPSHOT"))
    assert permissions_for(OPERATOR, []).publish == ("$JS.API.>", "$JS.SNAPSHOT.>")


def test_region_reads_its_own_durable_only() -> None:
    perms = region_permissions("TJ")
    assert "$JS.API.CONSUMER.MSG.NEXT.XREGION.region-TJ" in perms.publish
    assert not [p for p in perms.publish if ".XREGION.region-" in p and "region-TJ" not in p]
    assert not [
        p for p in perms.publish if p.startswith(("$JS.API.STREAM.MSG.GET.XREGION", "$JS.API.DIRECT.GET.XREGION"))
    ]


def test_coordinator_and_auditor() -> None:
    coord, audit = coordinator_permissions(), auditor_permissions()
    assert [p for p in coord.publish if p.startswith("xregion.")] == ["xregion.*.escalation.*.COORD.*"]
    assert "xregion.>" in coord.subscribe and "xregion.>" in audit.subscribe
    assert audit.publish_deny == ("xregion.>",) and not [p for p in audit.publish if p.startswith("xregion.")]


def test_a_new_region_is_configuration() -> None:
    assert parties(["BJ", "TJ", "HE", "SD"]) == ["BJ", "TJ", "HE", "SD", "COORD", "AUDIT", "ADMIN"]
    assert region_permissions("SD").subscribe[0] == "xregion.*.*.*.*.SD"
    with pytest.raises(ConfigError):
        permissions_for("XX", ["BJ"])
    with pytest.raises(ConfigError):
        parties(["BJ", "ADMIN"])


def test_authorization_block_lists_every_key_of_every_party() -> None:
    keys = {"BJ": [public_key(new_seed()), public_key(new_seed())], "ADMIN": [public_key(new_seed())]}
    text = render_authorization(keys, ["BJ"])
    assert text.count("nkey:") == 3 and text.count("# BJ (region)") == 2
    assert '"$JS.API.CONSUMER.MSG.NEXT.XREGION.region-BJ"' in text
