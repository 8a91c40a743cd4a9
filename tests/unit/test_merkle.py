"""RFC 6962/9162 hashing and proofs: the published Certificate Transparency vectors, every
proof of every small tree, and the forgeries a verifier must refuse."""

from __future__ import annotations

import pytest

from xregion.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InclusionInvalid,
    LogInconsistent,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 reference leaves and the root of each tree size 1..8 (transparency-dev test data).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def ct_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(d) for d in CT_LEAVES)


def test_reference_roots() -> None:
    tree = ct_tree()
    assert tree.root(0) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    compact = CompactRange()
    for n in range(1, 9):
        compact.append(tree.leaves[n - 1])
        assert tree.root(n).hex() == CT_ROOTS[n - 1]
        assert compact.root().hex() == CT_ROOTS[n - 1]


def test_reference_proofs() -> None:
    tree = ct_tree()
    assert [p.hex() for p in inclusion_proof(tree, 0, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in inclusion_proof(tree, 5, 8)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in consistency_proof(tree, 2, 8)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


def test_every_proof_of_every_small_tree_verifies_and_forgeries_do_not() -> None:
    tree = MemoryTree(leaf_hash(bytes([i, i * 7 % 256])) for i in range(37))
    for n in range(1, tree.size + 1):
        root = tree.root(n)
        for i in range(n):
            path = inclusion_proof(tree, i, n)
            verify_inclusion(tree.leaves[i], i, n, path, root)
            if n > 1:
                with pytest.raises(InclusionInvalid):
                    verify_inclusion(tree.leaves[i], (i + 1) % n, n, path, root)
                with pytest.raises(InclusionInvalid):
                    verify_inclusion(leaf_hash(b"forged"), i, n, path, root)
                if path:
                    with pytest.raises(InclusionInvalid):
                        verify_inclusion(tree.leaves[i], i, n, [*path[:-1], b"\x00" * 32], root)
        for m in range(0, n + 1):
            proof = consistency_proof(tree, m, n)
            verify_consistency(m, n, tree.root(m), root, proof)
            if 0 < m < n:
                with pytest.raises(LogInconsistent):
                    verify_consistency(m, n, leaf_hash(b"other"), root, proof)
                with pytest.raises(LogInconsistent):
                    verify_consistency(m, n, tree.root(m), leaf_hash(b"other"), proof)
                with pytest.raises(LogInconsistent):
                    verify_consistency(m, n, tree.root(m), root, proof[:-1])


def test_a_rewritten_tree_is_not_consistent() -> None:
    honest = MemoryTree(leaf_hash(bytes([i])) for i in range(10))
    rewritten = MemoryTree(honest.leaves)
    rewritten.leaves[3] = leaf_hash(b"rewritten")
    for old in range(4, 10):
        with pytest.raises(LogInconsistent):
            verify_consistency(old, 10, honest.root(old), rewritten.root(10), consistency_proof(rewritten, old, 10))
    removed = MemoryTree(honest.leaves[:3] + honest.leaves[4:])  # an event taken out, the rest shifted
    with pytest.raises(LogInconsistent):
        verify_consistency(5, 9, honest.root(5), removed.root(9), consistency_proof(removed, 5, 9))
    with pytest.raises(LogInconsistent, match="rollback"):
        verify_consistency(6, 5, honest.root(6), honest.root(5), [])
    with pytest.raises(LogInconsistent, match="fork"):
        verify_consistency(6, 6, honest.root(6), rewritten.root(6), [])
