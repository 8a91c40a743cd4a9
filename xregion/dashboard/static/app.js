// xregion coordinator dashboard: plain JS, no build step. Data from /api/*, live updates from /events (SSE).
// Every value from the bus is inserted with textContent, never as HTML. Charts are SVG images
// the server draws (/api/assessment/charts/*.svg).
"use strict";

const FAMILY = { lead: "线索移送", assist: "协查请求", recognition: "结果互认", share: "信息共享", all: "全部业务" };
const STATE = {
  submitted: "已移送", received: "已接收", accepted: "已受理", rejected: "已退回",
  info_requested: "待补充材料", info_supplied: "已补充材料", forwarded: "已转送", in_progress: "办理中",
  concluded: "已办结", withdrawn: "已撤回", requested: "已请求", declined: "已拒绝",
  evidence_delivered: "已交付证据", completed: "已完成", cancelled: "已取消", published: "已发布",
  recognized: "已认可", contested: "有异议", revoked: "已撤销", acknowledged: "已确认",
  revocation_acknowledged: "已确认撤销",
};
const CHARTS = ["volume", "on_time", "response", "overdue"];

const state = {
  regions: [], summary: null, referrals: [], selected: null, seen: new Set(), first: true, explanations: {},
};

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}
function num(value, field) {
  const td = el("td", value === null || value === undefined ? "—" : value, "n");
  if (field) td.dataset.field = field;
  return td;
}
function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", emptyText || "暂无", "empty");
    td.colSpan = columns;
    tbody.appendChild(row([td]));
  }
}
const family = (f) => (FAMILY[f] ? `${FAMILY[f]} ${f}` : f);
const stateLabel = (s) => (STATE[s] ? `${STATE[s]} ${s}` : s || "");
const pair = (v) => `${v.origin} → ${v.addressee}`;
const shortTime = (t) => (t ? String(t).replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "");
const regionName = (code) => {
  const r = state.regions.find((x) => x.code === code);
  return r ? `${r.name_zh} ${code}` : code;
};
const rate = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);
const days = (x) => (x === null || x === undefined ? "—" : String(Math.round(x * 10) / 10));
const medianP90 = (m) => (m && m.n ? `${days(m.median)} / ${days(m.p90)}` : "—");
const explanation = (code) => state.explanations[code] || { title: code, meaning: "", action: "", kind: "operation" };

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function options(select, values, label) {
  const current = select.value;
  const keep = select.options[0];
  select.replaceChildren(keep);
  for (const v of values) {
    const o = el("option", label ? label(v) : v);
    o.value = v;
    select.appendChild(o);
  }
  select.value = values.includes(current) ? current : "";
}

function timelineLink(id) {
  const a = el("a", "查看时间线", "timeline-link");
  a.href = `#referral/${encodeURIComponent(id)}`;
  return a;
}

// --- flows --------------------------------------------------------------------------

function renderFlows() {
  const s = state.summary;
  if (!s) return;
  const flows = s.flows || [];
  const families = [...new Set([...Object.keys(s.by_family_state || {}), ...flows.map((f) => f.family)])].sort();
  const states = [...new Set(flows.map((f) => f.state))].sort();
  const famSel = document.getElementById("flow-family");
  const stSel = document.getElementById("flow-state");
  options(famSel, families, family);
  options(stSel, states, stateLabel);
  const codes = state.regions.map((r) => r.code);
  const targets = [...codes, "ALL"];
  const names = Object.fromEntries(state.regions.map((r) => [r.code, r.name_zh]));
  names.ALL = "全部地区";
  const count = {};
  for (const f of flows) {
    if (famSel.value && f.family !== famSel.value) continue;
    if (stSel.value && f.state !== stSel.value) continue;
    const key = `${f.origin}>${f.addressee}`;
    count[key] = (count[key] || 0) + f.count;
  }
  const table = document.getElementById("flows");
  const head = row([el("th", "发起 \\ 接收")]);
  for (const t of targets) head.appendChild(el("th", `${names[t] || t} ${t}`));
  table.tHead.replaceChildren(head);
  const rows = codes.map((o) => {
    const tr = row([el("th", `${names[o] || o} ${o}`)]);
    for (const t of targets) {
      const n = o === t ? null : count[`${o}>${t}`] || 0;
      const td = el("td", n === null ? "—" : n, n ? "n" : "n zero");
      td.dataset.pair = `${o}>${t}`;
      tr.appendChild(td);
    }
    return tr;
  });
  table.tBodies[0].replaceChildren(...rows);

  // States down, families across: a handful of columns, however many states there are.
  const fsTable = document.getElementById("family-state");
  const byFamily = s.by_family_state || {};
  const fams = Object.keys(byFamily);
  const allStates = [...new Set(Object.values(byFamily).flatMap((m) => Object.keys(m)))].sort();
  const fsHead = row([el("th", "状态 \\ 业务类型")]);
  for (const f of fams) fsHead.appendChild(el("th", family(f)));
  fsTable.tHead.replaceChildren(fsHead);
  const fsRows = allStates.map((st) => {
    const tr = row([el("th", stateLabel(st))]);
    for (const f of fams) {
      const n = byFamily[f][st] || 0;
      const td = el("td", n, n ? "n" : "n zero");
      td.dataset.family = f;
      td.dataset.state = st;
      tr.appendChild(td);
    }
    return tr;
  });
  fill(fsTable.tBodies[0], fsRows, fams.length + 1);
}

// --- referral lists -----------------------------------------------------------------

function referralRow(v, cells) {
  const tr = row(cells, "clickable");
  tr.dataset.id = v.referral_id;
  if (state.selected === v.referral_id) tr.classList.add("selected");
  if (!state.first && !state.seen.has(`${v.referral_id}:${v.events}`)) tr.classList.add("fresh");
  tr.addEventListener("click", () => showTimeline(v.referral_id));
  return tr;
}

function renderReferrals() {
  const region = document.getElementById("ref-region").value;
  const fam = document.getElementById("ref-family").value;
  const list = state.referrals
    .filter((v) => !region || v.origin === region || v.addressee === region || v.addressee === "ALL")
    .filter((v) => !fam || v.family === fam)
    .slice()
    .reverse();
  const rows = list.map((v) =>
    referralRow(v, [
      el("td", v.referral_id, "id"), family(v.family), pair(v),
      el("td", stateLabel(v.state), v.overdue ? "late" : ""), v.events, shortTime(v.updated_at),
    ]),
  );
  fill(document.querySelector("#referrals tbody"), rows, 6, "暂无转办");
}

function renderOverdue(list) {
  const rows = list.map((v) =>
    referralRow(v, [
      el("td", v.referral_id, "id"), family(v.family), pair(v), stateLabel(v.state),
      el("td", v.answer_by || "", "late"), (v.late_parties || []).join(", "),
    ]),
  );
  fill(document.querySelector("#overdue tbody"), rows, 6, "无逾期转办");
}

function renderBlacklist(list) {
  const codes = state.regions.map((r) => r.code);
  const table = document.getElementById("blacklist");
  const head = row([el("th", "转办编号"), el("th", "更新"), el("th", "发布方"), el("th", "发布时间")]);
  for (const c of codes) head.appendChild(el("th", c));
  table.tHead.replaceChildren(head);
  const rows = list.map((p) => {
    const tr = row([el("td", p.referral_id, "id"), p.event_type, p.origin, shortTime(p.published_at)]);
    tr.dataset.id = p.referral_id;
    const acked = p.acknowledged || {};
    const pending = new Set(p.pending || []);
    for (const c of codes) {
      let td;
      if (c === p.origin) td = el("td", "发布方");
      else if (acked[c] !== undefined) {
        td = el("td", `✓ 已确认 ${shortTime(typeof acked[c] === "string" ? acked[c] : "")}`.trim(), "ack");
      } else if (pending.has(c)) td = el("td", "… 待确认", "pending");
      else td = el("td", "—");
      td.dataset.region = c;
      tr.appendChild(td);
    }
    return tr;
  });
  fill(table.tBodies[0], rows, codes.length + 4, "暂无黑名单更新");
}

// --- anomalies, dead letters, security alerts ---------------------------------------

function explainedCell(code) {
  const e = explanation(code);
  const td = el("td", null, "wrap");
  td.appendChild(el("div", e.title, "explain-title"));
  if (e.meaning) td.appendChild(el("div", e.meaning, "explain-meaning"));
  if (e.action) td.appendChild(el("div", `处理建议：${e.action}`, "explain-action"));
  return td;
}

function codeCell(code, kind) {
  const td = el("td", null, `code ${kind === "security" ? "kind-security" : ""}`);
  td.appendChild(el("code", code));
  return td;
}

function renderAnomalies(list) {
  document.getElementById("anomaly-count").textContent = list.length;
  document.getElementById("anomalies-link").classList.toggle("alarm", list.length > 0);
  const rows = list.map((a) => {
    const e = a.explanation || explanation(a.code);
    const ref = el("td", null, "id");
    if (a.referral_id) {
      ref.appendChild(el("div", a.referral_id));
      if (a.referral_known) ref.appendChild(timelineLink(a.referral_id));
    } else ref.textContent = "—";
    const ev = a.event;
    const event = el("td", null);
    if (ev) {
      event.appendChild(el("div", ev.event_type));
      event.appendChild(el("div", `${ev.sender} → ${ev.addressee} · ${shortTime(ev.time)}`, "muted"));
    }
    if (a.event_id) event.appendChild(el("div", a.event_id, "id muted"));
    const tr = row([codeCell(a.code, e.kind), explainedCell(a.code), ref, event, num(a.stream_seq), el("td", a.detail, "wrap muted")]);
    tr.dataset.code = a.code;
    tr.dataset.seq = a.stream_seq;
    return tr;
  });
  fill(document.querySelector("#anomaly-list tbody"), rows, 6, "无异常事件");
}

function countsCell(counts) {
  const td = el("td", null, "wrap");
  const entries = Object.entries(counts || {});
  if (!entries.length) {
    td.textContent = "0";
    return td;
  }
  for (const [code, n] of entries) {
    const line = el("div");
    line.appendChild(el("code", code));
    line.appendChild(document.createTextNode(` ${explanation(code).title} × ${n}`));
    td.appendChild(line);
  }
  return td;
}

function renderIncidents(doc) {
  for (const code of Object.keys(doc.explanations || {})) state.explanations[code] = doc.explanations[code];
  // Unknown ("?") until the dead-letter stream could be read once.
  document.getElementById("dead-letter-count").textContent = doc.dead_letters ?? "?";
  document.getElementById("alert-count").textContent = doc.security_alerts ?? "?";
  document.getElementById("alerts-link").classList.toggle("alarm", (doc.security_alerts || 0) > 0);
  document.getElementById("incidents-status").textContent = doc.available
    ? `死信流已读至序号 ${doc.position}（协调人身份直接读取 XREGION_DLQ）`
    : `死信流暂不可读（${doc.error || "unavailable"}）：下列数字可能不完整`;
  const codes = state.regions.map((r) => r.code);
  const per = doc.per_region || {};
  const summary = codes.map((c) => {
    const tr = row([el("th", regionName(c)), countsCell((per[c] || {}).dead_letters), countsCell((per[c] || {}).security_alerts)]);
    tr.dataset.region = c;
    return tr;
  });
  fill(document.querySelector("#incidents-summary tbody"), summary, 3);
  const recent = (doc.recent || []).map((i) => {
    const e = explanation(i.code);
    const what = el("td", null, "wrap");
    what.appendChild(el("code", i.code));
    what.appendChild(document.createTextNode(` ${e.title}`));
    if (i.message) what.appendChild(el("div", i.message, "muted"));
    const ev = el("td", null, "id");
    if (i.event_id) ev.appendChild(el("div", i.event_id));
    if (i.stream_seq !== null && i.stream_seq !== undefined) ev.appendChild(el("div", `seq ${i.stream_seq}`, "muted"));
    const signed = i.kind === "security_alert" ? (i.verified ? "✓ 已验证" : "✗ 签名无效") : "—";
    const tr = row([
      shortTime(i.stored_at), i.kind === "security_alert" ? "安全告警" : "死信", regionName(i.region), what,
      el("td", i.original_subject, "id"), ev, el("td", signed, i.kind === "security_alert" && !i.verified ? "late" : ""),
    ]);
    tr.dataset.kind = i.kind;
    tr.dataset.region = i.region;
    return tr;
  });
  fill(document.querySelector("#incidents-recent tbody"), recent, 7, "无死信和安全告警");
}

// --- assessment ---------------------------------------------------------------------

function assessmentQuery() {
  const q = new URLSearchParams();
  q.set("from", document.getElementById("as-from").value);
  q.set("to", document.getElementById("as-to").value);
  const region = document.getElementById("as-region").value;
  if (region) q.set("region", region);
  q.set("by", document.getElementById("as-by").value);
  return q;
}

function figuresCells(f, fields) {
  return fields.map(([key, fn]) => num(fn ? fn(f) : f[key], key));
}

const REGION_FIELDS = [
  ["referrals"], ["on_time"], ["late"], ["overdue"], ["open"], ["withdrawn"],
  ["on_time_rate", (f) => rate(f.on_time_rate)],
  ["receipt", (f) => medianP90(f.working_days.receipt)],
  ["acceptance", (f) => medianP90(f.working_days.acceptance)],
  ["conclusion", (f) => medianP90(f.working_days.conclusion)],
  ["escalations", (f) => `${f.reminders} / ${f.overdue_notices}`],
  ["tolled"],
];

function renderAssessment(a) {
  const src = a.source;
  document.getElementById("as-source").textContent =
    `统计期间 ${a.period.from} 至 ${a.period.to}（期间内开启的转办，按期末状态计；逾期判定日 ${src.as_of}）· ` +
    `数据来源：协调人投影，已折叠至 stream seq ${src.position}；所用事件 ${src.events} 条（seq ${src.first_seq ?? "—"}–${src.last_seq ?? "—"}）· ` +
    `日历 ${src.calendar} · 摘要 ${src.digest.slice(0, 19)}…`;
  const regionRows = Object.entries(a.per_region).map(([code, r]) => {
    const all = r.received.all;
    const tr = row([el("th", regionName(code)), num(r.sent.all || 0, "sent"), ...figuresCells(all, REGION_FIELDS)]);
    tr.dataset.region = code;
    return tr;
  });
  fill(document.querySelector("#as-regions tbody"), regionRows, 14, "期间内无转办");
  const pairRows = [];
  for (const [p, fams] of Object.entries(a.per_pair)) {
    for (const [fam, f] of Object.entries(fams)) {
      if (fam === "all" && Object.keys(fams).length === 2) continue;
      const tr = row([
        el("td", p.replace(">", " → ")), family(fam), num(f.referrals, "referrals"), num(f.on_time, "on_time"),
        num(f.late, "late"), num(f.overdue, "overdue"), num(f.open, "open"), num(f.withdrawn, "withdrawn"),
        num(rate(f.on_time_rate), "on_time_rate"), num(medianP90(f.working_days.acceptance), "acceptance"),
        num(`${f.reminders} / ${f.overdue_notices}`, "escalations"),
      ]);
      tr.dataset.pair = p;
      tr.dataset.family = fam;
      pairRows.push(tr);
    }
  }
  fill(document.querySelector("#as-pairs tbody"), pairRows, 11, "期间内无转办");
  const rec = Object.entries(a.recognition).map(([code, r]) => {
    const tr = row([el("th", regionName(code)), num(r.recognized, "recognized"), num(r.contested, "contested"),
      num(r.pending, "pending"), num(r.revocation_acknowledged, "revocation_acknowledged")]);
    tr.dataset.region = code;
    return tr;
  });
  fill(document.querySelector("#as-recognition tbody"), rec, 5, "期间内无结果互认");
  const bl = Object.entries(a.blacklist).map(([code, b]) => {
    const tr = row([el("th", regionName(code)), num(b.acknowledged, "acknowledged"), num(b.pending, "pending"),
      num(days(b.median_hours), "median_hours"), num(days(b.p90_hours), "p90_hours"), num(days(b.max_hours), "max_hours")]);
    tr.dataset.region = code;
    return tr;
  });
  fill(document.querySelector("#as-blacklist tbody"), bl, 6, "期间内无黑名单更新");
  const q = assessmentQuery();
  const version = `&v=${src.position}-${src.as_of}`;
  for (const name of CHARTS) {
    const img = document.getElementById(`chart-${name}`);
    const url = `/api/assessment/charts/${name}.svg?${q}${version}`;
    if (img.getAttribute("src") !== url) img.src = url;
  }
  document.getElementById("as-print").href = `/api/assessment/report.html?${q}`;
  document.getElementById("as-csv").href = `/api/assessment/report.csv?${q}`;
  document.getElementById("as-json").href = `/api/assessment?${q}`;
}

async function refreshAssessment() {
  const q = assessmentQuery();
  const a = await getJSON(`/api/assessment?${q}`);
  renderAssessment(a);
}

function initAssessment(today) {
  const params = new URLSearchParams(window.location.search);
  const to = params.get("to") || today;
  const back = new Date(`${to}T00:00:00Z`);
  back.setUTCDate(back.getUTCDate() - 83);
  document.getElementById("as-from").value = params.get("from") || back.toISOString().slice(0, 10);
  document.getElementById("as-to").value = to;
  document.getElementById("as-by").value = params.get("by") === "month" ? "month" : "week";
  const regionSelect = document.getElementById("as-region");
  options(regionSelect, state.regions.map((r) => r.code), regionName);
  regionSelect.value = params.get("region") || "";
  document.getElementById("assessment-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = assessmentQuery();
    history.replaceState(null, "", `?${q}${window.location.hash}`);
    await refreshAssessment();
  });
}

// --- timeline -----------------------------------------------------------------------

async function showTimeline(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll("tr.selected")) tr.classList.remove("selected");
  for (const tr of document.querySelectorAll(`tr[data-id="${CSS.escape(id)}"]`)) tr.classList.add("selected");
  let v;
  try {
    v = await getJSON(`/api/referrals/${encodeURIComponent(id)}`);
  } catch (err) {
    return;
  }
  const section = document.getElementById("timeline-section");
  section.hidden = false;
  document.getElementById("timeline-id").textContent = id;
  const tracks = Object.entries(v.tracks || {}).map(([r, s]) => `${r}: ${stateLabel(s)}`).join("；");
  const meta = document.getElementById("timeline-meta");
  meta.replaceChildren(
    el("div", `${family(v.family)} · ${pair(v)} · 当前状态 ${stateLabel(v.state)}${tracks ? ` （${tracks}）` : ""}`),
    el("div", `答复期限 ${v.answer_by || "—"}${v.overdue ? " · 已逾期" : ""}`, v.overdue ? "late" : ""),
  );
  const rows = (v.timeline || []).map((e, i) => {
    const after = e.anomaly
      ? `${stateLabel(e.state_after)} ⚠ ${e.anomaly} ${explanation(e.anomaly).title}（未采纳）`
      : stateLabel(e.state_after);
    const tr = row([
      i + 1, shortTime(e.time), e.event_type, `${e.sender} → ${e.addressee}`,
      el("td", after, e.anomaly ? "late" : ""), e.stream_seq,
    ]);
    tr.dataset.seq = e.stream_seq;
    return tr;
  });
  fill(document.querySelector("#timeline tbody"), rows, 6);
}

async function followHash() {
  const hash = window.location.hash;
  if (!hash.startsWith("#referral/")) return;
  await showTimeline(decodeURIComponent(hash.slice("#referral/".length)));
  document.getElementById("timeline-section").scrollIntoView({ block: "start" });
}

// --- loading and live updates -------------------------------------------------------

async function refresh() {
  const [summary, referrals, overdue, blacklist, anomalies] = await Promise.all([
    getJSON("/api/summary"), getJSON("/api/referrals"), getJSON("/api/overdue"), getJSON("/api/blacklist"),
    getJSON("/api/anomalies"),
  ]);
  state.summary = summary;
  state.referrals = referrals;
  document.getElementById("total").textContent = summary.total;
  document.getElementById("overdue-count").textContent = summary.overdue;
  document.getElementById("overdue-link").classList.toggle("alarm", summary.overdue > 0);
  document.getElementById("last-seq").textContent = summary.last_seq;
  options(document.getElementById("ref-family"), [...new Set(referrals.map((v) => v.family))].sort(), family);
  renderFlows();
  renderReferrals();
  renderOverdue(overdue);
  renderBlacklist(blacklist);
  renderAnomalies(anomalies);
  state.seen = new Set(referrals.map((v) => `${v.referral_id}:${v.events}`));
  state.first = false;
  await refreshAssessment();
  if (state.selected) await showTimeline(state.selected);
}

async function refreshIncidents() {
  try {
    renderIncidents(await getJSON("/api/incidents"));
  } catch (err) {
    console.warn("incidents failed", err);
  }
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    try {
      await refresh();
    } catch (err) {
      console.warn("refresh failed", err);
    }
  }, 150);
}

function connect() {
  const badge = document.getElementById("live");
  const source = new EventSource("/events");
  source.addEventListener("hello", () => {
    badge.textContent = "实时";
    badge.className = "badge on";
    scheduleRefresh(); // catch up on anything missed while disconnected
  });
  source.addEventListener("referral", scheduleRefresh);
  source.onerror = () => {
    badge.textContent = "重连中…";
    badge.className = "badge off";
  };
}

async function start() {
  const [regions, explanations, today] = await Promise.all([
    getJSON("/api/regions"), getJSON("/api/explanations"), getJSON("/api/today"),
  ]);
  state.regions = regions;
  state.explanations = explanations;
  options(document.getElementById("ref-region"), state.regions.map((r) => r.code), regionName);
  for (const id of ["flow-family", "flow-state"]) document.getElementById(id).addEventListener("change", renderFlows);
  for (const id of ["ref-region", "ref-family"]) document.getElementById(id).addEventListener("change", renderReferrals);
  initAssessment(today.today);
  window.addEventListener("hashchange", followHash);
  await refresh();
  await refreshIncidents();
  setInterval(refreshIncidents, 10_000);
  connect();
  await followHash();
}

start();
