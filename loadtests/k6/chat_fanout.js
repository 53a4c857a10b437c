// Chat fan-out: VUS members in one room; every SEND_EVERY_MS each of the first SENDERS VUs sends a chat
// whose text starts with its send time; every receiver records now - that time in `chat_latency`.
// Env: VUS (200), SENDERS (5), SEND_EVERY_MS (100), SECS (20).
import { WebSocket } from "k6/experimental/websockets";
import { Trend, Counter } from "k6/metrics";
import { lobby, tokenFor, url } from "./lib.js";

const latency = new Trend("chat_latency", true);
const delivered = new Counter("chat_delivered");
const VUS = Number(__ENV.VUS || 200);
const SECS = Number(__ENV.SECS || 20);

export const options = {
  scenarios: {
    fanout: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: `${SECS + 30}s` },
  },
  thresholds: {
    chat_latency: ["p(99)<50", "p(50)<10"],
    chat_delivered: ["count>0"],
  },
};

export default function () {
  const me = tokenFor(__VU);
  const room = lobby("k6-fanout");
  const sender = __VU <= Number(__ENV.SENDERS || 5);
  const ws = new WebSocket(url(me.token));
  let id = 1;
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") ws.send(JSON.stringify({ type: "join", id: id++, room }));
    else if (m.type === "joined" && m.room === room) {
      // Start sending once everyone had a moment to join; stop after SECS.
      if (sender) {
        setTimeout(() => {
          const iv = setInterval(() => {
            ws.send(JSON.stringify({ type: "chat", id: id++, room, text: `${Date.now()}:${"x".repeat(80)}` }));
          }, Number(__ENV.SEND_EVERY_MS || 100));
          setTimeout(() => clearInterval(iv), SECS * 1000);
        }, 3000);
      }
      setTimeout(() => ws.close(), (SECS + 5) * 1000);
    } else if (m.type === "message" && m.data && m.data.kind === "chat") {
      const sent = Number(m.data.text.split(":")[0]);
      if (sent > 0) {
        latency.add(Date.now() - sent);
        delivered.add(1);
      }
    }
  };
}
