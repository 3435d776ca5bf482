/* The dashboard's calls to the gateway: the usage API and /v1/dashboard/* panels, with the
   token the user gave (kept in this tab's sessionStorage; a "#token=" fragment, never sent to a
   server, is taken once and removed from the address bar). */
"use strict";

const Api = (() => {
  const KEY = "interlock.token";
  const MAX_PAGES = 20; // usage pages followed per chart (1000 rows each)

  function takeFragmentToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function setToken(value) { sessionStorage.setItem(KEY, value.trim()); }
  function clearToken() { sessionStorage.removeItem(KEY); }

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }

  function query(params) {
    const out = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") out.set(k, String(v));
    }
    const text = out.toString();
    return text ? "?" + text : "";
  }

  async function call(path, params, accept) {
    const headers = { authorization: "Bearer " + token() };
    if (accept) headers.accept = accept;
    const answer = await fetch("../v1/" + path + query(params || {}), { headers });
    if (!answer.ok) {
      let message = answer.status + " " + answer.statusText, code = "";
      try {
        const body = await answer.json();
        message = body.error.message; code = body.error.code || "";
      } catch (_) { /* not JSON */ }
      throw new ApiError(answer.status, message, code);
    }
    return answer;
  }

  async function json(path, params) { return (await call(path, params)).json(); }

  /* Every page of a usage query: the rows, and the totals (the same on every page). */
  async function usage(params) {
    let rows = [], cursor = "", totals = null, pages = 0, more = true;
    while (more && pages < MAX_PAGES) {
      const body = await json("usage", { ...params, limit: 1000, cursor });
      rows = rows.concat(body.data);
      totals = body.totals;
      cursor = body.next_cursor || "";
      more = body.has_more;
      pages += 1;
    }
    return { rows, totals, truncated: more };
  }

  /* The usage CSV, every page (the next page's cursor is in a header), as one text. */
  async function usageCsv(params) {
    let text = "", cursor = "", pages = 0;
    do {
      const answer = await call("usage", { ...params, format: "csv", limit: 1000, cursor });
      const page = await answer.text();
      text += pages === 0 ? page : page.slice(page.indexOf("\n") + 1);
      cursor = answer.headers.get("x-interlock-next-cursor") || "";
      pages += 1;
    } while (cursor && pages < 200);
    return text;
  }

  return { takeFragmentToken, token, setToken, clearToken, json, usage, usageCsv, ApiError };
})();
