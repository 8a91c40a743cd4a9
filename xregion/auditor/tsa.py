"""The log's client of an RFC 3161 time-stamping authority over HTTP(S) (RFC 3161 §3.4).

``POST <url>`` with ``Content-Type: application/timestamp-query`` and a DER
``TimeStampReq``; the answer is a DER ``TimeStampResp``. Every answer is verified before it
is kept (:mod:`xregion.timestamps`: the signature, the chain to the trusted CA bundle, the
imprint, and the nonce of this request), so a TSA that answers nonsense counts as down.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from xregion.timestamps import (
    TimestampInvalid,
    TimestampMismatch,
    TimestampUnavailable,
    TimestampVerifier,
    TokenInfo,
    build_request,
    make_verifier,
)


@dataclass(frozen=True)
class TsaConfig:
    """Where and how to time-stamp (``xregion audit log run --tsa-*``)."""

    url: str
    ca_bundle: Path
    """PEM certificates the TSA's signing certificate must chain to."""
    hash_alg: str = "sha256"
    verifier: str = "rfc3161-client"
    timeout_s: float = 10.0
    tls_ca: Path | None = None
    """For an ``https://`` URL: the CA bundle of the TSA's web server (default: the system's)."""


class TsaClient:
    def __init__(self, config: TsaConfig, verifier: TimestampVerifier | None = None) -> None:
        self.config = config
        self.verifier = verifier or make_verifier(config.verifier, config.ca_bundle)

    async def stamp(self, data: bytes) -> tuple[bytes, TokenInfo]:
        """A verified token over ``data``: (the DER response, what it says). Raises
        :class:`TimestampUnavailable` when the TSA cannot be reached, refuses, or answers
        with something that does not verify."""
        request, nonce = build_request(data, self.config.hash_alg)
        verify: ssl.SSLContext | bool = True
        if self.config.tls_ca is not None:
            verify = ssl.create_default_context(cafile=str(self.config.tls_ca))
        try:
            async with httpx.AsyncClient(timeout=self.config.timeout_s, verify=verify) as http:
                answer = await http.post(
                    self.config.url, content=request, headers={"Content-Type": "application/timestamp-query"}
                )
        except httpx.HTTPError as exc:
            raise TimestampUnavailable(
                f"time-stamping authority {self.config.url} unreachable: {type(exc).__name__}: {exc}",
                url=self.config.url,
            ) from None
        if answer.status_code != 200:
            raise TimestampUnavailable(
                f"time-stamping authority {self.config.url} answered HTTP {answer.status_code}", url=self.config.url
            )
        response = answer.content
        try:
            info = self.verifier.verify(response, data)
            if info.nonce != nonce:
                raise TimestampInvalid("the token answers another request (nonce)")
        except (TimestampInvalid, TimestampMismatch) as exc:
            raise TimestampUnavailable(
                f"time-stamping authority {self.config.url} answered a token that does not verify: {exc.message}",
                url=self.config.url,
            ) from None
        return response, info
