// The group-chat demo: real ably-js (served from /vendor/ably.min.js) through the router that served
// this page. Auth: a short-lived JWT from /demo/token (the router signs it with its demo_key, scoped
// to demo:* channels and the name picked here); no API key ever reaches the browser.
//
// The connection panel reports what happened, honestly:
//   state       ably-js connection state (connecting, connected, disconnected, suspended, failed...)
//   continuity  "new" after the first attach; "resumed" after a reconnect that kept the connectionId
//               and every channel's stream; "lost" when a channel (re)attached or updated with
//               resumed=false after its first attach, a reason carried 90003, the connectionId
//               changed, or the connection failed. Lost stays shown until you leave.
// The tunnel button asks the router (dev mode only) to cut this page's traffic for a few seconds.
//
// window.demo exposes the same facts to tests (tests/browser/).
"use strict";

(() => {
  const CONTINUITY_LOST = 90003;
  const $ = (id) => document.getElementById(id);

  const demo = {
    config: null,
    state: "initialized",
    continuity: "none", // none | new | resumed | lost
    connectionId: null,
    serverId: null,
    transport: null,
    tag: null,
    received: [], // {serial, id, clientId, text, at}
    events: [], // {at, kind, detail}
    client: null,
    channel: null,
  };
  window.demo = demo;

  function log(kind, detail) {
    const entry = { at: Date.now(), kind, detail: detail || "" };
    demo.events.push(entry);
    const li = document.createElement("li");
    li.textContent = `${new Date(entry.at).toLocaleTimeString()}  ${kind}  ${entry.detail}`;
    $("events").prepend(li);
  }

  function pill(el, cls, text) {
    el.className = `pill ${cls}`;
    el.textContent = text;
  }

  function setContinuity(value, detail) {
    if (demo.continuity === "lost" && value !== "lost") return; // a gap happened: keep saying so
    demo.continuity = value;
    const labels = { none: "not attached", new: "new stream", resumed: "resumed", lost: "continuity lost" };
    pill($("continuity"), value, detail ? `${labels[value]} (${detail})` : labels[value]);
  }

  function reasonText(reason) {
    return reason ? `${reason.code || ""} ${reason.message || ""}`.trim() : "";
  }

  function randomTag() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function serverIdOf(client) {
    try {
      return client.connection.connectionManager.connectionDetails?.serverId ?? null;
    } catch (_) {
      return null;
    }
  }

  function transportOf(client) {
    try {
      return client.connection.connectionManager.activeProtocol?.getTransport()?.shortName ?? null;
    } catch (_) {
      return null;
    }
  }

  function render() {
    $("conn-id").textContent = demo.connectionId || "-";
    $("server-id").textContent = demo.serverId || "-";
    $("transport-used").textContent = demo.transport || "-";
    const joined = demo.client !== null;
    const connected = demo.state === "connected";
    $("join-button").disabled = joined;
    for (const id of ["name", "room", "transport"]) $(id).disabled = joined;
    $("leave").disabled = !joined;
    $("text").disabled = !joined;
    $("send").disabled = !joined;
    $("tunnel").disabled = !(joined && connected && demo.config?.tunnel);
  }

  function showMessage(msg) {
    const text = typeof msg.data?.text === "string" ? msg.data.text : JSON.stringify(msg.data);
    const entry = { serial: msg.serial ?? null, id: msg.id, clientId: msg.clientId ?? null, text, at: Date.now() };
    demo.received.push(entry);
    const li = document.createElement("li");
    li.dataset.serial = entry.serial || "";
    const who = document.createElement("b");
    who.textContent = entry.clientId || "anonymous";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = ` ${text}`;
    const serial = document.createElement("code");
    serial.className = "serial";
    serial.textContent = entry.serial || "";
    li.append(who, body, serial);
    $("messages").append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  function watchConnection(client) {
    let lastConnectedId = null;
    client.connection.on((change) => {
      demo.state = change.current;
      pill($("conn-state"), change.current, change.current);
      const why = reasonText(change.reason);
      log(`connection.${change.current}`, why);
      if (change.reason && change.reason.code === CONTINUITY_LOST) setContinuity("lost", CONTINUITY_LOST);
      if (change.current === "connected") {
        const id = client.connection.id;
        demo.connectionId = id;
        demo.serverId = serverIdOf(client);
        demo.transport = transportOf(client);
        if (lastConnectedId !== null) {
          if (id === lastConnectedId) {
            log("connection.resumed", `same connectionId ${id} on ${demo.serverId}`);
            if (demo.continuity !== "none") setContinuity("resumed");
          } else {
            log("connection.new_id", `${lastConnectedId} -> ${id}: the old connection was not resumed`);
            setContinuity("lost", "new connectionId");
          }
        }
        lastConnectedId = id;
      } else if (change.current === "failed") {
        setContinuity("lost", why || "failed");
      }
      render();
    });
  }

  function watchChannel(channel) {
    let attachedOnce = false;
    const states = ["attaching", "attached", "detaching", "detached", "suspended", "failed"];
    channel.on(states, (change) => {
      const why = reasonText(change.reason);
      const resumed = change.current === "attached" ? `resumed=${change.resumed} ` : "";
      log(`channel.${change.current}`, `${resumed}${why}`.trim());
      const gap = change.reason && change.reason.code === CONTINUITY_LOST;
      if (change.current === "attached") {
        if (!attachedOnce) {
          attachedOnce = true;
          setContinuity(gap ? "lost" : "new", gap ? CONTINUITY_LOST : "");
        } else if (change.resumed && !gap) {
          setContinuity("resumed");
        } else {
          setContinuity("lost", gap ? CONTINUITY_LOST : "attached, resumed=false");
        }
      } else if (change.current === "failed") {
        setContinuity("lost", why || "channel failed");
      }
    });
    // RTL12: an ATTACHED for an attached channel without RESUMED: the stream has a gap.
    channel.on("update", (change) => {
      const gap = change.reason && change.reason.code === CONTINUITY_LOST;
      log("channel.update", `resumed=${change.resumed} ${reasonText(change.reason)}`.trim());
      if (!change.resumed || gap) setContinuity("lost", gap ? CONTINUITY_LOST : "update, resumed=false");
    });
  }

  async function fetchToken(clientId) {
    const response = await fetch(`/demo/token?clientId=${encodeURIComponent(clientId)}`);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw body.error || { code: 40100, statusCode: response.status, message: `token: HTTP ${response.status}` };
    }
    return response.text();
  }

  demo.join = async ({ name, room, transport }) => {
    if (demo.client) throw new Error("already joined");
    const cfg = demo.config;
    demo.tag = randomTag();
    demo.continuity = "none";
    demo.received = [];
    $("messages").replaceChildren();
    setContinuity("none");
    try {
      localStorage.removeItem("ably-transport-preference");
    } catch (_) {
      // storage may be unavailable; the transports option decides anyway
    }
    const client = new Ably.Realtime({
      authCallback: (_params, callback) => fetchToken(name).then((t) => callback(null, t), (e) => callback(e, null)),
      clientId: name,
      endpoint: location.hostname,
      // Served over https (the router's tls_cert_file, or a TLS load balancer): wss:// likewise.
      ...(location.protocol === "https:"
        ? { tls: true, tlsPort: Number(location.port) || 443 }
        : { tls: false, port: Number(location.port) || 80 }),
      transports: [transport],
      transportParams: { [cfg.tagParam]: demo.tag },
      disableConnectivityCheck: true,
      fallbackHosts: [],
      // A demo wants to see the reconnect soon after a cut, not after ably-js's default 15 s.
      disconnectedRetryTimeout: 1000,
      suspendedRetryTimeout: 5000,
    });
    demo.client = client;
    demo.transport = transport;
    watchConnection(client);
    const channel = client.channels.get(`${cfg.channelPrefix}${room}`);
    demo.channel = channel;
    watchChannel(channel);
    $("room-name").textContent = channel.name;
    render();
    await channel.subscribe(showMessage);
    log("joined", `${name} in ${channel.name} over ${transport}`);
    render();
  };

  demo.send = async (text) => {
    if (!demo.channel) throw new Error("join first");
    const result = await demo.channel.publish("chat", { text });
    return result && result.serials ? result.serials : null;
  };

  demo.tunnel = async (seconds) => {
    const params = new URLSearchParams({ seconds: String(seconds), tag: demo.tag || "" });
    if (demo.connectionId) params.set("connectionId", demo.connectionId);
    const response = await fetch(`/dev/tunnel?${params}`, { method: "POST" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = body.error ? body.error.message : `HTTP ${response.status}`;
      $("tunnel-note").textContent = message;
      log("tunnel.refused", message);
      throw new Error(message);
    }
    $("tunnel-note").textContent = `in the tunnel for ${seconds} s (${body.cut} live request(s) cut)`;
    log("tunnel.entered", `${seconds} s, ${body.cut} live request(s) cut`);
    return body;
  };

  demo.leave = async () => {
    const client = demo.client;
    if (!client) return;
    demo.client = null;
    demo.channel = null;
    client.close();
    log("left", "");
    render();
  };

  async function start() {
    const response = await fetch("/demo/config.json");
    demo.config = await response.json();
    const cfg = demo.config;
    $("router-name").textContent = `router ${cfg.router} (zone ${cfg.zone})`;
    $("auth-note").textContent = cfg.auth
      ? "Auth: a one-hour token from this router's /demo/token, limited to demo:* channels and your name."
      : "This router has no demo_key configured, so it cannot issue demo tokens (see router/config.py).";
    $("join-button").disabled = !cfg.auth;
    if (!cfg.tunnel) {
      $("tunnel").title = "the tunnel test hook needs a router in dev mode";
      $("tunnel-note").textContent = "tunnel: off (router not in dev mode)";
    }
    const params = new URLSearchParams(location.search);
    if (params.get("name")) $("name").value = params.get("name");
    if (params.get("room")) $("room").value = params.get("room");
    if (params.get("transport")) $("transport").value = params.get("transport");

    $("join").addEventListener("submit", (event) => {
      event.preventDefault();
      demo
        .join({ name: $("name").value.trim(), room: $("room").value.trim(), transport: $("transport").value })
        .catch((e) => log("join.failed", String(e.message || e)));
    });
    $("compose").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("text").value;
      if (!text) return;
      $("text").value = "";
      demo.send(text).catch((e) => log("publish.failed", String(e.message || e)));
    });
    $("tunnel").addEventListener("click", () => {
      demo.tunnel(Number($("tunnel-seconds").value)).catch(() => {});
    });
    $("leave").addEventListener("click", () => demo.leave());
    render();
    document.body.dataset.ready = "true";
  }

  start().catch((e) => {
    $("auth-note").textContent = `could not load /demo/config.json: ${e}`;
  });
})();
