// Sparebox marketplace: shared code loaded by every page (before the page's own script).
// Plain ES2022, no framework, no build step, no external resources.
//
// Globals defined here (used by the per-page scripts):
//   api(method, path, body, opts)      JSON fetch with CSRF handling; throws ApiError
//   ApiError                           {code, message, fields, status}
//   currentAccount({force})            the signed-in account or null (cached)
//   requireSession()                   the account, or redirect to /signin?next=...
//   handleAuthError(err)               redirect on 401 no_session; returns true if it did
//   h(tag, attrs, ...children)         small DOM builder (text is never parsed as HTML)
//   $(sel, root) / $$(sel, root)       querySelector helpers
//   fmt.*                              money / time / size formatting
//   Forms.*                            server error display next to inputs
//   KeyStore.*                         browser deployer key (IndexedDB, non-extractable Ed25519)
//   Bytes.*                            base64 / hex helpers
//   openEvents(handlers)               EventSource('/api/v1/events') with named handlers
//   setupBuyCredit(form)               the "buy credit" form (account and credit pages)
"use strict";

// ---------------------------------------------------------------- DOM helpers

function $(sel, root = document) {
  return root.querySelector(sel);
}

function $$(sel, root = document) {
  return Array.from(root.querySelectorAll(sel));
}

/**
 * Build an element. attrs: {class, text, dataset: {...}, on<event>: fn, hidden: bool, ...attributes}.
 * Children: strings (as text), nodes, arrays, null/undefined/false (skipped).
 */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  appendChildren(el, children);
  return el;
}

function appendChildren(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) appendChildren(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
function setChildren(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
}

/** Set text on an element (by id or element) if it exists. */
function setText(target, text) {
  const el = typeof target === "string" ? document.getElementById(target) : target;
  if (el) el.textContent = text;
  return el;
}

function queryParam(name) {
  return new URLSearchParams(location.search).get(name);
}

/** A `next` value is only followed when it is a path on this site. */
function safeNext(next, fallback = "/account") {
  if (typeof next === "string" && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\")) {
    return next;
  }
  return fallback;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(code, message, { status = 0, fields = null } = {}) {
    super(message || "Something went wrong.");
    this.name = "ApiError";
    this.code = code || "error";
    this.status = status;
    this.fields = Array.isArray(fields) ? fields : null;
  }
}

const CSRF_KEY = "sparebox.csrf";
let csrfToken = null;
try {
  csrfToken = sessionStorage.getItem(CSRF_KEY);
} catch {
  csrfToken = null;
}

function setCsrfToken(token) {
  csrfToken = token || null;
  try {
    if (csrfToken) sessionStorage.setItem(CSRF_KEY, csrfToken);
    else sessionStorage.removeItem(CSRF_KEY);
  } catch {
    // storage may be disabled; the in-memory copy still works for this page
  }
}

async function errorFromResponse(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const e = body && body.error;
  if (e && typeof e === "object") {
    return new ApiError(e.code, e.message || defaultMessage(res.status), { status: res.status, fields: e.fields });
  }
  return new ApiError(`http_${res.status}`, defaultMessage(res.status), { status: res.status });
}

function defaultMessage(status) {
  if (status === 401) return "Please sign in.";
  if (status === 403) return "You are not allowed to do that.";
  if (status === 404) return "Not found.";
  if (status === 429) return "Too many attempts. Wait a minute and try again.";
  if (status >= 500) return `The marketplace had a problem (HTTP ${status}). Try again in a moment.`;
  return `The request failed (HTTP ${status}).`;
}

/**
 * Call the marketplace API.
 * body: a plain object (sent as JSON), or a Blob/File/ArrayBuffer/Uint8Array (sent raw with
 * opts.contentType, default application/octet-stream).
 * Returns the parsed JSON (or null for an empty body). Throws ApiError.
 */
async function api(method, path, body, opts = {}) {
  method = method.toUpperCase();
  const safe = method === "GET" || method === "HEAD";
  if (!safe && !csrfToken && !opts.noCsrf) await refreshCsrf();

  const headers = { accept: "application/json" };
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    headers["content-type"] = opts.contentType || "application/octet-stream";
    payload = body;
  } else if (body !== undefined && body !== null) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (!safe && csrfToken) headers["x-csrf-token"] = csrfToken;

  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: "same-origin", signal: opts.signal });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network", "Could not reach the marketplace. Check your connection and try again.");
  }

  if (!res.ok) {
    const err = await errorFromResponse(res);
    // A stale CSRF token (new session in another tab): fetch a fresh one and retry once.
    if (err.code === "csrf" && !safe && !opts.retried) {
      setCsrfToken(null);
      await refreshCsrf();
      if (csrfToken) return api(method, path, body, { ...opts, retried: true });
    }
    if (err.status === 401) setCsrfToken(null);
    throw err;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("bad_response", "The marketplace sent a response this page could not read.", { status: res.status });
  }
}

async function refreshCsrf() {
  try {
    await currentAccount({ force: true });
  } catch {
    // leave the token unset; the request will fail with a clear error
  }
}

// ---------------------------------------------------------------- session

let accountPromise = null;

/** The signed-in account (GET /api/v1/account), or null when signed out. Cached per page. */
function currentAccount({ force = false } = {}) {
  if (!accountPromise || force) {
    accountPromise = api("GET", "/api/v1/account")
      .then((a) => {
        if (a && a.csrfToken) setCsrfToken(a.csrfToken);
        return a;
      })
      .catch((e) => {
        if (e.status === 401) return null;
        accountPromise = null; // do not cache transient failures
        throw e;
      });
  }
  return accountPromise;
}

function signInUrl() {
  return "/signin?next=" + encodeURIComponent(location.pathname + location.search);
}

/** Resolves to the account; when signed out, redirects to the sign-in page and never resolves. */
async function requireSession() {
  const account = await currentAccount();
  if (!account) {
    location.assign(signInUrl());
    return new Promise(() => {});
  }
  return account;
}

/** On 401 (no_session), go to the sign-in page. Returns true when it redirected. */
function handleAuthError(err) {
  if (err && err.status === 401 && err.code !== "bad_credentials") {
    location.assign(signInUrl());
    return true;
  }
  return false;
}

async function signOut() {
  try {
    await api("DELETE", "/api/v1/sessions");
  } catch {
    // signed out either way
  }
  setCsrfToken(null);
  location.assign("/");
}

// ---------------------------------------------------------------- header

const NAV_LINKS = [
  { href: "/hosts", label: "Hosts" },
  { href: "/deploy", label: "Deploy" },
  { href: "/agents", label: "My agents" },
  { href: "/host", label: "Host console" },
  { href: "/account", label: "Account" },
];

function isCurrent(href) {
  const p = location.pathname;
  return p === href || p.startsWith(href + "/");
}

function renderHeader(account) {
  const header = document.getElementById("site-header");
  if (!header) return;
  const links = NAV_LINKS.map((l) =>
    h("li", null, h("a", { href: l.href, "aria-current": isCurrent(l.href) ? "page" : null }, l.label)),
  );
  let session;
  if (account) {
    session = h(
      "div",
      { class: "session" },
      h("span", { class: "session-email", title: "Signed in" }, account.email || "Signed in"),
      h("button", { type: "button", class: "button secondary small", onclick: signOut }, "Sign out"),
    );
  } else {
    const next = location.pathname.startsWith("/sign") ? "" : "?next=" + encodeURIComponent(location.pathname + location.search);
    session = h(
      "div",
      { class: "session" },
      h("a", { href: "/signin" + next }, "Sign in"),
      h("a", { href: "/signup" + next, class: "button small" }, "Sign up"),
    );
  }
  setChildren(
    header,
    h(
      "div",
      { class: "site-header-inner" },
      h("a", { href: "/", class: "brand", "aria-label": "Sparebox home" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "▣"), " Sparebox"),
      h("nav", { class: "nav", "aria-label": "Main" }, h("ul", { class: "nav-links" }, links)),
      session,
    ),
  );
}

document.addEventListener("DOMContentLoaded", () => {
  renderHeader(null);
  currentAccount()
    .then(renderHeader)
    .catch(() => renderHeader(null));
});

// ---------------------------------------------------------------- formatting

const fmt = {
  /** cents → "$12.34" (negative: "−$1.00"). */
  money(cents, currency = "usd") {
    if (cents === null || cents === undefined || Number.isNaN(Number(cents))) return "–";
    const n = Number(cents);
    const sym = String(currency || "usd").toLowerCase() === "usd" ? "$" : String(currency).toUpperCase() + " ";
    const abs = (Math.abs(n) / 100).toFixed(2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (n < 0 ? "−" : "") + sym + abs;
  },
  /** cents per hour → "$0.12/h" */
  perHour(cents, currency) {
    if (cents === null || cents === undefined) return "–";
    return fmt.money(cents, currency) + "/h";
  },
  /** Seconds → "12 s", "4 min", "3 h", "2 d". */
  duration(secs) {
    secs = Math.max(0, Math.round(Number(secs) || 0));
    if (secs < 60) return `${secs} s`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h`;
    return `${Math.floor(secs / 86400)} d`;
  },
  /** Unix seconds → "12 s ago" ("in 4 min" for the future). */
  ago(unix) {
    if (!unix) return "never";
    const d = Math.round(Date.now() / 1000 - Number(unix));
    if (Math.abs(d) < 1) return "just now";
    return d >= 0 ? `${fmt.duration(d)} ago` : `in ${fmt.duration(-d)}`;
  },
  /** Unix seconds → local date and time. */
  date(unix) {
    if (!unix) return "–";
    return new Date(Number(unix) * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  },
  /** Unix seconds → ISO string for <time datetime>. */
  iso(unix) {
    return unix ? new Date(Number(unix) * 1000).toISOString() : "";
  },
  /** millicores → "0.25 CPU" */
  cpu(millis) {
    if (millis === null || millis === undefined) return "–";
    const cores = Number(millis) / 1000;
    return `${trimNumber(cores, 2)} CPU`;
  },
  /** MiB → "512 MiB" / "1.5 GiB" */
  mib(mib) {
    if (mib === null || mib === undefined) return "–";
    const n = Number(mib);
    return n >= 1024 ? `${trimNumber(n / 1024, 1)} GiB` : `${Math.round(n)} MiB`;
  },
  bytes(n) {
    n = Number(n) || 0;
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${trimNumber(n / 1024, 1)} KiB`;
    return `${trimNumber(n / 1024 / 1024, 1)} MiB`;
  },
  int(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  },
  /** "12D3KooWAbc…xyz9" */
  short(id, head = 8, tail = 4) {
    id = String(id || "");
    return id.length > head + tail + 1 ? `${id.slice(0, head)}…${id.slice(-tail)}` : id;
  },
};

function trimNumber(n, digits) {
  return Number(n.toFixed(digits)).toString();
}

/** A <time> element showing "12 s ago", kept fresh by refreshTimes(). */
function agoEl(unix) {
  return h("time", { datetime: fmt.iso(unix), title: fmt.date(unix), dataset: { ago: String(unix || 0) } }, fmt.ago(unix));
}

function refreshTimes() {
  for (const el of $$("time[data-ago]")) {
    const t = Number(el.dataset.ago);
    el.textContent = fmt.ago(t);
  }
}
setInterval(refreshTimes, 5000);

// Adverts and Resources use snake_case keys, newer views camelCase: read either.
function res(r, key) {
  if (!r) return undefined;
  const camel = key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  return r[key] ?? r[camel];
}

// ---------------------------------------------------------------- forms

const Forms = {
  /** Remove the error messages and aria-invalid marks that showErrors added. */
  clear(form) {
    for (const el of $$(".field-error", form)) el.remove();
    for (const el of $$("[aria-invalid]", form)) {
      el.removeAttribute("aria-invalid");
      const ids = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter((id) => id && !id.endsWith("-error"));
      if (ids.length) el.setAttribute("aria-describedby", ids.join(" "));
      else el.removeAttribute("aria-describedby");
    }
    const alert = Forms.alertFor(form);
    if (alert) {
      alert.textContent = "";
      alert.hidden = true;
    }
  },

  /** The form's role=alert element (created at the end of the form when missing). */
  alertFor(form) {
    let alert = $('[role="alert"]', form);
    if (!alert && form) {
      alert = h("p", { class: "form-alert", role: "alert", hidden: true });
      form.appendChild(alert);
    }
    return alert;
  },

  /** Find the input for a server field name (name attribute; fieldMap renames). */
  inputFor(form, field, fieldMap = {}) {
    const name = fieldMap[field] || field;
    const scope = form || document;
    const byName = $$("[name]", scope).filter((el) => el.getAttribute("name") === name);
    return byName[0] || null;
  },

  /** Mark one input invalid with a message shown right after it (or after its group). */
  markField(input, message) {
    const key = (input.id || input.getAttribute("name") || "field").replace(/[^A-Za-z0-9_-]/g, "-");
    const errId = `${key}-error`;
    let p = document.getElementById(errId);
    if (!p) {
      p = h("p", { id: errId, class: "field-error" });
      // radios and checkboxes: put the message after their fieldset/group
      const anchor =
        input.type === "radio" || input.type === "checkbox"
          ? input.closest("fieldset, .radio-group") || input.parentElement
          : input.closest(".field") || input;
      if (anchor === input) input.insertAdjacentElement("afterend", p);
      else anchor.appendChild(p);
    }
    p.textContent = message;
    const targets = input.type === "radio" && input.name ? $$(`input[type=radio][name="${CSS.escape(input.name)}"]`) : [input];
    for (const t of targets) {
      t.setAttribute("aria-invalid", "true");
      const ids = new Set((t.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean));
      ids.add(errId);
      t.setAttribute("aria-describedby", Array.from(ids).join(" "));
    }
  },

  /**
   * Show an error: the message in the form's role=alert, each `fields` entry next to its input.
   * Field errors without a matching input are appended to the alert text.
   * Returns the list of field names that were shown next to inputs.
   */
  showError(form, err, { fieldMap = {}, alert = null } = {}) {
    const alertEl = alert || Forms.alertFor(form);
    const shown = [];
    const unmatched = [];
    for (const f of (err && err.fields) || []) {
      const input = Forms.inputFor(form, f.field, fieldMap);
      if (input) {
        Forms.markField(input, f.message);
        shown.push(f.field);
      } else {
        unmatched.push(f.message);
      }
    }
    const message = (err && err.message) || "Something went wrong.";
    if (alertEl) {
      alertEl.textContent = [message, ...unmatched].join(" ");
      alertEl.hidden = false;
    }
    const first = shown.length ? Forms.inputFor(form, shown[0], fieldMap) : null;
    if (first && typeof first.focus === "function") first.focus();
    return shown;
  },

  /**
   * Handle a form's submit: clears errors, disables the submit button while `handler(form)` runs,
   * shows the error (unless the handler redirected on 401).
   */
  bind(form, handler, options = {}) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      Forms.clear(form);
      const buttons = $$('button[type="submit"], button:not([type])', form);
      buttons.forEach((b) => (b.disabled = true));
      form.setAttribute("aria-busy", "true");
      try {
        await handler(form, ev);
      } catch (err) {
        if (!(options.redirectOn401 !== false && handleAuthError(err))) Forms.showError(form, err, options);
      } finally {
        buttons.forEach((b) => (b.disabled = false));
        form.removeAttribute("aria-busy");
      }
    });
  },
};

/** Show a message in a status / alert element (hidden when empty). */
function showMessage(el, text) {
  if (typeof el === "string") el = document.getElementById(el);
  if (!el) return;
  el.textContent = text || "";
  el.hidden = !text;
}

/** Show an error on the page's main alert (`#page-error`). */
function showPageError(err) {
  if (handleAuthError(err)) return;
  showMessage("page-error", (err && err.message) || String(err));
}

/** A copy-to-clipboard button for `getText()`. */
function copyButton(getText, label = "Copy") {
  const btn = h("button", { type: "button", class: "button secondary small copy" }, label);
  btn.addEventListener("click", async () => {
    const text = typeof getText === "function" ? getText() : String(getText);
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "Copied";
    } catch {
      btn.textContent = "Select and copy";
    }
    setTimeout(() => (btn.textContent = label), 2000);
  });
  return btn;
}

/** Dollars string from an input → integer cents (NaN when invalid). */
function dollarsToCents(value) {
  const s = String(value ?? "").trim().replace(/^\$/, "");
  if (!/^\d+(\.\d{0,2})?$|^\.\d{1,2}$/.test(s)) return NaN;
  return Math.round(Number(s) * 100);
}

// ---------------------------------------------------------------- bytes

const Bytes = {
  toBase64(bytes) {
    bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin);
  },
  fromBase64(b64) {
    const bin = atob(String(b64).replace(/\s+/g, ""));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  },
  toHex(bytes) {
    bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  },
  fromHex(hex) {
    const clean = String(hex).trim();
    if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error("invalid hex");
    const out = new Uint8Array(clean.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
    return out;
  },
  concat(...parts) {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(len);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  },
};

// ---------------------------------------------------------------- browser key store

// One Ed25519 deployer key per account, generated in the browser as a NON-extractable
// CryptoKeyPair and kept in IndexedDB (db `sparebox`, store `keys`, keyPath `account`).
// Record: {account, keyPair, publicKeyHex, peerId (null until registered), createdAt}.
const KeyStore = {
  DB: "sparebox",
  STORE: "keys",
  CLI_HINT: "Use the command line instead: `sparebox market register-key`, and deploy with `sparebox deploy`.",
  _support: null,

  /** Resolves to {ok: true} or {ok: false, reason}. */
  support() {
    if (!KeyStore._support) KeyStore._support = KeyStore._checkSupport();
    return KeyStore._support;
  },

  async _checkSupport() {
    if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
      return { ok: false, reason: "This page is not served over HTTPS (or localhost), so the browser offers no WebCrypto here. " + KeyStore.CLI_HINT };
    }
    if (!window.indexedDB) {
      return { ok: false, reason: "This browser has no IndexedDB (private mode?), so it cannot keep a key. " + KeyStore.CLI_HINT };
    }
    try {
      await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      return { ok: true };
    } catch {
      return { ok: false, reason: "This browser cannot create Ed25519 keys with WebCrypto. Update it (recent Chrome, Firefox and Safari can), or " + KeyStore.CLI_HINT.charAt(0).toLowerCase() + KeyStore.CLI_HINT.slice(1) };
    }
  },

  _open() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(KeyStore.DB, 1);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(KeyStore.STORE)) db.createObjectStore(KeyStore.STORE, { keyPath: "account" });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error("The key database is blocked by another tab."));
    });
  },

  async _tx(mode, fn) {
    const db = await KeyStore._open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(KeyStore.STORE, mode);
        const req = fn(tx.objectStore(KeyStore.STORE));
        tx.oncomplete = () => resolve(req ? req.result : undefined);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  },

  /** The stored record for an account, or null. */
  async get(accountId) {
    if (!window.indexedDB || !accountId) return null;
    try {
      return (await KeyStore._tx("readonly", (s) => s.get(accountId))) || null;
    } catch {
      return null;
    }
  },

  put(record) {
    return KeyStore._tx("readwrite", (s) => s.put(record));
  },

  remove(accountId) {
    return KeyStore._tx("readwrite", (s) => s.delete(accountId));
  },

  /** Generate and store a new key for the account (replaces an existing one). */
  async generate(accountId) {
    const support = await KeyStore.support();
    if (!support.ok) throw new ApiError("no_webcrypto", support.reason);
    const keyPair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const raw = await crypto.subtle.exportKey("raw", keyPair.publicKey);
    const record = {
      account: accountId,
      keyPair,
      publicKeyHex: Bytes.toHex(new Uint8Array(raw)),
      peerId: null,
      createdAt: Math.floor(Date.now() / 1000),
    };
    await KeyStore.put(record);
    return record;
  },

  /** Sign raw bytes with the record's private key → base64 signature. */
  async signBytes(record, bytes) {
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, record.keyPair.privateKey, bytes);
    return Bytes.toBase64(new Uint8Array(sig));
  },

  /** The bytes a `signing` object stands for: UTF-8(domain) || 0x00 || base64decode(payload). */
  signingBytes(signing) {
    if (!signing || typeof signing.domain !== "string" || typeof signing.payload !== "string") {
      throw new ApiError("bad_signing", "The marketplace sent nothing to sign. Try again.");
    }
    return Bytes.concat(new TextEncoder().encode(signing.domain), new Uint8Array([0]), Bytes.fromBase64(signing.payload));
  },

  /**
   * Sign a `signing` object ({domain, payload, signer}) with this browser's key for the account.
   * Returns the base64 signature. Throws ApiError `no_key` / `wrong_key`.
   */
  async sign(signing, accountId) {
    const record = await KeyStore.get(accountId);
    if (!record) {
      throw new ApiError("no_key", "This browser holds no deployer key for your account. Create one on the Account page first.");
    }
    if (signing && signing.signer && record.peerId && signing.signer !== record.peerId) {
      throw new ApiError(
        "wrong_key",
        `This needs the key ${fmt.short(signing.signer)}, but this browser holds ${fmt.short(record.peerId)}. Use the browser or the CLI that holds that key.`,
      );
    }
    return KeyStore.signBytes(record, KeyStore.signingBytes(signing));
  },

  /**
   * Register (bind) this browser's key to the signed-in account, generating it first if needed.
   * Returns the updated record (with peerId).
   */
  async register(account) {
    let record = await KeyStore.get(account.id);
    if (!record) record = await KeyStore.generate(account.id);
    const { signing } = await api("POST", "/api/v1/keys/prepare", { publicKey: record.publicKeyHex });
    const signature = await KeyStore.signBytes(record, KeyStore.signingBytes(signing));
    const out = await api("POST", "/api/v1/keys", {
      signed: { domain: signing.domain, payload: signing.payload, publicKey: record.publicKeyHex, signature },
    });
    record.peerId = (out && (out.key || out.peerId)) || signing.signer || null;
    await KeyStore.put(record);
    return record;
  },

  /**
   * Where this browser stands for the account:
   * {support, record, registered (bool), peerId}.
   */
  async status(account) {
    const support = await KeyStore.support();
    const record = support.ok ? await KeyStore.get(account.id) : null;
    const keys = (account && account.deployerKeys) || [];
    const registered = !!(record && record.peerId && keys.includes(record.peerId));
    return { support, record, registered, peerId: record ? record.peerId : null };
  },
};

// ---------------------------------------------------------------- server-sent events

/**
 * Listen to /api/v1/events. handlers: {deployment(data), balance(data), open(), error()}.
 * Returns the EventSource (call .close()). The browser reconnects on its own.
 */
function openEvents(handlers) {
  if (!window.EventSource) return null;
  let es;
  try {
    es = new EventSource("/api/v1/events", { withCredentials: true });
  } catch {
    return null;
  }
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === "open" || name === "error") continue;
    es.addEventListener(name, (ev) => {
      let data = null;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      fn(data);
    });
  }
  if (handlers.open) es.addEventListener("open", handlers.open);
  if (handlers.error) es.addEventListener("error", handlers.error);
  window.addEventListener("pagehide", () => es.close());
  return es;
}

// ---------------------------------------------------------------- buy credit (account + credit pages)

const MIN_CHECKOUT_DOLLARS = 5;

/** The buy-credit form: input name=amount (dollars) → POST checkout → go to Stripe. */
function setupBuyCredit(form) {
  if (!form) return;
  Forms.bind(
    form,
    async () => {
      const input = form.elements.namedItem("amount");
      const cents = dollarsToCents(input.value);
      if (!Number.isFinite(cents) || cents < MIN_CHECKOUT_DOLLARS * 100) {
        throw new ApiError("bad_amount", `Enter an amount of at least $${MIN_CHECKOUT_DOLLARS}.`, {
          fields: [{ field: "amount", message: `At least $${MIN_CHECKOUT_DOLLARS}, in dollars and cents (e.g. 20 or 12.50).` }],
        });
      }
      const out = await api("POST", "/api/v1/credit/checkout", { amountCents: cents });
      if (!out || !out.url) throw new ApiError("bad_response", "The marketplace did not return a checkout page.");
      showMessage($(".form-status", form), "Opening the payment page…");
      location.assign(out.url);
      await new Promise(() => {}); // keep the button disabled while the browser navigates
    },
    { fieldMap: { amountCents: "amount" } },
  );
}
