// taskforge dashboard: live updates over Server-Sent Events. No framework, no build step.
// The browser never polls: the server pushes job events and, when jobs move, fresh counts.
"use strict";
(function () {
  const body = document.body;
  const base = body.dataset.base || "";
  const page = body.dataset.page;
  const dot = document.getElementById("live-dot");
  let source = null;

  function connect(query) {
    if (source) source.close();
    source = new EventSource(base + "/events" + (query ? "?" + query : ""));
    source.onopen = () => { if (dot) dot.classList.add("on"); resync(); };
    source.onerror = () => dot && dot.classList.remove("on");
    source.addEventListener("job", (e) => onJob(JSON.parse(e.data)));
    source.addEventListener("overview", (e) => onOverview(JSON.parse(e.data)));
    source.addEventListener("workflow", (e) => {
      // A step done is already drawn from its job's event; the end (succeeded, failed,
      // cancelled) changes members no job event names (pending ones a failure cancels).
      if (JSON.parse(e.data).event !== "step_succeeded") resyncWorkflow();
    });
  }

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  function link(href, value, cls) {
    const a = text("a", value, cls);
    a.href = href;
    return a;
  }

  function time(ts) {
    return new Date(ts * 1000).toISOString().slice(11, 23);
  }

  let seen = 0;
  function onJob(ev) {
    const feed = document.getElementById("feed");
    if (document.getElementById("workflow")) return onMemberEvent(ev);
    if (!feed) return reloadJob(ev);
    const empty = feed.querySelector(".empty");
    if (empty) empty.remove();
    const status = text("span", ev.status, "status s-" + ev.status);
    const job = link(base + "/jobs/" + encodeURIComponent(ev.job_id), ev.job_id.slice(0, 12), "mono");
    let row;
    if (feed.tagName === "TBODY") {
      row = document.createElement("tr");
      const cells = [text("span", time(ev.timestamp), "mono"), status, text("span", ev.task),
        text("span", ev.queue), job, text("span", ev.attempt), text("span", ev.error || "", "bad")];
      cells.forEach((c, i) => { const td = document.createElement("td"); if (i === 5) td.className = "n"; td.appendChild(c); row.appendChild(td); });
    } else {
      row = document.createElement("li");
      [text("span", time(ev.timestamp), "t"), status, text("span", ev.task), job].forEach((c) => row.appendChild(c));
    }
    feed.prepend(row);
    const max = Number(feed.dataset.max || 100);
    while (feed.children.length > max) feed.lastElementChild.remove();
    const count = document.getElementById("feed-count");
    if (count) count.textContent = ++seen + " events";
  }

  // A form being sent (cancel, retry) navigates away: its own event must not reload this page
  // over the answer.
  let leaving = false;
  document.addEventListener("submit", (e) => {
    if (e.defaultPrevented || e.target.id === "live-filter") return;
    leaving = true;
    if (source) source.close();
  });

  // Events sent while the stream was not connected (before the first open, or during a
  // reconnect) are missed, as pub/sub does not replay: read the state once on every (re)open.
  function resync() {
    if (document.getElementById("workflow")) return resyncWorkflow();
    const card = document.getElementById("job");
    if (card) {
      fetch(base + "/api/jobs/" + encodeURIComponent(card.dataset.job))
        .then((r) => r.json())
        .then((j) => { if (!leaving && j.status !== card.dataset.status) window.location.reload(); });
    } else if (document.getElementById("queues")) {
      fetch(base + "/api/overview").then((r) => r.json()).then(onOverview);
    }
  }

  // The workflow page: each member's job event redraws that member's status in place; the
  // workflow's own end (or a stream (re)opening) re-reads the workflow once.
  function setStatus(el, status) {
    if (!el || el.textContent === status) return;
    el.textContent = status;
    el.className = "status s-" + status;
  }

  function memberSpan(jobId) {
    return document.querySelector('.wf-member[data-job="' + CSS.escape(jobId) + '"]');
  }

  let wfBusy = false, wfAgain = false;
  function onMemberEvent(ev) {
    const span = memberSpan(ev.job_id);
    if (span) setStatus(span.querySelector(".status"), ev.status);
    if (wfBusy) wfAgain = true; // a read under way may predate this event: read once more
  }

  function resyncWorkflow() {
    const card = document.getElementById("workflow");
    if (!card || leaving) return;
    if (wfBusy) { wfAgain = true; return; }
    wfBusy = true;
    fetch(base + "/api/workflows/" + encodeURIComponent(card.dataset.workflow))
      .then((r) => r.json())
      .then((w) => { if (w.status && !leaving) drawWorkflow(card, w); })
      .finally(() => {
        wfBusy = false;
        if (wfAgain) { wfAgain = false; resyncWorkflow(); }
      });
  }

  function drawWorkflow(card, w) {
    card.dataset.status = w.status;
    setStatus(document.getElementById("workflow-status"), w.status);
    if (w.status !== "running") {
      const actions = document.getElementById("workflow-actions");
      if (actions) actions.remove();
    }
    for (const m of w.members) {
      const span = memberSpan(m.job_id);
      if (!span) continue;
      setStatus(span.querySelector(".status"), m.status);
      const err = span.querySelector(".member-error");
      if (err) err.textContent = m.error || "";
    }
    if (w.failed_member) {
      const failed = document.getElementById("workflow-failed");
      if (!failed.querySelector("a")) failed.appendChild(link(base + "/jobs/" + w.failed_member, w.failed_member, "mono"));
      document.getElementById("workflow-error").textContent = w.error || "-";
      for (const el of card.querySelectorAll(".facts [hidden]")) el.hidden = false;
    }
  }

  function reloadJob(ev) {
    const card = document.getElementById("job");
    if (!leaving && card && card.dataset.job === ev.job_id) window.location.reload();
  }

  function onOverview(data) {
    const table = document.getElementById("queues");
    if (!table) return;
    const tbody = table.tBodies[0];
    for (const q of data.queues) {
      let row = tbody.querySelector('tr[data-queue="' + CSS.escape(q.queue) + '"]');
      if (!row) { window.location.reload(); return; } // a new queue: redraw the page once
      for (const cell of row.querySelectorAll("[data-f]")) {
        const value = String(q[cell.dataset.f]);
        const target = cell.querySelector("a") || cell;
        if (target.textContent !== value) {
          target.textContent = value;
          cell.classList.remove("flash-cell"); void cell.offsetWidth; cell.classList.add("flash-cell");
        }
      }
    }
    for (const c of data.charts || []) {
      const fig = document.querySelector('[data-chart="' + c.key + '"]');
      if (!fig) continue;
      fig.querySelector(".line").setAttribute("points", c.line);
      fig.querySelector(".area").setAttribute("points", c.area);
      fig.querySelector(".latest").textContent = c.latest;
      fig.querySelector(".peak").textContent = c.peak;
    }
    const updated = document.getElementById("updated");
    if (updated) updated.textContent = new Date().toLocaleTimeString();
  }

  function liveQuery(form) {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) params.append(k, v);
    return params.toString();
  }

  if (page === "overview") connect("");
  if (page === "live") {
    const form = document.getElementById("live-filter");
    connect(liveQuery(form));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = liveQuery(form);
      history.replaceState(null, "", q ? "?" + q : location.pathname);
      connect(q);
    });
  }
  const card = document.getElementById("job");
  if (card) connect("job=" + encodeURIComponent(card.dataset.job));
  const wf = document.getElementById("workflow");
  if (wf) connect("workflow=" + encodeURIComponent(wf.dataset.workflow));

  const all = document.getElementById("pick-all");
  if (all) all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('input[name="ids"]')) box.checked = all.checked;
  });
})();
