// xregion coordinator dashboard: plain JS, no build step. Data from /api/*, live updates from /events (SSE).
// Every value from the bus is inserted with textContent, never as HTML.
"use strict";

const FAMILY = { lead: "线索移送", assist: "协查请求", recognition: "结果互认", share: "信息共享" };
const STATE = {
  submitted: "已移送", received: "已接收", accepted: "已受理", rejected: "已退回",
  info_requested: "待补充材料", info_supplied: "已补充材料", forwarded: "已转送", in_progress: "办理中",
  concluded: "已办结", withdrawn: "已撤回", requested: "已请求", declined: "已拒绝",
  evidence_delivered: "已交付证据", completed: "已完成", cancelled: "已取消", published: "已发布",
  recognized: "已认可", contested: "有异议", revoked: "已撤销", acknowledged: "已确认",
  revocation_acknowledged: "已确认撤销",
};

const state = { regions: [], summary: null, referrals: [], selected: null, seen: new Set(), first: true };

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

  const fsTable = document.getElementById("family-state");
  const allStates = [...new Set(Object.values(s.by_family_state || {}).flatMap((m) => Object.keys(m)))].sort();
  const fsHead = row([el("th", "业务类型")]);
  for (const st of allStates) fsHead.appendChild(el("th", stateLabel(st)));
  fsTable.tHead.replaceChildren(fsHead);
  const fsRows = Object.entries(s.by_family_state || {}).map(([fam, m]) => {
    const tr = row([el("th", family(fam))]);
    for (const st of allStates) tr.appendChild(el("td", m[st] || 0, m[st] ? "n" : "n zero"));
    return tr;
  });
  fill(fsTable.tBodies[0], fsRows, allStates.length + 1);
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
  const rows = (v.timeline || []).map((e, i) =>
    row([
      i + 1, shortTime(e.time), e.event_type, `${e.sender} → ${e.addressee}`,
      el("td", e.anomaly ? `${stateLabel(e.state_after)} ⚠ ${e.anomaly}` : stateLabel(e.state_after), e.anomaly ? "late" : ""),
      e.stream_seq,
    ]),
  );
  fill(document.querySelector("#timeline tbody"), rows, 6);
}

// --- loading and live updates -------------------------------------------------------

async function refresh() {
  const [summary, referrals, overdue, blacklist] = await Promise.all([
    getJSON("/api/summary"), getJSON("/api/referrals"), getJSON("/api/overdue"), getJSON("/api/blacklist"),
  ]);
  state.summary = summary;
  state.referrals = referrals;
  document.getElementById("total").textContent = summary.total;
  document.getElementById("overdue-count").textContent = summary.overdue;
  document.getElementById("anomalies").textContent = summary.anomalies;
  document.getElementById("last-seq").textContent = summary.last_seq;
  options(document.getElementById("ref-family"), [...new Set(referrals.map((v) => v.family))].sort(), family);
  renderFlows();
  renderReferrals();
  renderOverdue(overdue);
  renderBlacklist(blacklist);
  state.seen = new Set(referrals.map((v) => `${v.referral_id}:${v.events}`));
  state.first = false;
  if (state.selected) await showTimeline(state.selected);
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
  state.regions = await getJSON("/api/regions");
  options(document.getElementById("ref-region"), state.regions.map((r) => r.code), (c) => {
    const r = state.regions.find((x) => x.code === c);
    return r ? `${r.name_zh} ${c}` : c;
  });
  for (const id of ["flow-family", "flow-state"]) document.getElementById(id).addEventListener("change", renderFlows);
  for (const id of ["ref-region", "ref-family"]) document.getElementById(id).addEventListener("change", renderReferrals);
  await refresh();
  connect();
}

start();
