// Host search: the filter form <-> the page URL (same parameter names and units as the API,
// so a copied URL reproduces the results) -> GET /api/v1/hosts.
"use strict";

const PER_PAGE = 20;
const form = document.getElementById("host-filters");
const results = document.getElementById("results");
const summary = document.getElementById("results-summary");
const pager = document.getElementById("pager");
let loadSeq = 0;

// URL/API units: min_cpu millicores, min_memory_mib MiB, max_price cents.
// Form units: cores, MiB, dollars.
function paramsFromUrl() {
  const q = new URLSearchParams(location.search);
  const p = {};
  for (const k of ["runtime", "min_cpu", "min_memory_mib", "max_price", "label", "seen_within_secs", "sort", "page"]) {
    const v = q.get(k);
    if (v !== null && v !== "") p[k] = v;
  }
  return p;
}

function fillForm(p) {
  form.elements.runtime.value = p.runtime || "";
  form.elements.min_cpu.value = p.min_cpu ? trimNumber(Number(p.min_cpu) / 1000, 3) : "";
  form.elements.min_memory_mib.value = p.min_memory_mib || "";
  form.elements.max_price.value = p.max_price ? (Number(p.max_price) / 100).toFixed(2) : "";
  form.elements.label.value = p.label || "";
  form.elements.seen_within_secs.value = p.seen_within_secs || "";
  form.elements.sort.value = p.sort || "price";
}

function paramsFromForm() {
  const e = form.elements;
  const p = {};
  const errors = [];
  if (e.runtime.value) p.runtime = e.runtime.value;
  if (e.min_cpu.value !== "") {
    const cores = Number(e.min_cpu.value);
    if (!(cores >= 0)) errors.push({ field: "min_cpu", message: "Enter a number of cores, e.g. 0.5." });
    else if (cores > 0) p.min_cpu = String(Math.round(cores * 1000));
  }
  if (e.min_memory_mib.value !== "") {
    const mib = Number(e.min_memory_mib.value);
    if (!(mib >= 0)) errors.push({ field: "min_memory_mib", message: "Enter memory in MiB, e.g. 512." });
    else if (mib > 0) p.min_memory_mib = String(Math.round(mib));
  }
  if (e.max_price.value !== "") {
    const cents = dollarsToCents(e.max_price.value);
    if (!Number.isFinite(cents)) errors.push({ field: "max_price", message: "Enter dollars per hour, e.g. 0.50." });
    else p.max_price = String(cents);
  }
  const label = e.label.value.trim();
  if (label) {
    if (!/^[^=\s]+(=.*)?$/.test(label)) errors.push({ field: "label", message: "Use key=value, e.g. region=eu (or just a key)." });
    else p.label = label;
  }
  if (e.seen_within_secs.value) p.seen_within_secs = e.seen_within_secs.value;
  if (e.sort.value && e.sort.value !== "price") p.sort = e.sort.value;
  if (errors.length) throw new ApiError("invalid", "Some filters need fixing.", { fields: errors });
  return p;
}

function toQuery(p) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(p)) if (v !== undefined && v !== "") q.set(k, v);
  return q.toString();
}

function runtimesText(host) {
  return (host.runtimes || []).map((r) => (r.kind === "openclaw" ? "OpenClaw" : r.kind === "wasi" ? "WASI" : r.kind)).join(", ") || "–";
}

function labelsList(labels) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h("ul", { class: "tags" }, entries.map(([k, v]) => h("li", { class: "tag" }, v === "" ? k : `${k}=${v}`)));
}

function hostRow(host) {
  const href = "/hosts/" + encodeURIComponent(host.peerId);
  const currency = host.prices && host.prices.currency;
  return h(
    "tr",
    { dataset: { peerId: host.peerId } },
    h(
      "td",
      { "data-label": "Host" },
      h("a", { href, class: "mono", title: host.peerId }, fmt.short(host.peerId, 10, 6)),
      host.region ? h("span", { class: "muted small block" }, host.region) : null,
    ),
    h("td", { "data-label": "Price" }, host.priceCentsPerHour == null ? h("span", { class: "muted" }, "no price") : fmt.perHour(host.priceCentsPerHour, currency)),
    h("td", { "data-label": "Free CPU" }, fmt.cpu(res(host.free, "cpu_millis"))),
    h("td", { "data-label": "Free memory" }, fmt.mib(res(host.free, "memory_mib"))),
    h("td", { "data-label": "Runtimes" }, runtimesText(host)),
    h("td", { "data-label": "Labels" }, labelsList(host.labels)),
    h("td", { "data-label": "Last seen" }, agoEl(host.lastSeen || host.timestamp)),
  );
}

// Only touch the live region when the text changes, so screen readers are not re-told.
function setSummary(text) {
  if (summary.textContent !== text) summary.textContent = text;
}

function renderResults(data, params) {
  const hosts = (data && data.hosts) || [];
  const total = Number(data && data.total) || hosts.length;
  const page = Number(data && data.page) || Number(params.page) || 1;
  const perPage = Number(data && data.perPage) || PER_PAGE;
  const pages = Math.max(1, Math.ceil(total / perPage));

  if (!hosts.length) {
    setSummary("No hosts match.");
    setChildren(
      results,
      h(
        "div",
        { class: "empty-state" },
        h("p", null, "No hosts match. Loosen the filters, or run ", h("code", null, "sparebox node"), " on a spare machine."),
        Object.keys(params).some((k) => k !== "sort" && k !== "page")
          ? h("button", { type: "button", class: "secondary", onclick: resetFilters }, "Clear all filters")
          : h("a", { href: "/host" }, "How to offer your machine"),
      ),
    );
    pager.hidden = true;
    return;
  }

  setSummary(`${total} host${total === 1 ? "" : "s"} found${pages > 1 ? `, page ${page} of ${pages}` : ""}.`);
  setChildren(
    results,
    h(
      "table",
      { class: "stack-table hosts-table" },
      h("caption", { class: "visually-hidden" }, "Hosts matching the filters"),
      h(
        "thead",
        null,
        h("tr", null, ["Host", "Price", "Free CPU", "Free memory", "Runtimes", "Labels", "Last seen"].map((c) => h("th", { scope: "col" }, c))),
      ),
      h("tbody", null, hosts.map(hostRow)),
    ),
  );
  pager.hidden = pages <= 1;
  setText("page-info", `Page ${page} of ${pages}`);
  document.getElementById("prev-page").disabled = page <= 1;
  document.getElementById("next-page").disabled = page >= pages;
  pager.dataset.page = String(page);
}

async function load({ fill = true } = {}) {
  const seq = ++loadSeq;
  const params = paramsFromUrl();
  if (fill) {
    fillForm(params);
    summary.textContent = "Loading hosts…";
  }
  results.setAttribute("aria-busy", "true");
  try {
    const data = await api("GET", "/api/v1/hosts?" + toQuery({ ...params, sort: params.sort || "price", per_page: String(PER_PAGE) }));
    if (seq !== loadSeq) return;
    if (fill) Forms.clear(form);
    renderResults(data, params);
  } catch (e) {
    if (seq !== loadSeq) return;
    summary.textContent = "";
    setChildren(results);
    pager.hidden = true;
    Forms.showError(form, e, { fieldMap: { min_memory: "min_memory_mib", seen_within: "seen_within_secs" } });
  } finally {
    if (seq === loadSeq) results.removeAttribute("aria-busy");
  }
}

function navigate(params) {
  const q = toQuery(params);
  history.pushState(null, "", location.pathname + (q ? "?" + q : ""));
  load();
}

function resetFilters() {
  form.reset();
  navigate({});
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  Forms.clear(form);
  try {
    navigate(paramsFromForm()); // a new filter starts at page 1
  } catch (e) {
    Forms.showError(form, e);
  }
});
form.elements.sort.addEventListener("change", () => form.requestSubmit());
document.getElementById("reset-filters").addEventListener("click", resetFilters);

function goToPage(delta) {
  const params = paramsFromUrl();
  const page = Math.max(1, (Number(pager.dataset.page) || 1) + delta);
  if (page === 1) delete params.page;
  else params.page = String(page);
  navigate(params);
  document.getElementById("results-h").scrollIntoView({ block: "start" });
}
document.getElementById("prev-page").addEventListener("click", () => goToPage(-1));
document.getElementById("next-page").addEventListener("click", () => goToPage(1));

window.addEventListener("popstate", () => load());
load();
// Keep "last seen" and capacity fresh without touching what the user is typing.
setInterval(() => {
  if (!document.hidden) load({ fill: false });
}, 30000);
