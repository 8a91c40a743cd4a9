"""What every stable code means, in Chinese, for the people who read the dashboard and the reports.

Each error, dead-letter, security-alert and audit code of xregion (:data:`xregion.reasons.REASON_CODES`
and the auditor's own codes) has an :class:`Explanation`: a short title, what it means for
the referral or the bus, and what to do. The dashboard shows it next to every anomaly, dead
letter and security alert; the audit report next to every finding. A unit test keeps the
table complete: a new code without an explanation fails it.

Categories (``kind``): ``security`` — forged, replayed or misrouted traffic, or a break in
the signed history (a matter for the security officer); ``integrity`` — a message that is not
a valid event; ``process`` — a referral handled against its lifecycle or deadline (a matter
for the coordinator); ``operation`` — configuration, connection or infrastructure (a
matter for the operator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["security", "integrity", "process", "operation"]

KIND_ZH: Mapping[str, str] = MappingProxyType(
    {"security": "安全", "integrity": "数据完整性", "process": "办理流程", "operation": "运行维护"}
)


@dataclass(frozen=True)
class Explanation:
    """A code explained: ``title`` (a few words), ``meaning`` (what happened), ``action``
    (what to do), ``kind`` (who should look)."""

    code: str
    title: str
    meaning: str
    action: str
    kind: Kind

    def to_json(self) -> dict[str, str]:
        return {
            "code": self.code,
            "title": self.title,
            "meaning": self.meaning,
            "action": self.action,
            "kind": self.kind,
            "kind_zh": KIND_ZH[self.kind],
        }


_TABLE: tuple[tuple[str, Kind, str, str, str], ...] = (
    # --- lifecycle and deadlines -----------------------------------------------------------
    (
        "illegal_transition",
        "process",
        "不合流程的办理事件",
        "该事件在转办当前状态下不允许，或不应由该方发出（例如已办结的线索再次受理、接收方撤回线索）。"
        "总线照常记录该事件，但转办状态不因其改变。",
        "查看时间线，与发送方核实其业务系统中的实际办理状态；如系重复操作可不予处理。",
    ),
    (
        "duplicate_referral",
        "process",
        "重复的转办编号",
        "同一转办编号被再次用于开启新的转办，后一条不被采纳。",
        "请发起方核查其业务系统是否重复提交；新的转办应使用新的编号。",
    ),
    (
        "unknown_referral",
        "process",
        "未知的转办",
        "事件指向一个总线上不存在（或尚未开启）的转办编号。",
        "核实转办编号是否正确，以及开启该转办的事件是否已发出。",
    ),
    (
        "handling_restricted",
        "security",
        "违反处理限制",
        "转办带有处理限制代码（如 H2：未经发起方许可不得转送第三方），而该事件违反了这一限制。",
        "先向发起方申请许可（permission_requested），获准后再转送；同时告知安全负责人。",
    ),
    (
        "bad_deadline",
        "process",
        "答复期限不合规",
        "事件所带的答复期限（answerby）无效，例如早于事件本身的日期。",
        "请发送方检查其系统的期限设置后重新发送。",
    ),
    (
        "answer_late",
        "process",
        "逾期答复",
        "接收方作出了答复，但晚于发送方签名确定的答复期限（北京时间当日 24 时）。",
        "在考核中计为逾期答复；如逾期有正当理由（如补充材料期间暂停计时），请核对时间线。",
    ),
    (
        "answer_overdue",
        "process",
        "逾期未答复",
        "答复期限已过，接收方仍未答复。",
        "协调人应督办（平台已自动发出催办通知）；请接收方尽快办理。",
    ),
    (
        "receipt_missing",
        "process",
        "缺少自动回执",
        "接收方适配器应在收妥事件后自动发回签收回执，但审计时没有找到。可能该地区适配器停止运行或积压。",
        "请接收地区运维人员检查适配器运行状态和消费积压。",
    ),
    # --- authenticity and the signed history -----------------------------------------------
    (
        "bad_signature",
        "security",
        "签名无效",
        "事件的 Ed25519 签名与其内容不符：事件在签名后被篡改，或并非由所称发送方签发。",
        "不要采信该事件；立即通知安全负责人，核查发送方密钥是否泄露。",
    ),
    (
        "unknown_key",
        "security",
        "未知签名密钥",
        "签名所用的密钥不在密钥名册（roster）中。",
        "核实密钥名册是否已更新；如名册无误，按伪造事件处理并通知安全负责人。",
    ),
    (
        "key_not_valid",
        "security",
        "签名密钥不适用",
        "签名密钥存在，但不属于该发送方，或在事件时间不在有效期内。",
        "核对密钥名册中该密钥的所属方和有效期；如非名册错误，按伪造事件处理。",
    ),
    (
        "key_revoked",
        "security",
        "签名密钥已吊销",
        "事件由已吊销的密钥签名（超过吊销宽限期）。",
        "不要采信该事件；核查该密钥吊销后为何仍被使用。",
    ),
    (
        "verification_failed",
        "security",
        "真实性无法验证",
        "无法确认事件的真实性或完整性。",
        "按可疑事件处理，通知安全负责人核查。",
    ),
    (
        "chain_break",
        "security",
        "哈希链断裂",
        "发送方的事件哈希链不连续：历史记录可能被改动。",
        "通知安全负责人，并用 xregion audit replay 核查该发送方的完整历史。",
    ),
    (
        "chain_fork",
        "security",
        "哈希链分叉",
        "事件的前序哈希与该发送方已知的最新事件不符：历史被改写，或有人伪造了同序号的事件。",
        "立即通知安全负责人；以各地区签名的检查点（checkpoint）比对确认哪一分支为真。",
    ),
    (
        "chain_gap",
        "security",
        "哈希链缺号",
        "发送方的事件序号出现跳号：有事件缺失或顺序错乱。",
        "核查缺失序号的事件是否仍在发送方的待发队列（outbox）中；如已丢失，通知安全负责人。",
    ),
    (
        "chain_replay",
        "security",
        "重放的事件",
        "事件序号落后于发送方已知的最新序号：旧事件被重新发送（重放）。",
        "不要重复办理；核查重放来源。",
    ),
    (
        "subject_mismatch",
        "security",
        "主题与内容不符",
        "NATS 主题（发送方、接收方、事件类型）与事件信封所写不一致。",
        "按伪造或误投事件处理，通知安全负责人。",
    ),
    (
        "misaddressed",
        "security",
        "误投",
        "事件并非发给收到它的地区。",
        "不要办理；核查消息路由和权限配置。",
    ),
    (
        "own_event_unknown",
        "security",
        "冒用本地区名义",
        "事件自称由接收地区本身发出且签名有效，但本地区从未发出过它：本地区密钥可能已泄露。",
        "立即通知安全负责人，轮换本地区签名密钥。",
    ),
    (
        "role_violation",
        "security",
        "越权发送",
        "发送方的角色无权发送该事件，例如地区发出催办通知，或协调人发出线索。",
        "按越权行为处理，核查该身份的权限配置。",
    ),
    (
        "subject_invalid",
        "security",
        "主题编码无效",
        "消息主题不是有效的 UTF-8 文本。",
        "按恶意消息处理，通知安全负责人。",
    ),
    (
        "unseal_failed",
        "security",
        "加密字段无法解密",
        "事件中加密的个人信息字段无法由接收方解开（没有给本地区的密封，或密钥不符）。",
        "请发送方确认使用了本地区最新的公钥重新发送。",
    ),
    (
        "personal_data_unsealed",
        "security",
        "个人信息未加密",
        "应当加密传输的个人信息字段以明文出现在事件中。",
        "请发送方修正其系统，按规定加密个人信息后重新发送。",
    ),
    (
        "event_removed",
        "security",
        "事件被删除",
        "某地区签名的检查点证明存在的事件，在事件流中找不到。",
        "通知安全负责人，用备份和检查点恢复并追查删除原因。",
    ),
    (
        "checkpoint_mismatch",
        "security",
        "检查点不符",
        "地区签名的检查点所证明的事件哈希与事件流中同一位置的事件不同：历史被改写（或检查点不实）。",
        "通知安全负责人，比对各地区检查点确定真实历史。",
    ),
    (
        "checkpoint_fork",
        "security",
        "检查点分叉",
        "两个检查点对同一发送方同一序号证明了不同的事件。",
        "通知安全负责人，查明哪一方签发了不实检查点。",
    ),
    (
        "checkpoint_invalid",
        "security",
        "检查点无效",
        "检查点格式错误或签名无法验证。",
        "核查签发该检查点地区的密钥与软件版本。",
    ),
    (
        "note_invalid",
        "security",
        "签名检查点无效",
        "签名检查点（signed note）格式错误，或日志签名无法验证。",
        "核查检查点来源与签名密钥。",
    ),
    (
        "cosignature_invalid",
        "security",
        "见证签名无效",
        "见证地区对检查点的联署签名无法验证，或签名时密钥不在有效期内。",
        "核查该见证地区的密钥名册条目。",
    ),
    (
        "cosignature_not_witness",
        "security",
        "非见证方的联署",
        "检查点上的联署签名来自未配置为见证方的密钥。",
        "忽略该联署并核查其来源。",
    ),
    (
        "cosignatures_missing",
        "security",
        "见证签名不足",
        "联署检查点的见证地区少于要求的数量。",
        "检查各地区见证服务是否正常运行。",
    ),
    (
        "inclusion_invalid",
        "security",
        "包含证明无效",
        "包含证明（inclusion proof）不能从事件推导到检查点的默克尔根：该事件不在所称的日志中。",
        "不要采信该证据包；通知安全负责人。",
    ),
    (
        "tlog_inconsistent",
        "security",
        "日志前后不一致",
        "同一透明日志的两个树头不一致：两次检查之间日志被改写。",
        "立即通知安全负责人，保全两个树头作为证据。",
    ),
    (
        "timestamp_invalid",
        "security",
        "时间戳无效",
        "检查点的 RFC 3161 可信时间戳无法验证：被改动、伪造、未获签发，或签发机构不受信任。",
        "通知安全负责人；核对时间戳服务机构（TSA）的证书。",
    ),
    (
        "timestamp_mismatch",
        "security",
        "时间戳与检查点不符",
        "可信时间戳本身有效，但所证明的数据不是与之一同存档的检查点。",
        "按证据被替换处理，通知安全负责人。",
    ),
    (
        "timestamp_unavailable",
        "operation",
        "时间戳服务不可用",
        "无法连接时间戳服务机构，或其拒绝了请求；检查点稍后会重新申请时间戳。",
        "检查与时间戳服务机构的网络连接；短时中断无需处理。",
    ),
    (
        "timestamp_stale",
        "operation",
        "可信时间戳过久未更新",
        "超过规定时长没有取得新的可信时间戳。",
        "检查时间戳服务配置与网络，尽快恢复。",
    ),
    (
        "tlog_root_mismatch",
        "security",
        "日志树根不符",
        "由事件流重新计算的默克尔树根与检查点签名的树根不同：该检查点之后历史被改动，或日志签署了事件流从未有过的树。",
        "立即通知安全负责人，保全检查点与事件流备份，比对确定改动位置。",
    ),
    (
        "tlog_event_removed",
        "security",
        "已入日志的事件被删除",
        "透明日志已收录（并有检查点覆盖）的消息，事件流中已经找不到。",
        "通知安全负责人，用备份恢复并追查删除原因。",
    ),
    (
        "evidence_invalid",
        "integrity",
        "证据包无效",
        "单件转办的证据包中有文件缺失、被改动、未列入清单或格式错误。",
        "从事件流重新导出证据包，并核查原证据包的保管过程。",
    ),
    (
        "archive_invalid",
        "integrity",
        "归档文件无效",
        "审计归档（导出的事件文件）损坏、被改动或签名清单不符。",
        "从事件流重新导出归档，并核查原归档的保管链。",
    ),
    # --- what a message is ------------------------------------------------------------------
    (
        "schema_invalid",
        "integrity",
        "格式不符合规范",
        "事件信封或业务数据不符合 v1 JSON Schema（缺少字段、类型错误、统一社会信用代码校验位错误等）。",
        "请发送方按 schemas/v1 修正其系统后重新发送。",
    ),
    (
        "contract_violation",
        "integrity",
        "违反接口契约",
        "输入不符合 v1 线上契约。",
        "请发送方对照 schemas/ 与签名说明修正。",
    ),
    (
        "malformed_json",
        "integrity",
        "JSON 格式错误",
        "消息不是合规的 UTF-8 I-JSON：语法错误、编码错误或超出限制。",
        "请发送方检查其序列化程序。",
    ),
    (
        "duplicate_member",
        "integrity",
        "字段重复",
        "JSON 对象中同一字段出现两次，不同程序可能读出不同内容，因此拒收。",
        "请发送方修正其序列化程序。",
    ),
    (
        "not_canonical",
        "integrity",
        "非规范化格式",
        "事件内容有效，但字节不是 RFC 8785 规范形式；存储的必须正是所签名的。",
        "请发送方按签名说明（docs/signing-recipe.md）生成规范形式。",
    ),
    (
        "oversized",
        "integrity",
        "消息过大",
        "消息超过允许的大小或嵌套深度。",
        "大文件请作为证据附件上传（client.attach），事件中只放引用。",
    ),
    (
        "unknown_event_type",
        "integrity",
        "未知事件类型",
        "事件类型不在 v1 目录中。",
        "核对发送方使用的契约版本。",
    ),
    (
        "unknown_event_version",
        "integrity",
        "不支持的事件版本",
        "事件的主版本本系统尚不支持。",
        "升级接收方软件，或请发送方使用双方都支持的版本。",
    ),
    (
        "unknown_party",
        "integrity",
        "未知的地区或单位",
        "事件中的地区、角色或单位代码不在登记册中。",
        "核对地区配置（bus.toml）与发送方的单位代码。",
    ),
    (
        "bad_subject",
        "integrity",
        "主题格式错误",
        "NATS 主题不符合 xregion.v1.<业务>.<事件>.<发送方>.<接收方> 的格式。",
        "核查发送方的发布配置。",
    ),
    (
        "attachment_invalid",
        "integrity",
        "证据附件无效",
        "证据附件找不到，或其 SHA-256 摘要、大小与事件所载不符。",
        "请发送方重新上传附件并确认摘要。",
    ),
    (
        "inspection_failed",
        "integrity",
        "检查时出现意外错误",
        "检查该消息时发生了预期之外的错误；消息已转入死信，其他消息不受影响。",
        "请运维人员查看日志并报告开发人员。",
    ),
    # --- operation --------------------------------------------------------------------------
    (
        "handler_failed",
        "operation",
        "业务系统处理失败",
        "接收地区的业务系统处理该事件时出错，适配器按退避策略重试。",
        "请接收地区检查其业务系统接口和日志。",
    ),
    (
        "delivery_exhausted",
        "operation",
        "重试次数用尽",
        "消息在最后一次投递时仍未处理完毕，已转入死信保存。",
        "排除接收方故障后，由运维人员从死信重新投递。",
    ),
    (
        "idempotency_conflict",
        "operation",
        "幂等键冲突",
        "同一幂等键此前已用于内容不同的请求。",
        "请调用方为不同请求使用不同的幂等键。",
    ),
    (
        "config_invalid",
        "operation",
        "配置无效",
        "总线配置（地区、期限、密钥名册）无效。",
        "按错误信息修正配置文件。",
    ),
    (
        "topology_missing",
        "operation",
        "消息流未部署",
        "所需的事件流、消费者或对象存储不存在，且当前身份无权创建。",
        "由运维人员执行 xregion ops apply-topology（ADMIN 身份）。",
    ),
    (
        "stream_read_failed",
        "operation",
        "读取事件流失败",
        "无法按序号读取事件流。",
        "检查与 NATS 服务器的连接和权限。",
    ),
    (
        "stream_read_timeout",
        "operation",
        "读取事件流超时",
        "读取请求在时限内没有应答：权限不允许，或服务器不可用。",
        "检查该身份的读取权限与服务器状态。",
    ),
    (
        "stream_unavailable",
        "operation",
        "事件流不可用",
        "事件流不存在或未开启直接读取（allow_direct）。",
        "由运维人员检查事件流配置。",
    ),
    (
        "broker_error",
        "operation",
        "消息服务器错误",
        "内置 nats-server 未能启动或运行出错。",
        "查看服务器日志，检查端口与数据目录。",
    ),
    (
        "broker_unreachable",
        "operation",
        "消息服务器无法连接",
        "在连接时限内没有 NATS 服务器应答。",
        "检查服务器地址、网络与服务器运行状态。",
    ),
    (
        "archive_stream_restored",
        "operation",
        "事件流已从备份恢复，归档不能续写",
        "事件流从一份早于本归档末尾的备份恢复：备份之后的序号现在对应重新发布的事件和新事件，不再是归档中记录的那些。",
        "保留原归档作为恢复前事件流的记录，将恢复后的事件流导出到新的目录（xregion audit export --out 新目录）。",
    ),
    (
        "backup_failed",
        "operation",
        "备份或恢复失败",
        "事件流备份无法生成或恢复（文件损坏、缺失或服务器拒绝）。",
        "按运维手册（ops/RUNBOOK.md）检查备份文件的摘要后重试。",
    ),
    (
        "connection_security",
        "operation",
        "安全连接失败",
        "服务器与本客户端无法建立安全、经认证的连接。",
        "检查 TLS 证书配置。",
    ),
    (
        "tls_required",
        "operation",
        "需要 TLS 客户端证书",
        "服务器要求双向 TLS，而本客户端未配置证书。",
        "配置 --tls-ca/--tls-cert/--tls-key。",
    ),
    (
        "tls_server_untrusted",
        "operation",
        "服务器证书不受信任",
        "服务器证书不能链接到本客户端信任的 CA。",
        "核对 --tls-ca 是否为本平台的 CA。",
    ),
    (
        "tls_client_rejected",
        "operation",
        "客户端证书被拒绝",
        "服务器拒绝了本客户端证书（CA 不同、过期、缺失或未被固定）。",
        "向运维人员申请有效的客户端证书。",
    ),
    (
        "auth_failed",
        "operation",
        "身份认证失败",
        "服务器不认识该身份（或未提供身份）。",
        "检查证书或 NKey 配置。",
    ),
    (
        "identity_mismatch",
        "operation",
        "身份不符",
        "客户端证书属于另一方（例如以北京的证书运行河北的适配器）。",
        "使用本方自己的证书。",
    ),
    (
        "permission_denied",
        "operation",
        "权限不足",
        "服务器接受了该身份，但其权限不允许当前操作。",
        "以具备相应权限的身份执行（如协调人用 COORD，运维用 ADMIN）。",
    ),
    (
        "gateway_unauthenticated",
        "operation",
        "网关未设认证",
        "HTTP 网关被要求在没有任何客户端认证方式的情况下运行，已拒绝启动。",
        "设置 XREGION_HTTP_TOKEN 或客户端证书认证。",
    ),
    (
        "unauthorized",
        "operation",
        "未授权的请求",
        "HTTP 网关请求未携带有效的认证信息。",
        "检查调用方的访问令牌。",
    ),
    (
        "not_found",
        "operation",
        "未找到",
        "请求的对象（转办、附件等）不存在。",
        "核对编号是否正确。",
    ),
    (
        "error",
        "operation",
        "其他错误",
        "未归入具体类别的错误。",
        "查看详细信息和日志。",
    ),
)

EXPLANATIONS: Mapping[str, Explanation] = MappingProxyType(
    {code: Explanation(code, title, meaning, action, kind) for code, kind, title, meaning, action in _TABLE}
)


def explain(code: str) -> Explanation:
    """The explanation of ``code`` (an unknown code gets a generic one that names it)."""
    found = EXPLANATIONS.get(code)
    if found is not None:
        return found
    return Explanation(
        code, f"未说明的代码 {code}", "该代码尚无中文说明。", "请查看详细信息并报告开发人员。", "operation"
    )


__all__ = ["EXPLANATIONS", "KIND_ZH", "Explanation", "explain"]
