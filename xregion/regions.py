"""The registry of parties: the regions of the joint mechanism and the two roles.

Regions are data, loaded from configuration (:mod:`xregion.config`); nothing in the code
names BJ, TJ or HE. A party code becomes a token of NATS subjects, so it is restricted to
2-8 upper-case ASCII letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xregion.errors import ConfigError, UnknownParty

PARTY_CODE = re.compile(r"^[A-Z]{2,8}$")
AGENCY_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")

#: Addressee of broadcasts.
BROADCAST = "ALL"
#: The coordinator role: reads everything, publishes only escalations.
COORDINATOR = "COORD"
#: The auditor role: reads everything, publishes nothing.
AUDITOR = "AUDIT"
RESERVED = frozenset({BROADCAST, COORDINATOR, AUDITOR})


@dataclass(frozen=True)
class Region:
    """One region of the joint mechanism and the agencies that speak for it."""

    code: str
    name_zh: str
    name_en: str
    iso: str
    agencies: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not PARTY_CODE.match(self.code):
            raise ConfigError(f"region code {self.code!r} must be 2-8 upper-case letters")
        if self.code in RESERVED:
            raise ConfigError(f"region code {self.code!r} is reserved")
        if not self.agencies:
            raise ConfigError(f"region {self.code} lists no agencies")
        for agency in self.agencies:
            if not AGENCY_CODE.match(agency):
                raise ConfigError(f"agency code {agency!r} of region {self.code} must match {AGENCY_CODE.pattern}")
        object.__setattr__(self, "agencies", MappingProxyType(dict(self.agencies)))


class RegionRegistry:
    """The known regions, by code, in configuration order."""

    def __init__(self, regions: list[Region]) -> None:
        if len(regions) < 2:
            raise ConfigError("a joint mechanism needs at least two regions")
        self._regions: dict[str, Region] = {}
        for region in regions:
            if region.code in self._regions:
                raise ConfigError(f"region {region.code} is configured twice")
            self._regions[region.code] = region

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions.values())

    def __len__(self) -> int:
        return len(self._regions)

    def __contains__(self, code: object) -> bool:
        return code in self._regions

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._regions)

    def get(self, code: str) -> Region:
        try:
            return self._regions[code]
        except KeyError:
            raise UnknownParty(f"unknown region {code!r}; known: {', '.join(self._regions)}", party=code) from None

    def check_region(self, code: str) -> str:
        """Return ``code`` if it names a configured region, else raise :class:`UnknownParty`."""
        self.get(code)
        return code

    def check_addressee(self, code: str) -> str:
        """A region code or :data:`BROADCAST`."""
        return code if code == BROADCAST else self.check_region(code)

    def check_sender(self, code: str, agency: str) -> None:
        """The sender of an event: a region and one of its agencies, or the coordinator."""
        if code == COORDINATOR:
            return
        region = self.get(code)
        if agency not in region.agencies:
            raise UnknownParty(
                f"agency {agency!r} is not configured for region {code}; known: {', '.join(region.agencies)}",
                party=code,
                agency=agency,
            )

    def others(self, code: str) -> tuple[str, ...]:
        """Every region but ``code``: the addressees of a broadcast from it."""
        return tuple(c for c in self._regions if c != code)
