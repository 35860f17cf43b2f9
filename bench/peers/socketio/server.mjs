// Socket.IO 4.8 peer server for bench/fanout_compare.py and bench/resume_catchup.py.
//
//   node server.mjs [--port 0] [--room bench]
//
// One process, the in-memory adapter, WebSocket transport only, connection-state recovery ON
// (every broadcast then carries an offset and is kept for missed-packet replay, as Continuity
// keeps its channel log). Subscribers join the room on connect (the one named by their query's
// `room`, else --room); a publisher emits ("pub", data, ack), or ("pub", room, data, ack) for
// bench/many_channels.py's rooms, and the server broadcasts ("m", data) to the room, then acks: the
// same shape as a Continuity publish (fan-out queued, then ACK). Prints {"port": N} on stdout once
// listening, and exits on SIGTERM/SIGINT.
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    room: { type: "string", default: "bench" },
  },
});

const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 1e6,
  connectionStateRecovery: { maxDisconnectionDuration: 120_000, skipMiddlewares: true },
});

io.on("connection", (socket) => {
  const role = socket.handshake.query.role;
  const room = socket.handshake.query.room || opts.room;
  if (!socket.recovered && role !== "pub" && role !== "idle") socket.join(room);
  socket.on("pub", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    const [to, data] = args.length >= 2 ? args : [opts.room, args[0]];
    io.to(to).emit("m", data);
    if (ack) ack();
  });
});

http.listen(Number(opts.port), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: http.address().port }) + "\n");
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
