// The cluster dashboard: polls the router's /dashboard/state.json about once a second (the router's
// gossip map plus each live frontend's own /cluster) and redraws the tables. No reload needed.
//
// Below the tables, a timeline of what changed between refreshes (joins, state and incarnation
// changes, departures, channel homes), and a legend of the zone colours.
//
// window.dashboard exposes the last state, refresh count and timeline to tests (tests/browser/).
"use strict";

(() => {
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const TIMELINE_MAX = 100;
  // Zone colours, assigned in order of first sight (the legend shows them).
  const PALETTE = ["#2f6fdf", "#b7791f", "#7b3fb0", "#12805c", "#c0392b", "#0f8a9d"];
  const zoneColours = new Map();
  const dashboard = { state: null, refreshes: 0, errors: 0, timeline: [] };
  window.dashboard = dashboard;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  function pill(value) {
    return el("span", { class: `pill ${value}` }, value);
  }

  function zoneColour(zone) {
    if (!zoneColours.has(zone)) zoneColours.set(zone, PALETTE[zoneColours.size % PALETTE.length]);
    return zoneColours.get(zone);
  }

  function drawLegend(state) {
    const zones = [...new Set(state.members.map((m) => m.zone))].sort();
    $("zones").replaceChildren(...zones.map((zone) => el("span", { class: "zone-key" },
      el("span", { class: "swatch", style: `background:${zoneColour(zone)}` }), `zone ${zone}`)));
  }

  // What changed since the last refresh, as timeline events: members joining, changing state or
  // incarnation, leaving the map; channels getting a home or moving.
  let previous = null;
  function note(time, text, kind) {
    dashboard.timeline.unshift({ time, text, kind });
    dashboard.timeline.length = Math.min(dashboard.timeline.length, TIMELINE_MAX);
  }
  function diff(state) {
    const members = new Map(state.members.map((m) => [m.node_id, m]));
    const homes = new Map();
    for (const [node, report] of Object.entries(state.frontends)) {
      if (report.ok) for (const name of report.cluster.channels.home) homes.set(name, node);
    }
    if (previous !== null) {
      for (const [id, m] of members) {
        const was = previous.members.get(id);
        if (!was) note(state.time, `${id} (${m.role}, zone ${m.zone}) joined`, "alive");
        else if (stateOf(was) !== stateOf(m)) note(state.time, `${id}: ${stateOf(was)} → ${stateOf(m)}`, stateOf(m));
        else if (was.incarnation !== m.incarnation) {
          note(state.time, `${id} refuted a suspicion (incarnation ${was.incarnation} → ${m.incarnation})`, "suspect");
        }
      }
      for (const id of previous.members.keys()) {
        if (!members.has(id)) note(state.time, `${id} left the map`, "left");
      }
      for (const [name, node] of homes) {
        const was = previous.homes.get(name);
        if (was === undefined) note(state.time, `channel ${name} homed on ${node}`, "new");
        else if (was !== node) note(state.time, `channel ${name} moved home ${was} → ${node}`, "draining");
      }
    }
    previous = { members, homes };
  }

  function drawTimeline() {
    const items = dashboard.timeline.map((e) => el("li", { "data-kind": e.kind },
      el("span", { class: "muted" }, new Date(e.time).toLocaleTimeString()), " ", pill(e.kind), " ", e.text));
    $("timeline").replaceChildren(...items);
    $("no-events").hidden = items.length > 0;
  }

  // One word per member: what gossip says, or "draining" for a live frontend taking no new work.
  function stateOf(member) {
    if (member.status !== "alive") return member.status; // suspect | dead | left
    return member.serving === "draining" ? "draining" : "alive";
  }

  // Write availability as the frontend reports it (/cluster "write"): ok, degraded or refusing.
  function writesOf(cluster) {
    if (!cluster || !cluster.write) return "-";
    const w = cluster.write;
    const word = !w.available ? "refusing" : w.degraded ? "degraded" : "ok";
    const title = w.minority_known ? `${w.detail}: publishes refused at once (50350)` : w.detail;
    return el("span", { class: `writes-${word}`, title, "data-writes": word }, pill(word));
  }

  function drawMembers(state) {
    const body = $("members").tBodies[0];
    const rows = [];
    for (const m of state.members) {
      const word = stateOf(m);
      const report = state.frontends[m.node_id];
      const cluster = report && report.ok ? report.cluster : null;
      const conns = cluster ? `${cluster.connections.live} / ${cluster.connections.detached}` : "-";
      const homes = cluster ? cluster.channels.home.length : "-";
      const replicas = cluster ? cluster.channels.replica.length : "-";
      const unreachable = m.role === "frontend" && report && !report.ok && word === "alive";
      const row = el(
        "tr",
        { class: `${word} zone-${m.zone}`, "data-node": m.node_id, "data-state": word,
          style: `border-left: 4px solid ${zoneColour(m.zone)}` },
        el("td", {}, el("span", { class: "node" }, m.node_id)),
        el("td", {}, m.role),
        el("td", {}, m.zone),
        el("td", { class: "status" }, pill(word), unreachable ? el("span", { class: "muted" }, ` ${report.error}`) : ""),
        el("td", { class: "num" }, Number(m.load).toFixed(2)),
        el("td", { class: "num" }, m.incarnation),
        el("td", { class: "num conns" }, m.role === "frontend" ? conns : ""),
        el("td", { class: "num homes" }, m.role === "frontend" ? homes : ""),
        el("td", { class: "num replicas" }, m.role === "frontend" ? replicas : ""),
        el("td", { class: "writes" }, m.role === "frontend" ? writesOf(cluster) : ""),
        el("td", {}, el("code", {}, m.client_addr || "")),
      );
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function drawChannels(state) {
    const channels = new Map(); // name -> {home: [node], replica: [node]}
    for (const [node, report] of Object.entries(state.frontends)) {
      if (!report.ok) continue;
      for (const role of ["home", "replica"]) {
        for (const name of report.cluster.channels[role]) {
          if (!channels.has(name)) channels.set(name, { home: [], replica: [] });
          channels.get(name)[role].push(node);
        }
      }
    }
    const names = [...channels.keys()].sort();
    const rows = names.map((name) => {
      const where = channels.get(name);
      const nodes = (list) => list.map((n) => el("code", {}, n));
      // A channel with a replica and no home is idle: its home let it go, and the next attach or
      // publish elects one, which takes the log from the replica. Not "no home" as in lost.
      const home = where.home.length ? nodes(where.home)
        : [el("span", { class: "muted", title: "no attach or publish lately; the next one elects a home, "
          + "which takes the log from the replica" }, "idle (elected on next use)")];
      const replica = where.replica.length ? nodes(where.replica) : [el("span", { class: "muted" }, "-")];
      return el(
        "tr",
        { "data-channel": name, "data-idle": where.home.length ? "false" : "true" },
        el("td", {}, el("code", {}, name)),
        el("td", { class: "home" }, ...home),
        el("td", { class: "replica" }, ...replica),
      );
    });
    $("channels").tBodies[0].replaceChildren(...rows);
    $("no-channels").hidden = rows.length > 0;
  }

  async function refresh() {
    try {
      const response = await fetch("/dashboard/state.json", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const state = await response.json();
      dashboard.state = state;
      $("router-name").textContent = `router ${state.router.node_id} (zone ${state.router.zone})`;
      diff(state);
      drawLegend(state);
      drawMembers(state);
      drawChannels(state);
      drawTimeline();
      dashboard.refreshes += 1;
      $("updated").textContent = new Date(state.time).toLocaleTimeString();
      const live = $("live");
      live.className = "pill ok";
      live.textContent = "live";
    } catch (e) {
      dashboard.errors += 1;
      const live = $("live");
      live.className = "pill failed";
      live.textContent = `stale: ${e.message || e}`;
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  refresh();
})();
