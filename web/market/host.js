// Host detail: /hosts/{peerId} -> GET /api/v1/hosts/{peerId}.
"use strict";

const peerId = decodeURIComponent(location.pathname.replace(/^\/hosts\/?/, "").replace(/\/$/, ""));

function runtimeName(kind) {
  return kind === "openclaw" ? "OpenClaw" : kind === "wasi" ? "WASI component" : String(kind);
}

function render(host) {
  const currency = host.prices && host.prices.currency;
  document.title = `Host ${fmt.short(host.peerId)} · Sparebox`;
  setText("host-title", fmt.short(host.peerId, 12, 6));
  document.getElementById("host-title").title = host.peerId;
  document.getElementById("deploy-here").href = "/deploy?host=" + encodeURIComponent(host.peerId);
  setChildren(
    document.getElementById("host-linked"),
    host.linked
      ? h("span", { class: "badge ok" }, "Linked to a marketplace account")
      : h("span", { class: "badge" }, "Not linked to an account"),
  );

  setText("free-cpu", fmt.cpu(res(host.free, "cpu_millis")));
  setText("free-memory", fmt.mib(res(host.free, "memory_mib")));
  setText("free-disk", fmt.mib(res(host.free, "disk_mib")));
  setText("free-slots", host.freeAgentSlots == null ? "–" : String(host.freeAgentSlots));
  setText("region", host.region || "not given");
  const first = host.firstSeen;
  setChildren(
    document.getElementById("first-seen"),
    first ? [h("time", { datetime: fmt.iso(first), title: fmt.date(first) }, `seen for ${fmt.duration(Date.now() / 1000 - first)}`)] : "–",
  );
  setChildren(document.getElementById("last-advert"), agoEl(host.timestamp || host.lastSeen));
  setChildren(document.getElementById("advert-expires"), host.expiresAt ? agoEl(host.expiresAt) : "–");
  setText("host-version", host.version || "–");

  const runtimes = host.runtimes || [];
  setChildren(
    document.getElementById("runtimes"),
    runtimes.length
      ? runtimes.map((r) => h("li", null, h("strong", null, runtimeName(r.kind)), r.version ? ` ${r.version}` : ""))
      : h("li", { class: "muted" }, "This host offers no runtime right now."),
  );

  const classes = (host.prices && host.prices.classes) || [];
  setChildren(
    document.getElementById("price-classes"),
    classes.length
      ? h(
          "table",
          { class: "stack-table" },
          h("caption", { class: "visually-hidden" }, "Price classes"),
          h("thead", null, h("tr", null, ["Class", "Runtime", "Up to CPU", "Up to memory", "Up to disk", "Price"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            null,
            classes.map((c) =>
              h(
                "tr",
                null,
                h("td", { "data-label": "Class" }, c.class),
                h("td", { "data-label": "Runtime" }, runtimeName(c.runtime)),
                h("td", { "data-label": "Up to CPU" }, fmt.cpu(res(c.max, "cpu_millis"))),
                h("td", { "data-label": "Up to memory" }, fmt.mib(res(c.max, "memory_mib"))),
                h("td", { "data-label": "Up to disk" }, fmt.mib(res(c.max, "disk_mib"))),
                h("td", { "data-label": "Price" }, fmt.perHour(res(c, "cents_per_hour"), currency)),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No price classes published."),
  );

  const models = (host.prices && host.prices.models) || [];
  setChildren(
    document.getElementById("models"),
    models.length
      ? h(
          "table",
          { class: "stack-table" },
          h("caption", { class: "visually-hidden" }, "Models and token prices"),
          h("thead", null, h("tr", null, h("th", { scope: "col" }, "Model"), h("th", { scope: "col" }, "Per 1,000 tokens"))),
          h(
            "tbody",
            null,
            models.map((m) =>
              h("tr", null, h("td", { "data-label": "Model" }, h("code", null, m.model)), h("td", { "data-label": "Per 1,000 tokens" }, fmt.money(res(m, "cents_per_1k_tokens"), currency))),
            ),
          ),
        )
      : h("p", { class: "muted" }, "This host provides no LLM models (WASI agents only, or bring your own)."),
  );

  const labels = Object.entries(host.labels || {});
  setChildren(
    document.getElementById("labels"),
    labels.length ? h("ul", { class: "tags" }, labels.map(([k, v]) => h("li", { class: "tag" }, v === "" ? k : `${k}=${v}`))) : h("p", { class: "muted" }, "No labels."),
  );

  setText("peer-id", host.peerId);
  const addrs = host.addresses || [];
  setChildren(
    document.getElementById("addresses"),
    addrs.length ? addrs.map((a) => h("li", null, a)) : h("li", { class: "muted" }, "No public addresses (reached through relays)."),
  );

  document.getElementById("host-detail").hidden = false;
  setText("host-loading", "");
}

async function load() {
  if (!peerId) {
    showMessage("page-error", "No host given. Pick one from the host list.");
    setText("host-loading", "");
    return;
  }
  try {
    render(await api("GET", "/api/v1/hosts/" + encodeURIComponent(peerId)));
    showMessage("page-error", "");
  } catch (e) {
    setText("host-loading", "");
    if (e.code === "unknown_host" || e.status === 404) {
      setText("host-title", fmt.short(peerId, 12, 6));
      showMessage("page-error", "This host is not on the network right now: its advert expired or it never advertised. Pick another one from the host list.");
      document.getElementById("host-detail").hidden = true;
    } else {
      showMessage("page-error", e.message);
    }
  }
}

load();
setInterval(() => {
  if (!document.hidden) load();
}, 30000);
