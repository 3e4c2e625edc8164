// Node dashboard: polls the loopback API. No external resources.
"use strict";
async function refresh() {
  const err = document.getElementById("error");
  try {
    const r = await fetch("/api/health");
    if (!r.ok) throw new Error(`health check failed: HTTP ${r.status}`);
    const h = await r.json();
    document.getElementById("peer-id").textContent = h.peerId;
    document.getElementById("status").textContent = h.status;
    document.getElementById("uptime").textContent = `${h.uptimeS} s`;
    document.getElementById("version").textContent = h.version;
    err.hidden = true;
  } catch (e) {
    err.textContent = `Cannot reach the node: ${e.message}`;
    err.hidden = false;
  }
}
refresh();
setInterval(refresh, 5000);
