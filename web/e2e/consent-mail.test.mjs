// End-to-end: a parent's consent, by mail, in headless Chromium against the real server and a real SMTP server.
//
// It starts an SMTP server (orchestrator/tests/api/smtp_sink.py: aiosmtpd, each message kept as .eml and as
// JSON of its decoded parts) on a free port, then `target/debug/liveclass serve` on another with a temporary
// SQLite database, mail going out through that SMTP server (LIVECLASS_SMTP_URL) and its links pointing at
// the server itself (LIVECLASS_PUBLIC_URL), and seeds the demo tenant (`liveclass seed-demo --json`). Over
// the API: a course and a class whose one meeting began a minute ago, taught by the demo tutor; the school
// can't enrol the demo minor yet (403 consent_required). Then, as people would:
//   - staff sign in and ask the minor's parent for consent (live video and chat) on the staff consent page;
//   - the consent mail reaches the parent through SMTP: addressed to them, text and HTML, both with the
//     link to the request's page on this server;
//   - in a fresh browser (signed out), the parent opens the link from the mail's text, is asked to sign in
//     ("the page your link points to"), signs in and lands on that request; granting asks for the
//     verification method; with it, both scopes are granted;
//   - the school enrols the minor and activates the class (API); the minor signs in, joins the meeting from
//     their home page, the join succeeds (no consent error), the tutor in the same meeting sees the minor in
//     the room's presence list and decodes their video, and the minor's chat line reaches the tutor (chat
//     was granted too).
// Screenshots in web/e2e/screenshots/ (or E2E_SCREENSHOTS): consent-mail-letter (the mail's HTML),
// consent-mail-sign-in, consent-mail-request (before granting), consent-mail-granted, consent-mail-room.
//
// Run: `bash web/e2e/run.sh` (installs, builds, runs every e2e test), or after a build
// `node --test-reporter=spec web/e2e/consent-mail.test.mjs`. Needs python3 with aiosmtpd.
// Environment: LIVECLASS_BIN (default target/debug/liveclass), CHROMIUM (default /usr/bin/chromium),
// E2E_SCREENSHOTS (default web/e2e/screenshots).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = resolve(WEB, '..');
const BIN = process.env.LIVECLASS_BIN ?? join(ROOT, 'target/debug/liveclass');
const SINK = join(ROOT, 'orchestrator/tests/api/smtp_sink.py');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WEB_DIR = join(WEB, 'dist');
const SHOTS = resolve(process.env.E2E_SCREENSHOTS ?? join(WEB, 'e2e/screenshots'));
const DEADLINE_MS = 120_000;
const STEP_MS = 15_000;
const MAIL_WAIT_MS = 20_000;
const PARENT_EMAIL = 'parent@demo.liveclass.test';
const MAIL_FROM = 'Demo School <school@demo.liveclass.test>';
const DESKTOP = { width: 1280, height: 900 };
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--hide-scrollbars',
  // The minor and the tutor join the meeting's media with a fake camera and microphone.
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

const started = Date.now();
const tmp = mkdtempSync(join(tmpdir(), 'liveclass-consent-mail-'));
const serverLog = join(tmp, 'server.log');
const sinkLog = join(tmp, 'smtp.log');
const mailDir = join(tmp, 'mail');
mkdirSync(mailDir);
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
    console.log('--- browser console (warnings, errors, liveclass lines; last 40) ---');
    for (const l of consoleLines.slice(-40)) console.log(l);
  }
  for (const [name, file, n] of [
    ['server log', serverLog, 30],
    ['SMTP server log', sinkLog, 10],
  ]) {
    if (!existsSync(file)) continue;
    const lines = readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .filter((l) => l && !/^\s+(\d+: |at )/.test(l) && !/ INFO liveclass: starting/.test(l));
    console.log(`--- ${name} (last ${n} of ${lines.length} lines) ---`);
    for (const l of lines.slice(-n)) console.log(l);
  }
}

const watchdog = setTimeout(async () => {
  console.error(`e2e: FAILED: still running after ${DEADLINE_MS / 1000} s; killing the servers and the browser`);
  report();
  await cleanup();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

after(async () => {
  report();
  await cleanup();
  rmSync(tmp, { recursive: true, force: true });
  log(`servers and browser stopped; screenshots in ${SHOTS}`);
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

/** The SMTP server, listening once it printed "ready". */
async function startSmtp() {
  assert.ok(existsSync(SINK), `no SMTP server script at ${SINK}`);
  const port = await freePort();
  const err = openSync(sinkLog, 'a');
  const sink = spawn('python3', [SINK, '--port', String(port), '--dir', mailDir], {
    stdio: ['ignore', 'pipe', err],
  });
  children.push(sink);
  await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('the SMTP server did not start within 10 s')), 10_000);
    sink.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`the SMTP server exited with ${code} (is aiosmtpd installed?): ${readFileSync(sinkLog, 'utf8')}`));
    });
    sink.stdout.on('data', (d) => {
      if (String(d).includes('ready')) {
        clearTimeout(t);
        res();
      }
    });
  });
  return port;
}

// The server's settings are the test's alone: none of the caller's configuration variables pass through.
const inherited = Object.entries(process.env).filter(
  ([k]) => !/^(LIVECLASS_|LIVEKIT_|STRIPE_|DATABASE_URL|REDIS_URL|RUST_LOG)/.test(k),
);
let env = null;

async function startServer(smtpPort) {
  assert.ok(existsSync(BIN), `no server binary at ${BIN}: run cargo build -p orchestrator`);
  assert.ok(existsSync(join(WEB_DIR, 'index.html')), `no ${WEB_DIR}/index.html: run npm run build in web/`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  env = {
    ...Object.fromEntries(inherited),
    DATABASE_URL: `sqlite://${tmp}/e2e.db`,
    LIVECLASS_JWT_SECRET: 'e2e-secret-0123456789abcdef0123456789abcdef',
    LIVECLASS_WEB_DIR: WEB_DIR,
    LIVECLASS_LOG_FILTER: 'info,sqlx=warn,str0m=error',
    LIVECLASS_RTC_UDP_PORT: '0',
    // Mail: through the test's SMTP server, with links to this server.
    LIVECLASS_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
    LIVECLASS_MAIL_FROM: MAIL_FROM,
    LIVECLASS_PUBLIC_URL: base,
    LIVECLASS_JOBS_POLL_INTERVAL_MS: '200',
    NO_COLOR: '1',
  };
  const out = openSync(serverLog, 'a');
  const server = spawn(BIN, ['serve', '--addr', `127.0.0.1:${port}`], { env, cwd: tmp, stdio: ['ignore', out, out] });
  children.push(server);
  for (let i = 0; i < 200; i++) {
    assert.equal(server.exitCode, null, `the server exited with ${server.exitCode}; see its log below`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) return base;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server did not become ready within 20 s');
}

/** `{ status, body }` of an API call (the body parsed when JSON). */
async function call(base, method, path, token, body) {
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

async function api(base, method, path, token, body) {
  const res = await call(base, method, path, token, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** The demo tenant, and a class (in draft) whose one meeting began a minute ago, taught by the demo tutor. */
async function prepare(base) {
  const { stdout } = await promisify(execFile)(BIN, ['seed-demo', '--json'], { env, cwd: tmp });
  const demo = JSON.parse(stdout);
  const admin = demo.admin.access_token;
  const course = await api(base, 'POST', '/courses', admin, {
    title: 'Reading aloud',
    lessons: [{ title: 'Stories' }],
  });
  const at = (min) => new Date(Math.floor(Date.now() / 1000) * 1000 + min * 60_000).toISOString().replace('.000', '');
  const cls = await api(base, 'POST', '/classes', admin, {
    kind: 'group',
    title: 'Young readers (live)',
    course_id: course.id,
    instructor_id: demo.tutor.id,
    total_meetings: 1,
    capacity: 5,
    timezone: 'Europe/London',
    meetings: [{ starts_at: at(-1), ends_at: at(59) }],
  });
  return { demo, classId: cls.id, meetingId: cls.meetings[0].id };
}

/** The messages the SMTP server accepted so far, as smtp_sink.py decoded them (with the .eml's name). */
function mails() {
  return readdirSync(mailDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({
      ...JSON.parse(readFileSync(join(mailDir, f), 'utf8')),
      eml: join(mailDir, f.replace(/json$/, 'eml')),
    }));
}

/** Waits for a message to `to` that `pick` accepts. */
async function mailTo(to, pick) {
  const until = Date.now() + MAIL_WAIT_MS;
  for (;;) {
    const found = mails().find((m) => m.rcpt_tos.includes(to) && pick(m));
    if (found) return found;
    if (Date.now() > until) {
      const seen = mails().map((m) => `${m.rcpt_tos.join(',')}: ${m.headers.Subject}`);
      assert.fail(
        `no mail to ${to} within ${MAIL_WAIT_MS / 1000} s; the SMTP server has: ${seen.join(' | ') || 'nothing'}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

const partOf = (mail, type) => mail.parts.find((p) => p.content_type === type && p.disposition !== 'attachment');

/** A fresh browser context (no cookies, no storage: signed out) for one person, in `timezoneId`. */
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

async function signIn(page, base, email) {
  await page.goto(`${base}/?tenant=demo`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', 'demo-password');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#page-view:not([hidden]) .page-root');
}

async function errorsOn(page) {
  return (await page.locator('#errors li').allTextContents()).join(' | ') || 'none';
}

async function settled(page) {
  await page.waitForFunction(
    () => ![...document.querySelectorAll('.page-root [role=status]')].some((e) => e.textContent === 'Loading…'),
  );
  await page.waitForTimeout(150);
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `consent-mail-${name}.png`), fullPage: true });

test('a parent consents by mail, and the minor joins the meeting', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const smtpPort = await startSmtp();
  const base = await startServer(smtpPort);
  log(`SMTP server on 127.0.0.1:${smtpPort}, liveclass at ${base} (log: ${serverLog})`);
  const { demo, classId, meetingId } = await prepare(base);
  const admin = demo.admin.access_token;
  log(`class ${classId}, meeting ${meetingId}; minor ${demo.minor.id}, parent ${demo.parent.id}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: false, args: CHROMIUM_ARGS });

  await t.test('without consent, the school can’t enrol the minor', async () => {
    const res = await call(base, 'POST', `/classes/${classId}/enrollments`, admin, { student_id: demo.minor.id });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body?.error?.code, 'consent_required');
  });

  let requestId;
  await t.test('staff ask the parent for consent on the staff page', async () => {
    const staff = await person('staff', 'UTC');
    await signIn(staff, base, 'admin@demo.liveclass.test');
    await staff.evaluate(() => (location.hash = '#/staff/consent'));
    await staff.waitForSelector('#consent-form');
    await staff.selectOption('#consent-form [name=child_id]', demo.minor.id);
    await staff.check('#consent-form input[name=scope][value=live_video]');
    await staff.check('#consent-form input[name=scope][value=chat]');
    await staff.click('#consent-form button[type=submit]');
    await staff.locator('#consent-requests tbody tr', { hasText: 'Demo minor' }).waitFor();
    assert.equal(await errorsOn(staff), 'none', 'the staff page shows errors');
    const pending = await api(base, 'GET', '/consent-requests?status=pending', admin);
    const mine = pending.requests.filter((r) => r.child_id === demo.minor.id);
    assert.equal(mine.length, 1, `pending requests for the minor: ${JSON.stringify(pending)}`);
    assert.deepEqual([...mine[0].scopes].sort(), ['chat', 'live_video']);
    assert.equal(mine[0].parent_id, demo.parent.id);
    requestId = mine[0].id;
    await staff.context().close();
  });

  let link;
  await t.test('the consent mail reaches the parent through SMTP, with the link', async () => {
    const mail = await mailTo(PARENT_EMAIL, (m) => partOf(m, 'text/plain')?.text.includes(`#/consent/${requestId}`));
    log(`mail: "${mail.headers.Subject}" from ${mail.mail_from} to ${mail.rcpt_tos.join(', ')} (${mail.eml})`);
    assert.ok(existsSync(mail.eml), 'the .eml is not there');
    assert.match(readFileSync(mail.eml, 'latin1'), /^Subject:/im, 'the .eml has no Subject header');
    assert.match(mail.mail_from, /school@demo\.liveclass\.test/, 'the envelope sender is not mail_from');
    assert.match(mail.headers.From, /school@demo\.liveclass\.test/);
    assert.match(mail.headers.Subject, /consent/i);
    const text = partOf(mail, 'text/plain')?.text;
    const html = partOf(mail, 'text/html')?.text;
    assert.ok(text && html, `the mail has no text or no HTML part: ${mail.parts.map((p) => p.content_type)}`);
    assert.match(text, /Demo minor/, 'the mail does not name the child');
    link = /https?:\/\/\S+#\/consent\/[^\s>"]+/.exec(text)?.[0];
    assert.ok(link, `no consent link in the text part:\n${text}`);
    assert.equal(
      link,
      `${base}/?tenant=demo#/consent/${requestId}`,
      'the link does not lead to this server’s consent page',
    );
    assert.ok(html.includes(`href="${link}"`), 'the HTML part does not link to the same page');
    // The letter as a mail client would show its HTML part.
    const letter = await person('mail', 'Europe/London');
    await letter.setContent(html);
    await shot(letter, 'letter');
    await letter.context().close();
  });

  const parent = await person('parent', 'Europe/London');
  await t.test('the parent follows the link, signs in, and lands on the request', async () => {
    await parent.goto(link);
    await parent.waitForSelector('#login-view:not([hidden])');
    await parent.waitForSelector('#login-next:not([hidden])');
    // The link names the school: on a fresh browser the form already has it.
    assert.equal(await parent.inputValue('#login-tenant'), 'demo');
    await shot(parent, 'sign-in');
    await parent.fill('#login-email', PARENT_EMAIL);
    await parent.fill('#login-password', 'demo-password');
    await parent.click('#login-form button[type=submit]');
    await parent.waitForSelector('form.consent-form');
    assert.equal(new URL(parent.url()).hash, `#/consent/${requestId}`);
    assert.match(await parent.textContent('#page-title'), /Consent for Demo minor/);
    for (const scope of ['live_video', 'chat']) await parent.waitForSelector(`fieldset[data-scope="${scope}"]`);
    assert.equal(await parent.locator('fieldset[data-scope="recording"]').count(), 0, 'recording was not asked for');
    await settled(parent);
    await shot(parent, 'request');
  });

  await t.test('granting asks for the verification method, then grants', async () => {
    for (const scope of ['live_video', 'chat']) await parent.check(`input[name="scope-${scope}"][value="grant"]`);
    await parent.click('form.consent-form button[type=submit]');
    const asked = parent.locator('#errors li[data-code="method_required"]');
    await asked.waitFor();
    log(`without a method the page says: ${(await asked.innerText()).replace(/\s*×$/, '')}`);
    assert.equal(
      await parent.evaluate(() => document.activeElement?.getAttribute('name')),
      'method',
      'focus is not on the verification method',
    );
    await parent.click('#errors li[data-code="method_required"] button');
    await parent.selectOption('form.consent-form select[name=method]', 'signed_form');
    await parent.click('form.consent-form button[type=submit]');
    for (const scope of ['live_video', 'chat'])
      await parent.waitForSelector(`[data-scope="${scope}"] [data-state="granted"]`);
    await settled(parent);
    assert.equal(await errorsOn(parent), 'none', 'the parent’s page shows errors');
    await shot(parent, 'granted');
    const state = await api(base, 'GET', `/users/${demo.minor.id}/consents`, admin);
    const effective = Object.fromEntries(state.scopes.map((s) => [s.scope, s.state]));
    assert.equal(effective.live_video, 'granted', JSON.stringify(state.scopes));
    assert.equal(effective.chat, 'granted', JSON.stringify(state.scopes));
    const record = state.records.find((r) => r.scope === 'live_video');
    assert.equal(record.method, 'signed_form');
    assert.equal(record.request_id, requestId);
  });

  await t.test('the minor joins the meeting: the tutor sees them in the room', async () => {
    await api(base, 'POST', `/classes/${classId}/enrollments`, admin, { student_id: demo.minor.id, reference: 'e2e' });
    await api(base, 'POST', `/classes/${classId}/activate`, admin);
    const tutor = await person('tutor', 'Europe/London');
    const minor = await person('minor', 'Europe/London');
    for (const [who, page, email] of [
      ['tutor', tutor, 'tutor@demo.liveclass.test'],
      ['minor', minor, 'minor@demo.liveclass.test'],
    ]) {
      await signIn(page, base, email);
      const join = page.locator(`button[data-meeting="${meetingId}"]`);
      await join.waitFor();
      assert.equal(await join.isDisabled(), false, `${who}: Join is disabled`);
      await join.click();
      await page.waitForSelector('#rt-status.ok');
    }
    // The media join (POST /meetings/{id}/join) answered: no consent error.
    await minor.waitForSelector('#room-view[data-backend]').catch(async () => {
      assert.fail(`the minor's media join failed: "${await minor.textContent('#media-status')}"`);
    });
    await tutor.waitForSelector(`#presence li[data-user="${demo.minor.id}"]`);
    await minor.waitForSelector(`#presence li[data-user="${demo.tutor.id}"]`);
    await minor.fill('#chat-form [name=text]', 'hello from the minor');
    await minor.press('#chat-form [name=text]', 'Enter');
    await tutor.locator('#chat li.chat', { hasText: 'hello from the minor' }).waitFor();
    // The minor's camera reaches the tutor: live video is what the consent was for.
    await tutor
      .waitForFunction(
        (id) => document.querySelector(`video[data-identity="${id}"]`)?.getVideoPlaybackQuality().totalVideoFrames > 0,
        demo.minor.id,
        { timeout: 20_000 },
      )
      .catch(async () =>
        assert.fail(`the tutor decodes no video from the minor: ${await tutor.textContent('#media-status')}`),
      );
    await minor.waitForFunction(() => document.querySelector('.tile.local video')?.videoWidth > 0).catch(() => {});
    const media = (await minor.textContent('#media-status')) ?? '';
    assert.doesNotMatch(media, /consent/i, `the minor's media status: ${media}`);
    assert.equal(await errorsOn(minor), 'none', 'the minor’s page shows errors');
    await shot(minor, 'room');
    log(`the minor is in the meeting (media: "${media.trim()}")`);
  });
});
