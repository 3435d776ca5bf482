/* Charts: stacked time series on canvas (uPlot, vendored), horizontal bars and tables as DOM.
   Text from the API (model names, tags, tenants) is only ever set as textContent. */
"use strict";

const Charts = (() => {
  const COLORS = ["#2d6cdf", "#e67e22", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#d4ac0d",
    "#7f8c8d", "#34495e", "#e84393"];
  const TOP = 8; // series drawn by name; the rest are summed as "other"
  const live = new Map(); // element -> uPlot, resized with the page

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") el.textContent = v;
      else if (k === "cls") el.className = v;
      else el.setAttribute(k, v);
    }
    for (const child of children) if (child != null) el.append(child);
    return el;
  }

  function empty(el, text) {
    clear(el);
    el.append(h("p", { cls: "empty", text: text || "No data in this range." }));
  }

  function clear(el) {
    const plot = live.get(el);
    if (plot) { plot.destroy(); live.delete(el); }
    el.classList.remove("loading");
    el.replaceChildren();
  }

  /* Every bucket start from `start` to `end` (unix seconds), so empty buckets draw as zero. */
  function buckets(start, end, step) {
    const xs = [];
    for (let x = start; x < end && xs.length < 2000; x += step) xs.push(x);
    return xs;
  }

  /* rows: usage rows grouped by a time bucket and `dim`; value(row) the plotted number; xs
     the bucket starts. Stacked bars, the largest series at the bottom. Returns the names
     drawn (largest first). */
  function stacked(el, rows, xs, bucket, dim, value, unit) {
    clear(el);
    if (!rows.length) { empty(el); return []; }
    const key = (r) => r[dim] || "(none)";
    const totals = new Map();
    for (const r of rows) totals.set(key(r), (totals.get(key(r)) || 0) + value(r));
    const ranked = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
    const names = ranked.slice(0, TOP).concat(ranked.length > TOP ? ["other"] : []);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = names.map(() => new Array(xs.length).fill(0));
    for (const r of rows) {
      const i = index.get(Date.parse(r[bucket]) / 1000);
      const s = names.indexOf(key(r));
      if (i !== undefined) data[s >= 0 ? s : names.length - 1][i] += value(r);
    }
    const own = data.map((d) => d.slice());
    // Stacked: each series drawn as the running sum, the tallest first so the rest cover it.
    for (let s = 1; s < data.length; s++) for (let i = 0; i < xs.length; i++) data[s][i] += data[s - 1][i];
    const series = names.map((name, s) => ({
      label: name, stroke: COLORS[s % COLORS.length], fill: COLORS[s % COLORS.length], width: 0,
      paths: uPlot.paths.bars({ size: [0.8, 48] }), points: { show: false },
      value: (u, v, si, i) => (i == null ? "" : fmt(own[s][i], unit)),
    }));
    draw(el, [xs, ...data.slice().reverse()], series.slice().reverse(), unit, true);
    legend(el, names);
    return names;
  }

  function line(el, xs, ys, label, unit) {
    clear(el);
    if (!ys.some((y) => y)) { empty(el); return; }
    draw(el, [xs, ys], [{ label, stroke: COLORS[0], fill: COLORS[0] + "33", width: 2, points: { show: false } }], unit);
    legend(el, [label]);
  }

  /* `padded`: bars centred on their bucket, so the x scale reaches half a bucket past each
     end (the newest bucket's bar is drawn whole). */
  function draw(el, data, series, unit, padded) {
    const width = Math.max(260, el.clientWidth - 4);
    const xs = data[0], half = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 30;
    const opts = {
      width, height: 220, legend: { show: false }, cursor: { drag: { x: false, y: false } },
      series: [{}, ...series],
      scales: {
        x: { time: true, range: () => (padded ? [xs[0] - half, xs[xs.length - 1] + half] : [xs[0], xs[xs.length - 1]]) },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      axes: [{}, { values: (u, ticks) => ticks.map((t) => fmt(t, unit, true)), size: 80 }],
    };
    const holder = h("div", { cls: "plot", "data-series": series.map((s) => s.label).slice().reverse().join("\n") });
    el.append(holder);
    live.set(el, new uPlot(opts, data, holder));
  }

  function legend(el, names) {
    const box = h("div", { cls: "legend" });
    names.forEach((name, s) => {
      const item = h("span", { "data-legend": name, text: name });
      item.style.setProperty("--swatch", COLORS[s % COLORS.length]);
      box.append(item);
    });
    el.append(box);
  }

  /* items: [{name, value, label}], drawn as horizontal bars, largest first. */
  function bars(el, items, unit) {
    clear(el);
    if (!items.length) { empty(el); return; }
    const max = Math.max(...items.map((i) => i.value), 1e-12);
    for (const item of items) {
      const fill = h("div", { cls: "fill" });
      fill.style.width = (100 * item.value / max).toFixed(1) + "%";
      el.append(h("div", { cls: "hbar", "data-bar": item.name },
        h("span", { cls: "name", title: item.name, text: item.name }),
        h("div", { cls: "track" }, fill),
        h("span", { cls: "num", text: item.label || fmt(item.value, unit) })));
    }
  }

  /* columns: [{key, label, num, render(row) -> string|Node}] */
  function table(el, columns, rows, emptyText) {
    clear(el);
    if (!rows.length) { empty(el, emptyText); return null; }
    const head = h("tr", {}, ...columns.map((c) => h("th", { cls: c.num ? "num" : "", text: c.label })));
    const body = h("tbody");
    for (const row of rows) {
      body.append(h("tr", {}, ...columns.map((c) => {
        const v = c.render ? c.render(row) : row[c.key];
        const cell = h("td", { cls: c.num ? "num" : "" });
        cell.append(v instanceof Node ? v : document.createTextNode(v == null ? "–" : String(v)));
        return cell;
      })));
    }
    const t = h("table", {}, h("thead", {}, head), body);
    el.append(t);
    return body;
  }

  function fmt(v, unit, short) {
    if (v == null || Number.isNaN(v)) return "–";
    if (unit === "$") return "$" + (short ? compact(v) : v.toFixed(v < 1 ? 4 : 2));
    if (unit === "ms") return Math.round(v) + " ms";
    if (unit === "/s") return (short ? compact(v) : v.toFixed(3)) + "/s";
    return short ? compact(v) : Math.round(v).toLocaleString("en-US");
  }

  function compact(v) {
    const a = Math.abs(v);
    if (a > 0 && a < 1) return String(Number(v.toPrecision(2)));
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return a < 10 && a !== Math.round(a) ? v.toFixed(2) : String(Math.round(v * 100) / 100);
  }

  function resize() {
    for (const [el, plot] of live) plot.setSize({ width: Math.max(260, el.clientWidth - 4), height: 220 });
  }
  let pending = 0;
  window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(resize, 100); });

  return { h, clear, empty, buckets, stacked, line, bars, table, fmt };
})();
