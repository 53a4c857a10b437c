// End-to-end: two people in one class meeting, in headless Chromium, against the real server.
//
// It starts `target/debug/liveclass serve` on a free port with a temporary SQLite database, seeds the demo
// tenant (`liveclass seed-demo --json`), and as its admin creates a class whose one meeting began a minute
// ago (the join and attendance windows are open), with the demo tutor as instructor and the adult demo
// student enrolled. Then the tutor and the student each open the page in their own browser (fresh profile,
// fake camera and microphone), log in with e-mail and password, and join the meeting. Checked:
//   - each sees the other in the room's presence list;
//   - each decodes the other's video (the remote <video data-identity> has a size, and its frame count grows)
//     and receives their audio (the remote audio track is live and unmuted: packets arrive);
//   - chat in both directions;
//   - a whiteboard stroke drawn with the mouse by the tutor reaches the student's board, identical;
//   - the student's raised hand shows in the tutor's presence list and roster;
//   - the tutor sees the student in the roster (here) and in the attendance proposal (present, from the
//     media room), marks them present over the WebSocket, and the student is told;
//   - the student leaves and joins again: the board comes back from the snapshot, the chat from history,
//     drawing still works, and video flows both ways again.
//
// Run: `bash web/e2e/run.sh` (installs, builds, runs), or after a build `node web/e2e/lesson.test.mjs`.
// Environment: LIVECLASS_BIN (default target/debug/liveclass), CHROMIUM (default /usr/bin/chromium).
// For development only: E2E_PAGE=vite serves web/dist with `vite preview` (proxying to the server) instead
// of the server's own GET /; E2E_MEDIA=off skips the video checks; E2E_SCREENSHOTS=<dir> saves both pages
// at the end.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = resolve(WEB, '..');
const BIN = process.env.LIVECLASS_BIN ?? join(ROOT, 'target/debug/liveclass');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WEB_DIR = join(WEB, 'dist');
const MEDIA = process.env.E2E_MEDIA !== 'off';
const DEADLINE_MS = 120_000;
const STEP_MS = 15_000;
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

const started = Date.now();
const tmp = mkdtempSync(join(tmpdir(), 'liveclass-e2e-'));
const serverLog = join(tmp, 'server.log');
const children = [];
const browsers = [];
/** Each person's browser console and page errors, printed at the end. */
const consoleLines = [];

function log(msg) {
  console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

async function cleanup() {
  await Promise.allSettled(browsers.map((b) => b.close()));
  for (const c of children) {
    if (c.exitCode === null) c.kill('SIGTERM');
  }
  await Promise.all(
    children.map(
      (c) =>
        new Promise((r) => {
          if (c.exitCode !== null) return r();
          const t = setTimeout(() => (c.kill('SIGKILL'), r()), 3000);
          c.once('exit', () => (clearTimeout(t), r()));
        }),
    ),
  );
}

function report() {
  if (consoleLines.length) {
    console.log('--- browser console (warnings, errors, liveclass lines; last 60) ---');
    for (const l of consoleLines.slice(-60)) console.log(l);
  }
  if (existsSync(serverLog)) {
    const lines = readFileSync(serverLog, 'utf8')
      .trimEnd()
      .split('\n')
      .filter((l) => !/^\s+(\d+: |at )/.test(l)); // backtrace frames
    console.log(`--- server log (last 40 of ${lines.length} lines, backtrace frames left out) ---`);
    for (const l of lines.slice(-40)) console.log(l);
  }
}

// The whole run is bounded: past the deadline, everything is killed and the run fails.
const watchdog = setTimeout(async () => {
  console.error(`e2e: FAILED: still running after ${DEADLINE_MS / 1000} s; killing the server and the browsers`);
  report();
  await cleanup();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

after(async () => {
  report();
  await cleanup();
  rmSync(tmp, { recursive: true, force: true });
  log('server and browsers stopped');
});

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

// The server's settings are the test's alone: none of the caller's configuration variables pass through.
const inherited = Object.entries(process.env).filter(
  ([k]) => !/^(LIVECLASS_|LIVEKIT_|STRIPE_|DATABASE_URL|REDIS_URL|RUST_LOG)/.test(k),
);
const env = {
  ...Object.fromEntries(inherited),
  DATABASE_URL: `sqlite://${tmp}/e2e.db`,
  LIVECLASS_JWT_SECRET: 'e2e-secret-0123456789abcdef0123456789abcdef',
  // A server that doesn't know `web_dir` refuses to start with it, so vite mode leaves it out.
  ...(process.env.E2E_PAGE === 'vite' ? {} : { LIVECLASS_WEB_DIR: WEB_DIR }),
  LIVECLASS_LOG_FILTER: 'info,sqlx=warn',
  // The embedded SFU's media port: any free one, so that another server on this machine doesn't collide.
  LIVECLASS_RTC_UDP_PORT: '0',
  NO_COLOR: '1',
};

async function startServer() {
  assert.ok(existsSync(BIN), `no server binary at ${BIN}: run cargo build -p orchestrator`);
  assert.ok(existsSync(join(WEB_DIR, 'index.html')), `no ${WEB_DIR}/index.html: run npm run build in web/`);
  const port = await freePort();
  const out = openSync(serverLog, 'a');
  const server = spawn(BIN, ['serve', '--addr', `127.0.0.1:${port}`], { env, cwd: tmp, stdio: ['ignore', out, out] });
  children.push(server);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    assert.equal(server.exitCode, null, `the server exited with ${server.exitCode}; see its log below`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) return base;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server did not become ready within 20 s');
}

async function api(base, method, path, token, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** The demo tenant, and a class whose one meeting began a minute ago: tutor teaching, student enrolled. */
async function prepare(base) {
  const { stdout } = await promisify(execFile)(BIN, ['seed-demo', '--json'], { env, cwd: tmp });
  const demo = JSON.parse(stdout);
  const admin = demo.admin.access_token;
  const course = await api(base, 'POST', '/courses', admin, { title: 'E2E course', lessons: [{ title: 'Lesson 1' }] });
  const at = (min) => new Date(Math.floor(Date.now() / 1000) * 1000 + min * 60_000).toISOString().replace('.000', '');
  const cls = await api(base, 'POST', '/classes', admin, {
    kind: 'group',
    title: 'E2E class',
    course_id: course.id,
    instructor_id: demo.tutor.id,
    total_meetings: 1,
    capacity: 5,
    timezone: 'UTC',
    meetings: [{ starts_at: at(-1), ends_at: at(59) }],
  });
  await api(base, 'POST', `/classes/${cls.id}/enrollments`, admin, { student_id: demo.student.id, reference: 'e2e' });
  await api(base, 'POST', `/classes/${cls.id}/activate`, admin);
  return { demo, classId: cls.id, meetingId: cls.meetings[0].id };
}

/** Where the page is served: by the server itself (GET /), or with E2E_PAGE=vite by `vite preview`. */
async function pageOrigin(base) {
  if (process.env.E2E_PAGE !== 'vite') {
    const res = await fetch(`${base}/`);
    const html = await res.text();
    assert.ok(
      res.ok && html.includes('<title>liveclass</title>'),
      `the server does not serve the page: GET / answered ${res.status} (LIVECLASS_WEB_DIR=${WEB_DIR})`,
    );
    return base;
  }
  const port = await freePort();
  const vite = spawn(
    join(WEB, 'node_modules/.bin/vite'),
    ['preview', '--port', String(port), '--strictPort', '--host', '127.0.0.1'],
    {
      cwd: WEB,
      env: { ...process.env, LIVECLASS_API: base },
      stdio: ['ignore', openSync(join(tmp, 'vite.log'), 'a'), openSync(join(tmp, 'vite.log'), 'a')],
    },
  );
  children.push(vite);
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(origin)).ok) return origin;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('vite preview did not start');
}

/** One person: their own Chromium with a fresh profile, logged in on the page and inside the meeting. */
async function person(who, origin, email, meetingId) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmp, `profile-${who}-`)), {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is in the arguments
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  browsers.push(context);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || m.text().startsWith('liveclass'))
      consoleLines.push(`[${who} console.${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`[${who} pageerror] ${e.message}`));
  await page.goto(`${origin}/?tenant=demo`);
  await page.fill('#login-form [name=email]', email);
  await page.fill('#login-form [name=password]', 'demo-password');
  await page.click('#login-form button[type=submit]');
  await page.click(`button[data-meeting="${meetingId}"]`);
  await page.waitForSelector('#rt-status.ok');
  return page;
}

/** The page's error list, for assertion messages. */
async function errorsOn(page) {
  return (await page.locator('#errors li').allTextContents()).join(' | ') || 'none';
}

/** Frames decoded so far by the <video> of `identity` on `page` (null while there is no such video). */
function framesOf(page, identity) {
  return page.evaluate((id) => {
    const v = document.querySelector(`video[data-identity="${id}"]`);
    if (!v) return null;
    return { width: v.videoWidth, height: v.videoHeight, frames: v.getVideoPlaybackQuality().totalVideoFrames };
  }, identity);
}

test('two people in one class meeting', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  const base = await startServer();
  log(`server up at ${base} (log: ${serverLog})`);
  const { demo, meetingId } = await prepare(base);
  log(`meeting ${meetingId}: tutor ${demo.tutor.id}, student ${demo.student.id}`);
  const origin = await pageOrigin(base);
  const [tutor, student] = await Promise.all([
    person('tutor', origin, 'tutor@demo.liveclass.test', meetingId),
    person('student', origin, 'student@demo.liveclass.test', meetingId),
  ]);
  log('both logged in and in the meeting room');
  const tutorId = demo.tutor.id;
  const studentId = demo.student.id;

  await t.test('each sees the other in the room', async () => {
    await tutor.waitForSelector(`#presence li[data-user="${studentId}"]`);
    await student.waitForSelector(`#presence li[data-user="${tutorId}"]`);
  });

  await t.test('each decodes the other’s video', { skip: !MEDIA && 'E2E_MEDIA=off' }, async () => {
    for (const [who, page] of [
      ['tutor', tutor],
      ['student', student],
    ]) {
      await page.waitForSelector('#room-view[data-backend]');
      const backend = await page.getAttribute('#room-view', 'data-backend');
      assert.equal(
        backend,
        'embedded',
        `${who}: the join endpoint returned backend "${backend}", not the embedded SFU`,
      );
    }
    for (const [who, page, other] of [
      ['tutor', tutor, studentId],
      ['student', student, tutorId],
    ]) {
      try {
        await page.waitForFunction(
          (id) => {
            const v = document.querySelector(`video[data-identity="${id}"]`);
            return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
          },
          other,
          { timeout: 20_000 },
        );
      } catch {
        const media = await page.textContent('#media-status');
        const state = await framesOf(page, other);
        assert.fail(
          `${who} decodes no video from ${other}: video ${JSON.stringify(state)}, status "${media}", errors: ${await errorsOn(page)}`,
        );
      }
      const first = await framesOf(page, other);
      await page.waitForTimeout(1000);
      const second = await framesOf(page, other);
      log(`${who} sees ${other}: ${second.width}x${second.height}, ${first.frames} → ${second.frames} frames in 1 s`);
      assert.ok(second.frames > first.frames, `${who}: the remote video froze at ${first.frames} frames`);
    }
  });

  await t.test('each receives the other’s audio', { skip: !MEDIA && 'E2E_MEDIA=off' }, async () => {
    // A remote track is `muted` until its first packets arrive.
    for (const [who, page, other] of [
      ['tutor', tutor, studentId],
      ['student', student, tutorId],
    ]) {
      await page
        .waitForFunction(
          (id) => {
            const a = document.querySelector(`.tile[data-participant="${id}"] audio`);
            const track = a?.srcObject?.getAudioTracks()[0];
            return track && track.readyState === 'live' && !track.muted;
          },
          other,
          { timeout: 10_000 },
        )
        .catch(() => assert.fail(`${who} receives no audio from ${other}`));
    }
  });

  await t.test('chat in both directions', async () => {
    await student.fill('#chat-form [name=text]', 'hello from the student');
    await student.press('#chat-form [name=text]', 'Enter');
    await tutor.locator('#chat li.chat', { hasText: 'hello from the student' }).waitFor();
    await tutor.fill('#chat-form [name=text]', 'welcome, student');
    await tutor.click('#chat-form button');
    await student.locator('#chat li.chat', { hasText: 'welcome, student' }).waitFor();
  });

  await t.test('a whiteboard stroke reaches the other board', async () => {
    const box = await tutor.locator('#board').boundingBox();
    await tutor.mouse.move(box.x + 60, box.y + 60);
    await tutor.mouse.down();
    for (let i = 1; i <= 10; i++) await tutor.mouse.move(box.x + 60 + i * 25, box.y + 60 + i * 12);
    await tutor.mouse.up();
    const board = () => [...window.__board.objects].filter(([, o]) => o.shape === 'line');
    await student.waitForFunction(() => window.__board.ops >= 1 && window.__board.objects.size >= 1);
    const [mine, theirs] = await Promise.all([tutor.evaluate(board), student.evaluate(board)]);
    assert.equal(theirs.length, 1, `the student's board has ${theirs.length} strokes`);
    assert.deepEqual(theirs, mine, 'the boards differ');
    assert.ok(theirs[0][1].points.length >= 10, 'the stroke has too few points');
    assert.equal(await student.getAttribute('#board', 'data-ops'), '1');
  });

  await t.test('a raised hand shows at the tutor', async () => {
    await student.click('#hand');
    await tutor.waitForSelector(`#presence li[data-user="${studentId}"][data-hand="up"]`);
    await tutor.locator(`#roster tr[data-student="${studentId}"] td.hand`, { hasText: '✋' }).waitFor();
    await student.click('#hand'); // and down again
    await tutor.waitForSelector(`#presence li[data-user="${studentId}"]:not([data-hand])`);
  });

  await t.test('the tutor sees the student in the roster and the proposal, and marks attendance', async () => {
    const row = `#roster tr[data-student="${studentId}"]`;
    await tutor.locator(`${row} td.here`, { hasText: 'yes' }).waitFor();
    // The proposal comes from who was in the media room since the meeting began: with media, the student
    // joined a minute after the start, so "present".
    const proposal = tutor.locator(`${row} td.proposal`, { hasText: MEDIA ? /^present/ : /^(present|late|absent)/ });
    try {
      await proposal.waitFor();
    } catch {
      assert.fail(
        `the proposal for the student is "${await tutor.textContent(`${row} td.proposal`)}" (${await tutor.textContent('#proposal-note')})`,
      );
    }
    log(`tutor's proposal for the student: ${await tutor.textContent(`${row} td.proposal`)}`);
    await tutor.click(`${row} button[data-status="present"]`);
    await tutor.locator(`${row} td.marked`, { hasText: 'present' }).waitFor();
    await student.locator('#my-attendance', { hasText: 'Your attendance: present' }).waitFor();
  });

  await t.test('a late joiner gets the board snapshot, the chat history and the video', async () => {
    await student.click('#leave');
    await student.waitForSelector('#page-view:not([hidden])');
    await tutor.waitForSelector(`#presence li[data-user="${studentId}"]`, { state: 'detached' });
    if (MEDIA) await tutor.waitForSelector(`video[data-identity="${studentId}"]`, { state: 'detached' });
    await student.click(`button[data-meeting="${meetingId}"]`);
    await student.waitForSelector('#rt-status.ok');
    await student.waitForFunction(() => window.__board.objects.size === 1);
    await student.locator('#chat li.chat', { hasText: 'welcome, student' }).waitFor();
    await student.locator('#chat li.chat', { hasText: 'hello from the student' }).waitFor();
    assert.equal(await student.locator('#chat li.chat').count(), 2, 'chat lines repeated or missing');
    // The board works after the rejoin too: the student's stroke reaches the tutor.
    const box = await student.locator('#board').boundingBox();
    await student.mouse.move(box.x + 400, box.y + 300);
    await student.mouse.down();
    for (let i = 1; i <= 5; i++) await student.mouse.move(box.x + 400 + i * 20, box.y + 300 - i * 20);
    await student.mouse.up();
    await tutor.waitForFunction(() => window.__board.objects.size === 2);
    assert.equal(await student.evaluate(() => window.__board.objects.size), 2);
    if (MEDIA) {
      for (const [who, page, other] of [
        ['tutor', tutor, studentId],
        ['student', student, tutorId],
      ]) {
        await page
          .waitForFunction(
            (id) =>
              document.querySelector(`video[data-identity="${id}"]`)?.getVideoPlaybackQuality().totalVideoFrames > 0,
            other,
            { timeout: 20_000 },
          )
          .catch(async () =>
            assert.fail(`after the rejoin, ${who} decodes no video: ${JSON.stringify(await framesOf(page, other))}`),
          );
      }
    }
  });

  await t.test('neither page shows an error', async () => {
    for (const [who, page] of [
      ['tutor', tutor],
      ['student', student],
    ]) {
      if (process.env.E2E_SCREENSHOTS)
        await page.screenshot({ path: join(process.env.E2E_SCREENSHOTS, `${who}.png`), fullPage: true });
      assert.equal(await errorsOn(page), 'none', `${who}'s page shows errors`);
    }
  });
});
