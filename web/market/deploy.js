// Deploy wizard: 1 runtime + name (+ component upload / OpenClaw details), 2 resources,
// 3 host, 4 budget -> prepare -> review -> sign with the browser key -> deploy.
"use strict";

const form = document.getElementById("deploy-form");
const steps = [1, 2, 3, 4].map((n) => document.getElementById(`step-${n}`));
const preselectedHost = queryParam("host");

let account = null;
let step = 1;
let artifact = null; // {sha256, size, fileName}
let uploading = null; // Promise while an upload runs
let prepared = null; // the /prepare response
let deployed = false;
let confirming = false;
let fileCounter = 0;

// Server field names -> the step that holds them.
const FIELD_STEPS = {
  runtime: 1,
  name: 1,
  component: 1,
  sha256: 1,
  model: 1,
  systemPrompt: 1,
  files: 1,
  wasi: 1,
  openclaw: 1,
  cpuMillis: 2,
  memoryMib: 2,
  resources: 2,
  host: 3,
  maxTotalCents: 4,
  deployerKey: 4,
};

// Server field names that have no input of their own.
const FIELD_ALIASES = { sha256: "component", "wasi.sha256": "component", wasi: "component", "openclaw.model": "model" };

function fieldKey(field) {
  // "resources.cpuMillis" -> "cpuMillis", "wasi.sha256" -> "component", "files[0].path" -> "files"
  const f = String(field || "");
  if (FIELD_ALIASES[f]) return FIELD_ALIASES[f];
  if (Forms.inputFor(form, f)) return f;
  if (f.startsWith("openclaw.") && Forms.inputFor(form, f.slice(9))) return f.slice(9);
  const last = f.split(".").pop();
  if (Forms.inputFor(form, last)) return last;
  return f.replace(/[[.].*$/, "");
}

function stepOfField(field) {
  const f = String(field || "");
  if (f.startsWith("files")) return 1;
  return FIELD_STEPS[fieldKey(f)] || FIELD_STEPS[f.split(".")[0]] || 4;
}

const runtime = () => (document.getElementById("runtime-openclaw").checked ? "openclaw" : "wasi");
const alertOf = (n) => $('[role="alert"]', steps[n - 1]);

// ---------------------------------------------------------------- navigation

function goTo(n, { focus = true } = {}) {
  step = n;
  steps.forEach((fs, i) => (fs.hidden = i + 1 !== n));
  for (const li of $$("#progress li")) {
    const s = Number(li.dataset.step);
    li.classList.toggle("done", s < n);
    if (s === n) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }
  if (focus) steps[n - 1].focus();
  if (n === 3) loadHosts();
  if (n === 4) {
    checkKey();
    loadCredit();
  }
}

/** Validate the inputs of one step with the browser's constraint checks. */
function checkStepInputs(n) {
  const fs = steps[n - 1];
  for (const el of $$("input, textarea, select", fs)) {
    if (el.closest("[hidden]")) continue;
    if (!el.checkValidity()) {
      el.reportValidity();
      return false;
    }
  }
  return true;
}

function clearStep(n) {
  Forms.clear(steps[n - 1]);
}

function stepError(n, message, fields = []) {
  const err = new ApiError("invalid", message, { fields });
  showDeployError(err, n);
}

/** Show an API error on the step that holds its fields (or on `fallbackStep`). */
function showDeployError(err, fallbackStep) {
  if (handleAuthError(err)) return;
  const fields = (err && err.fields) || [];
  const target = fields.length ? Math.min(...fields.map((f) => stepOfField(f.field))) : fallbackStep;
  steps.forEach((fs) => Forms.clear(fs));
  const unmatched = [];
  let first = null;
  for (const f of fields) {
    const input = Forms.inputFor(form, fieldKey(f.field));
    if (input) {
      Forms.markField(input, f.message);
      if (!first && stepOfField(f.field) === target) first = input;
    } else {
      unmatched.push(f.message);
    }
  }
  if (target !== step) goTo(target, { focus: false });
  const alert = alertOf(target);
  alert.textContent = [err.message, ...unmatched].join(" ");
  alert.hidden = false;
  if (err.code === "insufficient_credit") {
    alert.append(" ", h("a", { href: "/credit" }, "Buy credit"), " or lower the budget cap.");
  }
  if (first && !first.closest("[hidden]")) first.focus();
  else steps[target - 1].focus();
}

// ---------------------------------------------------------------- step 1

function syncRuntime() {
  const rt = runtime();
  document.getElementById("wasi-fields").hidden = rt !== "wasi";
  document.getElementById("openclaw-fields").hidden = rt !== "openclaw";
  document.getElementById("model").required = rt === "openclaw";
  if (rt === "openclaw") loadModelSuggestions();
}

let modelsLoaded = false;
async function loadModelSuggestions() {
  if (modelsLoaded) return;
  modelsLoaded = true;
  try {
    const q = preselectedHost ? null : "/api/v1/hosts?runtime=openclaw&per_page=50";
    const hosts = q ? (await api("GET", q)).hosts || [] : [await api("GET", "/api/v1/hosts/" + encodeURIComponent(preselectedHost))];
    const models = new Set();
    for (const host of hosts) for (const m of (host.prices && host.prices.models) || []) models.add(m.model);
    setChildren(
      document.getElementById("model-options"),
      Array.from(models)
        .sort()
        .map((m) => h("option", { value: m })),
    );
  } catch {
    modelsLoaded = false; // suggestions only; try again next time
  }
}

async function uploadComponent(file) {
  const info = document.getElementById("component-info");
  artifact = null;
  prepared = null;
  hideReview();
  clearStep(1);
  info.textContent = `Uploading ${file.name} (${fmt.bytes(file.size)})…`;
  try {
    const out = await api("POST", "/api/v1/artifacts", file, { contentType: "application/wasm" });
    artifact = { sha256: out.sha256, size: out.size ?? file.size, fileName: file.name };
    setChildren(info, `Uploaded ${file.name}: ${fmt.bytes(artifact.size)}, sha256 `, h("code", { class: "break" }, artifact.sha256));
    return artifact;
  } catch (e) {
    info.textContent = "The upload failed.";
    if (!e.fields || !e.fields.length) e.fields = [{ field: "component", message: e.message }];
    showDeployError(e, 1);
    return null;
  }
}

function addFileRow(path = "", content = "") {
  const i = fileCounter++;
  const row = h(
    "div",
    { class: "file-row" },
    h(
      "div",
      { class: "field" },
      h("label", { for: `file-path-${i}` }, "File name"),
      h("input", { id: `file-path-${i}`, type: "text", class: "file-path", required: true, autocomplete: "off", spellcheck: "false", placeholder: "e.g. AGENTS.md", value: path }),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: `file-content-${i}` }, "Content"),
      h("textarea", { id: `file-content-${i}`, class: "file-content", rows: "4" }, content),
    ),
    h("button", { type: "button", class: "secondary small remove-file", "aria-label": `Remove file ${i + 1}` }, "Remove"),
  );
  $(".remove-file", row).addEventListener("click", () => {
    row.remove();
    renumberFiles();
    invalidate();
  });
  document.getElementById("files").appendChild(row);
  renumberFiles();
  $("input", row).focus();
}

/** name="files[i].path" / "files[i].content" so server field errors land next to the right input. */
function renumberFiles() {
  $$("#files .file-row").forEach((row, i) => {
    $(".file-path", row).setAttribute("name", `files[${i}].path`);
    $(".file-content", row).setAttribute("name", `files[${i}].content`);
  });
}

function collectFiles() {
  return $$("#files .file-row")
    .map((row) => ({ path: $(".file-path", row).value.trim(), content: $(".file-content", row).value }))
    .filter((f) => f.path || f.content);
}

async function next1() {
  clearStep(1);
  if (!checkStepInputs(1)) return;
  const name = document.getElementById("name").value.trim();
  if (!/^[a-z][a-z0-9-]*$/.test(name)) {
    return stepError(1, "Check the agent name.", [{ field: "name", message: "Use lowercase letters, digits and hyphens, starting with a letter." }]);
  }
  if (runtime() === "wasi") {
    if (uploading) await uploading;
    if (!artifact) {
      const file = document.getElementById("component").files[0];
      if (file) await (uploading = uploadComponent(file).finally(() => (uploading = null)));
      if (!artifact) {
        if (!file) stepError(1, "Choose the component to run.", [{ field: "component", message: "Choose a .wasm component file." }]);
        return;
      }
    }
  } else {
    if (!document.getElementById("model").value.trim()) {
      return stepError(1, "Choose a model for the OpenClaw agent.", [{ field: "model", message: "Enter the model the agent uses." }]);
    }
    const bad = collectFiles().findIndex((f) => !f.path || f.path.startsWith("/") || f.path.split("/").includes(".."));
    if (bad >= 0) {
      return stepError(1, "Check the workspace files.", [{ field: `files[${bad}].path`, message: "Give a relative file name such as notes/todo.md." }]);
    }
  }
  goTo(2);
}

// ---------------------------------------------------------------- step 2

function resources() {
  return {
    cpuMillis: Math.round(Number(document.getElementById("cpu").value)),
    memoryMib: Math.round(Number(document.getElementById("memory").value)),
  };
}

function next2() {
  clearStep(2);
  if (!checkStepInputs(2)) return;
  const r = resources();
  const fields = [];
  if (!(r.cpuMillis >= 1)) fields.push({ field: "cpuMillis", message: "Enter millicores, e.g. 250." });
  if (!(r.memoryMib >= 1)) fields.push({ field: "memoryMib", message: "Enter MiB, e.g. 128." });
  if (fields.length) return stepError(2, "Check the resources.", fields);
  goTo(3);
}

// ---------------------------------------------------------------- step 3

let hostsSeq = 0;
async function loadHosts() {
  const seq = ++hostsSeq;
  const list = document.getElementById("host-list");
  const summary = document.getElementById("hosts-summary");
  const previous = selectedHost() || preselectedHost;
  const r = resources();
  summary.textContent = "Looking for hosts with room for this agent…";
  list.setAttribute("aria-busy", "true");
  try {
    const q = new URLSearchParams({ runtime: runtime(), min_cpu: String(r.cpuMillis), min_memory_mib: String(r.memoryMib), sort: "price", per_page: "50" });
    const data = await api("GET", "/api/v1/hosts?" + q);
    if (seq !== hostsSeq) return;
    const hosts = (data && data.hosts) || [];
    if (!hosts.length) {
      summary.textContent = "";
      setChildren(
        list,
        h(
          "div",
          { class: "empty-state" },
          h("p", null, `No host has room for a ${runtime() === "openclaw" ? "OpenClaw" : "WASI"} agent with ${fmt.cpu(r.cpuMillis)} and ${fmt.mib(r.memoryMib)} right now.`),
          h("p", null, "Lower the CPU or memory, try the other runtime, or refresh in a minute: hosts come and go."),
          h("button", { type: "button", class: "secondary", onclick: () => goTo(2) }, "Change resources"),
        ),
      );
      return;
    }
    summary.textContent = `${hosts.length} host${hosts.length === 1 ? "" : "s"} can run this agent, cheapest first.`;
    const group = h(
      "fieldset",
      { class: "radio-group host-choices" },
      h("legend", { class: "visually-hidden" }, "Host"),
      hosts.map((host, i) => {
        const id = `host-${i}`;
        const currency = host.prices && host.prices.currency;
        return h(
          "div",
          { class: "radio-card" },
          h("input", { type: "radio", name: "host", id, value: host.peerId, checked: host.peerId === previous }),
          h(
            "label",
            { for: id },
            h("strong", { class: "mono", title: host.peerId }, fmt.short(host.peerId, 10, 6)),
            host.region ? ` · ${host.region}` : "",
            h(
              "span",
              { class: "block" },
              h("strong", null, host.priceCentsPerHour == null ? "no price" : fmt.perHour(host.priceCentsPerHour, currency)),
              ` · free ${fmt.cpu(res(host.free, "cpu_millis"))}, ${fmt.mib(res(host.free, "memory_mib"))}`,
            ),
            h("span", { class: "hint block" }, "seen ", fmt.ago(host.lastSeen || host.timestamp), " · ", h("a", { href: "/hosts/" + encodeURIComponent(host.peerId), target: "_blank", rel: "noopener" }, "details")),
          ),
        );
      }),
    );
    setChildren(list, group);
    if (preselectedHost && previous === preselectedHost && !hosts.some((x) => x.peerId === preselectedHost)) {
      list.prepend(
        h(
          "p",
          { class: "notice" },
          `The host you picked (${fmt.short(preselectedHost)}) cannot take this agent: it does not offer this runtime or lacks the free capacity. Choose another, or go back and lower the resources.`,
        ),
      );
    }
  } catch (e) {
    if (seq !== hostsSeq) return;
    summary.textContent = "";
    setChildren(list);
    showDeployError(e, 3);
  } finally {
    if (seq === hostsSeq) list.removeAttribute("aria-busy");
  }
}

function selectedHost() {
  const el = $('input[name="host"]:checked', form);
  return el ? el.value : null;
}

function next3() {
  clearStep(3);
  if (!selectedHost()) {
    const alert = alertOf(3);
    alert.textContent = $('input[name="host"]', form) ? "Choose a host." : "There is no host to choose yet. Change the resources or refresh the list.";
    alert.hidden = false;
    const first = $('input[name="host"]', form);
    if (first) first.focus();
    return;
  }
  goTo(4);
}

// ---------------------------------------------------------------- step 4

let keyState = null;

async function checkKey() {
  const box = document.getElementById("key-check");
  const prepareBtn = document.getElementById("prepare");
  keyState = await KeyStore.status(account);
  if (!keyState.support.ok) {
    setChildren(box, h("strong", null, "This browser cannot sign offers. "), keyState.support.reason);
    box.className = "notice warn";
    prepareBtn.disabled = true;
  } else if (!keyState.registered) {
    const btn = h("button", { type: "button", class: "small", id: "deploy-register-key" }, keyState.record ? "Add this browser's key to my account" : "Create and register a key here");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      box.setAttribute("aria-busy", "true");
      try {
        await KeyStore.register(account);
        account = await currentAccount({ force: true });
      } catch (e) {
        if (handleAuthError(e)) return;
        box.append(h("p", { class: "form-alert", role: "alert" }, e.message));
      } finally {
        box.removeAttribute("aria-busy");
      }
      if (!$("p.form-alert", box)) await checkKey();
      else btn.disabled = false;
    });
    setChildren(
      box,
      h("p", null, h("strong", null, "You need a deployer key in this browser. "), "Offers are signed here with a key registered to your account; this browser has none yet."),
      h("p", { class: "cta-row" }, btn, h("a", { href: "/account" }, "Manage keys on the Account page")),
    );
    box.className = "notice warn";
    prepareBtn.disabled = true;
  } else {
    setChildren(box, "The offer will be signed with this browser's key ", h("code", { title: keyState.peerId }, fmt.short(keyState.peerId)), ".");
    box.className = "notice ok";
    prepareBtn.disabled = deployed;
  }
}

async function loadCredit() {
  try {
    const c = await api("GET", "/api/v1/credit");
    setText("available-credit", `Your credit: ${fmt.money(c.balanceCents)}.`);
  } catch {
    setText("available-credit", "");
  }
}

function buildPrepareBody() {
  const rt = runtime();
  const body = {
    host: selectedHost(),
    deployerKey: keyState && keyState.peerId,
    runtime: rt,
    name: document.getElementById("name").value.trim(),
    resources: resources(),
    maxTotalCents: dollarsToCents(document.getElementById("max-total").value),
  };
  if (rt === "wasi") {
    body.wasi = { sha256: artifact && artifact.sha256 };
  } else {
    const openclaw = { model: document.getElementById("model").value.trim() };
    const prompt = document.getElementById("system-prompt").value;
    if (prompt.trim()) openclaw.systemPrompt = prompt;
    const files = collectFiles();
    if (files.length) openclaw.files = files;
    body.openclaw = openclaw;
  }
  return body;
}

async function prepare() {
  const btn = document.getElementById("prepare");
  clearStep(4);
  hideReview();
  if (!checkStepInputs(4)) return;
  const cents = dollarsToCents(document.getElementById("max-total").value);
  if (!Number.isFinite(cents) || cents < 1) {
    return stepError(4, "Check the budget cap.", [{ field: "maxTotalCents", message: "Enter a budget in dollars, e.g. 2.00." }]);
  }
  if (!keyState || !keyState.registered) return checkKey();
  btn.disabled = true;
  btn.textContent = "Preparing…";
  try {
    prepared = await api("POST", "/api/v1/deployments/prepare", buildPrepareBody());
    showReview(prepared);
  } catch (e) {
    prepared = null;
    showDeployError(e, 4);
  } finally {
    btn.disabled = deployed;
    btn.textContent = "Prepare offer";
  }
}

function specText(spec) {
  if (spec === null || spec === undefined) return "(none)";
  if (typeof spec === "string") return spec;
  return JSON.stringify(spec, null, 2);
}

let expiryTimer = null;
function showReview(p) {
  const r = p.review || {};
  const currency = r.currency || "usd";
  const res0 = r.resources || {};
  setText("review-host", r.host || selectedHost());
  setText("review-runtime", (r.runtime || runtime()) === "openclaw" ? "OpenClaw agent" : "WASI component");
  setText("review-name", r.name || "");
  setText("review-resources", `${fmt.cpu(res(res0, "cpu_millis"))} (${res(res0, "cpu_millis")} millicores), ${fmt.mib(res(res0, "memory_mib"))}`);
  setText("review-price", fmt.perHour(r.centsPerHour, currency));
  setText("review-tokens", r.centsPer1kTokens ? `${fmt.money(r.centsPer1kTokens, currency)} per 1,000 tokens` : "none");
  setText("review-cap", fmt.money(r.maxTotalCents, currency));
  setText("review-spec", specText(r.spec));
  const updateExpiry = () => {
    const left = (Number(r.expiresAt) || 0) - Date.now() / 1000;
    setText("review-expires", r.expiresAt ? (left > 0 ? `${fmt.date(r.expiresAt)} (in ${fmt.duration(left)})` : "expired: prepare the offer again") : "–");
    document.getElementById("confirm-deploy").disabled = deployed || confirming || Boolean(r.expiresAt && left <= 0);
  };
  clearInterval(expiryTimer);
  updateExpiry();
  expiryTimer = setInterval(updateExpiry, 1000);
  showMessage("confirm-error", "");
  setText("confirm-status", "");
  const review = document.getElementById("review");
  review.hidden = false;
  review.focus();
}

function hideReview() {
  clearInterval(expiryTimer);
  document.getElementById("review").hidden = true;
}

/** Anything edited after "Prepare offer" makes the prepared offer stale. */
function invalidate() {
  if (deployed) return;
  if (prepared) {
    prepared = null;
    hideReview();
  }
}

async function confirmDeploy() {
  const btn = document.getElementById("confirm-deploy");
  if (!prepared || deployed || confirming) return;
  showMessage("confirm-error", "");
  confirming = true;
  btn.disabled = true;
  setText("confirm-status", "Signing the offer and sending it to the host…");
  try {
    const signature = await KeyStore.sign(prepared.signing, account.id);
    const out = await api("POST", "/api/v1/deployments", { offerId: prepared.offerId, signature });
    deployed = true;
    setText("confirm-status", "");
    showResult(out);
  } catch (e) {
    setText("confirm-status", "");
    if (handleAuthError(e)) return;
    if (e.fields && e.fields.length) {
      showDeployError(e, 4);
    } else {
      const hint = e.status === 409 ? " The host refused the offer; choose another host or change the offer, then prepare it again." : "";
      showMessage("confirm-error", `${e.message}${e.code && e.status === 409 ? ` (${e.code})` : ""}${hint}`);
    }
    btn.disabled = false;
  } finally {
    confirming = false;
  }
}

function showResult(out) {
  const d = (out && out.deployment) || {};
  clearInterval(expiryTimer);
  document.getElementById("confirm-deploy").disabled = true;
  document.getElementById("prepare").disabled = true;
  for (const b of $$("#back-4, #deploy-form .step-actions button")) b.disabled = true;
  const body = document.getElementById("result-body");
  const token = out && out.apiToken;
  setChildren(
    body,
    h(
      "p",
      null,
      "Agent ",
      h("code", { class: "break", id: "result-agent-id" }, d.agentId || "?"),
      d.name ? ` (${d.name})` : "",
      " is ",
      h("span", { class: `badge state state-${d.state || "deploying"}` }, d.state || "deploying"),
      d.host ? [" on host ", h("code", { title: d.host }, fmt.short(d.host))] : "",
      ".",
    ),
    h("p", { class: "cta-row" }, h("a", { class: "button", href: "/agents" }, "Go to My agents"), h("a", { href: "/deploy" }, "Deploy another agent")),
    token
      ? h(
          "div",
          { class: "token-box" },
          h("h3", null, "Agent API token"),
          h("p", null, "Programs use this token to talk to your agent through its API. It is shown only this once: copy it now and keep it somewhere safe."),
          h("p", { class: "token-line" }, h("code", { class: "break", id: "api-token" }, token), " ", copyButton(() => token)),
        )
      : null,
  );
  const result = document.getElementById("deploy-result");
  result.hidden = false;
  result.focus();
  result.scrollIntoView({ block: "start" });
}

// ---------------------------------------------------------------- start

function wire() {
  for (const r of $$('input[name="runtime"]')) {
    r.addEventListener("change", () => {
      syncRuntime();
      invalidate();
    });
  }
  document.getElementById("component").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    artifact = null;
    if (file) uploading = uploadComponent(file).finally(() => (uploading = null));
  });
  document.getElementById("add-file").addEventListener("click", () => addFileRow());
  document.getElementById("next-1").addEventListener("click", next1);
  document.getElementById("next-2").addEventListener("click", next2);
  document.getElementById("next-3").addEventListener("click", next3);
  document.getElementById("back-2").addEventListener("click", () => goTo(1));
  document.getElementById("back-3").addEventListener("click", () => goTo(2));
  document.getElementById("back-4").addEventListener("click", () => goTo(3));
  document.getElementById("refresh-hosts").addEventListener("click", loadHosts);
  document.getElementById("prepare").addEventListener("click", prepare);
  document.getElementById("confirm-deploy").addEventListener("click", confirmDeploy);

  // Enter in a text input: act like the step's main button instead of submitting the form.
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (step === 1) next1();
    else if (step === 2) next2();
    else if (step === 3) next3();
    else if (!prepared) prepare();
  });
  form.addEventListener("input", (ev) => {
    if (ev.target.id !== "component") invalidate();
  });
  form.addEventListener("change", (ev) => {
    if (ev.target.name === "host") invalidate();
  });
}

async function preselect() {
  const rt = queryParam("runtime");
  if (rt === "openclaw") document.getElementById("runtime-openclaw").checked = true;
  if (!preselectedHost) return;
  const notice = document.getElementById("host-notice");
  try {
    const host = await api("GET", "/api/v1/hosts/" + encodeURIComponent(preselectedHost));
    const kinds = (host.runtimes || []).map((r) => r.kind);
    if (!rt && kinds.length === 1) {
      document.getElementById(kinds[0] === "openclaw" ? "runtime-openclaw" : "runtime-wasi").checked = true;
      syncRuntime();
    }
    setChildren(
      notice,
      "Deploying to host ",
      h("a", { href: "/hosts/" + encodeURIComponent(preselectedHost), class: "mono", title: preselectedHost }, fmt.short(preselectedHost)),
      kinds.length ? ` (offers ${kinds.map((k) => (k === "openclaw" ? "OpenClaw" : "WASI")).join(" and ")})` : "",
      ". You can pick another in step 3.",
    );
  } catch {
    setChildren(notice, `The host ${fmt.short(preselectedHost)} is not on the network right now. You can pick another in step 3.`);
  }
  notice.hidden = false;
}

(async () => {
  wire();
  syncRuntime();
  account = await requireSession();
  await preselect();
})().catch(showPageError);
