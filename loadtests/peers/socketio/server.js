// Socket.IO 4 peer with liveclass's room semantics, for side-by-side benchmarks (see ../../README.md).
//
// Env: PORT (first port, default 3000), WORKERS (processes, default 1; worker i listens on PORT+i),
// REDIS_URL (use @socket.io/redis-adapter; required when WORKERS > 1 so rooms span processes),
// LIVECLASS_JWT_SECRET (HS256 secret, the same as our server's).
//
// Events mirror our protocol's frames: client emits "join" {id, room} and "chat" {id, room, text} and
// "ping" {id}; the server emits "welcome", "joined", "message" {room, offset, data}, "ack" {id, offset},
// "error" {id, code, message} and "pong" {id}. Offsets are per room and per process (no shared history,
// no recovery): Socket.IO's connection state recovery doesn't work with the Redis adapter.
"use strict";

const cluster = require("node:cluster");
const http = require("node:http");

const PORT = Number(process.env.PORT || 3000);
const WORKERS = Number(process.env.WORKERS || 1);
const REDIS_URL = process.env.REDIS_URL || "";
const SECRET = process.env.LIVECLASS_JWT_SECRET || "";

if (SECRET.length < 32) {
  console.error("LIVECLASS_JWT_SECRET must be at least 32 bytes");
  process.exit(2);
}
if (WORKERS > 1 && !REDIS_URL) {
  console.error("WORKERS > 1 needs REDIS_URL so that rooms span processes");
  process.exit(2);
}

if (cluster.isPrimary && WORKERS > 1) {
  for (let i = 0; i < WORKERS; i++) cluster.fork({ WORKER_INDEX: String(i) });
  cluster.on("exit", (w, code) => {
    console.error(`worker ${w.process.pid} exited with ${code}`);
    process.exit(1);
  });
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].kill();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

async function main() {
  const jwt = require("jsonwebtoken");
  const { Server } = require("socket.io");
  const port = PORT + Number(process.env.WORKER_INDEX || 0);
  const httpServer = http.createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404).end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    maxHttpBufferSize: 64 * 1024,
  });

  if (REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: `lcpeer${PORT}` }));
  }

  io.use((socket, next) => {
    const token = (socket.handshake.auth && socket.handshake.auth.token) || socket.handshake.query.token;
    if (!token) return next(new Error("unauthorized"));
    jwt.verify(token, SECRET, { algorithms: ["HS256"], issuer: "liveclass" }, (err, claims) => {
      if (err) return next(new Error("unauthorized"));
      socket.data.user = { id: claims.sub, tid: claims.tid, role: claims.role, name: claims.name || "" };
      next();
    });
  });

  const offsets = new Map(); // room -> last offset in this process
  const epoch = `${process.pid}-${Date.now()}`;
  let connections = 0;

  io.on("connection", (socket) => {
    const user = socket.data.user;
    connections++;
    const own = `user:${user.id}`;
    socket.join(own);
    socket.emit("welcome", { version: 1, user_id: user.id, connection_id: connections, heartbeat_secs: 25 });
    socket.emit("joined", { room: own, position: { epoch, offset: offsets.get(own) || 0 }, recovered: false, history: [], presence: [] });

    const join = (id, room) => {
      if (typeof room !== "string" || !mayJoin(user, room)) {
        return socket.emit("error", { id, room, code: "forbidden", message: "not allowed in this room" });
      }
      socket.join(room);
      socket.emit("joined", { id, room, position: { epoch, offset: offsets.get(room) || 0 }, recovered: false, history: [], presence: [] });
    };
    // A room joined as the connection opens (?join=), as our server does.
    if (typeof socket.handshake.query.join === "string") join(undefined, socket.handshake.query.join);

    socket.on("join", (m) => join(m && m.id, m && m.room));

    socket.on("leave", (m) => {
      if (m && typeof m.room === "string") socket.leave(m.room);
      socket.emit("left", { id: m && m.id, room: m && m.room });
    });

    socket.on("chat", (m) => {
      const room = m && m.room;
      if (typeof room !== "string" || !socket.rooms.has(room) || typeof m.text !== "string" || m.text.length > 2000) {
        return socket.emit("error", { id: m && m.id, code: "bad_request", message: "not a member or bad text" });
      }
      const offset = (offsets.get(room) || 0) + 1;
      offsets.set(room, offset);
      const data = { kind: "chat", from: { id: user.id, name: user.name }, text: m.text, at: Date.now() };
      io.to(room).emit("message", { room, offset, data });
      if (m.id !== undefined) socket.emit("ack", { id: m.id, offset });
    });

    socket.on("ping", (m) => socket.emit("pong", { id: m && m.id }));
  });

  httpServer.listen(port, "127.0.0.1", () => console.error(`socketio peer pid ${process.pid} on 127.0.0.1:${port}`));
  const stop = () => io.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// Lobby rooms `lobby:<tid>:<name>` are open to any user of that tenant; `user:<id>` only to that user.
function mayJoin(user, room) {
  if (room.startsWith("lobby:")) return room.startsWith(`lobby:${user.tid}:`);
  if (room.startsWith("user:")) return room === `user:${user.id}`;
  return false;
}
