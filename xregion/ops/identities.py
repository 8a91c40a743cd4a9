"""NATS identities and accounts: one account per party, one user per party named by its
client certificate, and the service imports through which each reaches the bus.

``xregion ops gen-config --out DIR`` writes ``DIR/auth.conf``, included by the server
configuration (``accounts { ... }``):

* account ``BUS`` (:data:`~xregion.permissions.BUS_ACCOUNT`): JetStream, the streams, the
  evidence buckets, and the operator ``ADMIN``; it *exports* as a service every subject a
  party may publish (its event subjects, its dead letters and alerts, the JetStream API calls
  of :mod:`xregion.permissions`), each to exactly the accounts granted it;
* one account per region, ``COORD`` and ``AUDIT``: the party's user, and a service *import*
  of each of those subjects. A request crossing a service import has its reply subject
  replaced by the server, so a JetStream answer always goes back to the party that asked —
  never to a subject the party chose (field notes pitfall 13).

A user is the party's **client certificate**: the server runs TLS with ``verify_and_map``
and admits a certificate whose URI SAN is ``urn:xregion:party:<CODE>`` (:func:`party_uri`)
as that party, and nothing else. Identity and certificate are one credential, so one
party's certificate can never be paired with another's key. The certificates come from the
bus's CA (development ones from :mod:`xregion.ops.certs`; production, ops/README.md).

``DIR/pinned.conf`` (:func:`write_pinned_certs`, included in the server's ``tls`` block)
*pins* the client certificates the server accepts: the SHA-256 of the public key of every
certificate in ``DIR/tls/clients/`` and ``DIR/tls/leaf/`` (several per party during a
rotation). Removing a certificate's file, regenerating and reloading the server revokes it
at once, before it expires, without a new CA.

``DIR/leaf-auth.conf`` is a regional leaf node's: the same accounts and users without the
imports (:func:`render_accounts` with ``leaf=True``); on the hub each region's account also
admits its leaf node's link (URI SAN ``urn:xregion:leaf:<REGION>``, leaf connections only).

NKey seed files (``--nkey-seed``) are read for servers that still authenticate NKey users;
the configuration written here has none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from xregion.ops.certs import tls_dir
from xregion.ops.cluster import HUB_DOMAIN
from xregion.permissions import (
    BUS_ACCOUNT,
    DEFAULT_NAMES,
    JS_API,
    LEAF_URI,
    OPERATOR,
    BusNames,
    Permissions,
    inbox_prefix,
    parties,
    party_uri,
    permissions_for,
)

AUTH_FILE = "auth.conf"
LEAF_AUTH_FILE = "leaf-auth.conf"
PINNED_FILE = "pinned.conf"
STREAMED = (f"{JS_API}.CONSUMER.MSG.NEXT.", f"{JS_API}.DIRECT.GET.")
"""API calls answered with several messages (a pull batch, a batched direct get)."""


def account_of(party: str) -> str:
    """The account a party's user lives in: ``ADMIN`` in the bus account, everyone else in its own."""
    return BUS_ACCOUNT if party == OPERATOR else party


def imports(perms: Permissions, party: str) -> list[str]:
    """The bus subjects ``party`` reaches from its own account: everything it may publish
    but its own inbox (answers come back there)."""
    own_inbox = inbox_prefix(party) + "."
    return [s for s in perms.publish if not s.startswith(own_inbox)]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def _rule(allow: tuple[str, ...], deny: tuple[str, ...]) -> str:
    parts = [f"allow: {_list(allow)}"]
    if deny:
        parts.append(f"deny: {_list(deny)}")
    return "{ " + ", ".join(parts) + " }"


def render_leaf_link(region: str) -> str:
    """The user of ``region``'s leaf-node link on the hub: only a leaf-node connection may use
    it; no permissions of its own, its account's imports are its limits (the leaf node
    enforces the region's user permissions where the region's clients connect)."""
    return (
        f"      # {region}'s leaf node: the certificate with URI SAN {LEAF_URI}{region}, leaf links only\n"
        f'      {{ user: {_quote(LEAF_URI + region)}, allowed_connection_types: ["LEAFNODE"] }}'
    )


def render_user(party: str, perms: Permissions, js_domain: str | None = None) -> str:
    """``party``'s user; with ``js_domain`` (at a leaf node) its JetStream API calls are
    permitted under the hub's domain prefix ``$JS.<domain>.API`` — what a client at a leaf
    node sends, and what the hub maps back to ``$JS.API`` in the party's account."""
    if js_domain:
        perms = replace(
            perms,
            publish=tuple(p.replace(f"{JS_API}.", f"$JS.{js_domain}.API.", 1) for p in perms.publish),
        )
    return (
        f"      # {party} ({perms.role}): the client certificate with URI SAN {party_uri(party)}\n"
        f"      {{ user: {_quote(party_uri(party))}, permissions: {{\n"
        f"          publish: {_rule(perms.publish, perms.publish_deny)}\n"
        f"          subscribe: {_rule(perms.subscribe, perms.subscribe_deny)}\n"
        f"      }} }}"
    )


def _service(subject: str) -> str:
    return ", response_type: stream" if subject.startswith(STREAMED) else ""


def render_accounts(
    regions: Iterable[str], names: BusNames = DEFAULT_NAMES, *, leaf: bool = False, js_domain: str | None = None
) -> str:
    """The ``accounts`` block of a bus with ``regions`` (see the module docstring).

    ``leaf``: for a regional site's leaf node, which stores nothing: the same accounts and
    users (each party's permissions enforced where it connects) but no exports or imports —
    a party's traffic crosses the leaf link into its own account on the hub, whose imports
    reach the bus there (:func:`xregion.ops.cluster.leaf_remote_block`); its JetStream
    API calls go to the hub's ``js_domain``."""
    codes = list(regions)
    everyone = parties(codes)
    perms = {party: permissions_for(party, codes, names) for party in everyone}
    granted: dict[str, list[str]] = {}
    for party in everyone:
        if account_of(party) == BUS_ACCOUNT:
            continue
        for subject in imports(perms[party], party):
            granted.setdefault(subject, []).append(party)
    exports = [
        f"      {{ service: {_quote(subject)}, accounts: {_list(accounts)}{_service(subject)} }}"
        for subject, accounts in granted.items()
    ]
    bus = f"  {BUS_ACCOUNT}: {{\n    users: [\n{render_user(OPERATOR, perms[OPERATOR])}\n    ]\n"
    if not leaf:
        bus += "    jetstream: enabled\n    exports: [\n" + "\n".join(exports) + "\n    ]\n"
    blocks = [bus + "  }"]
    for party in everyone:
        if account_of(party) == BUS_ACCOUNT:
            continue
        lines = [
            f"      {{ service: {{ account: {BUS_ACCOUNT}, subject: {_quote(subject)} }} }}"
            for subject in imports(perms[party], party)
        ]
        imported = "" if leaf else "    imports: [\n" + "\n".join(lines) + "\n    ]\n"
        users = [render_user(party, perms[party], js_domain if leaf else None)]
        if party in codes and not leaf:
            users.append(render_leaf_link(party))
        blocks.append(f"  {party}: {{\n    users: [\n" + ",\n".join(users) + f"\n    ]\n{imported}  }}")
    return (
        "# generated by `xregion ops gen-config` from the region registry and xregion.permissions;\n"
        "# regenerate rather than edit. Reload a running server after a change:\n"
        "#   nats-server --signal reload=<pid>   (or kill -HUP <pid>)\n"
        "# Users are client certificates (tls verify_and_map): URI SAN urn:xregion:party:<CODE>.\n"
        "accounts {\n" + "\n".join(blocks) + "\n}\n"
    )


def write_auth_config(
    out: Path, regions: Iterable[str], names: BusNames = DEFAULT_NAMES, *, hub_domain: str = HUB_DOMAIN
) -> list[str]:
    """``out/auth.conf`` (the hub's) and ``out/leaf-auth.conf`` (a regional leaf node's, whose
    clients reach the hub's JetStream domain ``hub_domain``) for ``regions``; the parties."""
    codes = list(regions)
    out.mkdir(parents=True, exist_ok=True)
    (out / AUTH_FILE).write_text(render_accounts(codes, names), encoding="utf-8")
    leaf = render_accounts(codes, names, leaf=True, js_domain=hub_domain)
    (out / LEAF_AUTH_FILE).write_text(leaf, encoding="utf-8")
    return parties(codes)


def pinned_key_id(cert_pem: bytes) -> str:
    """What nats-server's ``pinned_certs`` holds for a certificate: the hex SHA-256 of its
    DER-encoded SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def client_certificates(out: Path) -> list[Path]:
    """Every client certificate under ``out/tls/clients`` and leaf-link certificate under
    ``out/tls/leaf`` (not the private keys)."""
    found: list[Path] = []
    for folder in (tls_dir(out) / "clients", tls_dir(out) / "leaf"):
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*.pem") if not p.name.endswith("-key.pem"))
    return found


def write_pinned_certs(out: Path) -> list[Path]:
    """``out/pinned.conf``: the ``pinned_certs`` of every client certificate in ``out``; the
    certificates pinned. With none the file pins nothing and the server admits no client."""
    certs = client_certificates(out)
    lines = [f"  {_quote(pinned_key_id(p.read_bytes()))}  # {p.name}" for p in certs]
    text = (
        "# generated by `xregion ops gen-config` / `gen-certs` from tls/clients/*.pem: the client\n"
        "# certificates this server accepts (SHA-256 of each public key). Remove a certificate's file,\n"
        "# regenerate and reload the server to revoke it.\n"
        "pinned_certs: [\n" + "\n".join(lines) + "\n]\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / PINNED_FILE).write_text(text, encoding="utf-8")
    return certs
