"""nats-py reads a message whose subject is not UTF-8 without dying.

nats-py 2.16 builds each received message with ``subject.decode()`` inside its read loop
(``Client._build_message``). A subject that is not valid UTF-8 — which nats-server accepts
on publish and stores, and which a region's ``xregion.v1.*.*.*.<region>`` filter matches —
raises ``UnicodeDecodeError`` there: the read loop ends, the connection still looks alive
but reads nothing until it goes stale (minutes), and the redelivered message kills it
again (field notes, pitfall 14).

:func:`install` replaces ``_build_message`` with one that decodes the subject and the reply
with ``surrogateescape``: the bytes that are not UTF-8 become lone surrogates (U+DC80-U+DCFF),
so nothing is lost and the consumer can tell (:func:`raw_subject`, :func:`is_utf8`) and
dead-letter the message (``subject_invalid``). Valid subjects decode exactly as before.
Installed when this module is first imported — :mod:`xregion.runtime.connection`, which
every xregion connection goes through, and the consumer import it; idempotent.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

_INSTALLED = "_xregion_surrogateescape"


def install() -> None:
    """Make every nats-py client of this process decode subjects with ``surrogateescape``."""
    if getattr(Client, _INSTALLED, False):
        return

    def _build_message(
        self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> Any:
        return self.msg_class(
            subject=subject.decode("utf-8", "surrogateescape"),
            reply=reply.decode("utf-8", "surrogateescape"),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )

    Client._build_message = _build_message  # type: ignore[method-assign]
    setattr(Client, _INSTALLED, True)


def is_utf8(text: str) -> bool:
    """Whether ``text`` (as decoded by the installed client) came from valid UTF-8 bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def raw_subject(text: str) -> bytes:
    """The bytes a subject had on the wire."""
    return text.encode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """``text`` as valid UTF-8 for headers, logs and signed records: bytes that were not
    UTF-8 written as ``\\xNN`` (any other lone surrogate as ``\\udNNN``)."""
    if is_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape" if _only_escapes(text) else "backslashreplace").decode(
        "utf-8", "backslashreplace"
    )


def _only_escapes(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


install()  # on import: every module that connects imports this one (through xregion.runtime.connection)
