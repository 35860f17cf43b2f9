// The cluster dashboard: polls the router's /dashboard/state.json about once a second (the router's
// gossip map plus each live frontend's own /cluster) and redraws the tables. No reload needed.
//
// window.dashboard exposes the last state and refresh count to tests (tests/browser/).
"use strict";

(() => {
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const dashboard = { state: null, refreshes: 0, errors: 0 };
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

  // One word per member: what gossip says, or "draining" for a live frontend taking no new work.
  function stateOf(member) {
    if (member.status !== "alive") return member.status; // suspect | dead | left
    return member.serving === "draining" ? "draining" : "alive";
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
        { class: `${word} zone-${m.zone}`, "data-node": m.node_id, "data-state": word },
        el("td", {}, el("span", { class: "node" }, m.node_id)),
        el("td", {}, m.role),
        el("td", {}, m.zone),
        el("td", { class: "status" }, pill(word), unreachable ? el("span", { class: "muted" }, ` ${report.error}`) : ""),
        el("td", { class: "num" }, Number(m.load).toFixed(2)),
        el("td", { class: "num" }, m.incarnation),
        el("td", { class: "num conns" }, m.role === "frontend" ? conns : ""),
        el("td", { class: "num homes" }, m.role === "frontend" ? homes : ""),
        el("td", { class: "num replicas" }, m.role === "frontend" ? replicas : ""),
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
      const nodes = (list) => (list.length ? list.map((n) => el("code", {}, n)) : [el("span", { class: "muted" }, "none")]);
      return el(
        "tr",
        { "data-channel": name },
        el("td", {}, el("code", {}, name)),
        el("td", { class: "home" }, ...nodes(where.home)),
        el("td", { class: "replica" }, ...nodes(where.replica)),
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
      drawMembers(state);
      drawChannels(state);
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
