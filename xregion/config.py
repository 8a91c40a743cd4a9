"""Loading the bus configuration: the region registry and the deadline policy.

The file is TOML (see ``xregion/config/bus.toml``, the default). ``XREGION_CONFIG`` names
another file; adding a region is an edit of that file, not of code.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from xregion.deadlines import DeadlinePolicy, calendar_named
from xregion.errors import ConfigError
from xregion.regions import Region, RegionRegistry

CONFIG_ENV = "XREGION_CONFIG"


@dataclass(frozen=True)
class BusConfig:
    regions: RegionRegistry
    deadlines: DeadlinePolicy
    source: str


def parse_config(raw: dict[str, Any], source: str = "<memory>") -> BusConfig:
    """Build a :class:`BusConfig` from parsed TOML, naming the offending entry on error."""
    regions_raw = raw.get("regions")
    if not isinstance(regions_raw, dict):
        raise ConfigError(f"{source}: no [regions] table")
    regions = []
    for code, entry in regions_raw.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: region {code} must be a table, not {entry!r}")
        if "agencies" in entry and not isinstance(entry["agencies"], dict):
            raise ConfigError(f"{source}: region {code}: agencies must be a table of code = name")
        try:
            regions.append(
                Region(
                    code=code,
                    name_zh=entry["name_zh"],
                    name_en=entry["name_en"],
                    iso=entry["iso"],
                    agencies=dict(entry["agencies"]),
                )
            )
        except KeyError as exc:
            raise ConfigError(f"{source}: region {code} lacks {exc.args[0]!r}") from None
    deadlines_raw = raw.get("deadlines", {})
    if not isinstance(deadlines_raw, dict):
        raise ConfigError(f"{source}: [deadlines] must be a table")
    deadlines = {k: v for k, v in deadlines_raw.items() if k != "calendar"}
    try:
        calendar = calendar_named(str(deadlines_raw.get("calendar", "working")))
    except ValueError as exc:
        raise ConfigError(f"{source}: [deadlines] {exc}") from None
    return BusConfig(RegionRegistry(regions), DeadlinePolicy(deadlines, calendar), source)


def load_config(path: str | os.PathLike[str] | None = None) -> BusConfig:
    """Load ``path``, else ``$XREGION_CONFIG``, else the packaged default."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        file = Path(chosen)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read bus configuration {file}: {exc.strerror}") from None
        source = str(file)
    else:
        text = resources.files("xregion").joinpath("config/bus.toml").read_text("utf-8")
        source = "xregion/config/bus.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return parse_config(raw, source)
