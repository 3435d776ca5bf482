/* The page: who the token is, which view, the range and filters, and loading every panel. */
"use strict";

(() => {
  const $ = (sel) => document.querySelector(sel);
  const { h } = Charts;
  const RANGES = { "1h": [3600, "minute"], "24h": [86400, "hour"], "7d": [7 * 86400, "hour"],
    "30d": [30 * 86400, "day"], "90d": [90 * 86400, "day"] };
  const GRAIN_S = { minute: 60, hour: 3600, day: 86400 };
  let who = null;
  let view = "tenant";
  let generation = 0; // answers of an older selection are dropped
  let logBefore = null;

  /* The range on whole buckets of its grain, so the usage API reads rollups. */
  function range() {
    const choice = $("#range").value;
    if (choice === "custom") {
      const from = Date.parse($("#from").value) / 1000, to = Date.parse($("#to").value) / 1000;
      if (Number.isFinite(from) && Number.isFinite(to) && to >= from) {
        return { start: from, end: to + 86400, grain: "day" };
      }
    }
    const [span, grain] = RANGES[choice] || RANGES["24h"];
    const g = GRAIN_S[grain];
    const end = Math.ceil((Date.now() / 1000 + 1) / g) * g;
    return { start: end - Math.ceil(span / g) * g, end, grain };
  }

  /* The raw-record panels (health, request log) read at most their API's 92 days: the
     newest 92 days of a longer custom range. */
  function rawStart(r) { return Math.max(r.start, r.end - 92 * 86400); }

  function filters() {
    const out = { model: $("#f-model").value.trim(), provider: $("#f-provider").value.trim() };
    if (view === "operator") out.tenant = $("#f-tenant").value.trim();
    return out;
  }

  function setView(next) {
    view = next;
    document.body.classList.toggle("operator-view", view === "operator");
    document.body.classList.toggle("tenant-view", view === "tenant");
    for (const b of document.querySelectorAll("#views button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    if (view === "tenant" && $("#stack").value === "tenant") $("#stack").value = "provider";
    const url = new URL(location.href);
    url.searchParams.set("view", view);
    history.replaceState(null, "", url.pathname + url.search);
  }

  /* A panel's work; a failure is shown in its panels unless a newer selection replaced it. */
  async function guard(ids, work, mine) {
    try { await work(); } catch (error) { if (mine === generation) for (const id of ids) Panels.failed(id, error); }
  }

  async function load() {
    const mine = ++generation;
    const r = range(), f = filters(), stack = $("#stack").value;
    const base = { start: r.start, end: r.end, ...f };
    document.body.dataset.range = r.start + "," + r.end + "," + r.grain;
    const ids = ["p-spend", "p-tokens", "p-rps", "p-tags", "p-models", "p-savings", "p-errors",
      "p-latency", "p-budgets", "p-log"];
    if (view === "operator") ids.push("p-tenants", "p-circuits", "p-keys", "p-ratelimits");
    else ids.push("p-limits");
    Panels.loading(ids);
    const current = () => mine === generation;
    const series = Api.usage({ ...base, group_by: r.grain + "," + stack });
    const health = Api.json("dashboard/health", { start: rawStart(r), end: r.end, ...f });
    const tasks = [
      guard(["p-spend", "p-tokens", "p-rps"], async () => {
        const s = await series;
        if (!current()) return;
        Panels.totals(s.totals);
        Panels.series(s.rows, r, stack, GRAIN_S[r.grain]);
      }, mine),
      guard(["p-models"], async () => {
        const m = await Api.usage({ ...base, group_by: "model" });
        if (current()) Panels.ranked("p-models", m.rows, "model");
      }, mine),
      guard(["p-tags"], async () => {
        const key = $("#tagkey").value.trim() || "project";
        const t = await Api.usage({ ...base, group_by: "tag:" + key });
        if (current()) Panels.ranked("p-tags", t.rows.map((x) => ({ ...x, tag: key + "=" + x["tag:" + key] })), "tag");
      }, mine),
      guard(["p-savings"], async () => {
        const [s, hl] = await Promise.all([series, health]);
        if (current()) Panels.savings(s.totals, hl);
      }, mine),
      guard(["p-latency", "p-errors"], async () => {
        const hl = await health;
        if (current()) { Panels.latency(hl); Panels.errors(hl); }
      }, mine),
      guard(["p-budgets", "p-limits"], async () => {
        const b = await Api.json("dashboard/budgets", view === "operator" && f.tenant ? { tenant: f.tenant } : {});
        if (current()) Panels.budgets(b);
      }, mine),
      loadLog(true, mine),
    ];
    if (view === "operator") {
      tasks.push(guard(["p-tenants"], async () => {
        const t = await Api.usage({ ...base, group_by: "tenant" });
        if (current()) Panels.ranked("p-tenants", t.rows, "tenant");
      }, mine));
      tasks.push(guard(["p-circuits", "p-keys", "p-ratelimits"], async () => {
        const ops = await Api.json("dashboard/operations");
        if (current()) Panels.operations(ops);
      }, mine));
    }
    await Promise.all(tasks);
    if (current()) document.body.dataset.loaded = String(mine);
  }

  function logColumns(traceIds) {
    return [
      { label: "time", render: (x) => new Date(x.ts * 1000).toISOString().replace("T", " ").slice(0, 19) },
      { label: "request id", render: (x) => h("button", { type: "button", cls: "reqid", "data-request": x.request_id, text: x.request_id }) },
      ...(view === "operator" ? [{ key: "tenant", label: "tenant" }] : []),
      { key: "model", label: "model" },
      { key: "provider", label: "provider" },
      { key: "outcome", label: "outcome" },
      { label: "tokens in/out", num: true, render: (x) => x.input_tokens + x.cache_read_tokens + x.cache_write_tokens + " / " + x.output_tokens },
      { label: "cost", num: true, render: (x) => "$" + (x.cost_micros / 1e6).toFixed(6) },
      { label: "latency", num: true, render: (x) => Math.round(x.latency_ms) + " ms" },
      { label: "TTFT", num: true, render: (x) => (x.ttft_ms == null ? "–" : Math.round(x.ttft_ms) + " ms") },
      ...(traceIds ? [{ label: "trace", render: (x) => x.trace_id || "–" }] : []),
    ];
  }

  async function loadLog(fresh, mine) {
    if (fresh) logBefore = null;
    const el = Panels.body("p-log");
    const r = range(), f = filters();
    const params = { start: rawStart(r), end: r.end, ...f, outcome: $("#l-outcome").value.trim(),
      request_id: $("#l-request").value.trim(), before: logBefore ?? "", limit: 50 };
    try {
      const page = await Api.json("dashboard/requests", params);
      if (mine !== undefined && mine !== generation) return;
      const tbody = Charts.table(el, logColumns(page.trace_ids), page.data, "No requests match.");
      if (tbody) attachDetails(tbody, page.data, page.trace_ids);
      $("#log-older").hidden = !page.has_more;
      if (page.data.length) logBefore = page.data[page.data.length - 1].ts;
    } catch (error) {
      Panels.failed("p-log", error);
    }
  }

  /* A request id opens its metadata and its trace id (a link when a trace URL is set). */
  function attachDetails(tbody, rows, traceIds) {
    const byId = new Map(rows.map((x) => [x.request_id, x]));
    tbody.addEventListener("click", (event) => {
      const button = event.target.closest("[data-request]");
      if (!button) return;
      const row = button.closest("tr");
      if (row.nextSibling && row.nextSibling.classList.contains("detail")) { row.nextSibling.remove(); return; }
      const x = byId.get(button.dataset.request);
      const cell = h("td", { colspan: String(row.children.length) });
      const template = $("#l-trace-url").value.trim() || localStorage.getItem("interlock.traceUrl") || "";
      let trace;
      if (!traceIds) trace = document.createTextNode("this ledger records no trace ids");
      else if (!x.trace_id) trace = document.createTextNode("none recorded");
      else if (template.includes("{trace_id}") && /^https?:\/\//.test(template)) {
        trace = h("a", { href: template.replace("{trace_id}", encodeURIComponent(x.trace_id)), rel: "noreferrer", target: "_blank", "data-trace": x.trace_id, text: x.trace_id });
      } else trace = h("code", { "data-trace": x.trace_id, text: x.trace_id });
      const tags = Object.entries(x.tags || {}).map((e) => e.join("=")).join(", ") || "none";
      cell.append(h("div", {}, h("strong", { text: "trace id: " }), trace),
        h("div", { text: `served model: ${x.served_model || "–"} · api: ${x.api} · attempts: ${x.attempts} · key: ${x.key_id || "–"} · tags: ${tags}` }));
      row.after(h("tr", { cls: "detail" }, cell));
    });
  }

  async function exportCsv() {
    const r = range();
    const button = $("#csv");
    button.disabled = true;
    try {
      const text = await Api.usageCsv({ start: r.start, end: r.end, ...filters(), group_by: r.grain + "," + $("#stack").value });
      const link = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "interlock-usage.csv" });
      document.body.append(link); link.click(); link.remove();
    } catch (error) {
      alert(error.message);
    } finally {
      button.disabled = false;
    }
  }

  async function refuseOperator() {
    let text = "This view needs an operator token (interlock token issue --admin).";
    try { await Api.json("dashboard/operations"); } catch (error) { text += " The gateway answered: " + error.message; }
    $("#refused-text").textContent = text;
    $("#refused").append(h("p", {}, h("a", { href: "?view=tenant", text: "Open your tenant view" })));
    $("#refused").hidden = false;
  }

  async function start() {
    Api.takeFragmentToken();
    if (!Api.token()) { $("#signin").hidden = false; return; }
    try {
      who = await Api.json("dashboard/whoami");
    } catch (error) {
      $("#signin").hidden = false;
      $("#signin-error").textContent = error.message;
      return;
    }
    $("#who").textContent = who.admin ? `operator (${who.tenant})` : `tenant ${who.tenant}`;
    $("#signout").hidden = false;
    const asked = new URLSearchParams(location.search).get("view");
    if (asked === "operator" && !who.admin) { setView("tenant"); await refuseOperator(); return; }
    $("#views").hidden = !who.admin;
    setView(who.admin && asked !== "tenant" ? "operator" : "tenant");
    $("#main").hidden = false;
    await load();
  }

  $("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); Api.setToken($("#token").value); location.reload(); });
  $("#signout").addEventListener("click", () => { Api.clearToken(); location.replace(location.pathname); });
  $("#controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("#range").addEventListener("change", () => {
    for (const el of document.querySelectorAll(".custom")) el.hidden = $("#range").value !== "custom";
    if ($("#range").value !== "custom") load();
  });
  $("#stack").addEventListener("change", () => load());
  $("#csv").addEventListener("click", exportCsv);
  $("#log-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("interlock.traceUrl", $("#l-trace-url").value.trim());
    loadLog(true);
  });
  $("#log-older").addEventListener("click", () => loadLog(false));
  for (const b of document.querySelectorAll("#views button")) {
    b.addEventListener("click", () => { setView(b.dataset.view); load(); });
  }
  // A link with another token opened in this tab changes only the fragment: start afresh.
  window.addEventListener("hashchange", () => {
    if (/token=/.test(location.hash)) { Api.takeFragmentToken(); location.reload(); }
  });
  $("#l-trace-url").value = localStorage.getItem("interlock.traceUrl") || "";
  start();
})();
