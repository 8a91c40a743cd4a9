"""Joint investigation / enforcement assistance (调查取证 / 执法协查).

``requested`` → ``received`` → ``accepted`` | ``declined`` → ``evidence_delivered``* →
``completed``; the origin may ``cancelled``. A joint operation over several regions is
several requests sharing one ``operation_id``.
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
    EvidenceItem,
    IPRightType,
    Reason,
    Receipt,
    ShortText,
    Text,
)


class TaskKind(StrEnum):
    EVIDENCE_COLLECTION = "evidence_collection"  # 调查取证
    ON_SITE_INSPECTION = "on_site_inspection"  # 现场检查
    INQUIRY = "inquiry"  # 询问
    TEST_PURCHASE = "test_purchase"  # 测试购买
    REGISTRATION_CHECK = "registration_check"  # 登记信息核查
    ASSET_CHECK = "asset_check"  # 财产核查


class Task(Contract):
    kind: TaskKind
    description: Text
    target: ShortText | None = Field(default=None, description="Premises, store, registry, ...")


class Requested(Contract):
    subject_matter: Text
    ip_right: IPRightType
    tasks: list[Task] = Field(min_length=1)
    due_date: date = Field(description="By when the assistance must be completed.")
    legal_basis: Text
    suspects: list[Entity] = Field(default_factory=list)
    operation_id: ShortText | None = Field(
        default=None, description="Links the requests of one joint operation across regions."
    )
    origin_case_number: CaseNumber | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)


class AssistAccepted(Contract):
    handling_agency: AgencyCode
    local_case_number: CaseNumber | None = None
    planned_date: date | None = None


class Declined(Contract):
    reason: Reason


class EvidenceDelivered(Contract):
    items: list[EvidenceItem] = Field(min_length=1)
    note: Text | None = None


class Completed(Contract):
    summary: Text
    tasks_done: list[TaskKind] = Field(min_length=1)


class Cancelled(Contract):
    reason: Reason


EVENTS: dict[str, type[Contract]] = {
    "requested": Requested,
    "received": Receipt,
    "accepted": AssistAccepted,
    "declined": Declined,
    "evidence_delivered": EvidenceDelivered,
    "completed": Completed,
    "cancelled": Cancelled,
}
