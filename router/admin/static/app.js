// router admin: progressive enhancement for the server-rendered pages. No build step.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function toast(message, bad) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = bad ? "bad" : "";
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  function flash(message) {  // a toast that survives the reload that follows
    try { sessionStorage.setItem("router-flash", message); } catch (e) { /* private mode */ }
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
    if (!response.ok) {
      const message = data.error || (data.errors && data.errors.join("; ")) || ("HTTP " + response.status);
      throw new Error(message);
    }
    return data;
  }

  async function copy(text, button) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        const area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.style.position = "fixed";
        area.style.opacity = "0";
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      const label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
    } catch (e) {
      toast("Could not copy: " + e.message, true);
    }
  }

  function confirmed(el) {
    const question = el.getAttribute("data-confirm");
    return !question || window.confirm(question);
  }

  // -- source actions: activate / deactivate / rotate -----------------------------------------
  async function sourceAction(button) {
    const action = button.getAttribute("data-action");
    const source = button.getAttribute("data-source");
    if (!confirmed(button)) return;
    button.disabled = true;
    try {
      const grace = document.getElementById("rotate-grace");
      const body = action === "rotate" && grace ? { grace: grace.value } : undefined;
      const item = await api("POST", "/api/sources/" + encodeURIComponent(source) + "/" + action, body);
      if (action === "rotate") {
        showRotated(item);
        return;
      }
      flash(source + (item.active ? " activated" : " deactivated"));
      location.reload();
    } catch (e) {
      toast(source + ": " + e.message, true);
      button.disabled = false;
    }
  }

  function showRotated(item) {
    const dialog = document.getElementById("rotated");
    const url = item.url || "";
    if (!dialog || typeof dialog.showModal !== "function") {
      window.prompt("New URL (shown once):", url);
      location.reload();
      return;
    }
    document.getElementById("rotated-url").textContent = url;
    document.getElementById("rotated-copy").setAttribute("data-copy", url);
    const keyRow = document.getElementById("rotated-key-row");
    if (item.api_key) {
      document.getElementById("rotated-key").textContent = item.api_key;
      keyRow.hidden = false;
    } else {
      keyRow.hidden = true;
    }
    const jwtRow = document.getElementById("rotated-jwt-row");
    if (jwtRow) {
      jwtRow.hidden = !item.endpoint_secret;
      document.getElementById("rotated-jwt-key").textContent = item.endpoint_key || "";
      document.getElementById("rotated-jwt-secret").textContent = item.endpoint_secret || "";
    }
    const notice = document.getElementById("rotated-notice");
    if (notice) {
      notice.textContent = item.grace_until
        ? "Shown once. The old URL/key/secret keeps working until " + item.grace_until + "."
        : "Shown once. The old URL/key/secret no longer works.";
    }
    document.getElementById("rotated-close").onclick = () => { dialog.close(); location.reload(); };
    dialog.showModal();
  }

  // -- replay ------------------------------------------------------------------------------------
  async function replay(button) {
    const id = button.getAttribute("data-replay");
    button.disabled = true;
    try {
      await api("POST", "/api/signals/" + encodeURIComponent(id) + "/replay");
      const row = button.closest("tr");
      if (row) {
        button.textContent = "Queued";
        row.classList.add("replayed");
      } else {
        const badge = document.getElementById("signal-status");
        if (badge) { badge.textContent = "pending"; badge.className = "status pending"; }
        button.textContent = "Queued";
        watchSignal(id);
      }
      toast("Signal " + id + " queued for replay");
    } catch (e) {
      toast("Replay failed: " + e.message, true);
      button.disabled = false;
    }
  }

  async function replayAll(button) {
    if (!confirmed(button)) return;
    button.disabled = true;
    try {
      const result = await api("POST", "/api/signals/replay", {});
      flash(result.replayed.length + " signals queued for replay");
      location.reload();
    } catch (e) {
      toast("Replay failed: " + e.message, true);
      button.disabled = false;
    }
  }

  // -- replay every signal matching the list's filter, after showing how many ----------------------
  async function replayMatching(button) {
    const dialog = document.getElementById("replay-dialog");
    const filter = JSON.parse(button.getAttribute("data-filter") || "{}");
    const count = document.getElementById("replay-count");
    const ok = document.getElementById("replay-confirm");
    ok.disabled = true;
    count.textContent = "Counting…";
    dialog.showModal();
    document.getElementById("replay-cancel").onclick = () => dialog.close();
    let counted;
    try {
      counted = await api("GET", "/api/signals/count?" + new URLSearchParams(filter).toString());
    } catch (e) {
      count.textContent = "Could not count: " + e.message;
      return;
    }
    count.innerHTML = "";
    const strong = document.createElement("strong");
    strong.id = "replay-n";
    strong.textContent = String(counted.replayable);
    count.append(strong, " of " + counted.count + " matching signals will be replayed.");
    ok.disabled = counted.replayable === 0;
    ok.onclick = async () => {
      ok.disabled = true;
      try {
        const result = await api("POST", "/api/signals/replay", counted.filter);
        flash(result.replayed.length + " signals queued for replay");
        location.reload();
      } catch (e) {
        toast("Replay failed: " + e.message, true);
        ok.disabled = false;
      }
    };
  }

  async function deleteRecord(button) {
    if (!confirmed(button)) return;
    const target = button.getAttribute("data-delete-record");
    button.disabled = true;
    try {
      const result = await api("DELETE", "/api/records/" + target.split("/").map(encodeURIComponent).join("/"));
      const row = button.closest("tr");
      if (row) row.remove();
      toast("Deleted " + target + " (signal " + (result.signal_id || "?") + ")");
    } catch (e) {
      toast("Delete failed: " + e.message, true);
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const el = event.target.closest("button");
    if (!el) return;
    if (el.hasAttribute("data-copy")) { copy(el.getAttribute("data-copy"), el); }
    else if (el.hasAttribute("data-action")) { sourceAction(el); }
    else if (el.hasAttribute("data-replay")) { replay(el); }
    else if (el.id === "replay-all") { replayAll(el); }
    else if (el.id === "replay-matching") { replayMatching(el); }
    else if (el.hasAttribute("data-delete-record")) { deleteRecord(el); }
  });

  // -- live signals (SSE) ----------------------------------------------------------------------
  function cell(text, className, label) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (label) td.setAttribute("data-label", label);
    td.textContent = text;
    return td;
  }

  function statusBadge(status) {
    const span = document.createElement("span");
    span.className = "status " + status;
    span.textContent = status;
    return span;
  }

  function fillRow(row, s) {
    row.replaceChildren();
    row.setAttribute("data-signal", s.id);
    row.setAttribute("data-status", s.status);
    const when = cell((s.received_at || "").replace("T", " ").slice(0, 19), "nowrap", "Received");
    when.title = s.received_at || "";
    row.appendChild(when);
    const idCell = cell("", "", "Signal");
    const link = document.createElement("a");
    link.className = "mono";
    link.href = "/signals/" + encodeURIComponent(s.id);
    link.textContent = s.id;
    idCell.appendChild(link);
    row.appendChild(idCell);
    row.appendChild(cell(s.source, "wrap-any", "Source"));
    const st = cell("", "", "Status");
    st.appendChild(statusBadge(s.status));
    row.appendChild(st);
    row.appendChild(cell(String(s.attempts), "right", "Attempts"));
    row.appendChild(cell(s.last_error || "", "error-cell", "Last error"));
  }

  function liveSignals() {
    const table = document.getElementById("signals");
    const body = document.getElementById("signal-rows");
    const indicator = document.getElementById("live");
    if (!table || !body || !window.EventSource || table.getAttribute("data-live") === "0") return;
    const onlySource = table.getAttribute("data-source");
    const onlyStatus = table.getAttribute("data-status");
    const url = "/api/events" + (onlySource ? "?source=" + encodeURIComponent(onlySource) : "");
    const events = new EventSource(url, { withCredentials: true });
    const setState = (state, label) => { if (indicator) { indicator.dataset.state = state; indicator.textContent = label; } };
    events.onopen = () => setState("live", "live");
    events.onerror = () => setState("down", "reconnecting…");
    events.addEventListener("signal", (event) => {
      const s = JSON.parse(event.data);
      let row = body.querySelector('tr[data-signal="' + CSS.escape(s.id) + '"]');
      if (onlyStatus && s.status !== onlyStatus) {
        if (row) row.remove();
        return;
      }
      if (!row) {
        row = document.createElement("tr");
        row.classList.add("fresh");
        body.insertBefore(row, body.firstChild);
        while (body.children.length > 500) body.lastElementChild.remove();
      }
      fillRow(row, s);
      const empty = document.getElementById("no-signals");
      if (empty) empty.hidden = true;
    });
  }

  // -- the inspector follows its signal until it settles ----------------------------------------
  function watchSignal(id) {
    const started = Date.now();
    const timer = setInterval(async () => {
      try {
        const s = await api("GET", "/api/signals/" + encodeURIComponent(id));
        if (s.status === "done" || s.status === "failed") { clearInterval(timer); location.reload(); }
      } catch (e) { /* keep trying */ }
      if (Date.now() - started > 120000) clearInterval(timer);
    }, 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    try {
      const message = sessionStorage.getItem("router-flash");
      if (message) { sessionStorage.removeItem("router-flash"); toast(message); }
    } catch (e) { /* private mode */ }
    liveSignals();
    const inspector = document.getElementById("signal");
    if (inspector) {
      const status = inspector.getAttribute("data-status");
      if (status === "pending" || status === "running") watchSignal(inspector.getAttribute("data-signal"));
    }
  });
})();
