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

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  PASSWORD,
  ROOT,
  api,
  call,
  chromiumArgs,
  errorsOn,
  freePort,
  go,
  launchChromium,
  newPerson,
  seedDemoMeeting,
  settled,
  shot as saveShot,
  signIn,
  startRun,
  startServer,
  track,
} from './harness.mjs';

const SINK = join(ROOT, 'orchestrator/tests/api/smtp_sink.py');
const DEADLINE_MS = 120_000;
const MAIL_WAIT_MS = 20_000;
const PARENT_EMAIL = 'parent@demo.liveclass.test';
const MAIL_FROM = 'Demo School <school@demo.liveclass.test>';

const run = startRun('consent-mail', { deadlineMs: DEADLINE_MS });
const log = run.log;
const sinkLog = join(run.tmp, 'smtp.log');
run.logs.push(['SMTP server log', sinkLog, 10]);
const mailDir = join(run.tmp, 'mail');
mkdirSync(mailDir);
let browser = null;

/** The SMTP server, listening once it printed "ready". */
async function startSmtp() {
  assert.ok(existsSync(SINK), `no SMTP server script at ${SINK}`);
  const port = await freePort();
  const err = openSync(sinkLog, 'a');
  const sink = track(
    run,
    spawn('python3', [SINK, '--port', String(port), '--dir', mailDir], { stdio: ['ignore', 'pipe', err] }),
  );
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

/** The server, its mail going out through the test's SMTP server, with links to itself. */
function startMailingServer(smtpPort) {
  return startServer(run, {
    env: (base) => ({
      LIVECLASS_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
      LIVECLASS_MAIL_FROM: MAIL_FROM,
      LIVECLASS_PUBLIC_URL: base,
      LIVECLASS_JOBS_POLL_INTERVAL_MS: '200',
    }),
  });
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
const person = (who, timezoneId) => newPerson(run, browser, who, { timezoneId });

const shot = (page, name) => saveShot(page, `consent-mail-${name}`);

test('a parent consents by mail, and the minor joins the meeting', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  const smtpPort = await startSmtp();
  const server = await startMailingServer(smtpPort);
  const base = server.base;
  log(`SMTP server on 127.0.0.1:${smtpPort}, liveclass at ${base} (log: ${run.serverLog})`);
  // The demo tenant, and a class (in draft) whose one meeting began a minute ago, taught by the demo tutor.
  const { demo, classId, meetingId } = await seedDemoMeeting(run, server, {
    course: 'Reading aloud',
    lesson: 'Stories',
    title: 'Young readers (live)',
    timezone: 'Europe/London',
  });
  const admin = demo.admin.access_token;
  log(`class ${classId}, meeting ${meetingId}; minor ${demo.minor.id}, parent ${demo.parent.id}`);
  browser = await launchChromium(run, chromiumArgs({ media: true, scrollbars: false }));

  await t.test('without consent, the school can’t enrol the minor', async () => {
    const res = await call(base, 'POST', `/classes/${classId}/enrollments`, admin, { student_id: demo.minor.id });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body?.error?.code, 'consent_required');
  });

  let requestId;
  await t.test('staff ask the parent for consent on the staff page', async () => {
    const staff = await person('staff', 'UTC');
    await signIn(staff, base, 'admin@demo.liveclass.test');
    await go(staff, '/staff/consent', '#consent-form');
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
    await parent.fill('#login-password', PASSWORD);
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
      // The button is enabled once the page has the school's booking policy (its room window): wait for that,
      // then it must be enabled (the meeting began a minute ago).
      await page
        .waitForSelector(`button[data-meeting="${meetingId}"]:not([disabled])`, { timeout: 5000 })
        .catch(() => {});
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
