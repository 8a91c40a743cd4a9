"""Unified social credit codes (统一社会信用代码), GB 32100-2015.

A code is 18 characters from the 31-character alphabet ``0-9`` and ``A-Y`` without
``I O Z S V``:

====== ==================================================
1      registration authority (登记管理部门代码)
2      organisation category (机构类别代码)
3-8    administrative division (登记管理机关行政区划码, digits)
9-17   organisation code (主体标识码)
18     check character
====== ==================================================

The check character is ``31 - (Σ value(cᵢ)·3ⁱ⁻¹ mod 31) mod 31`` over the first 17
characters, mapped back through the alphabet.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")


class InvalidUSCC(ValueError):
    """The text is not a valid unified social credit code; the message says why."""


def check_character(first17: str) -> str:
    """The GB 32100-2015 check character of the first 17 characters."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Return ``code`` if valid; raise :class:`InvalidUSCC` naming the fault otherwise."""
    if len(code) != 18:
        raise InvalidUSCC(f"must be 18 characters, got {len(code)}")
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        raise InvalidUSCC(f"characters {''.join(bad)!r} are outside the GB 32100-2015 alphabet")
    if not _SHAPE.match(code):
        raise InvalidUSCC("characters 3-8 (administrative division) must be digits")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidUSCC(f"check character is {code[17]!r}, expected {expected!r}")
    return code
