#!/bin/sh
# Submit a lead (线索移送) from BJ to TJ through BJ's HTTP gateway — no Python needed.
#
#   xregion adapter run --region BJ --nats-url nats://127.0.0.1:4222 --http :8081 \
#       --webhook-url http://127.0.0.1:9000/xregion   # with XREGION_HTTP_TOKEN set
#   XREGION_GATEWAY=http://127.0.0.1:8081 XREGION_HTTP_TOKEN=... ./submit-lead.sh [IDEMPOTENCY-KEY]
#
# Prints the gateway's answer (event id, referral id) on success; on a refusal, the RFC 9457
# problem details naming the failing field, and exits 1. Re-running with the same key
# returns the same answer and sends nothing twice.
set -eu

GATEWAY="${XREGION_GATEWAY:-http://127.0.0.1:8081}"
TOKEN="${XREGION_HTTP_TOKEN:?set XREGION_HTTP_TOKEN to the gateway token}"
KEY="${1:-BJ-$(date +%Y%m%d%H%M%S)-$$}"

curl --silent --show-error --fail-with-body \
  -X POST "$GATEWAY/v1/referrals" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -H "Idempotency-Key: $KEY" \
  --data-binary @- <<'JSON'
{
  "event_type": "lead.submitted",
  "to": "TJ",
  "data": {
    "title": "“某某”牌运动鞋假冒注册商标线索",
    "summary": "北京市场巡查发现一批假冒“某某”注册商标的运动鞋，物流单据显示货源为天津某物流园仓库，约两千双。",
    "ip_right": "trademark",
    "right_holder": "某某（中国）体育用品有限公司",
    "suspects": [
      {"kind": "enterprise", "name": "天津市某某商贸有限公司", "uscc": "91120111MA05K8XY06",
       "address": "天津市西青区某物流园3号库"}
    ],
    "location": "天津市西青区某物流园",
    "jurisdiction_basis": "侵权商品存储地、发货地均在天津市西青区",
    "origin_case_number": "京市监线〔2026〕0341号"
  }
}
JSON
echo
