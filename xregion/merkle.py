"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

The verifiable log (:mod:`xregion.auditor.tlog`) keeps a Merkle tree over every message of
the event stream in stream order; its checkpoints (:mod:`xregion.note`) name a tree size and
root. This module holds the hashing and the proofs, pure and without I/O, so the log, the
witnesses, the auditor and the evidence verifier share one implementation (the standalone
verifier in ``adapters/examples/`` has its own, on purpose).

* leaf hash ``SHA-256(0x00 || data)``, interior node ``SHA-256(0x01 || left || right)``,
  the empty tree's root ``SHA-256("")`` (RFC 9162 §2.1.1);
* a tree of *n* leaves splits at *k*, the largest power of two smaller than *n*;
* proofs are generated as RFC 6962 §2.1.1 ``PATH`` and §2.1.2 ``PROOF`` (the same proofs
  RFC 9162 §2.1.3/§2.1.4 verify), from any :class:`SubtreeHashes` — the log answers
  ``hash(start, end)`` from the perfect subtrees it stores, so a proof costs O(log n)
  lookups, and :class:`MemoryTree` is the in-memory reference;
* verification is RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from xregion.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class InclusionInvalid(VerificationError):
    """An inclusion proof does not lead from the leaf to the checkpoint's root."""

    code = "inclusion_invalid"


class LogInconsistent(VerificationError):
    """Two tree heads of one log are not consistent: the tree was rewritten between them."""

    code = "tlog_inconsistent"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry (a stored message's bytes)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` ≥ 2): where a tree of ``n`` leaves splits."""
    if n < 2:
        raise ValueError("only a tree of two or more leaves splits")
    return 1 << ((n - 1).bit_length() - 1)


class SubtreeHashes(Protocol):
    """Anything that answers the root hash of the leaves ``[start, end)``."""

    def subtree(self, start: int, end: int) -> bytes: ...


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The root of a tree whose leaf hashes are ``leaves`` (reference: recursive, O(n))."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def inclusion_proof(tree: SubtreeHashes, index: int, size: int) -> list[bytes]:
    """RFC 6962 ``PATH(index, D[0:size])``: the audit path of leaf ``index`` in the tree of ``size``."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    # Walk down from the root, collecting the sibling of each subtree holding the leaf;
    # the path lists them from the leaf up.
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(tree.subtree(start + k, end))
            end = start + k
        else:
            path.append(tree.subtree(start, start + k))
            start = start + k
    path.reverse()
    return path


def consistency_proof(tree: SubtreeHashes, old: int, new: int) -> list[bytes]:
    """RFC 6962 ``PROOF(old, D[0:new])``: that the tree of ``old`` leaves is a prefix of ``new``'s."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(tree.subtree(start, end))
            break
        k = split(n)
        if m <= k:
            proof.append(tree.subtree(start + k, end))
            end = start + k
        else:
            proof.append(tree.subtree(start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def _lsb(x: int) -> int:
    return x & 1


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`InclusionInvalid` unless ``path`` leads from the leaf
    hash ``leaf`` at ``index`` to ``root`` of the tree of ``size``."""
    if not 0 <= index < size:
        raise InclusionInvalid(f"leaf index {index} is not in a tree of {size}", index=index, size=size)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise InclusionInvalid("the inclusion proof is longer than the tree is deep", index=index, size=size)
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise InclusionInvalid(
            f"the inclusion proof of leaf {index} does not lead to the root of the tree of {size}",
            index=index,
            size=size,
        )


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`LogInconsistent` unless ``proof`` shows the tree of
    ``old`` leaves with ``old_root`` is a prefix of the tree of ``new`` leaves with ``new_root``."""

    def fail(why: str) -> LogInconsistent:
        return LogInconsistent(
            f"tree head {old} is not consistent with tree head {new}: {why}",
            old_size=old,
            new_size=new,
        )

    if old > new:
        raise fail("the newer tree is smaller (a rollback)")
    if old == new:
        if proof or old_root != new_root:
            raise fail("same size, different roots (a fork)")
        return
    if old == 0:
        if proof:
            raise fail("a proof from the empty tree must be empty")
        return
    if not proof:
        raise fail("the consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("the proof is longer than the tree is deep")
        if _lsb(fn) or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("the proof is too short")
    if fr != old_root:
        raise fail("the proof does not reproduce the older root: the leaves it covered changed")
    if sr != new_root:
        raise fail("the proof does not reproduce the newer root")


class MemoryTree:
    """A Merkle tree held in memory (leaf hashes only): the reference, and the auditor's
    recomputation of a tree from the stream."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.leaves: list[bytes] = list(leaves)

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; return its index."""
        self.leaves.append(leaf)
        return len(self.leaves) - 1

    @property
    def size(self) -> int:
        return len(self.leaves)

    def subtree(self, start: int, end: int) -> bytes:
        return root_of(self.leaves[start:end])

    def root(self, size: int | None = None) -> bytes:
        return root_of(self.leaves[: self.size if size is None else size])


class CompactRange:
    """The roots of the perfect subtrees covering ``[0, size)`` (at most log₂ n hashes): enough
    to append leaves and compute the root at every size without holding the leaves — how the
    auditor recomputes every checkpointed root from the stream in constant memory."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # left to right, largest first

    def append(self, leaf: bytes) -> None:
        self._peaks.append(leaf)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # merge equal-sized neighbours
            right = self._peaks.pop()
            left = self._peaks.pop()
            self._peaks.append(node_hash(left, right))
            n >>= 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        acc = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            acc = node_hash(peak, acc)
        return acc
