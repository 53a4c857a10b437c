// Attendance marking over the WebSocket, as the tutor. setup() builds a class through the HTTP API (as in
// the README's "A class through the API"): a course, a group class whose first meeting starts in 5 minutes,
// the demo student enrolled with a package big enough for the run, activated. Then each VU joins
// `meeting:<id>` as the tutor and sends `mark_attendance` commands alternating present/late, timing each
// until its ack. DEMO: the path of `liveclass seed-demo --json` output. Env: VUS (5), SECS (20).
import http from "k6/http";
import { WebSocket } from "k6/experimental/websockets";
import { check, fail } from "k6";
import { Trend, Rate } from "k6/metrics";

const BASE = __ENV.BASE || "ws://127.0.0.1:8080";
const API = `${BASE.replace(/^ws/, "http")}/api/v1`;
const DEMO = JSON.parse(open(__ENV.DEMO || "./demo.json"));
const markTime = new Trend("mark_attendance_ms", true);
const markOk = new Rate("mark_attendance_ok");
const SECS = Number(__ENV.SECS || 20);

export const options = {
  scenarios: { mark: { executor: "per-vu-iterations", vus: Number(__ENV.VUS || 5), iterations: 1, maxDuration: `${SECS + 60}s` } },
  thresholds: {
    mark_attendance_ok: ["rate>0.99"],
    mark_attendance_ms: ["p(95)<200", "p(99)<500"],
  },
};

function post(path, token, body) {
  const r = http.post(`${API}${path}`, body === undefined ? "" : JSON.stringify(body), {
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  if (r.status >= 300) fail(`${path}: ${r.status} ${r.body}`);
  return r.json();
}

function iso(msFromNow) {
  return new Date(Date.now() + msFromNow).toISOString().replace(/\.\d+Z$/, "Z");
}

export function setup() {
  const admin = DEMO.admin.access_token;
  const course = post("/courses", admin, { title: "k6 course", lessons: [{ title: "Lesson 1" }] });
  const min = 60 * 1000;
  const cls = post("/classes", admin, {
    kind: "group", title: `k6 attendance ${Date.now()}`, course_id: course.id, instructor_id: DEMO.tutor.id,
    total_meetings: 1, capacity: 10, timezone: "Europe/Berlin",
    meetings: [{ starts_at: iso(5 * min), ends_at: iso(65 * min) }],
  });
  post(`/classes/${cls.id}/enrollments`, admin, { student_id: DEMO.student.id, reference: `k6-${Date.now()}` });
  post(`/classes/${cls.id}/activate`, admin);
  return { meeting: cls.meetings[0].id, tutor: DEMO.tutor.access_token, student: DEMO.student.id };
}

export default function (s) {
  const room = `meeting:${s.meeting}`;
  const ws = new WebSocket(`${BASE}/ws?token=${s.tutor}`);
  const pending = new Map();
  let id = 10;
  let stop = false;
  const next = () => {
    if (stop) return;
    const n = id++;
    pending.set(n, Date.now());
    const status = n % 2 === 0 ? "present" : "late";
    ws.send(JSON.stringify({ type: "command", id: n, room, name: "mark_attendance", args: { student_id: s.student, status, allow_negative: true } }));
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") ws.send(JSON.stringify({ type: "join", id: 1, room }));
    else if (m.type === "joined" && m.id === 1) {
      setTimeout(() => { stop = true; ws.close(); }, SECS * 1000);
      next();
    } else if ((m.type === "ack" || m.type === "error") && pending.has(m.id)) {
      markTime.add(Date.now() - pending.get(m.id));
      pending.delete(m.id);
      markOk.add(m.type === "ack");
      if (m.type === "error") console.warn(JSON.stringify(m));
      next();
    } else if (m.type === "error" && m.id === 1) {
      check(m, { "joined the meeting": () => false });
      ws.close();
    }
  };
}
