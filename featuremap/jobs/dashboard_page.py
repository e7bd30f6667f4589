"""The dashboard's jobs page (:mod:`featuremap.jobs.dashboard`) without its web server: where it
is, whether a scheduler serves it, and its HTML: one self-contained document, no external assets
(a cluster's dashboard is often offline), whose script reads ``jobs.json`` beside it every
second and redraws the table.

Every value from the registry (paths, names, error lines) is set as text, never as HTML, so a
store or pipeline name cannot inject markup into an operator's browser.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JSON_PATH", "PAGE", "PAGE_PATH", "POLL_MS", "SERVED", "page_link", "served_page"]

#: Where the page and its JSON are served, below the dashboard's root.
PAGE_PATH = "featuremap/jobs"
JSON_PATH = "featuremap/jobs.json"
#: The scheduler metadata key under which a scheduler that serves the page says so.
SERVED = ("featuremap", "pages")
#: How often the page reads the jobs again.
POLL_MS = 1000


def page_link(dashboard_link: str) -> str:
    """The jobs page of the dashboard at ``dashboard_link`` (e.g. ``http://host:8787/status``)."""
    parts = dashboard_link.split("://", 1)
    scheme, rest = parts if len(parts) == 2 else ("http", parts[0])
    return f"{scheme}://{rest.split('/', 1)[0]}/{PAGE_PATH}"


def served_page(client: Any) -> str | None:
    """The jobs page of ``client``'s scheduler, or ``None`` when it does not serve one (it was
    not started with ``--preload featuremap.jobs.dashboard``) or has no dashboard."""
    try:
        served = client.get_metadata(list(SERVED), default=None)
    except Exception:  # noqa: BLE001 -- only a hint: never fail a command over it
        return None
    link = client.dashboard_link
    return page_link(link) if isinstance(served, dict) and link else None


PAGE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>featuremap jobs</title>
<style>
  :root { --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --head: #f5f7fa;
          --bar: #2f80ed; --done: #27ae60; --bad: #d64545; --warn: #de911d; }
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--fg); margin: 0; background: #fff; }
  header { display: flex; align-items: baseline; gap: 1.5em; padding: 14px 20px;
           border-bottom: 1px solid var(--line); background: var(--head); }
  h1 { font-size: 18px; margin: 0; font-weight: 600; }
  #status { color: var(--muted); }
  #status.stale { color: var(--bad); }
  label { margin-left: auto; color: var(--muted); cursor: pointer; }
  main { padding: 12px 20px; overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line);
           vertical-align: middle; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase;
       letter-spacing: 0.04em; white-space: nowrap; }
  td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
            font-size: 12.5px; }
  td.path { min-width: 10em; max-width: 26em; overflow-wrap: anywhere; }
  .where { color: var(--muted); font-family: system-ui, sans-serif; }
  td.num, th.num { text-align: right; }
  td.time { white-space: nowrap; color: var(--muted); }
  td.error { color: var(--bad); min-width: 10em; max-width: 22em; }
  .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
           font-weight: 600; color: #fff; background: var(--muted); }
  .state.running { background: var(--bar); }
  .state.queued { background: var(--warn); }
  .state.complete { background: var(--done); }
  .state.failed, .state.interrupted { background: var(--bad); }
  .progress { display: flex; align-items: center; gap: 8px; }
  .bar { width: 120px; height: 10px; background: var(--line); border-radius: 5px;
         overflow: hidden; flex: none; }
  .fill { height: 100%; background: var(--bar); transition: width 0.4s; }
  .fill.complete { background: var(--done); }
  .count { font-variant-numeric: tabular-nums; white-space: nowrap; color: var(--muted);
           font-size: 12.5px; min-width: 9em; }
  #empty { color: var(--muted); padding: 24px 0; }
</style>
</head>
<body>
<header>
  <h1>featuremap jobs</h1>
  <span id="status">loading&hellip;</span>
  <label><input type="checkbox" id="all"> show finished jobs</label>
</header>
<main>
<table id="jobs">
  <thead><tr>
    <th>ID</th><th>Pipeline</th><th>State</th><th>Progress (blocks)</th>
    <th class="num">Prio</th><th>Submitter</th><th>Started (UTC)</th><th>Updated</th>
    <th>Store</th><th>Error</th><th>Log</th>
  </tr></thead>
  <tbody></tbody>
</table>
<div id="empty" hidden>No jobs.</div>
</main>
<script>
"use strict";
const POLL_MS = """
    + str(POLL_MS)
    + """;
const all = document.getElementById("all");
all.checked = new URLSearchParams(location.search).get("all") === "1";
all.addEventListener("change", () => {
  history.replaceState(null, "", all.checked ? "?all=1" : location.pathname);
  refresh();
});

function cell(row, text, className, title) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined || text === "" ? "\\u2013" : text;
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

function path(row, text, store) {
  // a path as text, breakable after each "/"; one inside the job's store shown from there
  const td = row.insertCell();
  td.className = "mono path";
  td.title = text || "";
  if (!text) { td.textContent = "\\u2013"; return; }
  text = String(text);
  if (store && text.startsWith(store + "/")) {
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = "store/";
    td.append(where);
    text = text.slice(store.length + 1);
  }
  text.split("/").forEach((part, index) => {
    if (index > 0) td.append("/", document.createElement("wbr"));
    td.append(part);
  });
}

function when(stamp) {
  // a registry time (ISO, UTC) as "04:12:26", with its date when not today's
  if (!stamp) return "";
  const [date, time] = String(stamp).replace(/\\.\\d+/, "").replace(/\\+00:00|Z$/, "").split("T");
  return date === new Date().toISOString().slice(0, 10) ? time : date + " " + time;
}

function progress(row, job) {
  const td = row.insertCell();
  const total = Number(job.blocks_total) || 0;
  const done = Number(job.blocks_done) || 0;
  const share = total > 0 ? Math.min(1, done / total) : 0;
  const box = document.createElement("div");
  box.className = "progress";
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill" + (job.state === "complete" ? " complete" : "");
  fill.style.width = (100 * share).toFixed(1) + "%";
  bar.appendChild(fill);
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = done + "/" + total + " (" + Math.floor(100 * share) + "%)";
  box.append(bar, count);
  td.appendChild(box);
}

function draw(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    row.dataset.job = job.id;
    cell(row, String(job.id).slice(0, 12), "mono", job.id);
    cell(row, job.pipeline);
    const state = document.createElement("span");
    state.className = "state " + job.state;
    state.textContent = job.state;
    row.insertCell().appendChild(state);
    progress(row, job);
    cell(row, job.priority, "num");
    cell(row, job.submitter);
    cell(row, when(job.started), "time", job.started);
    cell(row, when(job.updated), "time", job.updated);
    path(row, job.store);
    cell(row, job.error, "error");
    path(row, job.log, job.store);
  }
  document.getElementById("empty").hidden = jobs.length > 0;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("jobs.json" + (all.checked ? "?all=1" : ""),
                                 {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const jobs = await response.json();
    draw(jobs);
    const active = jobs.filter(job => job.state === "running" || job.state === "queued");
    status.textContent = jobs.length + " job" + (jobs.length === 1 ? "" : "s") + ", "
      + active.length + " active \\u00b7 updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (error) {
    status.textContent = "cannot read the jobs (" + error.message + "); retrying";
    status.className = "stale";
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body>
</html>
"""
)
