"""The generated cluster and leaf-node configurations: committed copies match the generator,
and nats-server accepts them (``-t``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from xregion.ops.cluster import write_ops_configs
from xregion.ops.server import find_nats_server

ROOT = Path(__file__).resolve().parents[2]


def test_committed_ops_configs_are_generated(tmp_path: Path) -> None:
    written = write_ops_configs(tmp_path, 3, ("BJ", "TJ", "HE"))
    for path in written:
        committed = ROOT / "ops" / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} differs: run xregion ops gen-config --cluster 3"
    node = (tmp_path / "cluster" / "n1.conf").read_text()
    assert "routes: [nats-route://xregion-n1:6222" in node and "domain: hub" in node
    assert node.count("verify_and_map: true") == 2  # clients and leaf links: the certificate is the user
    assert node.count("verify: true") == 1  # routes
    assert node.count('include "../security/pinned.conf"') == 2
    leaf = (tmp_path / "leaf" / "BJ.conf").read_text()
    assert "jetstream" not in leaf and "account: BJ" in leaf and "tls/leaf/BJ.pem" in leaf
    assert 'include "../security/leaf-auth.conf"' in leaf


def test_nats_server_accepts_the_syntax(tmp_path: Path) -> None:
    for conf in sorted((ROOT / "ops").glob("*/*.conf")):
        # the referenced TLS files and auth.conf exist only on the servers: only parse errors count
        proc = subprocess.run([find_nats_server(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10)
        out = proc.stdout + proc.stderr
        assert "parse" not in out.lower() or "no such file" in out.lower(), out
