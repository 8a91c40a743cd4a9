"""A security directory: the NATS identities and TLS files of one bus, as ``xregion ops
gen-config`` and ``gen-certs`` lay them out, and what the server and each party take from it.

::

    DIR/auth.conf              accounts, users and permissions (included by the server configuration)
    DIR/pinned.conf            the client certificates admitted (included in its tls block)
    DIR/tls/ca.pem             the CA every party trusts
    DIR/tls/server.pem, -key   the server's certificate
    DIR/tls/clients/<PARTY>.pem, -key.pem   a party's certificate: its identity

``xregion broker`` and ``xregion demo`` create a development one if absent
(:func:`ensure_dev_security`); in production the same layout holds each agency's own files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from xregion.ops.certs import DEFAULT_HOSTS, client_files, server_files, write_dev_pki
from xregion.ops.cluster import ClusterConfig
from xregion.ops.identities import AUTH_FILE, PINNED_FILE, write_auth_config, write_pinned_certs
from xregion.ops.server import ServerConfig
from xregion.permissions import DEFAULT_NAMES, BusNames, parties
from xregion.runtime.connection import ClientIdentity
from xregion.runtime.settings import RuntimeSettings

Secured = TypeVar("Secured", ServerConfig, ClusterConfig)


@dataclass(frozen=True)
class SecurityDir:
    root: Path

    @property
    def auth_file(self) -> Path:
        return self.root / AUTH_FILE

    def identity(self, party: str) -> ClientIdentity:
        """How ``party`` connects: its client certificate from this directory."""
        files = client_files(self.root, party)
        return ClientIdentity(
            party=party,
            tls_ca=files.ca,
            tls_cert=files.cert,
            tls_key=files.key,
        )

    def has_identity(self, party: str) -> bool:
        """Is ``party``'s client certificate here (an operator holds only ADMIN's)?"""
        identity = self.identity(party)
        return all(p is not None and p.exists() for p in (identity.tls_cert, identity.tls_key))

    def settings_for(self, party: str, base: RuntimeSettings) -> RuntimeSettings:
        """``base`` with ``party``'s TLS files (one adapter's settings)."""
        identity = self.identity(party)
        return base.model_copy(
            update={
                "nkey_seed": None,
                "tls_ca": identity.tls_ca,
                "tls_cert": identity.tls_cert,
                "tls_key": identity.tls_key,
            }
        )

    def secure(self, config: Secured) -> Secured:
        """``config`` (one server's or a cluster's) with this directory's accounts
        (``auth.conf``) and mutual TLS whose client certificates are the users."""
        config.auth_file = self.auth_file
        config.tls = server_files(self.root)
        config.tls_map = True
        config.pinned_file = self.root / PINNED_FILE
        return config


def ensure_dev_security(
    root: Path, regions: Iterable[str], *, hosts: Iterable[str] = DEFAULT_HOSTS, names: BusNames = DEFAULT_NAMES
) -> SecurityDir:
    """Throw-away development identities and certificates in ``root``, if absent.

    An existing ``auth.conf`` or server certificate is used as it is — it may hold an
    operator's production users and certificates, for which there are no seeds here. To
    take a new region in, run ``xregion ops gen-config`` / ``gen-certs`` (or edit
    ``auth.conf``) and reload the server.
    """
    codes = list(regions)
    found = SecurityDir(root)
    if not found.auth_file.exists():
        write_auth_config(root, codes, names)
    if not server_files(root).cert.exists():
        write_dev_pki(root, parties(codes), hosts=hosts, leaves=codes)
        write_pinned_certs(root)
    elif not (root / PINNED_FILE).exists():
        write_pinned_certs(root)
    return found
