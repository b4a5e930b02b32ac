/* The operator console's script: live updates, cues, ages.
 *
 * Server-Sent Events from /events: each message is one stored event (its
 * id is the store's event id; EventSource sends it back as Last-Event-ID
 * when it reconnects, and the server replays what was missed). A page
 * asks from the id it was rendered at (data-since), so nothing between
 * the render and the stream's start is lost.
 *
 * The queue is rendered by the server; an event that changes an
 * incident's place or handling fetches that one row again
 * (the rows that changed since the last ask come in one request,
 * /queue/rows?ids=); a TRACK updates the row's position cells in place.
 * Cues: a sound (Web Audio, once the operator has allowed it: browsers
 * keep sound blocked until a click, and the button says which it is) and
 * a banner for a new alarm, a different sound for DURESS; a supervisor
 * cue for an alarm unclaimed after data-claim-cue seconds, and for one
 * claimed but not progressed after data-progress-cue seconds.
 *
 * No inline script is allowed by the page's CSP; this file is all of it
 * (with map.js on the incident page). Nothing here builds HTML from event
 * data: text goes in with textContent; HTML comes only from the server's
 * own templates.
 */
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  var offset = parseFloat(body.dataset.serverNow) - Date.now() / 1000;
  var claimCue = parseFloat(body.dataset.claimCue || "10");
  var progressCue = parseFloat(body.dataset.progressCue || "120");
  var csrf = body.dataset.csrf;
  var banners = document.getElementById("banners");
  var lat = window.__panicLatency = [];
  window.__panicApplied = 0;

  function now() { return Date.now() / 1000 + offset; }

  function fmtAge(s) {
    if (s < 0) s = 0;
    s = Math.floor(s);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.floor(s / 60) + " min";
    var m = Math.floor(s % 3600 / 60);
    return Math.floor(s / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  /* ---------------------------------------------------------- sound */
  var audio = null;
  var soundBtn = document.getElementById("sound");
  function soundState() {
    if (!soundBtn) return;
    var on = audio && audio.state === "running";
    soundBtn.className = "sound " + (on ? "on" : "blocked");
    soundBtn.textContent = on ? "Sound: on" : (window.AudioContext ? "Sound: blocked - click to enable" : "Sound: unavailable");
    soundBtn.dataset.state = on ? "on" : "blocked";
  }
  function ensureAudio() {
    if (!audio && window.AudioContext) {
      audio = new AudioContext();
      audio.onstatechange = soundState;
    }
    return audio;
  }
  if (soundBtn) {
    ensureAudio();
    soundState();
    soundBtn.addEventListener("click", function () {
      var a = ensureAudio();
      if (a) a.resume().then(soundState, soundState);
    });
  }
  function tone(freq, start, dur) {
    var a = audio, o = a.createOscillator(), g = a.createGain();
    o.frequency.value = freq;
    o.type = "square";
    g.gain.setValueAtTime(0.0001, a.currentTime + start);
    g.gain.exponentialRampToValueAtTime(0.25, a.currentTime + start + 0.02);
    g.gain.exponentialRampToValueAtTime(0.0001, a.currentTime + start + dur);
    o.connect(g); g.connect(a.destination);
    o.start(a.currentTime + start); o.stop(a.currentTime + start + dur + 0.05);
  }
  function ring(kind) {
    if (!audio || audio.state !== "running") return false;
    if (kind === "duress") { for (var i = 0; i < 6; i++) tone(i % 2 ? 660 : 990, i * 0.22, 0.2); }
    else if (kind === "test") { tone(520, 0, 0.15); }
    else { tone(880, 0, 0.25); tone(880, 0.35, 0.25); }
    return true;
  }

  /* ---------------------------------------------------------- banners */
  function banner(id, cls, text, href) {
    var b = document.getElementById(id);
    if (!b) {
      b = document.createElement("div");
      b.id = id;
      banners.appendChild(b);
    }
    b.className = "banner " + cls;
    b.textContent = "";
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      b.appendChild(a);
    } else {
      b.textContent = text;
    }
    return b;
  }
  function unbanner(id) {
    var b = document.getElementById(id);
    if (b) b.remove();
  }

  // New alarms not yet claimed or closed: one banner names the newest and
  // counts the rest (DURESS first); each alarm rings once.
  var fresh = {}, freshOrder = [];
  function alarmBanner() {
    freshOrder = freshOrder.filter(function (id) { return fresh[id]; });
    if (!freshOrder.length) { unbanner("alarm"); return; }
    var duress = freshOrder.filter(function (id) { return fresh[id].kind === "duress"; });
    var id = duress.length ? duress[duress.length - 1] : freshOrder[freshOrder.length - 1];
    var f = fresh[id];
    var word = f.kind === "duress" ? "DURESS" : (f.kind === "test" ? "TEST alarm" : "NEW ALARM");
    var more = freshOrder.length - 1;
    banner("alarm", f.kind === "alert" ? "alarm" : f.kind,
           word + " #" + id + " - person " + (f.person || "?") + (more ? " (and " + more + " more new)" : ""),
           "/incident/" + id);
  }
  function alarmCue(ev) {
    var kind = ev.kind === "duress" ? "duress" : (ev.test ? "test" : "alert");
    if (!fresh[ev.incident_id]) freshOrder.push(ev.incident_id);
    fresh[ev.incident_id] = {kind: kind, person: ev.person_ref};
    alarmBanner();
    var rang = ring(kind);
    body.dataset.lastCue = kind + ":" + ev.incident_id + ":" + (rang ? "sound" : "silent");
    if (!document.title.startsWith("(!) ")) document.title = "(!) " + document.title;
  }
  function alarmHandled(id) {
    if (fresh[id]) { delete fresh[id]; alarmBanner(); }
  }

  /* ---------------------------------------------------------- the queue */
  var queue = document.getElementById("queue");
  function updateCount() {
    var n = queue.children.length;
    var c = document.getElementById("count");
    if (c) c.textContent = n + " open";
    var e = document.getElementById("empty");
    if (e) e.hidden = n > 0;
  }
  function place(row) {
    var key = row.dataset.sort, rows = queue.children;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i] !== row && rows[i].dataset.sort > key) { queue.insertBefore(row, rows[i]); return; }
    }
    queue.appendChild(row);
  }
  /* Rows to fetch again, asked for together (/queue/rows?ids=): a burst
   * of alarms costs one request. One request in flight at a time; what
   * changes meanwhile goes in the next. */
  var wanted = {}, inFlight = false;  // id -> {isNew, marks}
  function refreshRow(id, mark, isNew) {
    var w = wanted[id] || (wanted[id] = {isNew: false, marks: []});
    if (isNew) w.isNew = true;
    if (mark) w.marks.push(mark);
    if (!inFlight) setTimeout(flushRows, 0);
  }
  function flushRows() {
    if (inFlight) return;
    var ids = Object.keys(wanted).slice(0, 200);
    if (!ids.length) return;
    var isNew = {}, marks = [];
    ids.forEach(function (i) {
      if (wanted[i].isNew) isNew[i] = true;
      marks = marks.concat(wanted[i].marks);
      delete wanted[i];
    });
    inFlight = true;
    fetch("/queue/rows?ids=" + ids.join(","), {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (r.status === 401) { signedOut(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) return;
      var t = document.createElement("template");
      t.innerHTML = html;
      Array.prototype.slice.call(t.content.querySelectorAll(".row")).forEach(function (row) {
        var old = document.getElementById(row.id);
        if (row.dataset.gone) { if (old) old.remove(); return; }
        var id = row.dataset.id;
        if ((old && old.classList.contains("new")) || isNew[id]) row.classList.add("new");
        if (old) old.replaceWith(row);
        place(row);
        watchRow(row);
      });
      updateCount();
      tickAges();
      marks.forEach(applied);
    }).finally(function () {
      inFlight = false;
      if (Object.keys(wanted).length) flushRows();
    });
  }
  function trackInPlace(ev, mark) {
    var row = document.getElementById("inc-" + ev.incident_id);
    if (!row) { refreshRow(ev.incident_id, mark, false); return; }
    var p = ev.position;
    var cell = row.querySelector("[data-f=pos]");
    if (p && cell) {
      cell.textContent = "";
      cell.appendChild(document.createTextNode(p.lat.toFixed(5) + ", " + p.lon.toFixed(5)));
      cell.appendChild(document.createElement("br"));
      var s = document.createElement("small");
      s.appendChild(document.createTextNode(p.source + (p.accuracy_m != null ? " +/-" + p.accuracy_m + " m" : "") + ", "));
      var a = document.createElement("span");
      if (p.fix_time != null) a.dataset.ageFrom = p.fix_time;
      a.textContent = p.age_s != null ? fmtAge(p.age_s) : "age unknown";
      s.appendChild(a);
      s.appendChild(document.createTextNode(" old"));
      if (p.stale) {
        var st = document.createElement("strong");
        st.className = "stale";
        st.textContent = " STALE";
        s.appendChild(st);
      }
      cell.appendChild(s);
      if ((ev.evidence || []).some(function (e) { return e.newer; })) {
        var nv = document.createElement("small");
        nv.className = "newer-evidence";
        nv.textContent = "+ newer coarse evidence";
        cell.appendChild(document.createElement("br"));
        cell.appendChild(nv);
      }
    }
    var b = row.querySelector("[data-f=battery]");
    if (b && ev.battery != null) b.textContent = ev.battery + "%";
    applied(mark);
  }
  function notice(ev) {
    var ul = document.getElementById("notices");
    if (!ul) return;
    var li = document.createElement("li");
    li.textContent = new Date(ev.time * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z  " +
      (ev.label || ev.kind) + (ev.device_id != null ? "  device " + ev.device_id : "") +
      (ev.person_ref ? "  person " + ev.person_ref : "");
    ul.insertBefore(li, ul.firstChild);
    while (ul.children.length > 30) ul.lastChild.remove();
  }

  /* ---------------------------------------------------------- latency marks (for bench/bench_console.py) */
  function applied(mark) {
    if (!mark) return;
    mark.push(Date.now() / 1000);
    lat.push(mark);
    if (lat.length > 20000) lat.splice(0, 10000);
    window.__panicApplied++;
  }

  /* ---------------------------------------------------------- the incident page */
  var incidentId = null;
  var inc = document.querySelector(".incident");
  if (inc) incidentId = parseInt(inc.dataset.incident, 10);
  var panelTimer = null, panelMarks = [];
  function refreshPanel(mark) {
    if (mark) panelMarks.push(mark);
    if (panelTimer) return;
    panelTimer = setTimeout(function () {
      panelTimer = null;
      var marks = panelMarks; panelMarks = [];
      Promise.all([
        fetch("/incident/" + incidentId + "/status", {credentials: "same-origin", cache: "no-store"}).then(function (r) { return r.ok ? r.text() : null; }),
        fetch("/incident/" + incidentId + "/timeline", {credentials: "same-origin", cache: "no-store"}).then(function (r) { return r.ok ? r.text() : null; })
      ]).then(function (parts) {
        [["status", parts[0]], ["timeline", parts[1]]].forEach(function (p) {
          if (p[1] === null) return;
          var t = document.createElement("template");
          t.innerHTML = p[1].trim();
          var old = document.getElementById(p[0]);
          if (old && t.content.firstElementChild) old.replaceWith(t.content.firstElementChild);
        });
        tickAges();
        marks.forEach(applied);
      });
    }, 150);
  }

  /* ---------------------------------------------------------- events */
  var ALARM_KINDS = {alert: 1, test_alert: 1, duress: 1};
  var ROW_KINDS = {alert: 1, test_alert: 1, alert_repeat: 1, duress: 1, cancel: 1, stood_down: 1, claimed: 1,
                   released: 1, reassigned: 1, escalated: 1, closed: 1, reopened: 1, command: 1, note: 1};
  function handle(ev, received) {
    var mark = [ev.event_id, ev.time, received];
    if (ev.incident_id != null && ALARM_KINDS[ev.kind] && !ev.actor) alarmCue(ev);
    if (ev.incident_id != null && (ev.kind === "claimed" || ev.kind === "closed")) alarmHandled(ev.incident_id);
    if (queue) {
      if (ev.incident_id == null) { notice(ev); applied(mark); return; }
      if (ev.kind === "track") trackInPlace(ev, mark);
      else if (ROW_KINDS[ev.kind]) refreshRow(ev.incident_id, mark, ALARM_KINDS[ev.kind] && !ev.actor);
      else applied(mark);
    } else if (incidentId !== null && ev.incident_id === incidentId) {
      if (window.panicMap && ev.position) window.panicMap.update(ev.position);
      if (window.panicMap && "evidence" in ev) window.panicMap.evidence(ev.evidence);
      refreshPanel(mark);
    } else {
      applied(mark);
    }
  }

  var live = document.getElementById("live");
  function setLive(on, text) {
    if (!live) return;
    live.className = "live " + (on ? "on" : "off");
    live.textContent = text;
  }
  function signedOut() {
    banner("signedout", "signedout", "Signed out: alarms are NOT being shown on this screen. Sign in again.", "/login?next=" + encodeURIComponent(location.pathname + location.search));
    setLive(false, "live: signed out");
    if (es) es.close();
  }
  var es = null;
  if (page === "queue" || page === "incident" || page === "devices" || page === "stats" || page === "person" || page === "audit" || page === "users") {
    var since = body.dataset.since;
    es = new EventSource("/events" + (since ? "?since=" + encodeURIComponent(since) : ""));
    es.onopen = function () { setLive(true, "live"); };
    es.onerror = function () { setLive(false, "live: reconnecting"); };
    es.onmessage = function (m) {
      var received = Date.now() / 1000;
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      handle(ev, received);
    };
    es.addEventListener("reload", function () { location.reload(); });
    es.addEventListener("logout", signedOut);
  }

  /* ---------------------------------------------------------- ages and supervisor cues, every second */
  // Only the queue rows on screen get their ages rewritten (a long queue
  // would otherwise be laid out again every second); a row scrolled into
  // view is brought up to date at once.
  var onScreen = new Set();
  var seen = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { onScreen.add(e.target); ageIn(e.target, now()); } else onScreen.delete(e.target);
    });
  }) : null;
  function watchRow(row) { if (seen) seen.observe(row); }
  function ageIn(root, t) {
    var els = root.querySelectorAll("[data-age-from]");
    for (var i = 0; i < els.length; i++) {
      var v = parseFloat(els[i].dataset.ageFrom);
      if (isNaN(v)) continue;
      var txt = fmtAge(t - v);
      if (els[i].textContent !== txt) els[i].textContent = txt;
    }
  }
  function tickAges() {
    var t = now();
    if (!queue || !seen) { ageIn(document, t); return; }
    onScreen.forEach(function (row) { if (row.isConnected) ageIn(row, t); else onScreen.delete(row); });
  }
  if (queue) for (var qi = 0; qi < queue.children.length; qi++) watchRow(queue.children[qi]);
  function cues() {
    if (!queue) return;
    var t = now(), unclaimed = 0, stalled = 0;
    for (var i = 0; i < queue.children.length; i++) {
      var r = queue.children[i], d = r.dataset;
      var u = !d.owner && t - parseFloat(d.opened) > claimCue;
      var last = Math.max(parseFloat(d.claimed || "0"), parseFloat(d.progressed || "0"));
      var s = !!d.owner && last > 0 && t - last > progressCue;
      r.classList.toggle("cue-unclaimed", u);
      r.classList.toggle("cue-stalled", s);
      if (u) unclaimed++;
      if (s) stalled++;
    }
    if (unclaimed) banner("cue-unclaimed", "cue", "SUPERVISOR: " + unclaimed + " alarm(s) unclaimed for over " + claimCue + " s");
    else unbanner("cue-unclaimed");
    if (stalled) banner("cue-stalled", "cue", "SUPERVISOR: " + stalled + " claimed alarm(s) without progress for over " + progressCue + " s");
    else unbanner("cue-stalled");
  }
  setInterval(function () { tickAges(); cues(); }, 1000);
  cues();
  window.__panicReady = true;
})();
