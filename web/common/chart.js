// Sparebox time-series charts on top of uPlot (web/vendor/uplot/).
// Served at /common/chart.js; the page loads /vendor/uplot/uPlot.iife.min.js
// (and /vendor/uplot/uPlot.min.css) first.
//
//   const chart = SpareChart.timeSeries(container, {
//     title: "CPU", unit: "%",
//     series: [{label: "Machine"}, {label: "Agents", color: "#16a34a"}],
//     points: [[t_unix_secs, v1, v2], ...],   // null values allowed
//   });
//   chart.update(newPoints);
//
// The chart follows the container's width (ResizeObserver), is ~220px high,
// exposes a text alternative (role="img" + aria-label with the latest values)
// and shows "No data yet" while there are no points. Without uPlot (script
// failed to load) it degrades to the text alternative alone.
"use strict";

(function () {
  const HEIGHT = 220;
  // Distinct, colour-blind-friendly defaults; readable on light and dark.
  const PALETTE = ["#6366f1", "#10b981", "#f59e0b", "#ef4444", "#0ea5e9", "#a855f7"];

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function formatNumber(v) {
    if (v == null || !Number.isFinite(v)) return "–";
    const abs = Math.abs(v);
    if (abs >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (abs >= 1e4) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    if (abs >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString();
    if (abs >= 10) return v.toFixed(1);
    return v.toFixed(2).replace(/0$/, "");
  }

  function withUnit(v, unit) {
    const n = formatNumber(v);
    if (n === "–" || !unit) return n;
    return unit === "%" ? n + "%" : n + " " + unit;
  }

  // Rows [t, v1, v2, ...] → uPlot's columns [[t...], [v1...], ...], sorted by t.
  function toColumns(points, nSeries) {
    const rows = (Array.isArray(points) ? points : [])
      .filter((r) => Array.isArray(r) && Number.isFinite(r[0]))
      .slice()
      .sort((a, b) => a[0] - b[0]);
    const cols = [rows.map((r) => r[0])];
    for (let i = 0; i < nSeries; i++) {
      cols.push(rows.map((r) => {
        const v = r[i + 1];
        return typeof v === "number" && Number.isFinite(v) ? v : null;
      }));
    }
    return cols;
  }

  function lastValue(col) {
    for (let i = col.length - 1; i >= 0; i--) if (col[i] != null) return col[i];
    return null;
  }

  function timeSeries(container, options) {
    const opts = options || {};
    const title = opts.title || "";
    const unit = opts.unit || "";
    const series = (opts.series && opts.series.length ? opts.series : [{ label: title || "value" }])
      .map((s, i) => ({ label: s.label || `series ${i + 1}`, color: s.color || PALETTE[i % PALETTE.length] }));

    container.classList.add("chart");
    container.replaceChildren();
    if (title) {
      const h = document.createElement("h3");
      h.className = "chart-title";
      h.textContent = unit ? `${title} (${unit})` : title;
      container.append(h);
    }
    const plot = document.createElement("div");
    plot.className = "chart-plot";
    plot.setAttribute("role", "img");
    const empty = document.createElement("p");
    empty.className = "chart-empty";
    empty.textContent = "No data yet";
    container.append(plot, empty);

    let data = toColumns(opts.points, series.length);
    let u = null;

    function describe() {
      const xs = data[0];
      if (!xs.length) return `${title || "Chart"}: no data yet`;
      const parts = series.map((s, i) => `${s.label} ${withUnit(lastValue(data[i + 1]), unit)}`);
      const at = new Date(xs[xs.length - 1] * 1000).toLocaleTimeString();
      const span = Math.round((xs[xs.length - 1] - xs[0]) / 60);
      return `${title || "Chart"}, last ${span} min: latest at ${at}: ${parts.join(", ")}`;
    }

    function width() {
      return Math.max(200, Math.floor(plot.clientWidth || container.clientWidth || 600));
    }

    function build() {
      if (u) { u.destroy(); u = null; }
      if (typeof window.uPlot !== "function") return; // text alternative only
      const axisColor = cssVar("--muted", "#5c5c66");
      const gridColor = cssVar("--border", "#e3e3e8");
      const axis = {
        stroke: axisColor,
        grid: { stroke: gridColor, width: 1 },
        ticks: { stroke: gridColor, width: 1, size: 4 },
        font: "11px system-ui, sans-serif",
      };
      u = new window.uPlot({
        width: width(),
        height: HEIGHT,
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { show: true, live: true },
        hooks: {
          // Off the plot, the legend shows the newest values instead of blanks.
          setCursor: [(self) => { if (self.cursor.idx == null) showLatest(self); }],
        },
        scales: {
          x: { time: true },
          y: {
            range: (self, min, max) => {
              const top = max == null || !(max > 0) ? 1 : max * 1.1;
              return [Math.min(0, min ?? 0), unit === "%" && top > 100 && max <= 100 ? 100 : top];
            },
          },
        },
        series: [
          { label: "Time", value: (self, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            fill: /^#[0-9a-f]{6}$/i.test(s.color) ? s.color + "1a" : undefined,
            width: 1.75,
            points: { show: false },
            spanGaps: false,
            value: (self, v) => withUnit(v, unit),
          })),
        ],
        axes: [
          { ...axis },
          { ...axis, size: 52, values: (self, splits) => splits.map(formatNumber) },
        ],
      }, data, plot);
    }

    function showLatest(self) {
      const n = data[0].length;
      if (n) self.setLegend({ idx: n - 1 }, false);
    }

    function render() {
      const hasData = data[0].length > 0;
      plot.hidden = !hasData;
      empty.hidden = hasData;
      plot.setAttribute("aria-label", describe());
      if (!hasData) return;
      if (!u) build();
      else u.setData(data);
      if (u && u.cursor.idx == null) showLatest(u);
    }

    render();

    if (typeof ResizeObserver === "function") {
      let last = 0;
      new ResizeObserver(() => {
        if (!u || plot.hidden) return;
        const w = width();
        if (w !== last) { last = w; u.setSize({ width: w, height: HEIGHT }); }
      }).observe(container);
    } else {
      window.addEventListener("resize", () => { if (u) u.setSize({ width: width(), height: HEIGHT }); });
    }
    // Axis colours come from CSS variables: rebuild when the colour scheme flips.
    if (window.matchMedia) {
      const mq = window.matchMedia("(prefers-color-scheme: dark)");
      const onChange = () => { if (u) build(); };
      if (mq.addEventListener) mq.addEventListener("change", onChange);
    }

    return {
      update(points) {
        data = toColumns(points, series.length);
        render();
      },
      destroy() {
        if (u) u.destroy();
        u = null;
        container.replaceChildren();
      },
    };
  }

  window.SpareChart = { timeSeries, formatNumber };
})();
