/* The transfer page's rate chart: samples, the summed receive rate, and drawing it as SVG.
   Loaded before castray.js, which uses it through window.castrayChart. */
"use strict";

(function () {
  // The rate chart's samples follow transfers/samples.py: per target, [unix seconds, bytes
  // received] as the receiver measured them. addSample is its add_sample, so the samples a
  // page adds from events are the ones the server keeps and a reload draws the same chart.
  function addSample(series, sample, spacing, max) {
    const [when, value] = sample;
    const n = series.length;
    if (n && when <= series[n - 1][0]) return false;
    if (n >= 2 && series[n - 1][0] - series[n - 2][0] < spacing) series[n - 1] = [when, value];
    else series.push([when, value]);
    if (series.length > max) {
      const last = series[series.length - 1];
      const kept = series.slice(0, -1).filter((_, i) => i % 2 === 0);
      series.splice(0, series.length, ...kept, last);
    }
    return true;
  }

  // The chart: the sum of the targets' receive rates, each target's rate between two of its
  // samples being the bytes that arrived between them over the time between them. Returns
  // steps [from s, to s, bytes per second], seconds counted from the earliest sample.
  function rateSteps(seriesList) {
    const changes = new Map(); // time -> change of the summed rate there
    let origin = Infinity;
    for (const series of seriesList) {
      if (series.length) origin = Math.min(origin, series[0][0]);
      for (let i = 1; i < series.length; i += 1) {
        const [t0, b0] = series[i - 1], [t1, b1] = series[i];
        if (t1 <= t0) continue;
        const rate = Math.max(0, b1 - b0) / (t1 - t0);
        changes.set(t0, (changes.get(t0) || 0) + rate);
        changes.set(t1, (changes.get(t1) || 0) - rate);
      }
    }
    const times = [...changes.keys()].sort((a, b) => a - b);
    const steps = [];
    let rate = 0;
    for (let i = 0; i + 1 < times.length; i += 1) {
      rate += changes.get(times[i]);
      const value = Math.abs(rate) < 1e-6 ? 0 : rate; // what float sums leave of a zero
      const last = steps[steps.length - 1];
      if (last && last[2] === value) last[1] = times[i + 1] - origin;
      else steps.push([times[i] - origin, times[i + 1] - origin, value]);
    }
    return steps;
  }

  // Rates are averages over the intervals between samples, so they are drawn as steps.
  function drawChart(box, steps, note, fmt) {
    const width = Math.max(280, box.clientWidth || 600), height = 220;
    const left = 64, right = 12, top = 12, bottom = 26;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    const add = (name, attrs, text) => {
      const el = document.createElementNS(ns, name);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      svg.appendChild(el);
      return el;
    };
    if (!steps.some((s) => s[2] > 0)) {
      add("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, note || "waiting for progress…");
      box.replaceChildren(svg);
      return;
    }
    const tMax = Math.max(steps[steps.length - 1][1], 0.001);
    const rMax = Math.max(...steps.map((s) => s[2])) * 1.1;
    const x = (t) => (left + (t / tMax) * (width - left - right)).toFixed(1);
    const y = (r) => (top + (1 - r / rMax) * (height - top - bottom)).toFixed(1);
    for (let i = 0; i <= 4; i += 1) {
      const r = (rMax * i) / 4;
      add("line", { class: i ? "grid" : "axis", x1: left, x2: width - right, y1: y(r), y2: y(r) });
      add("text", { x: left - 6, y: Number(y(r)) + 4, "text-anchor": "end" }, fmt.rate(r));
    }
    add("text", { x: left, y: height - 6 }, "0 s");
    add("text", { x: width - right, y: height - 6, "text-anchor": "end" }, fmt.seconds(tMax));
    let line = `M${x(steps[0][0])},${y(0)}`;
    for (const [from, to, rate] of steps) line += ` L${x(from)},${y(rate)} L${x(to)},${y(rate)}`;
    line += ` L${x(tMax)},${y(0)}`;
    add("path", { class: "area", d: `${line} Z` });
    add("path", { class: "line", d: line });
    box.replaceChildren(svg);
  }

  window.castrayChart = { addSample, rateSteps, drawChart };
})();
