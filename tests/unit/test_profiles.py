"""Region profiles (adapters/profiles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xregion.codec import decode_data
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG
from xregion.errors import ConfigError
from xregion.examples import PAYLOADS
from xregion.profiles import load_profile, parse_profile

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("region", ["BJ", "TJ", "HE"])
def test_every_region_has_a_valid_profile(region: str) -> None:
    config = load_config()
    profile = load_profile(region, config, ROOT / "adapters" / "profiles")
    assert profile is not None and profile.region == region
    number = profile.case_number(2026, 3301)
    assert number.endswith("〔2026〕3301号") and profile.agency_of_case(number) == profile.default_agency
    for agency in profile.agencies.values():
        assert agency.webhook.startswith("https://") and agency.contact
    assert set(profile.deadlines) <= {t.name for t in CATALOG}
    assert profile.apply(config).deadlines.days["lead.submitted"] == profile.deadlines["lead.submitted"]
    # A record of the region's case system maps onto a valid lead.submitted.
    inverse = {v: k for k, v in profile.field_map.items()}
    codes = {v: k for k, v in profile.value_map["ip_right"].items()}
    record = {inverse.get(f, f): v for f, v in PAYLOADS["lead.submitted"].items()}
    record[inverse["ip_right"]] = codes["trademark"]
    record[inverse["origin_case_number"]] = profile.case_number(2026, 341, lead=True)
    data = profile.to_contract(record)
    decode_data(CATALOG.get("lead", "submitted"), data)
    assert data["ip_right"] == "trademark"


def test_bj_case_numbers() -> None:
    profile = load_profile("BJ", load_config(), ROOT / "adapters" / "profiles")
    assert profile is not None
    assert profile.case_number(2026, 3301) == "京市监立〔2026〕3301号"
    assert profile.agency_of_case("京知局立〔2026〕0001号") == "ipo"
    with pytest.raises(ConfigError, match="not a BJ case number"):
        profile.agency_of_case("津市监立〔2026〕2207号")


def test_a_profile_naming_an_unknown_agency_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an agency of BJ"):
        parse_profile({"region": "BJ", "agencies": {"nasa": {}}}, load_config())
