// End-to-end: the people's pages in headless Chromium, against the real server.
//
// It starts `target/debug/liveclass serve` on a free port with a temporary SQLite database and seeds the demo
// tenant (`liveclass seed-demo --json`). Over the API: the demo tutor publishes weekly availability in
// Europe/Berlin; the admin creates an active class the tutor teaches, with the adult demo student enrolled
// (so the student knows the tutor), and asks the minor's parent for consent. Then, in the browser:
//   - a student whose browser is in America/New_York signs in, finds the tutor, sees the slots on their own
//     clock (each slot's label is its UTC start read in New York, and it lies in the tutor's Berlin hours),
//     holds one and checks out offline (the page shows the payment instructions);
//   - staff mark the payment received over the API, and the student's page shows `confirmed` without a
//     reload (the user channel's push); the cancel step shows the refund before anything is confirmed;
//   - a parent signs in, sees the pending consent request on their home page, grants every scope with a
//     verification method, then revokes chat after reading what it does; the request's link
//     (`#/consent/<id>`) still opens after signing out and in again;
//   - every page of the student and the parent (and the tutor's and staff's home) is saved as a screenshot,
//     desktop (1280×900) and phone (390×844), in web/e2e/screenshots/ (or E2E_SCREENSHOTS), and no page
//     shows an error.
//
// Run: `bash web/e2e/run.sh` (installs, builds, runs both browser tests), or after a build
// `node --test-reporter=spec web/e2e/people.test.mjs`. Environment: LIVECLASS_BIN (default
// target/debug/liveclass), CHROMIUM (default /usr/bin/chromium), E2E_SCREENSHOTS (default web/e2e/screenshots).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync, readFileSync, existsSync } from 'node:fs';
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
const SHOTS = resolve(process.env.E2E_SCREENSHOTS ?? join(WEB, 'e2e/screenshots'));
const DEADLINE_MS = 180_000;
const STEP_MS = 15_000;
const STUDENT_ZONE = 'America/New_York';
const TUTOR_ZONE = 'Europe/Berlin';
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Phones draw overlay scrollbars: without this, a full-page shot is cut by the desktop scrollbar's width.
  '--hide-scrollbars',
];

const started = Date.now();
const tmp = mkdtempSync(join(tmpdir(), 'liveclass-people-'));
const serverLog = join(tmp, 'server.log');
const children = [];
let browser = null;
const consoleLines = [];

function log(msg) {
  console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

async function cleanup() {
  await browser?.close().catch(() => {});
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
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
      .filter((l) => !/^\s+(\d+: |at )/.test(l) && !/ INFO liveclass: starting/.test(l));
    console.log(`--- server log (last 30 of ${lines.length} lines) ---`);
    for (const l of lines.slice(-30)) console.log(l);
  }
}

const watchdog = setTimeout(async () => {
  console.error(`e2e: FAILED: still running after ${DEADLINE_MS / 1000} s; killing the server and the browser`);
  report();
  await cleanup();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

after(async () => {
  report();
  await cleanup();
  rmSync(tmp, { recursive: true, force: true });
  log(`server and browser stopped; screenshots in ${SHOTS}`);
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
  LIVECLASS_WEB_DIR: WEB_DIR,
  LIVECLASS_LOG_FILTER: 'info,sqlx=warn,str0m=error',
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

/** The demo tenant; the tutor's availability; a class the student knows the tutor from; a consent request. */
async function prepare(base) {
  const { stdout } = await promisify(execFile)(BIN, ['seed-demo', '--json'], { env, cwd: tmp });
  const demo = JSON.parse(stdout);
  const admin = demo.admin.access_token;
  const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  await api(base, 'PUT', `/tutors/${demo.tutor.id}/availability`, demo.tutor.access_token, {
    timezone: TUTOR_ZONE,
    currency: 'EUR',
    lengths: [
      { minutes: 60, price_minor: 3000 },
      { minutes: 30, price_minor: 1800 },
    ],
    min_notice_minutes: 60,
    weekly: days.map((weekday) => ({ weekday, start: '08:00', end: '20:00' })),
  });
  const course = await api(base, 'POST', '/courses', admin, {
    title: 'Conversation course',
    lessons: [{ title: 'Greetings' }, { title: 'At the market' }],
  });
  const at = (min) => new Date(Math.floor(Date.now() / 60_000) * 60_000 + min * 60_000).toISOString();
  const cls = await api(base, 'POST', '/classes', admin, {
    kind: 'group',
    title: 'Spanish A1',
    course_id: course.id,
    instructor_id: demo.tutor.id,
    total_meetings: 3,
    capacity: 8,
    timezone: TUTOR_ZONE,
    meetings: [
      { starts_at: at(-1), ends_at: at(59) },
      { starts_at: at(2 * 24 * 60), ends_at: at(2 * 24 * 60 + 60) },
      { starts_at: at(4 * 24 * 60), ends_at: at(4 * 24 * 60 + 60) },
    ],
  });
  await api(base, 'POST', `/classes/${cls.id}/enrollments`, admin, { student_id: demo.student.id, reference: 'e2e' });
  await api(base, 'POST', `/classes/${cls.id}/activate`, admin);
  const lessons = await api(base, 'GET', `/classes/${cls.id}/lessons`, admin);
  await api(base, 'POST', `/classes/${cls.id}/unlocks`, demo.tutor.access_token, { lesson_id: lessons[0].lesson_id });
  const consent = await api(base, 'POST', '/consent-requests', admin, {
    child_id: demo.minor.id,
    scopes: ['live_video', 'chat', 'recording'],
  });
  // The minor's class, in draft until the parent's consent lets the minor enrol.
  const kids = await api(base, 'POST', '/classes', admin, {
    kind: 'group',
    title: 'Young readers',
    course_id: course.id,
    instructor_id: demo.tutor.id,
    total_meetings: 2,
    capacity: 8,
    timezone: TUTOR_ZONE,
    meetings: [
      { starts_at: at(24 * 60), ends_at: at(24 * 60 + 45) },
      { starts_at: at(3 * 24 * 60), ends_at: at(3 * 24 * 60 + 45) },
    ],
  });
  return { demo, classId: cls.id, kidsClassId: kids.id, consentId: consent.id };
}

/** A fresh browser context (profile) for one person, in `timezoneId`. */
async function person(who, timezoneId) {
  const context = await browser.newContext({ viewport: DESKTOP, timezoneId, locale: 'en-US' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || m.text().startsWith('liveclass'))
      consoleLines.push(`[${who} console.${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`[${who} pageerror] ${e.message}`));
  return page;
}

async function signIn(page, origin, email, hash = '') {
  await page.goto(`${origin}/?tenant=demo${hash}`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', 'demo-password');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#page-view:not([hidden]) .page-root');
  await page.waitForSelector('body[data-live="on"]');
}

async function errorsOn(page) {
  return (await page.locator('#errors li').allTextContents()).join(' | ') || 'none';
}

/** Waits until the page's loading notes are gone (its data arrived). */
async function settled(page) {
  await page.waitForFunction(
    () => ![...document.querySelectorAll('.page-root [role=status]')].some((e) => e.textContent === 'Loading…'),
  );
  await page.waitForTimeout(150);
}

/** Opens each route and saves it at desktop and phone size: `<who>-<name>-desktop.png`, `…-phone.png`. */
async function screenshots(page, who, routes) {
  for (const [name, path] of routes) {
    await page.setViewportSize(DESKTOP);
    if (path !== null) {
      await page.evaluate((p) => (location.hash = `#${p}`), path);
      await page.waitForSelector(`.page-root`);
    }
    await settled(page);
    await page.screenshot({ path: join(SHOTS, `${who}-${name}-desktop.png`), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(100);
    await page.screenshot({ path: join(SHOTS, `${who}-${name}-phone.png`), fullPage: true });
    // Nothing may stick out of a phone's width, except inside a box that scrolls sideways on purpose.
    const wide = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const scrolls = (e) => {
        for (let p = e.parentElement; p; p = p.parentElement) if (getComputedStyle(p).overflowX === 'auto') return true;
        return false;
      };
      const over = [...document.querySelectorAll('body *')].filter(
        (e) => e.getBoundingClientRect().right > w + 1 && !scrolls(e),
      );
      return over.slice(0, 3).map((e) => `${e.tagName.toLowerCase()}.${e.className}`);
    });
    assert.deepEqual(wide, [], `${who}'s ${name} page is wider than a phone`);
    const faint = await lowContrast(page);
    assert.deepEqual(faint, [], `${who}'s ${name} page has text below WCAG AA contrast`);
    assert.equal(await errorsOn(page), 'none', `${who}'s ${name} page shows errors`);
  }
  await page.setViewportSize(DESKTOP);
}

/**
 * Visible text whose colour against its background is below WCAG 2 AA (4.5:1; 3:1 for large text), as
 * `text (ratio)`; disabled controls are exempt, as WCAG says.
 */
function lowContrast(page) {
  return page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (e) => {
      for (let n = e; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    for (const e of document.querySelectorAll('body *')) {
      const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || !e.getClientRects().length || e.closest('[disabled], [hidden], option')) continue;
      const st = getComputedStyle(e);
      if (st.visibility === 'hidden' || Number(st.opacity) === 0) continue;
      const [a, b] = [lum(rgb(st.color).slice(0, 3)), lum(background(e))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(st.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push(`${e.textContent.trim().slice(0, 40)} (${ratio.toFixed(2)})`);
    }
    return out.slice(0, 5);
  });
}

/** What New York's clock says at `iso`, as the page formats it (`9:00 AM`). */
function newYorkClock(iso) {
  return new Date(iso).toLocaleTimeString('en-US', { timeZone: STUDENT_ZONE, hour: 'numeric', minute: '2-digit' });
}

function berlinHour(iso) {
  return Number(new Date(iso).toLocaleString('en-GB', { timeZone: TUTOR_ZONE, hour: '2-digit', hourCycle: 'h23' }));
}

test('the people’s pages', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const base = await startServer();
  log(`server up at ${base} (log: ${serverLog})`);
  const { demo, classId, kidsClassId, consentId } = await prepare(base);
  log(`tutor ${demo.tutor.id} publishes ${TUTOR_ZONE} hours; class ${classId}; consent request ${consentId}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: false, args: CHROMIUM_ARGS });

  const student = await person('student', STUDENT_ZONE);
  let bookingId;

  await t.test('a student in New York finds the tutor and sees slots on their own clock', async () => {
    await signIn(student, base, 'student@demo.liveclass.test');
    // The home page: the class meeting that is on now, with Join open.
    await student.waitForSelector('button[data-meeting]:not([disabled])');
    await student.click('#nav-list a[data-path="/tutors"]');
    const card = student.locator(`li[data-tutor="${demo.tutor.id}"]`);
    await card.waitFor();
    assert.match(await card.textContent(), /Europe\/Berlin/);
    await card.locator('a', { hasText: 'See free times' }).click();
    await student.waitForSelector(`.zone-note[data-zone="${STUDENT_ZONE}"]`);
    const first = student.locator('button.slot').first();
    await first.waitFor();
    const start = await first.getAttribute('data-start');
    const label = (await first.textContent()).trim();
    assert.equal(label, newYorkClock(start), `the slot at ${start} is labelled ${label}, not New York's clock`);
    const all = await student.locator('button.slot').evaluateAll((bs) => bs.map((b) => b.dataset.start));
    assert.ok(all.length > 5, `only ${all.length} slots`);
    for (const s of all) {
      const h = berlinHour(s);
      assert.ok(h >= 8 && h < 20, `the slot at ${s} is at ${h}:00 in Berlin, outside the tutor's hours`);
    }
    log(`${all.length} slots; the first at ${start} reads ${label} in New York`);
  });

  await t.test('the student holds a slot and checks out offline', async () => {
    await student.locator('button.slot').first().click();
    const panel = student.locator('.confirm');
    await panel.waitFor();
    assert.match(await panel.textContent(), /€30\.00/);
    await panel.locator('[data-confirm]').click();
    await student.waitForSelector('#booking-status[data-status="hold"]');
    bookingId = /#\/bookings\/([^?]+)/.exec(student.url())[1];
    await student.click('[data-action="checkout"]');
    await student.waitForSelector('#booking-status[data-status="pending_payment"]');
    const payment = student.locator('.payment.offline');
    await payment.waitFor();
    assert.match(await payment.textContent(), /€30\.00/);
    log(`booking ${bookingId} waits for payment: ${(await payment.textContent()).slice(0, 120)}…`);
  });

  await t.test('staff mark the payment received: the student’s page shows confirmed without a reload', async () => {
    await student.evaluate(() => (window.__sameDocument = true));
    const admin = demo.admin.access_token;
    const view = await api(base, 'GET', `/bookings/${bookingId}`, admin);
    const pending = view.payments.find((p) => p.status === 'pending');
    assert.ok(pending, 'no pending payment on the booking');
    await api(base, 'POST', `/payments/${pending.id}/received`, admin, { method: 'bank_transfer', note: 'e2e' });
    await student.waitForSelector('#booking-status[data-status="confirmed"]', { timeout: 10_000 });
    assert.equal(await student.evaluate(() => window.__sameDocument), true, 'the page was reloaded');
    assert.match(await student.textContent('#notice'), /confirmed/);
  });

  await t.test('cancelling shows the refund before anything happens', async () => {
    await student.click('[data-action="cancel"]');
    const quote = student.locator('.confirm .quote');
    await quote.waitFor();
    const text = await quote.textContent();
    assert.match(text, /€\d+\.\d\d back of the €30\.00 you paid/, `the quote says: ${text}`);
    await student.screenshot({ path: join(SHOTS, 'student-cancel-quote-desktop.png'), fullPage: true });
    await student.click('.confirm [data-cancel]');
    await student.waitForSelector('.confirm', { state: 'detached' });
    assert.equal(await student.getAttribute('#booking-status', 'data-status'), 'confirmed');
  });

  await t.test('the student’s pages', async () => {
    await screenshots(student, 'student', [
      ['booking', null],
      ['home', '/'],
      ['tutors', '/tutors'],
      ['tutor-slots', `/tutors/${demo.tutor.id}`],
      ['lessons', '/bookings'],
      ['packages', '/packages'],
      ['classes', '/classes'],
      ['class', `/classes/${classId}`],
      ['progress', '/progress'],
      ['messages', '/messages'],
    ]);
    // The lesson unlocked for the class can be marked complete.
    await student.evaluate((p) => (location.hash = `#${p}`), '/progress');
    const lesson = student.locator('li[data-lesson][data-completed="false"]').first();
    await lesson.locator('button').click();
    await student.waitForSelector('li[data-lesson][data-completed="true"]');
    // The phone layout: the navigation folds behind the Menu button.
    await student.setViewportSize(PHONE);
    assert.equal(await student.isVisible('#nav-list a[data-path="/tutors"]'), false, 'the phone menu is open');
    await student.click('#nav-toggle');
    await student.waitForSelector('#nav-list a[data-path="/tutors"]', { state: 'visible' });
    await student.screenshot({ path: join(SHOTS, 'student-menu-phone.png') });
    await student.setViewportSize(DESKTOP);
  });

  const parent = await person('parent', 'Europe/London');

  await t.test('a parent sees the pending consent request and grants it', async () => {
    await signIn(parent, base, 'parent@demo.liveclass.test');
    const request = parent.locator(`[data-consent-request="${consentId}"]`);
    await request.waitFor();
    await screenshots(parent, 'parent', [['home', null]]);
    await request.locator('a').click();
    await parent.waitForSelector('form.consent-form');
    await screenshots(parent, 'parent', [['consent-request', null]]);
    for (const scope of ['live_video', 'chat', 'recording'])
      await parent.check(`input[name="scope-${scope}"][value="grant"]`);
    // Granting needs the verification method: without it, the page says so.
    await parent.click('form.consent-form button[type=submit]');
    await parent.waitForSelector('#errors li[data-code="method_required"]');
    await parent.click('#errors li[data-code="method_required"] button');
    await parent.selectOption('form.consent-form select[name=method]', 'signed_form');
    await parent.click('form.consent-form button[type=submit]');
    for (const scope of ['live_video', 'chat', 'recording'])
      await parent.waitForSelector(`[data-scope="${scope}"] [data-state="granted"]`);
    await screenshots(parent, 'parent', [['consent-answered', null]]);
    // With live-video consent, the school can enrol the minor.
    const admin = demo.admin.access_token;
    await api(base, 'POST', `/classes/${kidsClassId}/enrollments`, admin, { student_id: demo.minor.id });
    await api(base, 'POST', `/classes/${kidsClassId}/activate`, admin);
  });

  await t.test('the parent revokes chat after reading what it does', async () => {
    await parent.evaluate((p) => (location.hash = `#${p}`), `/children/${demo.minor.id}`);
    await parent.click('[data-revoke="chat"]');
    const consequence = parent.locator('.confirm .consequence');
    await consequence.waitFor();
    assert.match(await consequence.textContent(), /taken out of any live room/);
    await parent.screenshot({ path: join(SHOTS, 'parent-revoke-confirm-desktop.png'), fullPage: true });
    await parent.click('.confirm [data-confirm]');
    await parent.waitForSelector('[data-scope="chat"] [data-state="revoked"]');
    await parent.waitForSelector('[data-scope="live_video"] [data-state="granted"]');
  });

  await t.test('the parent’s pages, and the request’s link after signing in again', async () => {
    await screenshots(parent, 'parent', [
      ['child', null],
      ['children', '/children'],
      ['consent-list', '/consent'],
    ]);
    await parent.click('#logout');
    await parent.waitForSelector('#login-view:not([hidden])');
    await parent.goto(`${base}/#/consent/${consentId}`);
    await parent.waitForSelector('#login-view:not([hidden])');
    await screenshots(parent, 'everyone', [['sign-in', null]]);
    await parent.fill('#login-email', 'parent@demo.liveclass.test');
    await parent.fill('#login-password', 'demo-password');
    await parent.click('#login-form button[type=submit]');
    await parent.waitForSelector('[data-scope="live_video"] [data-state="granted"]');
    assert.match(await parent.textContent('#page-title'), /Consent for Demo minor/);
  });

  await t.test('the tutor’s and staff’s home pages', async () => {
    // The tutor signs in with the keyboard alone: skip link, brand, then the form's fields in order.
    const tutor = await person('tutor', TUTOR_ZONE);
    await tutor.goto(`${base}/?tenant=demo`);
    const focused = () => tutor.evaluate(() => document.activeElement?.id || document.activeElement?.className);
    await tutor.keyboard.press('Tab');
    assert.equal(await focused(), 'skip-link', 'the first Tab does not reach the skip link');
    for (let i = 0; i < 3; i++) await tutor.keyboard.press('Tab');
    assert.equal(await focused(), 'login-email');
    await tutor.keyboard.type('tutor@demo.liveclass.test');
    await tutor.keyboard.press('Tab');
    await tutor.keyboard.type('demo-password');
    await tutor.keyboard.press('Enter');
    await tutor.waitForSelector('body[data-live="on"]');
    assert.equal(await focused(), 'page-title', 'after signing in, focus is not on the page heading');
    // A refresh keeps the place and the session; the first Tab reaches the skip link, which moves focus to the content.
    await tutor.reload();
    await tutor.waitForSelector('body[data-live="on"]');
    await tutor.keyboard.press('Tab');
    assert.equal(await focused(), 'skip-link');
    await tutor.keyboard.press('Enter');
    assert.equal(await tutor.evaluate(() => document.activeElement?.tagName), 'MAIN');
    await tutor.waitForSelector(`button[data-booking="${bookingId}"]`);
    await screenshots(tutor, 'tutor', [['home', null]]);
    const admin = await person('admin', 'UTC');
    await signIn(admin, base, 'admin@demo.liveclass.test');
    await screenshots(admin, 'staff', [['home', null]]);
  });

  await t.test('no page shows an error', async () => {
    for (const [who, page] of [
      ['student', student],
      ['parent', parent],
    ])
      assert.equal(await errorsOn(page), 'none', `${who}'s page shows errors`);
  });
});
