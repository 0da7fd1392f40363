// syncd's web page: plain JS over the JSON API (/api/v1), no framework, no CDN.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const READ_ONLY = document.querySelector('meta[name="read-only"]').content === "true";
const view = document.getElementById("view");
const PAGE = 100;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Each route aborts the reads of the one before it: a page still loading when the user moves
// on must never replace the page they moved to. Writes (any method) are never aborted.
let routing = new AbortController();

async function api(path, options = {}) {
  const init = { credentials: "same-origin", signal: options.method ? undefined : routing.signal,
                 ...options, headers: { ...(options.headers || {}) } };
  if (init.method && init.method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
  if (init.body && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch("/api/v1" + path, init);
  if (response.status === 401) { location.href = "/login?next=/" + encodeURIComponent(location.hash); throw new Error("log in"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function show(...children) { view.replaceChildren(...children); }
function fail(error) { show(h("p", { class: "error", role: "alert" }, String(error.message || error))); }
function counts(object) {
  return Object.entries(object || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
}

// -- routing ---------------------------------------------------------------------------

function route() {
  routing.abort();
  routing = new AbortController();
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const pages = { d: datasetPage, i: itemPage, jobs: jobsPage, errors: errorsPage };
  const page = parts.length ? pages[parts[0]] : overviewPage;
  if (!page) return fail(new Error("no such page"));
  Promise.resolve(page(parts[1], params)).catch((error) => { if (error.name !== "AbortError") fail(error); });
}
window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", route);

// -- datasets overview -----------------------------------------------------------------

async function overviewPage() {
  const datasets = await api("/status");
  show(h("h1", {}, "Datasets"), h("div", { class: "cards" }, datasets.map(datasetCard)));
}

function datasetCard(d) {
  const sync = d.lastSync;
  const button = READ_ONLY ? null : h("button", {
    class: "primary", "data-action": "sync",
    onclick: async (event) => {
      event.target.disabled = true;
      try { await api(`/datasets/${encodeURIComponent(d.dataset)}/sync`, { method: "POST" }); event.target.textContent = "Sync started"; }
      catch (error) { event.target.textContent = error.message; }
    },
  }, "Sync now");
  return h("section", { class: "card", "data-dataset": d.dataset },
    h("h2", {}, h("a", { href: `#/d/${encodeURIComponent(d.dataset)}` }, d.dataset)),
    h("p", {}, `Items: ${counts(d.items)}`),
    h("p", {}, `Types: ${counts(d.mimetypes)}`),
    h("p", {}, `Jobs: ${counts(d.jobs)}`),
    h("p", {}, sync ? `Last sync: ${sync.finishedAt || sync.startedAt} (${sync.status}): listed ${sync.listed}, created ${sync.created}, updated ${sync.updated}, moved ${sync.moved}, deleted ${sync.deleted}` : "Never synced"),
    h("p", {}, d.listingErrors ? h("a", { href: `#/errors/${encodeURIComponent(d.dataset)}`, class: "error" }, `${d.listingErrors} listing errors`) : "No listing errors"),
    h("p", {}, h("a", { href: `#/d/${encodeURIComponent(d.dataset)}` }, "Browse"), " ", button));
}

// -- a dataset: folders, filters, grid --------------------------------------------------

function buildQuery(f) {
  const parts = [];
  if (f.state) parts.push(`state = ${f.state}`);
  if (f.mimetype) parts.push(`mimetype = "${f.mimetype}"`);
  if (f.etl === "none") parts.push("not system.etl exists");
  else if (f.etl) parts.push(`system.etl.status = ${f.etl}`);
  if (f.name) parts.push(`name like ${JSON.stringify("%" + f.name + "%")}`);
  if (f.where) parts.push(`(${f.where})`);
  return parts.join(" and ");
}

async function datasetPage(name, params) {
  const folder = params.get("folder") || "/";
  const filters = { state: params.get("state") || "", mimetype: params.get("mimetype") || "", etl: params.get("etl") || "",
                    name: params.get("name") || "", where: params.get("where") || "" };
  const [status, tree] = await Promise.all([
    api(`/datasets/${encodeURIComponent(name)}`),
    api(`/datasets/${encodeURIComponent(name)}/folders?parent=${encodeURIComponent(folder)}`),
  ]);
  const link = (changes) => {
    const next = new URLSearchParams({ folder, ...filters, ...changes });
    for (const [k, v] of [...next.entries()]) if (!v) next.delete(k);
    return `#/d/${encodeURIComponent(name)}?${next}`;
  };
  const up = folder === "/" ? null : folder.replace(/\/[^/]*$/, "") || "/";
  const treeBox = h("nav", { class: "tree", "aria-label": "folders" },
    h("a", { href: link({ folder: "/" }), class: folder === "/" ? "current" : null }, "/ (all)"),
    up ? h("a", { href: link({ folder: up }), "data-folder": up }, "↑ " + up) : null,
    folder !== "/" ? h("a", { href: link({ folder }), class: "current" }, folder) : null,
    tree.folders.map((f) => h("a", { href: link({ folder: f }), "data-folder": f }, "▸ " + f.slice(folder === "/" ? 1 : folder.length + 1))));

  const form = h("form", { class: "filters", onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(event.target);
      location.hash = link(Object.fromEntries(data.entries())).slice(1);
    } },
    h("label", {}, "State", select("state", filters.state, [["", "any"], ["present", "present"], ["missing", "missing"]])),
    h("label", {}, "Type", select("mimetype", filters.mimetype, [["", "any"], ...Object.keys(status.mimetypes || {}).map((m) => [m, m])])),
    h("label", {}, "Preprocessing", select("etl", filters.etl, [["", "any"], ["done", "done"], ["failed", "failed"], ["none", "not yet"]])),
    h("label", {}, "Name", h("input", { name: "name", value: filters.name, placeholder: "part of the name" })),
    h("label", { class: "query" }, "Query", h("input", { name: "where", value: filters.where, placeholder: "user.camera = cam_01 and width >= 1000" })),
    h("button", { type: "submit", class: "primary" }, "Filter"));

  const grid = h("div", { class: "grid", id: "grid" });
  const note = h("p", { class: "muted", id: "grid-note" });
  const sentinel = h("div", { class: "sentinel" });
  show(h("h1", {}, name, " ", h("span", { class: "muted" }, folder)), h("div", { class: "browse" }, treeBox,
    h("section", {}, form, note, grid, sentinel)));

  const query = buildQuery(filters);
  let cursor = "", loading = false, shown = 0;
  async function more() {
    if (loading || cursor === null) return;
    loading = true;
    try {
      const q = new URLSearchParams({ folder, limit: PAGE });
      if (query) q.set("where", query);
      if (cursor) q.set("cursor", cursor);
      const page = await api(`/datasets/${encodeURIComponent(name)}/items?${q}`);
      grid.append(...page.items.map(tile));
      shown += page.items.length;
      cursor = page.next;
      note.textContent = shown ? `${shown} items${cursor ? ", more below" : ""}` : "No items match.";
    } catch (error) {
      note.textContent = error.message; note.className = "error"; cursor = null;
    } finally { loading = false; }
    if (cursor !== null && sentinel.getBoundingClientRect().top < innerHeight + 400) more();
  }
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); }, { rootMargin: "400px" }).observe(sentinel);
  more();
}

function select(name, value, options) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function tile(item) {
  const mimetype = item.metadata.system.mimetype || "";
  const thumb = item.thumbnail
    ? h("img", { src: item.thumbnail, alt: item.name, loading: "lazy" })
    : h("span", { class: "muted" }, mimetype || item.type);
  return h("a", { class: `tile ${item.state}`, href: `#/i/${item.id}`, title: item.filename, "data-filename": item.filename },
    h("div", { class: "thumb" }, thumb), h("div", { class: "label" }, item.name));
}

// -- an item ---------------------------------------------------------------------------

function rows(object, prefix = "") {
  const out = [];
  for (const [key, value] of Object.entries(object || {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) out.push(...rows(value, prefix + key + "."));
    else out.push(h("tr", {}, h("th", {}, prefix + key), h("td", {}, Array.isArray(value) ? JSON.stringify(value) : String(value))));
  }
  return out;
}

async function itemPage(id) {
  const item = await api(`/items/${id}`);
  const system = item.metadata.system;
  const mimetype = system.mimetype || "";
  let media;
  // A video plays from its 360p H.264 preview where preprocessing made one (any browser
  // plays it), else from the file itself.
  if (mimetype.startsWith("video/")) media = h("video", { src: item.preview || item.stream, controls: true, preload: "metadata", id: "player" });
  else if (mimetype.startsWith("image/")) media = h("img", { src: item.stream, alt: item.name, id: "image" });
  else media = h("p", {}, h("a", { href: item.stream }, "Download"), ` (${mimetype || "unknown type"})`);

  const location_ = system.location;
  const gps = location_ ? h("p", { id: "gps" }, `GPS: ${location_.latitude.toFixed(6)}, ${location_.longitude.toFixed(6)}`,
    location_.altitude !== undefined ? `, ${location_.altitude} m` : "") : null;

  const editor = h("textarea", { class: "user", id: "user-metadata", readonly: READ_ONLY, "aria-label": "user metadata (JSON)" },
    JSON.stringify(item.metadata.user, null, 2));
  const saved = h("span", { class: "muted", id: "saved", role: "status" });
  const save = READ_ONLY ? null : h("button", { class: "primary", id: "save", onclick: async () => {
    let value;
    try { value = JSON.parse(editor.value); } catch (error) { saved.textContent = "Not valid JSON: " + error.message; saved.className = "error"; return; }
    try {
      const updated = await api(`/items/${id}?replace=true`, { method: "PATCH", body: { metadata: { user: value } } });
      editor.value = JSON.stringify(updated.metadata.user, null, 2);
      saved.textContent = "Saved"; saved.className = "muted";
    } catch (error) { saved.textContent = error.message; saved.className = "error"; }
  } }, "Save");

  const jobs = h("table", { id: "jobs" }, h("tr", {}, h("th", {}, "job"), h("th", {}, "kind"), h("th", {}, "state"), h("th", {}, "attempts"), h("th", {}, "error"), h("th", {})),
    item.jobs.map((job) => h("tr", {}, h("td", {}, job.id), h("td", {}, job.kind), h("td", {}, job.state), h("td", {}, job.attempts),
      h("td", {}, job.error || ""), h("td", {}, retryButton(job)))));

  show(h("h1", {}, item.filename, " ", h("span", { class: "muted" }, `(${item.dataset}, ${item.state})`)),
    h("p", {}, h("a", { href: `#/d/${encodeURIComponent(item.dataset)}?folder=${encodeURIComponent(item.dir)}` }, "← " + item.dir)),
    h("div", { class: "item" }, h("div", { class: "media" }, media, gps),
      h("div", {}, h("h2", {}, "User metadata"), editor, h("p", {}, save, " ", saved),
        h("h2", {}, "Jobs"), jobs,
        h("h2", {}, "System metadata"), h("table", { id: "system" }, rows(system)))));
}

function retryButton(job) {
  if (READ_ONLY || job.state === "pending" || job.state === "running") return null;
  return h("button", { "data-job": job.id, onclick: async (event) => {
    event.target.disabled = true;
    try { await api(`/jobs/${job.id}/retry`, { method: "POST" }); event.target.textContent = "Queued"; }
    catch (error) { event.target.textContent = error.message; }
  } }, "Retry");
}

// -- jobs and errors --------------------------------------------------------------------

async function jobsPage(_, params) {
  const state = params.get("state") || "failed";
  const jobs = await api(`/jobs?state=${encodeURIComponent(state)}&limit=500`);
  const all = READ_ONLY || state !== "failed" ? null : h("button", { class: "primary", id: "retry-failed", onclick: async (event) => {
    const result = await api("/jobs/retry", { method: "POST" });
    event.target.textContent = `Queued ${result.requeued}`;
  } }, "Retry all failed");
  show(h("h1", {}, "Jobs"),
    h("p", {}, ["failed", "pending", "running", "done", "cancelled"].map((s) => [h("a", { href: `#/jobs?state=${s}` }, s), " "]), all),
    jobs.length ? h("table", { id: "job-list" }, h("tr", {}, ["job", "dataset", "file", "kind", "state", "attempts", "reason", ""].map((t) => h("th", {}, t))),
      jobs.map((job) => h("tr", {}, h("td", {}, job.id), h("td", {}, job.dataset || ""),
        h("td", {}, job.filename ? h("a", { href: `#/i/${job.item}` }, job.filename) : ""), h("td", {}, job.kind),
        h("td", {}, job.state), h("td", {}, job.attempts), h("td", {}, job.error || ""), h("td", {}, retryButton(job)))))
      : h("p", { class: "muted" }, `No ${state} jobs.`));
}

async function errorsPage(name) {
  const errors = await api(`/datasets/${encodeURIComponent(name)}/errors`);
  show(h("h1", {}, `Listing errors: ${name}`),
    errors.length ? h("table", {}, h("tr", {}, h("th", {}, "path"), h("th", {}, "reason"), h("th", {}, "at")),
      errors.map((e) => h("tr", {}, h("td", {}, e.path), h("td", {}, e.reason), h("td", {}, e.at)))) : h("p", {}, "None."));
}
