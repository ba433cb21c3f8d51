/* CastRay pages: live updates over WebSockets, the rate chart, and the cast form's toggles.
   Message shapes are documented in transfers/events.py. Numbers are formatted exactly as the
   template filters in transfers/templatetags/castray.py do. */
"use strict";

(function () {
  const FINAL = ["completed", "partial", "failed", "cancelled"];
  const TARGET_DONE = ["completed", "skipped"];

  // --- numbers for people ---------------------------------------------------------------
  function scaled(value, base, units) {
    let i = 0;
    while (Math.abs(value) >= base && i < units.length - 1) { value /= base; i += 1; }
    if (i === 0) return Math.trunc(value) + " " + units[0];
    const text = Math.abs(value) < 100 ? value.toFixed(1) : value.toFixed(0);
    return text.replace(/\.0$/, "") + " " + units[i];
  }
  const fmt = {
    size: (v) => (v === null || v === undefined ? "—" : scaled(v, 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])),
    rate: (v) => (v === null || v === undefined ? "—" : scaled(v, 1000, ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"])),
    percent: (f) => Math.round(f * 100) + "%",
    seconds(total) {
      if (total === null || total === undefined) return "—";
      if (total < 10) return total.toFixed(1) + " s";
      const whole = Math.round(total);
      if (whole < 60) return whole + " s";
      if (whole < 3600) { const m = Math.floor(whole / 60), s = whole % 60; return s ? `${m} min ${s} s` : `${m} min`; }
      const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    },
    ago(unixSeconds) {
      if (!unixSeconds) return "never";
      const delta = Date.now() / 1000 - unixSeconds;
      if (delta < 0) return "just now";
      if (delta < 60) return Math.floor(delta) + " s ago";
      if (delta < 3600) return Math.floor(delta / 60) + " min ago";
      if (delta < 86400) return Math.floor(delta / 3600) + " h ago";
      return Math.floor(delta / 86400) + " d ago";
    },
  };

  // --- small DOM helpers ----------------------------------------------------------------
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  function setState(el, status) {
    if (!el) return;
    el.classList.forEach((c) => { if (c.startsWith("st-")) el.classList.remove(c); });
    el.classList.add("st-" + status);
  }
  function setBadge(el, status) {
    if (!el) return;
    el.textContent = status;
    setState(el, status);
  }
  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function setBar(row, fraction, status) {
    const bar = $(".bar", row);
    if (!bar) return;
    const f = Math.max(0, Math.min(1, fraction || 0));
    bar.firstElementChild.style.width = (f * 100).toFixed(1) + "%";
    bar.setAttribute("aria-valuenow", String(Math.round(f * 100)));
    setState(bar, status);
    setText($('[data-field="pct"]', row), fmt.percent(f));
  }

  // --- one reconnecting socket per page -------------------------------------------------
  function socket(path, onMessage) {
    const live = $("#live-state");
    if (live) live.hidden = false;
    let delay = 1000;
    function open() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + location.host + path);
      ws.onopen = () => { delay = 1000; if (live) { live.dataset.state = "on"; live.textContent = "live"; } };
      ws.onmessage = (e) => {
        window.castrayMessages = (window.castrayMessages || 0) + 1;
        onMessage(JSON.parse(e.data));
      };
      ws.onclose = (e) => {
        if (e.code === 4401 || e.code === 4404) {
          if (live) { live.dataset.state = "off"; live.textContent = e.code === 4401 ? "live updates off: log in again" : "live updates off"; }
          return;
        }
        // The server sends the current state on connect, so a reconnect catches up by itself.
        if (live) { live.dataset.state = "retrying"; live.textContent = "reconnecting…"; }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
  }

  function castProgress(size, targets, status) {
    if (!targets.length) return status === "completed" ? 1 : 0;
    if (!size) return targets.every((t) => TARGET_DONE.includes(t.status)) ? 1 : 0;
    const done = targets.reduce((sum, t) => sum + (TARGET_DONE.includes(t.status) ? size : t.bytes_done), 0);
    return done / (size * targets.length);
  }

  // --- node tables (dashboard and node list) from a status_update -----------------------
  function applyNodes(data) {
    for (const n of data.node_statuses) {
      const row = $(`#node-table tr[data-node-id="${n.id}"]`);
      if (!row) continue;
      const badge = $('[data-field="status"]', row);
      setBadge(badge, n.status);
      badge.title = n.status_detail || "";
      setText($('[data-field="heartbeat"]', row), fmt.ago(n.last_activity));
      setText($('[data-field="active"]', row), String(n.active_transfers));
      const moved = $('[data-field="moved"]', row);
      if (moved) setText(moved, fmt.size(n.file_transfer_stats.bytes_transferred));
    }
  }

  function nodes() {
    socket("/ws", (msg) => { if (msg.type === "status_update") applyNodes(msg.data); });
  }

  // --- dashboard ------------------------------------------------------------------------
  function dashboard() {
    const list = $("#active-casts");
    function refreshCount() {
      const active = $$(".cast", list).filter((li) => !FINAL.includes($('[data-field="status"]', li).textContent));
      setText($("#active-count"), String(active.length));
      $("#no-active").hidden = $$(".cast", list).length > 0;
    }
    function upsertCast(c) {
      let li = $(`.cast[data-transfer="${c.id}"]`, list);
      if (!li) {
        li = document.createElement("li");
        li.className = "cast";
        li.dataset.transfer = c.id;
        li.innerHTML = `<div class="cast-head"><a></a><span class="badge" data-field="status"></span></div>
          <div class="cast-meta muted"><span data-field="source"></span> → <span data-field="targets"></span> · <span data-field="cast_type"></span> · <span data-field="size"></span></div>
          <div class="bar-row"><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><span></span></div><span class="pct" data-field="pct"></span></div>`;
        const link = $("a", li);
        link.href = "/transfers/" + c.id + "/";
        link.textContent = "#" + c.id + " " + (c.file_name || "");
        setText($('[data-field="source"]', li), c.source || "");
        setText($('[data-field="cast_type"]', li), c.cast_type || "");
        list.prepend(li);
      }
      setBadge($('[data-field="status"]', li), c.status);
      setText($('[data-field="targets"]', li), c.targets.length + (c.targets.length === 1 ? " node" : " nodes"));
      setText($('[data-field="size"]', li), fmt.size(c.size));
      setBar(li, c.progress, c.status);
      refreshCount();
    }
    function applyStatus(data) {
      setText($("#nodes-online"), String(data.active_nodes));
      setText($("#nodes-total"), String(data.total_nodes));
      applyNodes(data);
      const c = data.cluster;
      if (c) {
        setBadge($('#cluster-card [data-field="status"]'), c.status);
        const banner = $("#cluster-banner");
        if (banner) {
          banner.classList.toggle("hidden", !["degraded", "disconnected"].includes(c.status));
          setText($('[data-field="name"]', banner), c.name);
          setText($('[data-field="status"]', banner), c.status);
          setText($('[data-field="last_error"]', banner), c.last_error || "the worker has not reached Ray");
        }
      }
      for (const t of data.active_casts) upsertCast(t);
    }
    socket("/ws", (msg) => {
      if (msg.type === "status_update") applyStatus(msg.data);
      else if (msg.type === "transfer_activity") {
        const d = msg.data;
        upsertCast({
          id: d.transfer, file_name: d.file_name, source: d.source, cast_type: d.cast_type, status: d.status,
          size: d.size, targets: d.targets, progress: castProgress(d.size, d.targets, d.status),
        });
      }
    });
  }

  // --- transfer detail: bars, chart, tree -----------------------------------------------
  const { addSample, rateSteps, drawChart } = window.castrayChart;

  function transfer() {
    const data = JSON.parse($("#transfer-data").textContent);
    const chart = $("#rate-chart");
    let series = {}; // target id -> its samples
    for (const [id, samples] of Object.entries(data.samples || {})) series[id] = samples.slice();
    let size = data.size;
    let files = data.files; // a directory cast's regular files; null for a file, or until the source answers
    let final = data.final;
    let treeShown = JSON.stringify(data.tree || {});
    let settle = 0;

    const redraw = () =>
      drawChart(chart, rateSteps(Object.values(series)), final ? "no progress was sampled for this cast" : null, fmt);
    redraw();
    window.addEventListener("resize", redraw);

    function refreshTree() {
      const box = $("#tree");
      fetch(box.dataset.url, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
        .then((html) => { box.innerHTML = html; })
        .catch(() => {});
    }
    function refreshTotals() {
      // The totals (duration, time against the bound, rate) are the worker's final record.
      fetch(location.pathname, { credentials: "same-origin" })
        .then((r) => r.text())
        .then((html) => {
          const doc = new DOMParser().parseFromString(html, "text/html");
          const fresh = doc.querySelector(".totals");
          if (fresh) $(".totals").replaceWith(fresh);
          const tbody = doc.querySelector("#targets tbody");
          if (tbody) $("#targets tbody").replaceWith(tbody);
          // The samples as kept, final ones included: the chart a reload would draw.
          const last = JSON.parse(doc.querySelector("#transfer-data").textContent);
          series = last.samples || series;
          redraw();
        })
        .catch(() => {});
    }
    function showTotals(event) {
      if (event.sha256) {
        const sha = $("#total-sha");
        setText(sha, "sha256 " + event.sha256.slice(0, 16) + "…");
        sha.title = event.sha256;
      }
      // Recorded as each round ends: until then the page says so rather than "0 B".
      if (event.source_bytes_sent) {
        setText($("#source-bytes"), fmt.size(event.source_bytes_sent));
        const copies = size ? (event.source_bytes_sent / size).toFixed(2) + " copies" : "—";
        setText($("#source-note"), `${copies} · relays sent ${fmt.size(event.relay_bytes_sent)}`);
      }
      const received = $("#total-received");
      if (received) setText(received, fmt.size(event.targets.reduce((sum, t) => sum + (t.bytes_received || 0), 0)));
    }

    socket(`/ws/transfers/${data.id}`, (event) => {
      if (event.type !== "transfer.update") return;
      if (event.size !== null && event.size !== undefined) size = event.size;
      if (event.files !== null && event.files !== undefined) files = event.files;
      const filesTotal = $("#total-files");
      if (files !== null && files !== undefined) {
        setText($('[data-field="files"]', filesTotal), String(files));
        filesTotal.hidden = false;
      }
      setBadge($("#transfer-status"), event.status);
      setText($("#total-size"), fmt.size(size));
      const box = $("#transfer-error");
      box.hidden = !event.error;
      setText(box, event.error || "");
      showTotals(event);
      for (const t of event.targets) {
        const row = $(`#targets tr[data-target="${t.id}"]`);
        if (row) {
          setBadge($('[data-field="status"]', row), t.status);
          const held = TARGET_DONE.includes(t.status) ? size || t.bytes_done : t.bytes_done;
          setBar(row, size ? held / size : TARGET_DONE.includes(t.status) ? 1 : 0, t.status);
          setText($('[data-field="bytes"]', row), fmt.size(held));
          const filesDone = $('[data-field="files"]', row);
          if (filesDone && files !== null && files !== undefined) {
            // Files verified or already held, beside the bytes (a directory cast).
            filesDone.replaceChildren(document.createElement("br"), `${t.files_done || 0} / ${files} files`);
            filesDone.hidden = false;
          }
          setText($('[data-field="rate"]', row), fmt.rate(t.rate));
          setText($('[data-field="error"]', row), t.error || "");
          if (t.parent !== undefined) setText($('[data-field="parent"]', row), t.parent || "—");
          if (t.attempts !== undefined) setText($('[data-field="attempts"]', row), String(t.attempts));
        }
        setState($(`#tree g[data-node="${CSS.escape(t.node)}"]`), t.status);
        if (!series[t.id]) series[t.id] = [];
        for (const sample of t.samples || []) addSample(series[t.id], sample, data.sample_seconds, data.max_samples);
      }
      const nowFinal = FINAL.includes(event.status);
      final = final || nowFinal;
      redraw();
      // The worker plans the tree after the cast starts, and plans again if a relay fails.
      const tree = JSON.stringify(event.tree || {});
      if (event.tree !== undefined && tree !== treeShown) {
        treeShown = tree;
        refreshTree();
      }
      if (nowFinal) {
        $("#cancel-form").hidden = true;
        $("#retry-form").hidden = false;
        // What the worker records after the end (a cancelled cast's bytes) comes in a few
        // more events: one reload of the totals and the tree's colours after the last.
        clearTimeout(settle);
        settle = setTimeout(() => { refreshTotals(); refreshTree(); }, 300);
      }
    });
  }

  // --- node page ------------------------------------------------------------------------
  function node() {
    const head = $("#node-head");
    socket(`/ws/nodes/${head.dataset.nodeId}`, (event) => {
      if (event.type !== "node.update") return;
      setBadge($('[data-field="status"]', head), event.status);
      setText($('[data-field="enabled"]', head), event.enabled ? "enabled" : "disabled");
    });
  }

  // --- cast form ------------------------------------------------------------------------
  function cast() {
    const form = $("#cast-form");
    const source = $("#id_source");
    const fileSelect = $("#id_file_name");
    function showChosen() {
      for (const block of $$(".when", form)) {
        // data-when="field=a|b": shown while the radio `field` has one of those values.
        const [name, values] = block.dataset.when.split("=");
        const checked = $(`input[name="${name}"]:checked`, form);
        block.hidden = !checked || !values.split("|").includes(checked.value);
      }
    }
    function followSource() {
      const chosen = source.value;
      let any = false;
      for (const group of $$("optgroup", fileSelect)) {
        const mine = group.dataset.node === chosen;
        group.hidden = !mine;
        group.disabled = !mine;
        any = any || (mine && group.children.length > 0);
      }
      const selected = fileSelect.selectedOptions[0];
      if (selected && selected.parentElement.dataset.node !== chosen) fileSelect.value = "";
      $("#no-files").hidden = any;
      for (const li of $$("#target-list li")) {
        const box = $("input", li);
        const isSource = li.dataset.node === chosen;
        li.classList.toggle("is-source", isSource);
        box.disabled = isSource;
        if (isSource) box.checked = false;
      }
    }
    form.addEventListener("change", showChosen);
    source.addEventListener("change", followSource);
    for (const chip of $$(".chip[data-size]", form)) {
      chip.addEventListener("click", () => {
        $("#id_gen_size").value = chip.dataset.size;
        $('input[name="file_source"][value="generate"]', form).checked = true;
        showChosen();
      });
    }
    form.addEventListener("submit", () => { $("#cast-submit").disabled = true; $("#cast-submit").textContent = "Casting…"; });
    showChosen();
    followSource();
  }

  // Forms that undo work (cancelling a cast) ask first: one stray tap on a phone is enough.
  for (const form of $$("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  }

  const pages = { dashboard, transfer, node, nodes, cast };
  const page = pages[document.body.dataset.page];
  if (page) page();
  window.castray = { fmt, addSample, rateSteps };
})();
