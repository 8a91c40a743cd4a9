"""Every stable code has a Chinese explanation (the dashboard and the reports show it)."""

from __future__ import annotations

import importlib
import pkgutil

import xregion
from xregion.auditor import replay
from xregion.errors import XRegionError
from xregion.explanations import EXPLANATIONS, KIND_ZH, explain
from xregion.reasons import REASON_CODES

AUDIT_CODES = {
    replay.RECEIPT_MISSING,
    replay.ANSWER_LATE,
    replay.ANSWER_OVERDUE,
    replay.EVENT_REMOVED,
    replay.CHECKPOINT_MISMATCH,
    replay.CHECKPOINT_FORK,
    replay.CHECKPOINT_INVALID,
    replay.ARCHIVE_INVALID,
}


def defined_codes() -> set[str]:
    """The code of every XRegionError subclass anywhere in the package."""
    for module in pkgutil.walk_packages(xregion.__path__, "xregion."):
        importlib.import_module(module.name)

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    return {c.code for c in subclasses(XRegionError)} | {XRegionError.code}


def test_every_code_has_an_explanation() -> None:
    missing = (set(REASON_CODES) | AUDIT_CODES | defined_codes()) - set(EXPLANATIONS)
    assert not missing, f"codes without a Chinese explanation in xregion/explanations.py: {sorted(missing)}"


def test_explanations_are_chinese_and_complete() -> None:
    for code, explanation in EXPLANATIONS.items():
        assert explanation.code == code
        assert explanation.kind in KIND_ZH
        for text in (explanation.title, explanation.meaning, explanation.action):
            assert text.strip(), code
            assert any("\u4e00" <= ch <= "\u9fff" for ch in text), (code, text)


def test_an_unknown_code_is_named_not_hidden() -> None:
    assert "no_such_code" in explain("no_such_code").title
    assert explain("chain_fork").kind == "security"
