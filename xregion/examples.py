"""Example payloads for every v1 event: fictitious but realistic, in Chinese.

Used by the tests (every example must validate and round-trip), by the schema export (as
JSON Schema ``examples``), by the README and by ``xregion demo``. Entities are invented;
their unified social credit codes carry valid check characters but belong to nobody.
Personal names follow the anonymised style of published decisions (张某).
"""

from __future__ import annotations

from typing import Any

DIGEST_A = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
DIGEST_B = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DIGEST_C = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

SUSPECT_COMPANY: dict[str, Any] = {
    "kind": "enterprise",
    "name": "天津市某某商贸有限公司",
    "uscc": "91120111MA05K8XY06",
    "address": "天津市西青区某物流园3号库",
}
SUSPECT_PERSON: dict[str, Any] = {
    "kind": "individual",
    "name": "张某",
    "contact": "138****0000",
}
BLACKLISTED: dict[str, Any] = {
    "kind": "individual_business",
    "name": "石家庄市某某服装店",
    "uscc": "92130102MA0F3T5D2J",
}

EVIDENCE_PHOTOS: dict[str, Any] = {
    "item_id": "E-001",
    "evidence_type": "electronic_data",
    "description": "仓库内假冒注册商标运动鞋现场照片12张",
    "sha256": DIGEST_A,
    "collected_at": "2026-11-20T10:15:00+08:00",
    "collector": "TJ-AMR-0427",
    "chain_of_custody": [
        {"at": "2026-11-20T10:20:00+08:00", "by": "TJ-AMR-0427", "action": "采集并计算摘要"},
        {"at": "2026-11-20T16:00:00+08:00", "by": "tj.amr", "action": "入库保存"},
    ],
}
EVIDENCE_PURCHASE: dict[str, Any] = {
    "item_id": "E-002",
    "evidence_type": "test_purchase_record",
    "description": "网店测试购买记录及收货视频",
    "sha256": DIGEST_B,
    "collected_at": "2026-11-21T14:00:00+08:00",
    "collector": "HE-AMR-1102",
    "chain_of_custody": [
        {"at": "2026-11-21T14:05:00+08:00", "by": "HE-AMR-1102", "action": "封存"},
    ],
}
DECISION: dict[str, Any] = {
    "title": "行政处罚决定书",
    "document_number": "京市监处罚〔2026〕118号",
    "issuing_authority": "北京市市场监督管理局",
    "issued_on": "2026-10-30",
    "sha256": DIGEST_C,
}

PAYLOADS: dict[str, dict[str, Any]] = {
    # --- lead ---------------------------------------------------------------------------
    "lead.submitted": {
        "title": "“某某”牌运动鞋假冒注册商标线索",
        "summary": "北京市场巡查发现一批假冒“某某”注册商标的运动鞋，物流单据显示货源为天津某物流园仓库，约两千双。",
        "ip_right": "trademark",
        "right_holder": "某某（中国）体育用品有限公司",
        "suspects": [SUSPECT_COMPANY, SUSPECT_PERSON],
        "location": "天津市西青区某物流园",
        "jurisdiction_basis": "侵权商品存储地、发货地均在天津市西青区",
        "origin_case_number": "京市监线〔2026〕0341号",
        "evidence": [EVIDENCE_PHOTOS],
    },
    "lead.received": {"inbox_reference": "TJ-IN-2026-11-0091"},
    "lead.accepted": {
        "local_case_number": "津市监立〔2026〕2207号",
        "handling_agency": "amr",
        "note": "已立案，由西青区市场监管局承办",
    },
    "lead.rejected": {"ground": "no_jurisdiction", "reason": "经核查，仓库已迁至河北省廊坊市，不属本市管辖"},
    "lead.info_requested": {"questions": ["请补充物流单据原件扫描件", "请说明权利人授权情况"]},
    "lead.info_supplied": {"answers": "已补充物流单据及权利人授权书", "evidence": [EVIDENCE_PURCHASE]},
    "lead.forwarded": {
        "to_region": "BJ",
        "new_referral_id": "HE-019a2115-1b5a-7425-96bb-37b8cbe3e89c",
        "reason": "涉案网店经营者住所地在北京市朝阳区",
    },
    "lead.progress": {"stage": "现场检查", "note": "查扣涉嫌侵权运动鞋1986双", "measures": ["查封", "扣押"]},
    "lead.concluded": {
        "outcome": "administrative_penalty",
        "summary": "没收侵权商品，并处罚款",
        "decision": DECISION,
        "fine_cny": "125000.00",
        "confiscated_value_cny": "397200.00",
    },
    "lead.withdrawn": {"reason": "权利人已撤回投诉，线索不再移送"},
    "lead.permission_requested": {
        "purpose": "onward_sharing",
        "target_region": "BJ",
        "reason": "涉案网店经营者住所地在北京市朝阳区，拟将线索转送北京市处理",
    },
    "lead.permission_granted": {
        "purpose": "onward_sharing",
        "target_region": "BJ",
        "conditions": ["仅限北京市市场监督管理局办案使用"],
    },
    "lead.permission_refused": {
        "purpose": "judicial_use",
        "reason": "线索来源涉及举报人保护，暂不同意在诉讼中使用",
    },
    # --- assist -------------------------------------------------------------------------
    "assist.requested": {
        "subject_matter": "协助核查涉嫌销售假冒“某某”商标服装的网店实际经营地址并测试购买",
        "ip_right": "trademark",
        "tasks": [
            {"kind": "test_purchase", "description": "对涉案网店进行测试购买", "target": "某电商平台“某某服饰”店"},
            {"kind": "registration_check", "description": "核查经营者登记信息"},
        ],
        "due_date": "2026-12-20",
        "legal_basis": "《京津冀知识产权执法协作协议》第六条",
        "suspects": [BLACKLISTED],
        "operation_id": "JJJ-OP-2026-007",
    },
    "assist.received": {"inbox_reference": "HE-IN-2026-11-0143"},
    "assist.accepted": {
        "handling_agency": "amr",
        "local_case_number": "冀市监协〔2026〕55号",
        "planned_date": "2026-12-01",
    },
    "assist.declined": {"reason": "该网店经营者住所地不在本省"},
    "assist.evidence_delivered": {"items": [EVIDENCE_PURCHASE], "note": "测试购买已完成"},
    "assist.completed": {
        "summary": "测试购买与登记核查均已完成，证据已移交",
        "tasks_done": ["test_purchase", "registration_check"],
    },
    "assist.cancelled": {"reason": "案件已由权利人提起诉讼，无需继续协查"},
    # --- recognition --------------------------------------------------------------------
    "recognition.published": {
        "result_type": "penalty_decision",
        "title": "关于某某商贸有限公司销售侵犯注册商标专用权商品的行政处罚决定",
        "issuing_authority": "北京市市场监督管理局",
        "issuing_agency": "amr",
        "document_number": "京市监处罚〔2026〕118号",
        "decision_date": "2026-10-30",
        "document_sha256": DIGEST_C,
        "ip_right": "trademark",
        "summary": "认定当事人销售侵犯注册商标专用权的商品，没收并罚款12.5万元",
        "parties": [SUSPECT_COMPANY],
    },
    "recognition.received": {},
    "recognition.recognized": {"scope": "在本市同类案件中作为认定侵权的依据", "conditions": ["以权利人商标有效为前提"]},
    "recognition.contested": {"reason": "当事人已申请行政复议，复议决定作出前暂不互认"},
    "recognition.revoked": {
        "reason": "行政复议决定撤销原处罚决定",
        "revoked_on": "2026-11-22",
        "revoking_document_number": "京政复〔2026〕77号",
    },
    "recognition.revocation_acknowledged": {"note": "已停止援引该决定"},
    # --- share --------------------------------------------------------------------------
    "share.blacklist_upserted": {
        "entry": {
            "uscc": "92130102MA0F3T5D2J",
            "name": "石家庄市某某服装店",
            "reason": "两年内三次因销售假冒注册商标商品受到行政处罚",
            "decision_refs": [DECISION],
            "restrictions": ["列入重点监管名单", "限制参加政府采购"],
            "valid_from": "2026-11-25",
            "valid_until": "2029-11-24",
        },
        "version": 1,
    },
    "share.blacklist_removed": {"uscc": "92130102MA0F3T5D2J", "version": 2, "reason": "信用修复完成，依法移出"},
    "share.alert": {
        "title": "节日期间假冒白酒风险提示",
        "risk_level": "high",
        "description": "近期发现假冒“某某”白酒经河北流入京津市场，请加强市场巡查。",
        "ip_right": "trademark",
        "products": ["白酒"],
        "valid_until": "2027-02-28",
    },
    "share.bulletin": {
        "title": "京津冀联合查处跨区域侵犯商标权典型案例",
        "case_summary": "三地联合行动查获假冒运动鞋、服装等商品一万余件。",
        "ip_right": "trademark",
        "lessons": "线索移送与协查并行，大幅缩短办案周期。",
    },
    "share.acknowledged": {"applied": True},
    "escalation.reminder": {
        "referral_id": "BJ-0190c7a0-3c1e-7b2a-9f00-5e4d3c2b1a00",
        "family": "lead",
        "threshold": "reminder",
        "late_party": "TJ",
        "awaiting": "answer to lead.submitted",
        "answer_by": "2026-10-15",
        "days_past_due": 0,
        "calendar": "working",
    },
    "escalation.overdue": {
        "referral_id": "BJ-0190c7a0-3c1e-7b2a-9f00-5e4d3c2b1a00",
        "family": "lead",
        "threshold": "overdue",
        "late_party": "TJ",
        "awaiting": "answer to lead.submitted",
        "answer_by": "2026-10-15",
        "days_past_due": 1,
        "calendar": "working",
    },
}
"""An example ``data`` object for each ``<family>.<event>``."""
