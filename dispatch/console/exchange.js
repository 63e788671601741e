// Incidents that travel (docs/exchange.md), for the console: hand the selected incident
// to another agency's CAD and follow the hand-off; issue a CAP public alert around it
// and cancel alerts in force. Self-contained: it reads console.js's state
// (window.erssConsole: token, selected incident) and adds its own controls.
"use strict";

(() => {
  const state = window.erssConsole;
  if (!state) return;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
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
    if (!response.ok) throw new Error((payload && payload.detail) || `HTTP ${response.status}`);
    return payload;
  }

  function say(id, text, ok) {
    const msg = $(id);
    msg.className = ok ? "ok" : "fail";
    msg.textContent = text;
  }

  // ------------------------------------------------------------ hand-offs (detail panel)
  const agency = el("select", { id: "handoff-agency", "data-testid": "handoff-agency", required: "" });
  const reason = el("input", { id: "handoff-reason", "data-testid": "handoff-reason", value: "their jurisdiction", required: "" });
  const handForm = el("form", { id: "handoff-form", "data-testid": "handoff-form" },
    el("label", {}, "Hand over to ", agency), reason,
    el("button", { type: "submit", id: "handoff-btn", "data-testid": "handoff-btn", text: "Hand over" }));
  const handMsg = el("p", { id: "handoff-message", "data-testid": "handoff-message", role: "status" });
  const handList = el("ul", { id: "detail-handoffs", "data-testid": "detail-handoffs" });
  $("actions").append(handForm);
  $("detail-assignments").before(el("h3", { text: "Hand-offs" }), handMsg, handList);

  async function loadAgencies() {
    try {
      const agencies = await api("GET", "/v1/exchange/agencies");
      agency.replaceChildren(...agencies.map((a) => el("option", { value: a.id, text: `${a.name} (${a.type})` })));
      handForm.hidden = agencies.length === 0;
    } catch { handForm.hidden = true; }
  }

  async function loadHandoffs() {
    const id = state.selected;
    if (id === null || id === undefined) return;
    try {
      const rows = await api("GET", `/v1/incidents/${id}/handoffs`);
      if (state.selected !== id) return;
      handList.replaceChildren(...rows.map((h) => el("li", {
        "data-testid": "handoff-row", "data-agency": h.agency, "data-state": h.state,
        "data-remote-status": h.remote_status || "",
        text: `${h.agency}: ${h.state}${h.remote_status ? `, they say ${h.remote_status}` : ""}`
          + (h.state === "pending" && h.attempts ? ` (${h.attempts} tries; ${h.last_error || "no answer"})` : ""),
      })));
    } catch (err) { say("handoff-message", `Cannot load hand-offs: ${err.message}`, false); }
  }

  handForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", `/v1/incidents/${state.selected}/handoff`, { agency: agency.value, reason: reason.value });
      say("handoff-message", `Handed to ${agency.value}`, true);
    } catch (err) { say("handoff-message", `Refused: ${err.message}`, false); }
    loadHandoffs();
  });

  // The detail re-renders its timeline on every change of the incident (a hand-off
  // event included): the hand-offs follow.
  new MutationObserver(loadHandoffs).observe($("detail-timeline"), { childList: true });

  // ------------------------------------------------------------ public alerts (aside)
  const headline = el("input", { id: "alert-headline", "data-testid": "alert-headline", placeholder: "Headline the public reads", required: "", maxlength: "160" });
  const eventName = el("input", { id: "alert-event", "data-testid": "alert-event", placeholder: "Event (e.g. Gas leak)", required: "" });
  const severity = el("select", { id: "alert-severity", "data-testid": "alert-severity" },
    ...["Extreme", "Severe", "Moderate", "Minor"].map((s) => el("option", { value: s, text: s })));
  const radius = el("input", { id: "alert-radius", "data-testid": "alert-radius", type: "number", min: "0.1", step: "0.1", value: "1" });
  const alertForm = el("form", { id: "alert-form", "data-testid": "alert-form" }, headline, eventName, severity,
    el("label", {}, "km around the selected incident ", radius),
    el("button", { type: "submit", id: "alert-btn", "data-testid": "alert-btn", text: "Issue alert" }));
  const alertMsg = el("p", { id: "alert-message", "data-testid": "alert-message", role: "status" });
  const alertList = el("ol", { id: "alert-list", "data-testid": "alert-list" });
  $("unit-panel").after(el("section", { id: "alert-panel", "data-testid": "alert-panel" },
    el("h2", {}, "Public alerts ", el("a", { href: "/v1/cap/feed", target: "_blank", text: "feed" })),
    alertForm, alertMsg, alertList));

  async function loadAlerts() {
    if (!state.token) return;
    try {
      const alerts = await api("GET", "/v1/alerts");
      alertList.replaceChildren(...alerts.map((a) => {
        const item = el("li", { "data-testid": "alert-row", "data-identifier": a.identifier, "data-msg-type": a.msg_type },
          el("a", { href: a.url, target: "_blank", text: `${a.msg_type}: ${a.headline}` }));
        if (a.msg_type !== "Cancel") {
          const cancel = el("button", { type: "button", "data-testid": "alert-cancel", text: "Cancel" });
          cancel.addEventListener("click", async () => {
            try {
              await api("POST", `/v1/alerts/${encodeURIComponent(a.identifier)}/cancel`, { reason: "withdrawn by the control room" });
              say("alert-message", "Cancelled", true);
            } catch (err) { say("alert-message", `Refused: ${err.message}`, false); }
            loadAlerts();
          });
          item.append(" ", cancel);
        }
        return item;
      }));
    } catch (err) { say("alert-message", `Cannot load alerts: ${err.message}`, false); }
  }

  alertForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.selected === null || state.selected === undefined) {
      say("alert-message", "Select the incident to alert around first", false);
      return;
    }
    try {
      await api("POST", "/v1/alerts", {
        event: eventName.value, headline: headline.value, urgency: "Immediate",
        severity: severity.value, certainty: "Observed", categories: ["Safety"],
        incident_id: state.selected,
        area: { description: "Area around the emergency", radius_km: Number(radius.value) },
      });
      say("alert-message", "Alert issued", true);
    } catch (err) { say("alert-message", `Refused: ${err.message}`, false); }
    loadAlerts();
  });

  // Loaded once logged in (the app section shows), then kept fresh.
  new MutationObserver(() => {
    if (!$("app").hidden) { loadAgencies(); loadAlerts(); }
  }).observe($("app"), { attributes: true, attributeFilter: ["hidden"] });
  setInterval(loadAlerts, 10000);
})();
