"""Lead transfer (线索移送): the origin refers a lead to the region with jurisdiction.

``submitted`` → ``received`` (automatic receipt) → ``accepted`` | ``rejected`` |
``info_requested`` ⇄ ``info_supplied`` | ``forwarded`` → ``progress``* → ``concluded``;
the origin may ``withdrawn`` before acceptance.

While the lead is open, the addressee may ask the origin for a permission its handling codes
require (``permission_requested``: ``onward_sharing`` to a named region for H2,
``judicial_use`` for H1, ``other_use`` for H0/H3) and the origin answers
``permission_granted`` or ``permission_refused`` (reason required). These do not move the
lead's state; the lifecycle records the permissions granted.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from xregion.contracts.common import (
    AgencyCode,
    AmountCny,
    AttachmentRef,
    CaseNumber,
    Contract,
    DocumentRef,
    Entity,
    EvidenceItem,
    IPRightType,
    Reason,
    Receipt,
    ReferralIdStr,
    RegionCode,
    ShortText,
    Text,
)


class ForwardLink(Contract):
    """Where a forwarded lead came from."""

    referral_id: ReferralIdStr
    region: RegionCode


class Submitted(Contract):
    title: ShortText
    summary: Text
    ip_right: IPRightType
    right_holder: ShortText | None = None
    suspects: list[Entity] = Field(min_length=1)
    location: ShortText = Field(description="Where the infringement takes place.")
    jurisdiction_basis: Text = Field(description="Why the addressee has jurisdiction.")
    origin_case_number: CaseNumber | None = None
    evidence: list[EvidenceItem] = Field(default_factory=list)
    attachments: list[AttachmentRef] = Field(default_factory=list)
    forwarded_from: ForwardLink | None = None


class LeadAccepted(Contract):
    local_case_number: CaseNumber
    handling_agency: AgencyCode
    note: Text | None = None


class RejectionGround(StrEnum):
    NO_JURISDICTION = "no_jurisdiction"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    DUPLICATE = "duplicate"
    NO_INFRINGEMENT = "no_infringement"
    OTHER = "other"


class Rejected(Contract):
    ground: RejectionGround
    reason: Reason


class InfoRequested(Contract):
    questions: list[Text] = Field(min_length=1)


class InfoSupplied(Contract):
    answers: Text
    evidence: list[EvidenceItem] = Field(default_factory=list)
    attachments: list[AttachmentRef] = Field(default_factory=list)


class Forwarded(Contract):
    """The addressee passes the lead to a third region; ``new_referral_id`` is the linked lead."""

    to_region: RegionCode
    new_referral_id: ReferralIdStr
    reason: Reason


class PermissionPurpose(StrEnum):
    """What the addressee asks the origin's permission for (SIENA-style handling codes)."""

    ONWARD_SHARING = "onward_sharing"  # H2: pass the lead on to ``target_region``
    JUDICIAL_USE = "judicial_use"  # H1: use it in judicial proceedings
    OTHER_USE = "other_use"  # H0/H3: use beyond the stated purpose or the handlingnote


class _PermissionSubject(Contract):
    purpose: PermissionPurpose
    target_region: RegionCode | None = Field(
        default=None, description="The region to share with; required for onward_sharing, absent otherwise."
    )

    @model_validator(mode="after")
    def _target_with_onward_sharing(self) -> _PermissionSubject:
        onward = self.purpose is PermissionPurpose.ONWARD_SHARING
        if onward and self.target_region is None:
            raise ValueError("onward_sharing names its target_region")
        if not onward and self.target_region is not None:
            raise ValueError(f"target_region is only for onward_sharing, not {self.purpose.value}")
        return self


class PermissionRequested(_PermissionSubject):
    """The addressee asks the origin for a permission the lead's handling codes require."""

    reason: Reason


class PermissionGranted(_PermissionSubject):
    """The origin grants the permission asked for (or grants it unasked)."""

    conditions: list[ShortText] = Field(default_factory=list)
    note: Text | None = None


class PermissionRefused(_PermissionSubject):
    """The origin refuses the permission (or withdraws one it granted); reason required."""

    reason: Reason


class Progress(Contract):
    stage: ShortText = Field(description="立案, 调查, 检查, 听证, ...")
    note: Text
    measures: list[ShortText] = Field(default_factory=list, description="查封, 扣押, ...")


class Outcome(StrEnum):
    ADMINISTRATIVE_PENALTY = "administrative_penalty"  # 行政处罚
    TRANSFERRED_TO_PUBLIC_SECURITY = "transferred_to_public_security"  # 移送公安
    TRANSFERRED_TO_OTHER_AUTHORITY = "transferred_to_other_authority"
    NO_VIOLATION_FOUND = "no_violation_found"  # 不予处罚/未发现违法
    SETTLED = "settled"  # 调解结案
    OTHER = "other"


class Concluded(Contract):
    outcome: Outcome
    summary: Text
    decision: DocumentRef | None = None
    fine_cny: AmountCny | None = None
    confiscated_value_cny: AmountCny | None = None

    @model_validator(mode="after")
    def _penalty_has_decision(self) -> Concluded:
        if self.outcome is Outcome.ADMINISTRATIVE_PENALTY and self.decision is None:
            raise ValueError("an administrative penalty needs its decision document")
        return self


class Withdrawn(Contract):
    reason: Reason


EVENTS: dict[str, type[Contract]] = {
    "submitted": Submitted,
    "received": Receipt,
    "accepted": LeadAccepted,
    "rejected": Rejected,
    "info_requested": InfoRequested,
    "info_supplied": InfoSupplied,
    "forwarded": Forwarded,
    "progress": Progress,
    "concluded": Concluded,
    "withdrawn": Withdrawn,
    "permission_requested": PermissionRequested,
    "permission_granted": PermissionGranted,
    "permission_refused": PermissionRefused,
}
