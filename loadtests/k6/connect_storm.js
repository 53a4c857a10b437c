// Connect storm: many VUs connect, authenticate, join a lobby room of 30 and disconnect.
// Env: VUS (default 500), ITERS (default 2000).
import { WebSocket } from "k6/experimental/websockets";
import { check } from "k6";
import { Trend, Rate } from "k6/metrics";
import { lobby, tokenFor, url } from "./lib.js";

const joinTime = new Trend("connect_join_ms", true);
const joinedOk = new Rate("joined_ok");

export const options = {
  scenarios: {
    storm: {
      executor: "shared-iterations",
      vus: Number(__ENV.VUS || 500),
      iterations: Number(__ENV.ITERS || 2000),
      maxDuration: "60s",
    },
  },
  thresholds: {
    joined_ok: ["rate>0.99"],
    connect_join_ms: ["p(99)<1000"],
  },
};

export default function () {
  const n = (__VU * 1000 + __ITER) % 100000;
  const me = tokenFor(n);
  const room = lobby(`storm-${Math.floor(n / 30)}`);
  const t0 = Date.now();
  let ok = false;
  const ws = new WebSocket(url(me.token));
  const timer = setTimeout(() => ws.close(), 10000);
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") ws.send(JSON.stringify({ type: "join", id: 1, room }));
    if (m.type === "joined" && m.id === 1) {
      ok = true;
      joinTime.add(Date.now() - t0);
      clearTimeout(timer);
      ws.close();
    }
  };
  ws.onclose = () => {
    joinedOk.add(ok);
    check(ok, { joined: (v) => v });
  };
}
