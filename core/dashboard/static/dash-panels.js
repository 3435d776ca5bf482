/* Each panel: what it asks the API for and how it draws the answer. */
"use strict";

const Panels = (() => {
  const { h, stacked, line, bars, table, fmt, empty } = Charts;
  const body = (id) => document.querySelector("#" + id + " .body");
  const usd = (micros) => micros / 1e6;

  function loading(ids) { for (const id of ids) { const el = body(id); Charts.clear(el); el.classList.add("loading"); } }

  function failed(id, error) {
    const el = body(id);
    Charts.clear(el);
    el.append(h("p", { cls: "error", text: error.message || String(error) }));
  }

  function totals(t) {
    const set = (k, v) => { document.querySelector(`[data-total="${k}"]`).textContent = v; };
    set("cost", "$" + t.cost);
    set("requests", t.requests.toLocaleString("en-US"));
    set("input_tokens", t.input_tokens.toLocaleString("en-US"));
    set("output_tokens", t.output_tokens.toLocaleString("en-US"));
    set("cache_read_tokens", t.cache_read_tokens.toLocaleString("en-US"));
    const all = t.input_tokens + t.cache_read_tokens + t.cache_write_tokens;
    set("cache_share", all ? (100 * t.cache_read_tokens / all).toFixed(1) + "%" : "–");
  }

  /* The time series: spend and tokens stacked by `dim`, and requests per second. */
  function series(rows, range, dim, seconds) {
    const xs = Charts.buckets(range.start, range.end, seconds), grain = range.grain;
    stacked(body("p-spend"), rows, xs, grain, dim, (r) => usd(r.cost_micros), "$");
    stacked(body("p-tokens"), rows, xs, grain, dim,
      (r) => r.input_tokens + r.cache_read_tokens + r.cache_write_tokens + r.output_tokens, "");
    const per = new Map();
    for (const r of rows) {
      const x = Date.parse(r[grain]) / 1000;
      per.set(x, (per.get(x) || 0) + r.requests);
    }
    line(body("p-rps"), xs, xs.map((x) => (per.get(x) || 0) / seconds), "requests/s", "/s");
  }

  function ranked(id, rows, key, note) {
    const items = rows.map((r) => ({ name: r[key] || "(none)", value: usd(r.cost_micros),
      label: "$" + r.cost + " · " + r.requests + " req" }))
      .sort((a, b) => b.value - a.value).slice(0, 10);
    bars(body(id), items, "$");
    if (note && items.length) body(id).append(h("p", { cls: "note", text: note }));
  }

  function savings(t, health) {
    const el = body("p-savings");
    Charts.clear(el);
    const s = health.saved;
    const rows = [
      ["Prompt-cache read tokens", t.cache_read_tokens],
      ["Prompt-cache write tokens", t.cache_write_tokens],
      ["Answered from cache or coalesced", s.requests],
      ["… input tokens saved", s.input_tokens],
      ["… output tokens saved", s.output_tokens],
    ];
    table(el, [{ label: "what", render: (r) => r[0] }, { label: "count", num: true, render: (r) => r[1].toLocaleString("en-US") }], rows);
    el.append(sampleNote(health));
  }

  function sampleNote(health) {
    const text = health.sample >= health.sample_max
      ? `From the latest ${health.sample} records of the range (since ${new Date(health.since * 1000).toISOString()}).`
      : `From all ${health.sample} records of the range.`;
    return h("p", { cls: "note", text: "Latency, outcomes and response-cache savings: " + text });
  }

  function errors(health) {
    const el = body("p-errors");
    const items = Object.entries(health.outcomes).map(([name, n]) => ({ name, value: n,
      label: n + " (" + (100 * n / health.sample).toFixed(1) + "%)" })).sort((a, b) => b.value - a.value);
    if (!items.length) { empty(el); return; }
    bars(el, items, "");
  }

  function latency(health) {
    const el = body("p-latency");
    const ms = (v) => (v == null ? "–" : fmt(v, "ms"));
    table(el, [
      { key: "provider", label: "provider" },
      { key: "requests", label: "requests", num: true },
      { label: "error rate", num: true, render: (r) => (100 * r.error_rate).toFixed(1) + "%" },
      { label: "latency p50", num: true, render: (r) => ms(r.latency_ms.p50) },
      { label: "latency p95", num: true, render: (r) => ms(r.latency_ms.p95) },
      { label: "TTFT p50", num: true, render: (r) => ms(r.ttft_ms.p50) },
      { label: "TTFT p95", num: true, render: (r) => ms(r.ttft_ms.p95) },
    ], health.providers);
    if (health.providers.length) el.append(sampleNote(health));
  }

  function meter(share) {
    const fill = h("div", { cls: "fill" + (share != null && share >= 0.8 ? " high" : "") });
    fill.style.width = Math.min(100, 100 * (share || 0)).toFixed(1) + "%";
    return h("div", { cls: "meter", title: share == null ? "unknown" : (100 * share).toFixed(1) + "%" }, fill);
  }

  function budgets(answer) {
    const scope = (b) => Object.entries(b.scope).filter(([, v]) => v && (typeof v !== "object" || Object.keys(v).length))
      .map(([k, v]) => k + "=" + (typeof v === "object" ? Object.entries(v).map((e) => e.join(":")).join(",") : v)).join(" ") || "everything";
    table(body("p-budgets"), [
      { key: "name", label: "budget" },
      { label: "scope", render: scope },
      { label: "period", render: (b) => (b.period === "rolling" ? "rolling " + b.window_s + " s" : b.period) },
      { label: "used", render: (b) => meter(b.used_share) },
      { label: "spent", num: true, render: (b) => (b.spent_micros == null ? "unknown here" : "$" + usd(b.spent_micros).toFixed(4)) },
      { label: "limit", num: true, render: (b) => "$" + b.limit },
      { key: "action", label: "action" },
      { label: "resets", render: (b) => b.resets_at },
    ], answer.budgets, "No budget applies.");
    if (answer.limits) {
      const l = answer.limits;
      table(body("p-limits"), [{ label: "limit", render: (r) => r[0] }, { label: "value", num: true, render: (r) => r[1] }],
        [["tier", l.tier], ["requests per minute", l.rpm ?? "none"], ["tokens per minute", l.tpm ?? "none"]]);
    }
  }

  function operations(ops) {
    table(body("p-circuits"), [
      { key: "target", label: "target" },
      { label: "state", render: (c) => h("span", { cls: "state-" + c.state, text: c.state }) },
    ], ops.circuits, "No targets.");
    table(body("p-keys"), [
      { key: "provider", label: "provider" },
      { key: "keys", label: "keys", num: true },
      { label: "resting", render: (p) => (p.resting.length ? p.resting.map((r) => r.key_id + " (" + r.for_s + " s)").join(", ") : "none") },
    ], ops.key_pools, "No providers.");
    const counts = [
      ...Object.entries(ops.rate_limited).map(([k, v]) => ["rate limited: " + k, v]),
      ...Object.entries(ops.failovers).map(([k, v]) => ["failovers: " + k, v]),
      ...Object.entries(ops.retries).map(([k, v]) => ["retries: " + k, v]),
    ];
    const el = body("p-ratelimits");
    table(el, [{ label: "counter", render: (r) => r[0] }, { label: "since start", num: true, render: (r) => r[1] }],
      counts, "No rate-limit rejections, failovers or retries since this core started.");
  }

  return { body, loading, failed, totals, series, ranked, savings, errors, latency, budgets, operations };
})();
