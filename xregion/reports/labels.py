"""Chinese labels of the bus's vocabulary, for reports and the dashboard (``family ``→ "线索移送")."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

FAMILY_ZH: Mapping[str, str] = MappingProxyType(
    {"lead": "线索移送", "assist": "协查请求", "recognition": "结果互认", "share": "信息共享", "all": "全部业务"}
)
STATE_ZH: Mapping[str, str] = MappingProxyType(
    {
        "submitted": "已移送",
        "received": "已接收",
        "accepted": "已受理",
        "rejected": "已退回",
        "info_requested": "待补充材料",
        "info_supplied": "已补充材料",
        "forwarded": "已转送",
        "in_progress": "办理中",
        "concluded": "已办结",
        "withdrawn": "已撤回",
        "requested": "已请求",
        "declined": "已拒绝",
        "evidence_delivered": "已交付证据",
        "completed": "已完成",
        "cancelled": "已取消",
        "published": "已发布",
        "recognized": "已认可",
        "contested": "有异议",
        "revoked": "已撤销",
        "acknowledged": "已确认",
        "revocation_acknowledged": "已确认撤销",
        "pending": "待答复",
    }
)
OUTCOME_ZH: Mapping[str, str] = MappingProxyType(
    {
        "on_time": "按期答复",
        "late": "逾期答复",
        "overdue": "逾期未答复",
        "open": "未到期未答复",
        "withdrawn": "撤回/取消",
        "no_deadline": "无答复期限",
    }
)
MILESTONE_ZH: Mapping[str, str] = MappingProxyType({"receipt": "签收", "acceptance": "受理", "conclusion": "办结"})
RECOGNITION_ZH: Mapping[str, str] = MappingProxyType(
    {"recognized": "认可", "contested": "提出异议", "pending": "待决定", "revocation_acknowledged": "已确认撤销"}
)


def family_label(family: str) -> str:
    """``线索移送 lead``."""
    zh = FAMILY_ZH.get(family)
    return f"{zh} {family}" if zh else family


def state_label(state: str) -> str:
    zh = STATE_ZH.get(state)
    return f"{zh} {state}" if zh else state


__all__ = [
    "FAMILY_ZH",
    "MILESTONE_ZH",
    "OUTCOME_ZH",
    "RECOGNITION_ZH",
    "STATE_ZH",
    "family_label",
    "state_label",
]
