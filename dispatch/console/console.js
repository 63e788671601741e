// ERSS 112 control-room console: plain JS, no build step, no external resources.
// Speaks the websocket protocol of docs/protocol.md like any other client: a snapshot,
// then live events (applied idempotently by event id), and after a disconnect a resume
// with ?after=<last position>.
"use strict";

(() => {
  const OPEN = new Set(["new", "awaiting_location", "callback", "queued", "offered", "dispatched", "on_scene"]);
  const UNIT_STATUSES = ["available", "offered", "dispatched", "en_route", "on_scene", "returning", "off_duty", "out_of_service"];
  const ACTIVE_ASSIGNMENT = new Set(["offered", "accepted"]);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const S = 1000; // SVG units per degree of latitude
  const M_PER_DEG = 111320;
  // Positions arrive pushed; the poll reconciles what no event carries (a desk is not
  // sent other desks' unit events).
  const UNITS_POLL_MS = 10000;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    ws: null,
    wsGeneration: 0,
    status: "connecting",
    position: null,          // last position processed (16-digit string)
    seen: new Set(),          // event ids applied
    incidents: new Map(),     // id -> incident (open and recently closed)
    units: new Map(),         // id -> unit
    assignments: new Map(),   // id -> assignment
    unitEventAt: new Map(),   // unit id -> time of its last status event (ms)
    selected: null,
    detail: null,
    geocode: [],
    proj: null,
    backoff: 500,
    reconnectTimer: null,
    pollTimer: null,
    snapshots: 0,
    resumes: 0,
    positionBatches: 0,
    stopped: true,
  };
  window.erssConsole = state; // for debugging and tests

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }
  function age(iso) {
    if (!iso) return "";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }
  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour12: false });
  }
  function fmtLoc(loc) {
    if (!loc || loc.lat === undefined || loc.lat === null) return "unknown";
    const r = loc.radius_m ?? loc.accuracy_m;
    return `${Number(loc.lat).toFixed(5)}, ${Number(loc.lon).toFixed(5)}` +
      (r !== null && r !== undefined ? ` ±${Math.round(r)} m` : "") +
      (loc.method ? ` (${loc.method})` : "");
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let payload = null;
    try { payload = await response.json(); } catch { payload = null; }
    if (!response.ok) {
      const err = new Error((payload && (payload.detail || payload.error)) || `HTTP ${response.status}`);
      err.status = response.status;
      if (payload && typeof payload.detail !== "string") err.message = JSON.stringify(payload.detail ?? payload);
      throw err;
    }
    return payload;
  }

  // ---------------------------------------------------------------- login
  async function login(token) {
    state.token = token;
    $("login-error").textContent = "";
    let zones;
    try {
      zones = await api("GET", "/v1/zones");
    } catch (err) {
      state.token = null;
      sessionStorage.removeItem("erss.token");
      $("login-error").textContent = err.status === 401 ? "Invalid operator token." : `Cannot reach the server: ${err.message}`;
      return;
    }
    sessionStorage.setItem("erss.token", token);
    $("login").hidden = true;
    $("app").hidden = false;
    document.body.dataset.state = "app";
    state.stopped = false;
    drawZones(zones);
    drawLegend();
    await loadIncidentTypes();
    await refreshUnits();
    connect();
    state.pollTimer = setInterval(refreshUnits, UNITS_POLL_MS);
    setInterval(renderQueue, 1000);
  }

  // The deployment's incident types (config/incident_types.json) for the classify list.
  async function loadIncidentTypes() {
    let types;
    try {
      types = await api("GET", "/v1/incident-types");
    } catch {
      return; // classify stays empty until the next login; the rest of the console works
    }
    $("classify-type").replaceChildren(...types.map((t) => el("option", {
      value: t.name, text: `P${t.priority} ${t.label} (${t.plan.join(" + ")})`,
    })));
  }

  function logout() {
    sessionStorage.removeItem("erss.token");
    state.stopped = true;
    if (state.ws) state.ws.close();
    location.reload();
  }

  // ---------------------------------------------------------------- websocket
  function setStatus(s) {
    state.status = s;
    const node = $("conn-status");
    node.dataset.state = s;
    node.textContent = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[s] || s;
    document.body.dataset.conn = s;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    const generation = ++state.wsGeneration;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    // The token goes in the first message, not the URL: URLs end up in logs and histories.
    const ws = new WebSocket(`${proto}//${location.host}/v1/ws/console`);
    state.ws = ws;
    ws.onopen = () => {
      const auth = { type: "auth", token: state.token };
      if (state.position) auth.after = state.position;
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (msg) => {
      if (generation !== state.wsGeneration) return;
      let data;
      try { data = JSON.parse(msg.data); } catch { return; }
      onMessage(data);
    };
    ws.onclose = (ev) => {
      if (generation !== state.wsGeneration || state.stopped) return;
      if (ev.code === 4401) {
        state.stopped = true;
        sessionStorage.removeItem("erss.token");
        alert("The server refused the operator token; log in again.");
        location.reload();
        return;
      }
      if (ev.code === 4400) state.position = null; // not a position: start over with a snapshot
      setStatus("reconnecting");
      const delay = state.backoff;
      state.backoff = Math.min(state.backoff * 2, 5000);
      state.reconnectTimer = setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
    };
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "snapshot":
        applySnapshot(msg);
        state.snapshots += 1;
        state.backoff = 500;
        setStatus("live");
        break;
      case "replayed":
        if (msg.position && (!state.position || msg.position > state.position)) state.position = msg.position;
        state.resumes += 1;
        state.backoff = 500;
        setStatus("live");
        break;
      case "event":
        applyEvent(msg.event, msg.position);
        if (state.status !== "live" && state.position) { /* still replaying */ }
        break;
      case "positions":
        applyPositions(msg.units || []);
        break;
      case "error":
        console.warn("server error", msg);
        break;
      default:
        break;
    }
    document.body.dataset.position = state.position || "";
  }

  // Batches of units that moved, pushed about every second; a fix older than the one
  // already shown (a batch that crossed a snapshot) is ignored.
  function applyPositions(units) {
    for (const p of units) {
      const u = state.units.get(p.id);
      if (!u) continue; // not in this desk's fleet, or not known yet (next poll)
      if (u.location && u.location.time && p.at && Date.parse(p.at) < Date.parse(u.location.time)) continue;
      u.location = { lat: p.lat, lon: p.lon, time: p.at };
      u.zone_id = p.zone_id;
    }
    state.positionBatches += 1;
    // Only the map: rebuilding the unit panel and the assign list every second would
    // swallow clicks and close an open dropdown.
    scheduleUnitsOnMap();
  }

  let unitsPending = false;
  function scheduleUnitsOnMap() {
    if (unitsPending) return;
    unitsPending = true;
    requestAnimationFrame(() => { unitsPending = false; renderUnits(); });
  }

  function applySnapshot(msg) {
    state.position = msg.position;
    state.incidents.clear();
    for (const inc of msg.incidents || []) state.incidents.set(inc.id, { ...inc });
    for (const u of msg.units || []) state.units.set(u.id, { ...state.units.get(u.id), ...u });
    state.assignments.clear();
    for (const a of msg.assignments || []) state.assignments.set(a.id, { ...a });
    renderAll();
  }

  const missing = new Set();
  async function fetchIncident(id) {
    if (missing.has(id)) return;
    missing.add(id);
    try {
      const inc = await api("GET", `/v1/incidents/${id}`);
      if (!state.incidents.has(id)) {
        state.incidents.set(id, inc);
        for (const a of inc.assignments || []) state.assignments.set(a.id, { ...a });
        renderAll();
      }
    } catch (err) {
      console.warn("cannot load incident", id, err);
    } finally {
      missing.delete(id);
    }
  }

  function applyEvent(ev, position) {
    if (position && state.position && position <= state.position) return;
    if (position) state.position = position;
    if (state.seen.has(ev.id)) return;
    state.seen.add(ev.id);
    const d = ev.data || {};
    const iid = ev.incident_id;
    let inc = iid !== null && iid !== undefined ? state.incidents.get(iid) : undefined;

    if (ev.type === "incident.created") {
      inc = {
        id: iid, status: d.status, priority: d.priority, type: d.type, channel: d.channel,
        location: d.location, zone: d.zone, warnings: d.warnings, silent: d.silent,
        caller_history: d.caller_history, escalated: false, created_at: ev.at, updated_at: ev.at,
      };
      state.incidents.set(iid, inc);
    } else if (iid !== null && iid !== undefined && !inc) {
      fetchIncident(iid); // an incident from before our snapshot (or of another desk)
    }

    if (inc) {
      inc.updated_at = ev.at;
      if (d.incident_status) inc.status = d.incident_status;
      switch (ev.type) {
        case "incident.location_updated":
          inc.location = d.location;
          if (d.zone !== undefined) inc.zone = d.zone;
          break;
        case "incident.reprioritised":
          if (d.type) inc.type = d.type;
          if (d.priority) inc.priority = d.priority;
          break;
        case "incident.queued":
          inc.waiting_reason = d.reason; // e.g. held for a unit that can arrive in time
          break;
        case "incident.deescalated":
          inc.escalated = false;
          inc.escalation_reason = null;
          break;
        case "incident.escalated":
          inc.escalated = true;
          inc.escalation_reason = d.reason;
          break;
        case "incident.merged":
          inc.status = "merged";
          inc.merged_into = d.into;
          break;
        case "incident.closed":
          inc.status = "closed";
          inc.disposition = d.disposition;
          break;
        case "incident.callback_requested":
          inc.callback = d;
          break;
        case "incident.ready_to_close":
          inc.ready_to_close = true; // every unit has finished: the operator closes it
          break;
        default:
          break;
      }
    }

    if (ev.type.startsWith("assignment.") && d.assignment_id) {
      const a = state.assignments.get(d.assignment_id) || {
        id: d.assignment_id, incident_id: iid, unit_id: ev.unit_id,
      };
      const status = { "assignment.offered": "offered", "assignment.accepted": "accepted",
        "assignment.declined": "declined", "assignment.expired": "expired",
        "assignment.cancelled": "cancelled" }[ev.type];
      if (status) a.status = status;
      if (ev.type === "assignment.offered" && inc) inc.ready_to_close = false;
      if (ev.type === "assignment.offered") {
        a.offered_at = ev.at;
        a.expires_at = d.expires_at;
        a.travel_time_s = d.travel_time_s;
        a.tier = d.tier;
      } else {
        a.responded_at = ev.at;
      }
      state.assignments.set(a.id, a);
    }

    if (ev.type === "unit.status_changed" && ev.unit_id) {
      const u = state.units.get(ev.unit_id) || { id: ev.unit_id, callsign: ev.unit_id };
      u.status = d.to;
      // As the server does: a post holds while idle, and not past the unit's next job.
      const holds = ["available", "returning", "offered"];
      if (!holds.includes(d.to) || !holds.includes(d.from)) u.post = null;
      state.units.set(ev.unit_id, u);
      state.unitEventAt.set(ev.unit_id, Date.now());
      if (d.assignment_id && d.assignment_status) {
        const a = state.assignments.get(d.assignment_id);
        if (a) a.status = d.assignment_status;
      }
    }

    if (ev.type === "unit.post_assigned" && ev.unit_id) {
      const u = state.units.get(ev.unit_id) || { id: ev.unit_id, callsign: ev.unit_id };
      u.post = { lat: d.lat, lon: d.lon };
      state.units.set(ev.unit_id, u);
      state.unitEventAt.set(ev.unit_id, Date.now());
    }

    if (ev.type.startsWith("volunteer.") && iid !== null && iid !== undefined) volunteers.refresh(iid);

    scheduleRender();
    if (state.selected !== null && iid === state.selected) scheduleDetail();
  }

  // ---------------------------------------------------------------- units poll
  async function refreshUnits() {
    const started = Date.now();
    let units;
    try {
      units = await api("GET", "/v1/units");
    } catch {
      return; // the server may be restarting; the websocket state shows it
    }
    for (const u of units) {
      const known = state.units.get(u.id);
      const eventAt = state.unitEventAt.get(u.id) || 0;
      // PostgreSQL has positions a few seconds later than the push: keep a newer one.
      if (known && known.location && known.location.time && u.location && u.location.time
          && Date.parse(known.location.time) > Date.parse(u.location.time)) {
        u.location = known.location;
        u.zone_id = known.zone_id;
      }
      if (known && eventAt > started) {
        // A unit event arrived while we were fetching: it is newer than this answer.
        state.units.set(u.id, { ...known, ...u, status: known.status, post: known.post });
      } else {
        state.units.set(u.id, { ...known, ...u });
      }
    }
    scheduleRender();
  }

  // ---------------------------------------------------------------- SHOUT volunteers
  // Events say who was alerted, accepted or stood down (ids and states only: no personal
  // data in the event log); names and positions come from the operator route.
  const volunteers = (() => {
    const byIncident = new Map(); // incident id -> {consent, alerts}
    const timers = new Map();
    const ACTIVE = new Set(["alerted", "accepted"]);

    function refresh(iid) {
      clearTimeout(timers.get(iid));
      timers.set(iid, setTimeout(async () => {
        timers.delete(iid);
        try {
          byIncident.set(iid, await api("GET", `/v1/incidents/${iid}/volunteers`));
        } catch (err) {
          byIncident.delete(iid); // not on this desk, or gone
        }
        scheduleRender();
        if (state.selected === iid && state.detail) renderDetail();
      }, 150));
    }

    function layer() {
      let g = $("layer-volunteers");
      if (!g) { g = svg("g", { id: "layer-volunteers" }); $("layer-units").after(g); }
      return g;
    }

    function renderMarkers() {
      if (!state.proj) return;
      const g = layer();
      const keep = new Set();
      for (const [iid, list] of byIncident) {
        const inc = state.incidents.get(iid);
        if (inc && !OPEN.has(inc.status)) continue;
        for (const a of list.alerts) {
          if (!ACTIVE.has(a.state) || !a.position) continue;
          const key = `v:${a.alert_id}`;
          keep.add(key);
          const [x, y] = project(a.position.lon, a.position.lat);
          const s = 1.6 * state.proj.f;
          const n = keyed(g, key, () => { const p = svg("rect", { width: 2 * s, height: 2 * s }); p.append(svg("title")); return p; });
          n.setAttribute("x", (x - s).toFixed(2)); n.setAttribute("y", (y - s).toFixed(2));
          n.setAttribute("class", `volunteer volunteer-${a.state}`);
          n.setAttribute("data-testid", `volunteer-${a.volunteer_id}`);
          n.setAttribute("data-state", a.state);
          n.firstChild.textContent = `volunteer ${a.name ?? a.volunteer_id} — ${a.state}, ${a.distance_m} m from #${iid}`;
        }
      }
      for (const n of [...g.children]) if (!keep.has(n.dataset.key)) n.remove();
    }

    function renderList(iid, closed) {
      let ul = $("detail-volunteers");
      if (!ul) {
        ul = el("ul", { id: "detail-volunteers", "data-testid": "detail-volunteers" });
        $("detail-assignments").after(el("h3", { text: "Volunteers" }), ul);
      }
      const list = byIncident.get(iid);
      // Rebuilt only when it changed: the detail re-renders often, and a button replaced
      // under the operator's pointer loses the click.
      const sig = JSON.stringify([iid, closed, list || null]);
      if (ul.dataset.sig === sig) return;
      ul.dataset.sig = sig;
      const rows = (list ? list.alerts : []).map((a) => el("li", { "data-testid": "volunteer-row", "data-volunteer-id": a.volunteer_id ?? "", "data-state": a.state },
        el("b", { text: a.name ?? "(deleted)" }), " ",
        el("span", { class: "status", text: a.state }), ` · ${a.distance_m} m`,
        a.reason ? ` · ${a.reason}` : "", a.phone ? ` · ${a.phone}` : "", " ",
        ...(ACTIVE.has(a.state) && !closed && a.volunteer_id ? [el("button", { type: "button", class: "small", "data-testid": "stand-down", text: "stand down",
          onclick: () => act(`/v1/incidents/${iid}/volunteers/${a.volunteer_id}/stand-down`, { reason: "stood down by operator" }, "Volunteer stood down") })] : [])));
      if (list) rows.unshift(el("li", { class: "muted", text: `caller consent: ${list.consent.replace("_", " ")}` }));
      ul.replaceChildren(...(rows.length ? rows : [el("li", { class: "muted", text: "none alerted" })]));
    }

    return { refresh, renderMarkers, renderList };
  })();

  // ---------------------------------------------------------------- rendering
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => { renderPending = false; renderAll(); });
  }
  let detailTimer = null;
  function scheduleDetail() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 120);
  }

  function renderAll() {
    renderQueue();
    renderUnits();
    volunteers.renderMarkers();
    renderIncidents();
    renderSelection();
    renderAssignOptions();
    renderUnitPanel();
    const open = [...state.incidents.values()].filter((i) => OPEN.has(i.status)).length;
    const avail = [...state.units.values()].filter((u) => u.status === "available").length;
    $("counts").textContent = `${open} open · ${avail}/${state.units.size} units available`;
  }

  // ---------------------------------------------------------------- unit panel
  // Statuses an operator may set for a unit with no active job (POST /v1/units/{id}/status).
  const SETTABLE = [["available", "available"], ["off_duty", "off duty"], ["out_of_service", "out of service"]];
  const UNIT_ROWS = 50; // a desk's fleet; the filter narrows a city's

  function renderUnitPanel() {
    const words = $("unit-filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const matches = [...state.units.values()]
      .filter((u) => {
        const text = `${u.callsign ?? ""} ${u.id} ${u.agency ?? ""} ${u.status ?? ""} ${u.zone_id ?? ""} ${u.home_zone_id ?? ""}`.toLowerCase();
        return words.every((w) => text.includes(w));
      })
      .sort((a, b) => String(a.callsign ?? a.id).localeCompare(String(b.callsign ?? b.id)));
    const rows = matches.slice(0, UNIT_ROWS).map((u) => {
      const li = el("li", { "data-testid": "unit-row", "data-unit-id": u.id, "data-status": u.status },
        el("span", { class: "who", text: `${u.callsign ?? u.id} · ${u.agency ?? ""} · ${u.zone_id ?? "?"}` }),
        el("span", { class: `status status-${u.status}`, text: u.status }));
      // A unit on a job is steered through its incident (cancel, reassign), not here.
      if (SETTABLE.some(([s]) => s === u.status)) {
        for (const [status, label] of SETTABLE) {
          if (status === u.status) continue;
          li.append(el("button", { type: "button", class: "small", "data-testid": `unit-set-${status}`, text: label,
            onclick: () => setUnitStatus(u.id, status) }));
        }
      }
      return li;
    });
    if (matches.length > UNIT_ROWS) rows.push(el("li", { class: "muted", text: `${matches.length - UNIT_ROWS} more: narrow the filter` }));
    $("unit-list").replaceChildren(...rows);
  }

  async function setUnitStatus(unitId, status) {
    const msg = $("unit-message");
    msg.className = "";
    msg.textContent = "…";
    try {
      await api("POST", `/v1/units/${encodeURIComponent(unitId)}/status`, { status, reason: $("unit-reason").value });
      const u = state.units.get(unitId);
      if (u) { u.status = status; state.unitEventAt.set(unitId, Date.now()); }
      msg.className = "ok";
      msg.textContent = `${unitId}: ${status}`;
      scheduleRender();
    } catch (err) {
      msg.className = "fail";
      msg.textContent = `Refused for ${unitId}: ${err.message}`;
    }
  }

  function openIncidents() {
    return [...state.incidents.values()]
      .filter((i) => OPEN.has(i.status))
      .sort((a, b) => (a.priority ?? 9) - (b.priority ?? 9) ||
        String(a.created_at).localeCompare(String(b.created_at)) || a.id - b.id);
  }

  function callerFlags(inc) {
    return inc.caller_flags || (inc.caller_history && inc.caller_history.flags) || [];
  }

  function renderQueue() {
    const list = $("queue");
    const items = openIncidents();
    $("queue-count").textContent = `(${items.length})`;
    list.replaceChildren(...items.map((inc) => {
      const li = el("li", {
        "data-testid": "queue-item", "data-incident-id": inc.id, "data-status": inc.status,
        "data-priority": inc.priority,
        class: `p${inc.priority} ${inc.id === state.selected ? "selected" : ""} ${inc.escalated ? "escalated" : ""}`,
        onclick: () => select(inc.id),
      },
      el("span", { class: "prio", text: `P${inc.priority ?? "?"}` }),
      el("span", {}, el("b", { text: `#${inc.id} ` }), `${inc.type ?? ""} `, el("span", { class: "status", "data-testid": "queue-status", text: inc.status }),
        ...callerFlags(inc).map((f) => el("span", { class: "flag", "data-testid": "queue-flag", text: f })),
        inc.ready_to_close ? el("span", { class: "flag ready", "data-testid": "queue-ready", text: "ready to close" }) : ""),
      el("span", { class: "age", text: age(inc.created_at) }),
      el("span", { class: "sub", text: inc.zone ? inc.zone.name : (inc.location ? "outside every zone" : "no location") },
        inc.status === "queued" && inc.waiting_reason ? el("span", { class: "waiting", "data-testid": "queue-waiting", text: ` · ${inc.waiting_reason}` }) : ""));
      return li;
    }));
  }

  // Map projection: equirectangular, x scaled by cos(mid latitude), fitted to the zones.
  function project(lon, lat) {
    const p = state.proj;
    return [(lon - p.minLon) * p.k * S, (p.maxLat - lat) * S];
  }
  function metres(m) { return (m / M_PER_DEG) * S; }

  function rings(geometry) {
    if (!geometry) return [];
    if (geometry.type === "Polygon") return [geometry.coordinates];
    if (geometry.type === "MultiPolygon") return geometry.coordinates;
    return [];
  }

  function drawZones(fc) {
    let minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
    for (const f of fc.features) for (const poly of rings(f.geometry)) for (const ring of poly) for (const [lon, lat] of ring) {
      minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
      minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
    }
    if (!Number.isFinite(minLon)) { minLon = 85.7; maxLon = 85.95; minLat = 20.2; maxLat = 20.4; }
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    state.proj = { minLon, maxLat, k };
    const w = (maxLon - minLon) * k * S, h = (maxLat - minLat) * S;
    const pad = Math.max(w, h) * 0.03;
    // Marker sizes follow the map's extent (about 1/300 of it), whatever the city's size.
    state.proj.f = Math.max(w, h) / 300;
    state.view = { x: -pad, y: -pad, w: w + 2 * pad, h: h + 2 * pad };
    state.home = { ...state.view };
    setView();
    $("map").style.setProperty("--f", String(state.proj.f));
    const layer = $("layer-zones");
    layer.replaceChildren();
    state.zoneNames = new Map(fc.features.map((f) => [f.id, f.properties?.name ?? f.id]));
    const labels = [];
    for (const f of fc.features) {
      let d = "";
      let best = null;
      for (const poly of rings(f.geometry)) {
        for (const ring of poly) {
          d += ring.map(([lon, lat], i) => { const [x, y] = project(lon, lat); return `${i ? "L" : "M"}${x.toFixed(2)},${y.toFixed(2)}`; }).join("") + "Z";
        }
        if (!best || poly[0].length > best.length) best = poly[0];
      }
      const path = svg("path", { d, class: "zone", "data-testid": "zone", "data-zone-id": f.id, "fill-rule": "evenodd" });
      const title = svg("title");
      title.textContent = f.properties?.name ?? f.id;
      path.append(title);
      layer.append(path);
      if (best) {
        let cx = 0, cy = 0;
        for (const [lon, lat] of best) { const [x, y] = project(lon, lat); cx += x; cy += y; }
        const t = svg("text", { x: (cx / best.length).toFixed(2), y: (cy / best.length).toFixed(2), class: "zone-label" });
        t.textContent = f.properties?.name ?? f.id;
        t.dataset.size = String(best.length);
        labels.push(t);
      }
    }
    layer.append(...labels);
    declutter(labels);
  }

  // In the dense centre zone names ran into each other. Larger zones place their name
  // first; a name that would overlap one already placed is hidden (the zone's tooltip
  // and the detail panel still name it).
  function declutter(labels) {
    const placed = [];
    const bySize = [...labels].sort((a, b) => Number(b.dataset.size) - Number(a.dataset.size));
    for (const t of bySize) {
      const b = t.getBBox();
      const clash = placed.some((p) => b.x < p.x + p.width && p.x < b.x + b.width && b.y < p.y + p.height && p.y < b.y + b.height);
      t.classList.toggle("crowded", clash);
      if (!clash) placed.push(b);
    }
  }

  function zoneName(id) { return (state.zoneNames && state.zoneNames.get(id)) || id; }

  // Zoom with the wheel (around the pointer), pan by dragging, double-click to reset.
  function setView() {
    const v = state.view;
    $("map").setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  }
  function svgPoint(ev) {
    const m = $("map").getScreenCTM();
    if (!m) return null;
    const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    return p;
  }
  function wireMapControls() {
    const map = $("map");
    map.addEventListener("wheel", (ev) => {
      if (!state.view) return;
      ev.preventDefault();
      const p = svgPoint(ev);
      if (!p) return;
      const k = ev.deltaY < 0 ? 0.8 : 1.25;
      const v = state.view;
      const w = Math.min(Math.max(v.w * k, state.home.w / 40), state.home.w * 2);
      const scale = w / v.w;
      state.view = { x: p.x - (p.x - v.x) * scale, y: p.y - (p.y - v.y) * scale, w, h: v.h * scale };
      setView();
    }, { passive: false });
    let drag = null;
    map.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0 || !state.view) return;
      drag = { start: svgPoint(ev), moved: false };
    });
    map.addEventListener("pointermove", (ev) => {
      if (!drag || !drag.start) return;
      const p = svgPoint(ev);
      if (!p) return;
      const dx = p.x - drag.start.x, dy = p.y - drag.start.y;
      if (Math.abs(dx) + Math.abs(dy) < state.view.w / 500) return;
      drag.moved = true;
      state.view = { ...state.view, x: state.view.x - dx, y: state.view.y - dy };
      setView();
    });
    window.addEventListener("pointerup", () => { drag = null; });
    map.addEventListener("dblclick", () => { if (state.home) { state.view = { ...state.home }; setView(); } });
  }
  wireMapControls();

  function drawLegend() {
    const legend = $("legend");
    legend.replaceChildren(
      ...UNIT_STATUSES.map((s) => el("span", { style: `--c: var(--u-${s})`, text: s.replace(/_/g, " ") })),
      ...[1, 2, 3, 4].map((p) => el("span", { style: `--c: var(--p${p})`, text: `incident P${p}` })),
    );
  }

  function keyed(layer, key, create) {
    let node = layer.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (!node) { node = create(); node.dataset.key = key; layer.append(node); }
    return node;
  }

  function renderUnits() {
    if (!state.proj) return;
    const layer = $("layer-units");
    const keep = new Set();
    for (const u of state.units.values()) {
      if (!u.location) continue;
      const [x, y] = project(u.location.lon, u.location.lat);
      const key = `u:${u.id}`;
      keep.add(key); keep.add(`ul:${u.id}`);
      const f = state.proj.f;
      const c = keyed(layer, key, () => {
        const n = svg("circle", { r: 1.3 * f });
        n.append(svg("title"));
        // Clicking a unit on the map finds it in the unit panel.
        n.addEventListener("click", () => { $("unit-filter").value = u.callsign ?? u.id; renderUnitPanel(); });
        return n;
      });
      c.setAttribute("cx", x.toFixed(2)); c.setAttribute("cy", y.toFixed(2));
      c.setAttribute("class", `unit status-${u.status}`);
      c.setAttribute("data-testid", `unit-${u.id}`);
      c.setAttribute("data-status", u.status);
      c.firstChild.textContent = `${u.callsign ?? u.id} (${u.agency ?? ""}) — ${u.status}`;
      const t = keyed(layer, `ul:${u.id}`, () => svg("text", { class: "unit-label" }));
      t.setAttribute("x", (x + 1.8 * f).toFixed(2)); t.setAttribute("y", (y + 0.6 * f).toFixed(2));
      t.textContent = u.callsign ?? u.id;
      if (u.post && (u.status === "available" || u.status === "returning")) {
        // Where the engine asked it to wait (standby rule): a dashed line to the post.
        const [px, py] = project(u.post.lon, u.post.lat);
        keep.add(`up:${u.id}`);
        const line = keyed(layer, `up:${u.id}`, () => svg("line", { class: "unit-post" }));
        line.setAttribute("x1", x.toFixed(2)); line.setAttribute("y1", y.toFixed(2));
        line.setAttribute("x2", px.toFixed(2)); line.setAttribute("y2", py.toFixed(2));
        line.setAttribute("data-testid", `post-${u.id}`);
      }
    }
    for (const n of [...layer.children]) if (!keep.has(n.dataset.key)) n.remove();
  }

  function renderIncidents() {
    if (!state.proj) return;
    const layer = $("layer-incidents");
    const keep = new Set();
    for (const inc of openIncidents()) {
      if (!inc.location || inc.location.lat === null || inc.location.lat === undefined) continue;
      const [x, y] = project(inc.location.lon, inc.location.lat);
      const key = `i:${inc.id}`;
      keep.add(key);
      const g = keyed(layer, key, () => {
        const s = 3 * state.proj.f;
        const n = svg("path", { d: `M0,${-s} L${s},0 L0,${s} L${-s},0 Z` });
        n.append(svg("title"));
        n.addEventListener("click", () => select(inc.id));
        return n;
      });
      g.setAttribute("transform", `translate(${x.toFixed(2)},${y.toFixed(2)})`);
      g.setAttribute("class", `incident prio-${inc.priority} ${inc.id === state.selected ? "selected" : ""} ${inc.escalated ? "escalated" : ""}`);
      g.setAttribute("data-testid", `incident-marker-${inc.id}`);
      g.setAttribute("data-status", inc.status);
      g.firstChild.textContent = `#${inc.id} ${inc.type} P${inc.priority} — ${inc.status}`;
    }
    for (const n of [...layer.children]) if (!keep.has(n.dataset.key)) n.remove();
  }

  function renderSelection() {
    const layer = $("layer-selection");
    layer.replaceChildren();
    if (!state.proj || state.selected === null) return;
    const inc = state.incidents.get(state.selected);
    const loc = inc && inc.location;
    if (!loc || loc.lat === null || loc.lat === undefined) return;
    const [x, y] = project(loc.lon, loc.lat);
    const r = Math.max(metres(loc.radius_m ?? 0), 1.5 * state.proj.f);
    layer.append(svg("circle", { cx: x.toFixed(2), cy: y.toFixed(2), r: r.toFixed(3), class: "uncertainty", "data-testid": "uncertainty-circle", "data-radius-m": loc.radius_m ?? "" }));
  }

  function renderGeocode() {
    const layer = $("layer-geocode");
    layer.replaceChildren();
    const list = $("geocode-results");
    list.replaceChildren();
    state.geocode.forEach((r, i) => {
      const [x, y] = project(r.lon, r.lat);
      if (r.radius_m) layer.append(svg("circle", { cx: x, cy: y, r: metres(r.radius_m), class: "geocode-hit" }));
      const f = state.proj.f;
      layer.append(svg("circle", { cx: x, cy: y, r: 1.2 * f, class: "geocode-dot", "data-testid": "geocode-marker" }));
      const t = svg("text", { x: x + 1.5 * f, y: y - 1.5 * f, class: "geocode-label" });
      t.textContent = `${i + 1}. ${r.name}`;
      layer.append(t);
      const li = el("li", { "data-testid": "geocode-result", text: `${r.name} (${r.kind}) ±${Math.round(r.radius_m ?? 0)} m · score ${Number(r.score).toFixed(2)} · ${r.source} ` });
      // The caller's words, geocoded, become the selected incident's location.
      const target = state.selected;
      if (target !== null && state.detail && state.detail.id === target && OPEN.has(state.detail.status)) {
        li.append(el("button", { type: "button", class: "small", "data-testid": "geocode-place", text: `place #${target} here`,
          onclick: () => act(`/v1/incidents/${target}/location`,
            { lat: r.lat, lon: r.lon, radius_m: Math.max(1, r.radius_m ?? 100), reason: `geocoded: ${r.name}` },
            `Placed at ${r.name}`) }));
      }
      list.append(li);
    });
  }

  function renderAssignOptions() {
    const select = $("assign-unit");
    const current = select.value;
    const units = [...state.units.values()].sort((a, b) =>
      (a.status !== "available") - (b.status !== "available") || String(a.id).localeCompare(String(b.id)));
    select.replaceChildren(el("option", { value: "", text: "— choose a unit —" }), ...units.map((u) => el("option", {
      value: u.id,
      text: `${u.callsign ?? u.id} · ${u.agency ?? ""} · ${u.zone_id ?? ""} · ${u.status}`,
      disabled: u.status !== "available" ? true : null,
    })));
    if (current && units.some((u) => u.id === current)) select.value = current;
  }

  // ---------------------------------------------------------------- detail
  function select(id) {
    state.selected = id;
    $("detail").hidden = false;
    $("action-message").textContent = "";
    if (state.geocode.length) renderGeocode(); // no "place here" until its detail is in
    renderAll();
    loadDetail();
  }

  async function loadDetail() {
    const id = state.selected;
    if (id === null) return;
    volunteers.refresh(id);
    try {
      const detail = await api("GET", `/v1/incidents/${id}`);
      if (state.selected !== id) return;
      state.detail = detail;
      // The detail is authoritative for this incident's assignments.
      for (const a of detail.assignments || []) state.assignments.set(a.id, { ...state.assignments.get(a.id), ...a });
      renderDetail();
    } catch (err) {
      $("action-message").textContent = `Cannot load incident #${id}: ${err.message}`;
    }
  }

  function kv(pairs) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== "") dl.append(el("dt", { text: k }), el("dd", {}, v));
    return dl;
  }

  // A vehicle panic button's bus or cab: its plate, who runs it, what it is.
  function vehicleText(v) {
    const what = [v.registration || `IMEI ${v.imei}`, v.operator || "operator not in the register"];
    if (v.vehicle_type) what.push(v.vehicle_type);
    return what.join(" · ");
  }

  function renderDetail() {
    const d = state.detail;
    if (!d) return;
    const live = state.incidents.get(d.id) || {};
    $("detail").dataset.incidentId = d.id;
    $("detail").dataset.status = d.status;
    $("detail-title").textContent = `#${d.id} ${d.type} · P${d.priority}`;
    $("detail-summary").replaceChildren(kv([
      ["status", el("span", { class: "status", "data-testid": "detail-status", text: d.status })],
      ["zone", d.zone ? d.zone.name : "none"],
      ["other zones", (d.other_zones || []).map(zoneName).join(", ")],
      ["created", `${clock(d.created_at)} (${age(d.created_at)} ago)`],
      ["escalated", d.escalated ? (d.escalation_reason || "yes") : null],
      ["disposition", d.disposition],
      ["merged into", d.merged_into ? `#${d.merged_into}` : null],
      ["vehicle", d.vehicle ? el("span", { "data-testid": "detail-vehicle", text: vehicleText(d.vehicle) }) : null],
    ]));
    const closed = !OPEN.has(d.status);
    $("actions").hidden = closed;
    $("confirm-form").hidden = d.status !== "callback";

    $("detail-location").replaceChildren(kv([
      ["best fix", fmtLoc(d.location)],
      ["uncertainty", d.location && d.location.radius_m !== null && d.location.radius_m !== undefined ? `${Math.round(d.location.radius_m)} m radius (circle on the map)` : null],
      ["evidence", el("ul", {}, ...(d.reports || []).map((r) => el("li", { text: `report ${r.id} · ${r.channel}: ${fmtLoc(r.location)}` })))],
      ["updates", el("ul", {}, ...(d.events || []).filter((e) => e.type === "incident.location_updated").map((e) =>
        el("li", { text: `${clock(e.at)} ${fmtLoc(e.data.previous)} → ${fmtLoc(e.data.location)}` })))],
    ]));

    const created = (d.events || []).find((e) => e.type === "incident.created");
    const history = (created && created.data && created.data.caller_history) || live.caller_history;
    if (history) {
      $("detail-caller").replaceChildren(kv([
        ["flags", (history.flags || []).length ? el("span", {}, ...history.flags.map((f) => el("span", { class: "flag", "data-testid": "caller-flag", text: f }))) : "none"],
        ["previous incidents", history.incidents],
        ["blank calls 24 h", history.blank_calls_24h],
        ["hoaxes", history.hoaxes],
        ["recent", (history.recent || []).map((r) => `${(r.id ?? r.incident_id) ? `#${r.id ?? r.incident_id} ` : ""}${r.type ?? ""} ${r.status ?? ""}${r.disposition ? ` (${r.disposition})` : ""}`).join("; ")],
      ]));
    } else {
      $("detail-caller").replaceChildren(el("span", { class: "muted", text: "no caller history (anonymous device or none recorded)" }));
    }

    $("detail-assignments").replaceChildren(...(d.assignments || []).map((a) => {
      const unit = state.units.get(a.unit_id);
      const li = el("li", { "data-testid": "assignment-row", "data-unit-id": a.unit_id, "data-assignment-id": a.id, "data-status": a.status },
        el("b", { text: unit ? unit.callsign : a.unit_id }), " ",
        el("span", { class: "status", "data-testid": "assignment-status", text: a.status }),
        a.travel_time_s ? ` · ETA ${Math.round(a.travel_time_s / 60)} min` : "",
        a.status === "offered" && a.expires_at ? ` · expires ${clock(a.expires_at)}` : "", " ");
      if (ACTIVE_ASSIGNMENT.has(a.status)) {
        li.append(el("button", { type: "button", class: "small", "data-testid": "cancel-assignment", text: "cancel",
          onclick: () => act(`/v1/assignments/${a.id}/cancel`, { reason: "cancelled by operator" }, "Assignment cancelled") }));
      }
      return li;
    }));
    if (!(d.assignments || []).length) $("detail-assignments").append(el("li", { class: "muted", text: "none" }));
    volunteers.renderList(d.id, closed);

    const several = (d.reports || []).length > 1 && !closed;
    $("detail-reports").replaceChildren(...(d.reports || []).map((r) => el("li", { "data-testid": "report-row", "data-report-id": r.id },
      el("b", { text: r.channel }), ` #${r.id} at ${clock(r.received_at)}`,
      r.sender ? ` from ${r.sender}` : "", el("br"), `location: ${fmtLoc(r.location)}`,
      ...((r.warnings || []).length ? [el("br"), el("span", { class: "warn", text: `warnings: ${r.warnings.join("; ")}` })] : []),
      // A report attached to the wrong emergency becomes an incident of its own.
      ...(several ? [" ", el("button", { type: "button", class: "small", "data-testid": "split-report", text: "split off",
        onclick: () => splitReport(r.id) })] : []))));

    $("detail-timeline").replaceChildren(...(d.events || []).map((e) => el("li", { "data-testid": "timeline-event", "data-type": e.type },
      el("span", { class: "t", text: `${clock(e.at)} ` }), el("b", { text: e.type }),
      e.unit_id ? ` ${e.unit_id}` : "", e.actor ? ` by ${e.actor}` : "", summarise(e))));
    if (state.geocode.length) renderGeocode(); // its "place here" buttons follow the selection
    renderAll();
  }

  function summarise(e) {
    const d = e.data || {};
    const bits = [];
    if (d.text) bits.push(`“${d.text}”`);
    if (d.reason) bits.push(`reason: ${d.reason}`);
    if (d.disposition) bits.push(`disposition: ${d.disposition}`);
    if (d.tier) bits.push(`tier: ${d.tier}`);
    if (d.from && d.to) bits.push(`${d.from} → ${d.to}`);
    if (d.into) bits.push(`into #${d.into}`);
    if (d.previous && e.type === "incident.reprioritised") bits.push(`P${d.previous.priority ?? d.previous} → P${d.priority}`);
    return bits.length ? ` — ${bits.join(", ")}` : "";
  }

  async function splitReport(reportId) {
    const made = await act(`/v1/reports/${reportId}/split`, { reason: "not the same emergency (operator)" }, "Split off");
    if (made && made.id) {
      $("action-message").textContent = `Report ${reportId} is now incident #${made.id}`;
    }
  }

  async function act(path, body, okText) {
    const msg = $("action-message");
    msg.className = "";
    msg.textContent = "…";
    try {
      const answer = await api("POST", path, body);
      msg.className = "ok";
      msg.textContent = okText;
      await loadDetail();
      return answer || true;
    } catch (err) {
      msg.className = "fail";
      msg.textContent = `Refused: ${err.message}`;
      return false;
    }
  }

  // ---------------------------------------------------------------- wiring
  function onSubmit(id, handler) {
    $(id).addEventListener("submit", (ev) => { ev.preventDefault(); handler(); });
  }

  onSubmit("login-form", () => login($("token").value.trim()));
  $("logout-btn").addEventListener("click", logout);
  $("detail-close").addEventListener("click", () => {
    state.selected = null; state.detail = null; $("detail").hidden = true;
    if (state.geocode.length) renderGeocode();
    renderAll();
  });
  onSubmit("assign-form", () => {
    const unit = $("assign-unit").value;
    if (!unit) return;
    act(`/v1/incidents/${state.selected}/assign`, { unit_id: unit, reason: $("assign-reason").value }, `Offered to ${unit}`);
  });
  onSubmit("classify-form", () => act(`/v1/incidents/${state.selected}/classify`,
    { type: $("classify-type").value, reason: $("classify-reason").value }, "Classified"));
  onSubmit("confirm-form", () => act(`/v1/incidents/${state.selected}/confirm`,
    { reason: $("confirm-reason").value }, "Confirmed: dispatching"));
  onSubmit("note-form", async () => {
    if (await act(`/v1/incidents/${state.selected}/notes`, { text: $("note-text").value }, "Note added")) $("note-text").value = "";
  });
  onSubmit("merge-form", () => act(`/v1/incidents/${state.selected}/merge`,
    { into: Number($("merge-into").value) }, `Merged into #${$("merge-into").value}`));
  onSubmit("close-form", () => act(`/v1/incidents/${state.selected}/close`,
    { disposition: $("close-disposition").value }, "Closed"));
  onSubmit("geocode-form", async () => {
    try {
      const answer = await api("GET", `/v1/geocode?q=${encodeURIComponent($("geocode-q").value)}&limit=5`);
      state.geocode = answer.results || [];
      renderGeocode();
      if (!state.geocode.length) $("geocode-results").append(el("li", { "data-testid": "geocode-result", text: "no match" }));
    } catch (err) {
      state.geocode = [];
      renderGeocode();
      $("geocode-results").append(el("li", { text: `geocoding failed: ${err.message}` }));
    }
  });
  $("geocode-clear").addEventListener("click", () => { state.geocode = []; renderGeocode(); });
  $("unit-filter").addEventListener("input", renderUnitPanel);

  const saved = sessionStorage.getItem("erss.token");
  if (saved) {
    $("token").value = saved;
    login(saved);
  }
})();
