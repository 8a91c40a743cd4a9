"""Region profiles (``adapters/profiles/<REGION>.toml``): what a region's case systems
bring to the bus — its participating agencies and their contact endpoints, default
deadlines, the format of its local case numbers, and the mapping from its case system's
fields and codes to the v1 contract.

``XREGION_PROFILES`` names the directory; the default is the repository's
``adapters/profiles``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xregion.config import BusConfig
from xregion.errors import ConfigError

PROFILES_ENV = "XREGION_PROFILES"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "adapters" / "profiles"


@dataclass(frozen=True)
class Agency:
    code: str
    contact: str
    webhook: str


@dataclass(frozen=True)
class Profile:
    region: str
    default_agency: str
    agencies: dict[str, Agency]
    deadlines: dict[str, int]
    case_format: str
    lead_format: str
    prefixes: dict[str, str]  # local case-number prefix -> agency code
    field_map: dict[str, str]  # local field -> contract field
    value_map: dict[str, dict[str, str]]  # contract field -> local code -> contract value
    source: str

    def prefix_of(self, agency: str) -> str:
        for prefix, code in self.prefixes.items():
            if code == agency:
                return prefix
        raise ConfigError(f"{self.source}: no case-number prefix for agency {agency!r}")

    def case_number(self, year: int, serial: int, agency: str | None = None, *, lead: bool = False) -> str:
        """A local case number, e.g. ``京市监立〔2026〕3301号`` (``lead``: a lead's number)."""
        fmt = self.lead_format if lead else self.case_format
        return fmt.format(prefix=self.prefix_of(agency or self.default_agency), year=year, serial=serial)

    def agency_of_case(self, case_number: str) -> str:
        """The agency a local case number belongs to (by its longest matching prefix)."""
        for prefix in sorted(self.prefixes, key=len, reverse=True):
            if case_number.startswith(prefix):
                return self.prefixes[prefix]
        raise ConfigError(f"{case_number!r} is not a {self.region} case number ({', '.join(self.prefixes)})")

    def to_contract(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record of the case system with its fields and codes mapped to the v1 contract;
        unmapped fields are kept as they are (already contract fields, e.g. ``suspects``)."""
        out: dict[str, Any] = {}
        for key, value in record.items():
            field = self.field_map.get(key, key)
            codes = self.value_map.get(field)
            if codes is not None and isinstance(value, str):
                if value not in codes:
                    raise ConfigError(f"{self.region}: unknown {key} code {value!r} ({', '.join(codes)})")
                value = codes[value]
            out[field] = value
        return out

    def apply(self, config: BusConfig) -> BusConfig:
        """``config`` with this region's default deadlines on top of the bus defaults."""
        return replace(config, deadlines=replace(config.deadlines, days={**config.deadlines.days, **self.deadlines}))


def _table(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return value


def parse_profile(raw: dict[str, Any], config: BusConfig, source: str = "<memory>") -> Profile:
    region = config.regions.check_region(str(raw.get("region", "")))
    known = config.regions.get(region).agencies
    agencies = {}
    for code, entry in _table(raw, "agencies", source).items():
        if code not in known:
            raise ConfigError(f"{source}: agency {code!r} is not an agency of {region} in {config.source}")
        agencies[code] = Agency(code, str(entry.get("contact", "")), str(entry.get("webhook", "")))
    default_agency = str(raw.get("default_agency", next(iter(agencies), "")))
    if default_agency not in agencies:
        raise ConfigError(f"{source}: default_agency {default_agency!r} is not among its [agencies]")
    deadlines = {str(k): int(v) for k, v in _table(raw, "deadlines", source).items()}
    numbers = _table(raw, "case_numbers", source)
    prefixes = {str(k): str(v) for k, v in _table(numbers, "prefixes", source).items()}
    for prefix, code in prefixes.items():
        if code not in agencies:
            raise ConfigError(f"{source}: case-number prefix {prefix!r} names unknown agency {code!r}")
    return Profile(
        region=region,
        default_agency=default_agency,
        agencies=agencies,
        deadlines=deadlines,
        case_format=str(numbers.get("format", "{prefix}〔{year}〕{serial}号")),
        lead_format=str(numbers.get("lead_format", numbers.get("format", "{prefix}〔{year}〕{serial}号"))),
        prefixes=prefixes,
        field_map={str(k): str(v) for k, v in _table(raw, "field_map", source).items()},
        value_map={str(f): {str(k): str(v) for k, v in m.items()} for f, m in _table(raw, "value_map", source).items()},
        source=source,
    )


def profiles_dir() -> Path:
    return Path(os.environ.get(PROFILES_ENV) or DEFAULT_DIR)


def load_profile(region: str, config: BusConfig, directory: Path | None = None) -> Profile | None:
    """``<directory>/<region>.toml``, or None when the region has no profile there."""
    path = (directory or profiles_dir()) / f"{region}.toml"
    if not path.exists():
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_profile(raw, config, str(path))
