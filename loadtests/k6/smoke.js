// CI smoke: connect, join a lobby room, send a chat, see it come back with an ack. Fails on any miss.
import { WebSocket } from "k6/experimental/websockets";
import { check } from "k6";
import { Counter } from "k6/metrics";
import { lobby, tokenFor, url } from "./lib.js";

const echoes = new Counter("chat_echoes");

export const options = {
  vus: 5,
  iterations: 10,
  thresholds: {
    checks: ["rate==1"],
    chat_echoes: ["count==10"],
  },
};

export default function () {
  const me = tokenFor(__VU);
  const room = lobby("smoke");
  const text = `smoke ${__VU}-${__ITER}-${Date.now()}`;
  const ws = new WebSocket(url(me.token));
  const seen = { welcome: false, joined: false, ack: false, echo: false };
  const timer = setTimeout(() => ws.close(), 5000);
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") {
      seen.welcome = m.version === 1 && m.user_id === me.user_id;
      ws.send(JSON.stringify({ type: "join", id: 1, room }));
    } else if (m.type === "joined" && m.id === 1) {
      seen.joined = m.room === room && typeof m.position.offset === "number";
      ws.send(JSON.stringify({ type: "chat", id: 2, room, text }));
    } else if (m.type === "ack" && m.id === 2) {
      seen.ack = m.offset > 0;
    } else if (m.type === "message" && m.room === room && m.data.kind === "chat" && m.data.text === text) {
      seen.echo = m.data.from.id === me.user_id;
      echoes.add(1);
    }
    if (seen.ack && seen.echo) {
      clearTimeout(timer);
      ws.close();
    }
  };
  ws.onclose = () => {
    check(seen, {
      welcome: (s) => s.welcome,
      joined: (s) => s.joined,
      ack: (s) => s.ack,
      "chat echoed": (s) => s.echo,
    });
  };
}
