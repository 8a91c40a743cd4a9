"""Information sharing (信息共享): broadcasts to all regions, each acknowledged by every region.

``blacklist_upserted`` / ``blacklist_removed`` maintain the replicated, versioned blacklist
of repeat or intentional infringers (失信主体"黑名单"), keyed by unified social credit code;
``alert`` is a risk warning and ``bulletin`` a typical case. Every addressee answers each
broadcast with ``acknowledged`` once it has applied it.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field, model_validator

from xregion.contracts.common import (
    Contract,
    DocumentRef,
    IPRightType,
    Reason,
    SensitiveText,
    ShortText,
    Text,
    UnifiedSocialCreditCode,
)


class BlacklistEntry(Contract):
    uscc: UnifiedSocialCreditCode
    name: SensitiveText
    reason: Reason
    decision_refs: list[DocumentRef] = Field(min_length=1)
    restrictions: list[ShortText] = Field(min_length=1, description="Measures applied (联合惩戒).")
    valid_from: date
    valid_until: date | None = None

    @model_validator(mode="after")
    def _period(self) -> BlacklistEntry:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class BlacklistUpserted(Contract):
    entry: BlacklistEntry
    version: int = Field(ge=1, description="Version of this entry; increases with every change.")


class BlacklistRemoved(Contract):
    uscc: UnifiedSocialCreditCode
    version: int = Field(ge=2, description="The removal is a new version of the entry.")
    reason: Reason


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Alert(Contract):
    title: ShortText
    risk_level: RiskLevel
    description: Text
    ip_right: IPRightType | None = None
    products: list[ShortText] = Field(default_factory=list)
    valid_until: date | None = None


class Bulletin(Contract):
    title: ShortText
    case_summary: Text
    ip_right: IPRightType
    lessons: Text | None = None


class Acknowledged(Contract):
    applied: bool = Field(description="False if the region could not apply the update; see note.")
    note: Text | None = None

    @model_validator(mode="after")
    def _note_when_not_applied(self) -> Acknowledged:
        if not self.applied and not self.note:
            raise ValueError("an acknowledgement that was not applied needs a note saying why")
        return self


EVENTS: dict[str, type[Contract]] = {
    "blacklist_upserted": BlacklistUpserted,
    "blacklist_removed": BlacklistRemoved,
    "alert": Alert,
    "bulletin": Bulletin,
    "acknowledged": Acknowledged,
}
