"""RFC 8785 canonical JSON (JCS), with a fast path: the bytes that are signed and hashed.

:func:`dumps` returns exactly the bytes of ``rfc8785.dumps`` for every input, and raises
exactly what ``rfc8785.dumps`` raises, because whatever it does not handle itself it hands
to ``rfc8785.dumps``. What it handles itself is the *plain* JSON of events: values whose
types are exactly ``dict``, ``list``, ``tuple``, ``str``, ``int``, ``bool`` or ``None``. For
those, the standard library's C encoder (``json``, keys sorted, no whitespace, no ASCII
escaping) writes the same text as JCS, for these reasons:

* **Strings**: both escape only ``"``, ``\\`` and U+0000–U+001F, as ``\\b \\t \\n \\f \\r``
  or else as lowercase ``\\u00xx``; everything else (U+007F, U+2028, U+2029, any non-ASCII
  character) is written as itself, and the text is encoded as UTF-8. A string holding a
  surrogate (lone or paired) cannot be encoded: the fast path gives up and
  ``rfc8785.dumps`` raises its own error.
* **Integers**: both write the decimal digits. ``rfc8785`` accepts only the integers an
  IEEE 754 double holds exactly, -(2**53 - 1) to 2**53 - 1, and raises
  ``IntegerDomainError`` beyond; the fast path takes only that range.
* **Object keys**: JCS sorts by UTF-16 code units, Python by code points. The two orders
  agree unless a key holds a character above U+FFFF (UTF-16 writes it as a surrogate pair,
  D800–DFFF, which sorts *below* E000–FFFF); the fast path takes only objects whose keys
  are all ``str`` with no such character.
* **Literals**: ``true``, ``false``, ``null``, no whitespace, ``,`` and ``:`` as separators.

Everything else goes to ``rfc8785.dumps``: any ``float`` (ECMAScript number formatting:
``1.0`` is ``1``, ``-0.0`` is ``0``, ``1e21`` is ``1e+21``, ...), integers out of range,
keys above U+FFFF or not ``str``, subclasses (``IntEnum``, ``str`` enums, dict and list
subclasses), other types (which it refuses), nesting deeper than :data:`MAX_FAST_DEPTH`
(which also catches reference cycles), and strings holding surrogates.

This module is part of the contract: it imports nothing from the rest of ``xregion``.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["MAX_FAST_DEPTH", "dumps"]

MAX_FAST_DEPTH = 64
"""Containers nested deeper than this go to ``rfc8785.dumps`` (events nest about 5 deep).

The bound also stops the check at a reference cycle, which ``rfc8785.dumps`` then refuses
with its ``RecursionError``."""

_INT_MAX = 2**53 - 1
"""The largest integer ``rfc8785`` accepts (its smallest is ``-_INT_MAX``)."""

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    check_circular=False,  # _plain has bounded the depth, so there is no cycle
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
)


def dumps(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj``, identical to ``rfc8785.dumps(obj)``.

    Plain JSON values (see the module docstring) are written by the standard library's C
    encoder; anything else is handed to ``rfc8785.dumps``, so every error raised is its
    own: ``rfc8785.CanonicalizationError`` (unsupported type, non-``str`` key, surrogate in
    a string), its subclasses ``IntegerDomainError`` and ``FloatDomainError``,
    ``UnicodeEncodeError`` (surrogate in an object key) or ``RecursionError`` (a cycle).
    """
    if _plain(obj, 0):
        try:
            return _ENCODER.encode(obj).encode("utf-8")
        except UnicodeEncodeError:  # a surrogate in a string or a key: rfc8785 raises
            pass
    return rfc8785.dumps(obj)


def _plain(obj: Any, depth: int) -> bool:
    """Whether ``obj`` is plain JSON that the standard encoder writes as JCS does.

    ``depth`` is the number of containers around ``obj``. Scalars in containers are checked
    inline (no call per string: events are mostly strings); containers recursively.
    """
    kind = type(obj)
    values: Any
    if kind is dict:
        if depth >= MAX_FAST_DEPTH:
            return False
        for key in obj:
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                return False
        values = obj.values()
    elif kind is list or kind is tuple:
        if depth >= MAX_FAST_DEPTH:
            return False
        values = obj
    else:
        return (
            kind is str or obj is None or obj is True or obj is False or (kind is int and -_INT_MAX <= obj <= _INT_MAX)
        )
    for value in values:
        kind = type(value)
        if kind is str or value is None or value is True or value is False:
            continue
        if kind is int:
            if -_INT_MAX <= value <= _INT_MAX:
                continue
            return False
        if not _plain(value, depth + 1):
            return False
    return True
