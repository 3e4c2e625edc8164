// Landing page: live network counts from /api/v1/stats.
"use strict";

async function loadStats() {
  const box = document.getElementById("stats");
  try {
    const s = await api("GET", "/api/v1/stats");
    setText("stat-hosts", fmt.int(s.hosts ?? 0));
    setText("stat-cpu", trimNumber((Number(s.freeCpuMillis) || 0) / 1000, 1));
    setText("stat-memory", trimNumber((Number(s.freeMemoryMib) || 0) / 1024, 1));
    setText("stat-agents", fmt.int(s.runningAgents ?? 0));
    showMessage("stats-error", "");
  } catch (e) {
    showMessage("stats-error", `Live counts are unavailable right now (${e.message})`);
  } finally {
    box.removeAttribute("aria-busy");
  }
}

loadStats();
setInterval(() => {
  if (!document.hidden) loadStats();
}, 15000);
