// Whiteboard burst: one tutor-like VU draws DRAWS puts as fast as it can into a room where VUS-1 others
// watch; watchers check they saw every op in offset order. Env: VUS (50), DRAWS (500).
import { WebSocket } from "k6/experimental/websockets";
import { Trend, Counter, Rate } from "k6/metrics";
import { lobby, tokenFor, url } from "./lib.js";

const seenAll = new Rate("board_converged");
const drawLatency = new Trend("draw_latency", true);
const acks = new Counter("draw_acks");
const VUS = Number(__ENV.VUS || 50);
const DRAWS = Number(__ENV.DRAWS || 500);

export const options = {
  scenarios: { burst: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: "60s" } },
  thresholds: {
    board_converged: ["rate==1"],
    draw_latency: ["p(99)<100"],
    draw_acks: [`count==${DRAWS}`],
  },
};

export default function () {
  const me = tokenFor(__VU);
  const room = lobby(`k6-board-${__ENV.RUN || "0"}`);
  const drawer = __VU === 1;
  const ws = new WebSocket(url(me.token));
  let start = null; // first offset after our join
  let last = null;
  let ordered = true;
  let ops = 0;
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") ws.send(JSON.stringify({ type: "join", id: 1, room }));
    else if (m.type === "joined" && m.id === 1) {
      if (drawer) {
        setTimeout(() => {
          for (let i = 0; i < DRAWS; i++) {
            const object = { kind: "line", x: i, y: i * 2, color: "#333", at: Date.now() };
            ws.send(JSON.stringify({ type: "draw", id: 100 + i, room, op: { action: "put", key: `k${i % 64}`, object } }));
          }
        }, 2000);
      }
      setTimeout(() => ws.close(), 15000);
    } else if (m.type === "ack" && m.id >= 100) acks.add(1);
    else if (m.type === "message" && m.room === room && m.data && m.data.kind === "draw") {
      if (last !== null && m.offset !== last + 1) ordered = false;
      if (start === null) start = m.offset;
      last = m.offset;
      ops++;
      const at = m.data.op && m.data.op.object && m.data.op.object.at;
      if (at) drawLatency.add(Date.now() - at);
    }
  };
  ws.onclose = () => seenAll.add(ordered && ops === DRAWS);
}
