"""Field types and value objects shared by the four event families.

Everything here is a pydantic type whose JSON Schema is part of the v1 contract. Text is
kept exactly as sent (Chinese included): no normalisation, no stripping. Fields holding
personal data are :data:`SensitiveText`: their schema accepts either the plain value or a
:class:`Sealed` one, and that ``$ref`` to ``Sealed`` is the one marker of personal data
(standard JSON Schema, which every validator loads as it is): adapters seal every such field
to the addressee on the wire (:mod:`xregion.sealing`), and logs redact them.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from xregion.regions import AGENCY_CODE, PARTY_CODE
from xregion.uscc import validate_uscc

NULL_IS_ABSENT = (
    "null means the same as leaving the member out. Never write it: producers omit a member "
    "that has no value (docs/signing-recipe.md §1). Receivers accept it, as v1 always has, "
    "read it as absent, and verify the signature over the event as received."
)
"""Annotation of the ``null`` alternative of every optional member (envelope and data)."""


def null_is_absent(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of the contract's models: mark each optional property's ``null``
    alternative ``deprecated`` and say what it means (the v1 rule on ``null``).

    Only annotations: what validates is unchanged (v1 accepted ``null`` and still does, so
    no event that was valid becomes invalid), but a reader of the schema learns that a
    producer leaves the member out instead.
    """
    for prop in (schema.get("properties") or {}).values():
        if not isinstance(prop, dict):
            continue
        for branch in prop.get("anyOf") or ():
            if branch == {"type": "null"}:
                branch.update(deprecated=True, description=NULL_IS_ABSENT)


class Contract(BaseModel):
    """Base of every payload model: immutable; tolerant readers, strict writers.

    Received data may carry fields added later in v1: they are ignored (and stay covered
    by the signature). Composing an event validates with ``context={"strict": True}``,
    which refuses unknown fields, naming them, so a producer's typo never goes unnoticed.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False, json_schema_extra=null_is_absent)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_fields_when_writing(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict) and (info.context or {}).get("strict"):
            unknown = sorted(set(value) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _known_region(value: str, info: ValidationInfo) -> str:
    """With a registry in the validation context, the code must name a configured region."""
    registry = (info.context or {}).get("regions")
    if registry is not None and value not in registry:
        raise ValueError(f"unknown region {value!r}; known: {', '.join(registry.codes)}")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000), AfterValidator(_not_blank)]
"""Free text: any Unicode, not blank."""

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_not_blank)]

Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4_000),
    AfterValidator(_not_blank),
    Field(description="Required, non-blank statement of reasons (说明理由)."),
]

RegionCode = Annotated[
    str,
    StringConstraints(pattern=PARTY_CODE.pattern),
    AfterValidator(_known_region),
    Field(description="Code of a configured region (BJ, TJ, HE, ...)."),
]

AgencyCode = Annotated[
    str,
    StringConstraints(pattern=AGENCY_CODE.pattern),
    Field(description="Agency code within a region (ipo, amr, customs, psb, court, ...)."),
]

Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="SHA-256 digest, 64 lower-case hex characters."),
]

ReferralIdStr = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2,8}-[0-9a-f-]{36}$"),
    Field(description="Referral id: origin code, '-', UUIDv7."),
]

CaseNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_not_blank),
    Field(description="A case or document number as issued locally, e.g. 京知执〔2026〕12号."),
]

UnifiedSocialCreditCode = Annotated[
    str,
    StringConstraints(min_length=18, max_length=18, pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"),
    AfterValidator(validate_uscc),
    Field(description="统一社会信用代码, GB 32100-2015; the check character (18th) must be valid."),
]

AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?$")
AmountCny = Annotated[
    str,
    StringConstraints(pattern=AMOUNT.pattern),
    Field(description="Amount in yuan as a decimal string (exact across languages), e.g. '12500.00'."),
]


class Sealed(Contract):
    """A personal-data value sealed to its recipients (docs/signing-recipe.md §8).

    Every field whose schema admits this type (a ``$ref`` to ``Sealed``) is personal data and
    travels sealed; no other field does. ``sealed`` maps each recipient's roster key id to the
    standard-base64 box of the value's UTF-8 JSON text. Only the holder of the recipient key
    can read it; the signature covers the boxes. Without ``v`` (sealing v1) each box is a
    libsodium sealed box (X25519 + XSalsa20-Poly1305); with ``"v": 2`` each box is the
    ChaCha20-Poly1305 ciphertext and tag under a key derived from one X25519 agreement per
    event and recipient with ``epk``, the event's ephemeral public key (xregion/sealing.py).
    """

    sealed: dict[
        str,
        Annotated[str, StringConstraints(min_length=24, max_length=60_000, pattern=r"^[A-Za-z0-9+/]+={0,2}$")],
    ] = Field(min_length=1, description="Recipient key id → base64 box of the value's JSON text.")
    v: Literal[2] | None = Field(
        default=None, description="Sealing version: absent for v1 (sealed boxes), 2 for one key agreement per event."
    )
    epk: Annotated[str, StringConstraints(min_length=44, max_length=44, pattern=r"^[A-Za-z0-9+/]{43}=$")] | None = (
        Field(default=None, description="v2: the event's ephemeral X25519 public key, standard base64.")
    )

    @model_validator(mode="after")
    def _v2_names_its_key(self) -> Sealed:
        if (self.v is None) != (self.epk is None):
            raise ValueError("a v2 sealed value has both v and epk, a v1 one neither")
        return self


SensitiveText = Annotated[
    ShortText | Sealed,
    Field(description="Personal data: sealed to the addressee on the bus (docs/signing-recipe.md §8)."),
]
"""Personal data: plain text, or on the wire sealed to the addressee. Its schema's ``$ref``
to :class:`Sealed` is what marks the field as personal data (:mod:`xregion.sealing`)."""


class Receipt(Contract):
    """Automatic receipt: the addressee's adapter has the event durably stored and handed
    to its regional system."""

    inbox_reference: ShortText | None = None


class IPRightType(StrEnum):
    """Kind of intellectual-property right concerned."""

    PATENT = "patent"  # 发明专利
    UTILITY_MODEL = "utility_model"  # 实用新型
    DESIGN = "design"  # 外观设计
    TRADEMARK = "trademark"  # 商标
    COPYRIGHT = "copyright"  # 著作权
    TRADE_SECRET = "trade_secret"  # 商业秘密
    GEOGRAPHICAL_INDICATION = "geographical_indication"  # 地理标志
    PLANT_VARIETY = "plant_variety"  # 植物新品种
    IC_LAYOUT_DESIGN = "ic_layout_design"  # 集成电路布图设计
    DATA_IP = "data_ip"  # 数据知识产权
    OTHER = "other"


class EntityKind(StrEnum):
    ENTERPRISE = "enterprise"  # 企业
    INDIVIDUAL_BUSINESS = "individual_business"  # 个体工商户
    INDIVIDUAL = "individual"  # 自然人
    ONLINE_STORE = "online_store"  # 网店
    OTHER = "other"


class Entity(Contract):
    """A party involved: suspect, right holder, blacklisted subject. Holds personal data."""

    kind: EntityKind
    name: SensitiveText
    uscc: UnifiedSocialCreditCode | None = Field(
        default=None, description="Required for enterprises and individual businesses."
    )
    address: SensitiveText | None = None
    contact: SensitiveText | None = None
    online_store_url: Annotated[str, StringConstraints(max_length=2_000)] | None = None

    @model_validator(mode="after")
    def _uscc_for_organisations(self) -> Entity:
        if self.kind in (EntityKind.ENTERPRISE, EntityKind.INDIVIDUAL_BUSINESS) and not self.uscc:
            raise ValueError(f"an entity of kind {self.kind.value!r} needs its uscc")
        return self


class DocumentRef(Contract):
    """A formal document: decision, report, determination."""

    title: ShortText
    document_number: CaseNumber
    issuing_authority: ShortText
    issued_on: date
    sha256: Sha256Hex | None = Field(default=None, description="Digest of the signed document file.")


class AttachmentRef(Contract):
    """A file stored out of band (JetStream object store), referenced by digest and size."""

    object_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    filename: ShortText
    media_type: Annotated[str, StringConstraints(pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$")]
    size: Annotated[int, Field(ge=0, description="Bytes.")]
    sha256: Sha256Hex


class EvidenceType(StrEnum):
    DOCUMENT = "document"  # 书证
    PHYSICAL = "physical"  # 物证
    AUDIOVISUAL = "audiovisual"  # 视听资料
    ELECTRONIC_DATA = "electronic_data"  # 电子数据
    WITNESS_STATEMENT = "witness_statement"  # 证人证言
    PARTY_STATEMENT = "party_statement"  # 当事人陈述
    APPRAISAL_OPINION = "appraisal_opinion"  # 鉴定意见
    INSPECTION_RECORD = "inspection_record"  # 勘验笔录、现场笔录
    TEST_PURCHASE_RECORD = "test_purchase_record"  # 测试购买记录
    OTHER = "other"


class CustodyStep(Contract):
    """One hand-over in the chain of custody."""

    at: AwareDatetime
    by: ShortText = Field(description="Agency or officer badge code; not a personal name.")
    action: ShortText = Field(description="collected, sealed, transferred, examined, ...")


class EvidenceItem(Contract):
    """One item of evidence, identified by the SHA-256 digest of its content."""

    item_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    evidence_type: EvidenceType
    description: Text
    sha256: Sha256Hex
    collected_at: AwareDatetime
    collector: ShortText = Field(description="Collecting agency or officer badge code.")
    chain_of_custody: list[CustodyStep] = Field(min_length=1)
    attachment: AttachmentRef | None = None

    @model_validator(mode="after")
    def _attachment_matches(self) -> EvidenceItem:
        if self.attachment is not None and self.attachment.sha256 != self.sha256:
            raise ValueError("attachment.sha256 differs from the evidence item's sha256")
        if self.chain_of_custody[0].at < self.collected_at:
            raise ValueError("chain_of_custody starts before collected_at")
        return self
