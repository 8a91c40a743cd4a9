"""A security directory: the NATS identities and TLS files of one bus, as ``xregion ops
gen-config`` and ``gen-certs`` lay them out, and what the server and each party take from it.

::

    DIR/auth.conf              users and permissions (included by the server configuration)
    DIR/nkeys/<PARTY>.nk       NKey seeds (mode 0600)
    DIR/tls/ca.pem             the CA every party trusts
    DIR/tls/server.pem, -key   the server's certificate
    DIR/tls/clients/<PARTY>.pem, -key.pem

``xregion broker`` and ``xregion demo`` create a development one if absent
(:func:`ensure_dev_security`); in production the same layout holds each agency's own files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xregion.permissions import DEFAULT_NAMES, BusNames, parties
from xregion.runtime.certs import DEFAULT_HOSTS, client_files, server_files, write_dev_pki
from xregion.runtime.connection import ClientIdentity
from xregion.runtime.identities import AUTH_FILE, seed_path, write_auth_config
from xregion.runtime.server import ServerConfig
from xregion.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class SecurityDir:
    root: Path

    @property
    def auth_file(self) -> Path:
        return self.root / AUTH_FILE

    def identity(self, party: str) -> ClientIdentity:
        """How ``party`` connects: its NKey seed and client certificate from this directory."""
        files = client_files(self.root, party)
        return ClientIdentity(
            party=party,
            nkey_seed=seed_path(self.root, party),
            tls_ca=files.ca,
            tls_cert=files.cert,
            tls_key=files.key,
        )

    def has_identity(self, party: str) -> bool:
        """Are ``party``'s seed and client certificate here (an operator holds only ADMIN's)?"""
        identity = self.identity(party)
        return all(p is not None and p.exists() for p in (identity.nkey_seed, identity.tls_cert, identity.tls_key))

    def settings_for(self, party: str, base: RuntimeSettings) -> RuntimeSettings:
        """``base`` with ``party``'s NKey seed and TLS files (one adapter's settings)."""
        identity = self.identity(party)
        return base.model_copy(
            update={
                "nkey_seed": identity.nkey_seed,
                "tls_ca": identity.tls_ca,
                "tls_cert": identity.tls_cert,
                "tls_key": identity.tls_key,
            }
        )

    def secure(self, config: ServerConfig) -> ServerConfig:
        """``config`` with this directory's users (``auth.conf``) and mutual TLS."""
        config.auth_file = self.auth_file
        config.tls = server_files(self.root)
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
        write_dev_pki(root, parties(codes), hosts=hosts)
    return found
