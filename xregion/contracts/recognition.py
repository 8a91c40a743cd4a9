"""Result mutual recognition (结果互认).

The origin ``published`` an enforcement result to one region or to ``ALL``; each addressee
sends a ``received`` receipt, then answers ``recognized`` or ``contested``. The origin may
``revoked`` the result (overturned on review or appeal); every addressee sends
``revocation_acknowledged``.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from xregion.contracts.common import (
    AgencyCode,
    AttachmentRef,
    CaseNumber,
    Contract,
    Entity,
    IPRightType,
    Reason,
    Receipt,
    Sha256Hex,
    ShortText,
    Text,
)


class ResultType(StrEnum):
    PENALTY_DECISION = "penalty_decision"  # 行政处罚决定
    INFRINGEMENT_DETERMINATION = "infringement_determination"  # 侵权判定
    INSPECTION_REPORT = "inspection_report"  # 检验报告
    APPRAISAL_REPORT = "appraisal_report"  # 鉴定意见
    ADMINISTRATIVE_RULING = "administrative_ruling"  # 行政裁决
    JUDGMENT = "judgment"  # 裁判文书
    OTHER = "other"


class Published(Contract):
    result_type: ResultType
    title: ShortText
    issuing_authority: ShortText
    issuing_agency: AgencyCode
    document_number: CaseNumber
    decision_date: date
    document_sha256: Sha256Hex
    ip_right: IPRightType
    summary: Text
    parties: list[Entity] = Field(default_factory=list)
    attachment: AttachmentRef | None = None


class Recognized(Contract):
    scope: Text = Field(description="What is recognised and for what use.")
    conditions: list[Text] = Field(default_factory=list)


class Contested(Contract):
    reason: Reason


class Revoked(Contract):
    reason: Reason
    revoked_on: date
    revoking_document_number: CaseNumber | None = None


class RevocationAcknowledged(Contract):
    note: Text | None = None


EVENTS: dict[str, type[Contract]] = {
    "published": Published,
    "received": Receipt,
    "recognized": Recognized,
    "contested": Contested,
    "revoked": Revoked,
    "revocation_acknowledged": RevocationAcknowledged,
}
