// What the end-to-end tests share: the paths and settings, one run's temporary folder, log and clean-up (with a
// deadline), the server (`target/debug/liveclass serve` on a free port, a temporary SQLite database, none of
// the caller's configuration), the demo tenant (`liveclass seed-demo --json`), the API as a client, Debian's
// Chromium through playwright-core, signing in, and screenshots at desktop and phone size.
//
// Each test file runs in its own process and starts one run:
//
//   const run = startRun('people', { deadlineMs: 180_000 });  // tmp folder; report and clean-up after the tests
//   const server = await startServer(run);                     // { base, env }
//   const demo = await seedDemo(run, server);
//   const browser = await launchChromium(run, chromiumArgs());
//   const page = await newPerson(run, browser, 'student', { timezoneId: 'America/New_York' });
//   await signIn(page, server.base, 'student@demo.liveclass.test');
//
// Environment: LIVECLASS_BIN (default target/debug/liveclass), CHROMIUM (default /usr/bin/chromium),
// E2E_SCREENSHOTS (default web/e2e/screenshots).

import { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = resolve(WEB, '..');
const BIN = process.env.LIVECLASS_BIN ?? join(ROOT, 'target/debug/liveclass');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const WEB_DIR = join(WEB, 'dist');
const SHOTS = resolve(process.env.E2E_SCREENSHOTS ?? join(WEB, 'e2e/screenshots'));
/** How long one browser step (a click, a wait for a selector) may take. */
const STEP_MS = 15_000;
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };
/** Every demo user's password (`liveclass seed-demo`). */
export const PASSWORD = 'demo-password';

// --- the run ------------------------------------------------------------------------------------------------

/**
 * One test file's run: a temporary folder (`tmp`, with the server's log), the processes and browsers it
 * started, and the browsers' console lines. After the tests, or past `deadlineMs` (then the run fails), it
 * prints the end of the browsers' console and of each log in `logs` (the server's first), and stops
 * everything it started.
 */
export function startRun(name, { deadlineMs } = {}) {
  const started = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), `liveclass-${name}-`));
  const run = {
    tmp,
    serverLog: join(tmp, 'server.log'),
    /** `[name, file, lines]`: the logs printed at the end. */
    logs: [],
    children: [],
    browsers: [],
    consoleLines: [],
    log: (msg) => console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`),
  };
  run.logs.push(['server log', run.serverLog, 40]);
  if (deadlineMs) {
    const watchdog = setTimeout(async () => {
      console.error(`e2e: FAILED: still running after ${deadlineMs / 1000} s; killing the servers and the browsers`);
      report(run);
      await stopAll(run);
      process.exit(1);
    }, deadlineMs);
    watchdog.unref();
  }
  after(async () => {
    report(run);
    await stopAll(run);
    rmSync(tmp, { recursive: true, force: true });
    run.log(`servers and browsers stopped${shotsTaken ? `; screenshots in ${SHOTS}` : ''}`);
  });
  return run;
}

/** A process of the run, stopped at its end. */
export function track(run, child) {
  run.children.push(child);
  return child;
}

/** Prints the end of the browsers' console and of the run's logs (backtrace frames left out). */
function report(run) {
  if (run.consoleLines.length) {
    console.log('--- browser console (warnings, errors, liveclass lines; last 60) ---');
    for (const l of run.consoleLines.slice(-60)) console.log(l);
  }
  for (const [name, file, n] of run.logs) {
    if (!existsSync(file)) continue;
    const lines = readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .filter((l) => l && !/^\s+(\d+: |at )/.test(l) && !/ INFO liveclass: starting/.test(l));
    if (!lines.length) continue;
    console.log(`--- ${name} (last ${n} of ${lines.length} lines, backtrace frames left out) ---`);
    for (const l of lines.slice(-n)) console.log(l);
  }
}

/** Closes the browsers, then stops the processes (SIGTERM, SIGKILL after 3 s). */
async function stopAll(run) {
  await Promise.allSettled(run.browsers.map((b) => b.close()));
  for (const c of run.children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(
    run.children.map(
      (c) =>
        new Promise((r) => {
          if (c.exitCode !== null) return r();
          const t = setTimeout(() => (c.kill('SIGKILL'), r()), 3000);
          c.once('exit', () => (clearTimeout(t), r()));
        }),
    ),
  );
}

// --- processes ----------------------------------------------------------------------------------------------

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Polls `url` every 100 ms until it answers 2xx; `alive()` false (the process exited) fails at once. */
export async function waitUntilUp(url, what, { tries = 200, alive = () => true } = {}) {
  for (let i = 0; i < tries; i++) {
    assert.ok(alive(), `${what} exited; see its log below`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer ${url} within ${tries / 10} s`);
}

/**
 * Starts `liveclass serve` on a free port: a temporary SQLite database, the page from web/dist (unless
 * `webDir` is false), the embedded SFU on any free UDP port, and none of the caller's configuration
 * variables. `env` adds or overrides variables; a function gets the server's base URL. Returns
 * `{ base, env }` once GET /readyz answers.
 */
export async function startServer(run, { env: extra = {}, webDir = true } = {}) {
  assert.ok(existsSync(BIN), `no server binary at ${BIN}: run cargo build -p orchestrator`);
  if (webDir) assert.ok(existsSync(join(WEB_DIR, 'index.html')), `no ${WEB_DIR}/index.html: run npm run build in web/`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const inherited = Object.entries(process.env).filter(
    ([k]) => !/^(LIVECLASS_|LIVEKIT_|STRIPE_|DATABASE_URL|REDIS_URL|RUST_LOG)/.test(k),
  );
  const env = {
    ...Object.fromEntries(inherited),
    DATABASE_URL: `sqlite://${run.tmp}/e2e.db`,
    LIVECLASS_JWT_SECRET: 'e2e-secret-0123456789abcdef0123456789abcdef',
    ...(webDir ? { LIVECLASS_WEB_DIR: WEB_DIR } : {}),
    LIVECLASS_LOG_FILTER: 'info,sqlx=warn,str0m=error',
    // The embedded SFU's media port: any free one, so that another server on this machine doesn't collide.
    LIVECLASS_RTC_UDP_PORT: '0',
    NO_COLOR: '1',
    ...(typeof extra === 'function' ? extra(base) : extra),
  };
  const out = openSync(run.serverLog, 'a');
  const server = track(
    run,
    spawn(BIN, ['serve', '--addr', `127.0.0.1:${port}`], { env, cwd: run.tmp, stdio: ['ignore', out, out] }),
  );
  await waitUntilUp(`${base}/readyz`, 'the server', { alive: () => server.exitCode === null });
  return { base, env };
}

/** `liveclass seed-demo --json` against the server's database: the demo tenant's users, with access tokens. */
export async function seedDemo(run, server) {
  const { stdout } = await promisify(execFile)(BIN, ['seed-demo', '--json'], { env: server.env, cwd: run.tmp });
  return JSON.parse(stdout);
}

// --- the API ------------------------------------------------------------------------------------------------

/** `{ status, body }` of an API call (the body parsed when JSON); never throws for a status. */
export async function call(base, method, path, token, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

/** The body of an API call that must succeed. */
export async function api(base, method, path, token, body) {
  const res = await call(base, method, path, token, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** The instant `min` minutes from now (whole seconds), as the API takes it: `2026-12-08T09:00:00Z`. */
function inMinutes(min) {
  return new Date(Math.floor(Date.now() / 1000) * 1000 + min * 60_000).toISOString().replace('.000', '');
}

/** As staff (`token`): a course with these lessons. */
export function createCourse(base, token, title, lessons) {
  return api(base, 'POST', '/courses', token, { title, lessons: lessons.map((t) => ({ title: t })) });
}

/**
 * As staff (`token`): a group class of `courseId` taught by `instructorId`, with `meetings` (`[startMin,
 * endMin]` from now), in draft; `students` are enrolled (reference `e2e`) and then the class is activated.
 */
export async function createClass(base, token, { title, courseId, instructorId, meetings, students = [], ...rest }) {
  const cls = await api(base, 'POST', '/classes', token, {
    kind: 'group',
    title,
    course_id: courseId,
    instructor_id: instructorId,
    total_meetings: meetings.length,
    capacity: 5,
    timezone: 'UTC',
    meetings: meetings.map(([from, to]) => ({ starts_at: inMinutes(from), ends_at: inMinutes(to) })),
    ...rest,
  });
  for (const id of students)
    await api(base, 'POST', `/classes/${cls.id}/enrollments`, token, { student_id: id, reference: 'e2e' });
  if (students.length) await api(base, 'POST', `/classes/${cls.id}/activate`, token);
  return cls;
}

/**
 * The demo tenant, a course of one lesson, and a group class of it taught by the demo tutor whose one meeting
 * began a minute ago (its join and attendance windows are open). `enrol` (demo users by role: `['student']`)
 * are enrolled and the class activated; without them it stays in draft. `{ demo, classId, meetingId }`.
 */
export async function seedDemoMeeting(run, server, { course, lesson, title, enrol = [], ...rest }) {
  const demo = await seedDemo(run, server);
  const admin = demo.admin.access_token;
  const { id: courseId } = await createCourse(server.base, admin, course, [lesson]);
  const cls = await createClass(server.base, admin, {
    title,
    courseId,
    instructorId: demo.tutor.id,
    meetings: [[-1, 59]],
    students: enrol.map((role) => demo[role].id),
    ...rest,
  });
  return { demo, classId: cls.id, meetingId: cls.meetings[0].id };
}

// --- Chromium -----------------------------------------------------------------------------------------------

/**
 * Debian's Chromium's arguments: headless, no sandbox, nothing in the background; `media` adds a fake camera
 * and microphone (and WebRTC without QUIC), `scrollbars: false` hides them (phones draw overlay scrollbars:
 * without it a full-page shot is cut by the desktop scrollbar's width).
 */
export function chromiumArgs({ media = false, scrollbars = true } = {}) {
  return [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    ...(scrollbars ? [] : ['--hide-scrollbars']),
    ...(media ? ['--disable-quic', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] : []),
  ];
}

/** One Chromium for the run, each person in their own context (`newPerson`). */
export async function launchChromium(run, args) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: false, args }); // --headless=new is in args
  run.browsers.push(browser);
  return browser;
}

/** A fresh context (no cookies, no storage: signed out) in `browser` for one person: its page, watched. */
export async function newPerson(run, browser, who, { timezoneId, locale = 'en-US', viewport = DESKTOP } = {}) {
  const context = await browser.newContext({ viewport, timezoneId, locale });
  return watch(run, who, await context.newPage());
}

/** One person in a Chromium of their own (a fresh profile: its own media devices): its page, watched. */
export async function ownChromium(run, who, args, { timezoneId, locale, viewport = DESKTOP } = {}) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(run.tmp, `profile-${who}-`)), {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is in the arguments
    args,
    viewport,
    timezoneId,
    locale,
  });
  run.browsers.push(context);
  return watch(run, who, context.pages()[0] ?? (await context.newPage()));
}

/** The step timeout, and the page's warnings, errors and `liveclass…` console lines into the run's report. */
function watch(run, who, page) {
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || m.text().startsWith('liveclass'))
      run.consoleLines.push(`[${who} console.${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => run.consoleLines.push(`[${who} pageerror] ${e.message}`));
  return page;
}

// --- the page -----------------------------------------------------------------------------------------------

/** Opens the page for the demo school (`hash`: a route to land on) and signs in; waits for the live channel. */
export async function signIn(page, origin, email, { hash = '' } = {}) {
  await page.goto(`${origin}/?tenant=demo${hash}`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#page-view:not([hidden]) .page-root');
  await page.waitForSelector('body[data-live="on"]');
}

/** Goes to a hash route (`/staff/users`) and, with `ready`, waits until that selector is there. */
export async function go(page, path, ready) {
  await page.evaluate((p) => (location.hash = `#${p}`), path);
  if (ready) await page.waitForSelector(ready);
}

/** The page's error list (`a | b`, or `none`), for assertions. */
export async function errorsOn(page) {
  return (await page.locator('#errors li').allTextContents()).join(' | ') || 'none';
}

export async function assertNoErrors(page, who) {
  assert.equal(await errorsOn(page), 'none', `${who}'s page shows errors`);
}

/** Waits until the page's loading notes are gone (its data arrived). */
export async function settled(page) {
  await page.waitForFunction(
    () => ![...document.querySelectorAll('.page-root [role=status]')].some((e) => e.textContent === 'Loading…'),
  );
  await page.waitForTimeout(150);
}

// --- screenshots --------------------------------------------------------------------------------------------

let shotsTaken = false;

/** A screenshot, of the whole page unless `fullPage` is false, as `<SHOTS>/<name>.png`. */
export async function shot(page, name, { fullPage = true } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  shotsTaken = true;
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/**
 * Full-page screenshots at desktop and phone size, `<name>-desktop.png` and `<name>-phone.png`; `atPhone(page)`
 * (checks) runs at phone size. Leaves the page at desktop size.
 */
export async function desktopAndPhone(page, name, atPhone) {
  await page.setViewportSize(DESKTOP);
  await shot(page, `${name}-desktop`);
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  try {
    await shot(page, `${name}-phone`);
    await atPhone?.(page);
  } finally {
    await page.setViewportSize(DESKTOP);
  }
}
