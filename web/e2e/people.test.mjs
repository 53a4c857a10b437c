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
//   - the student's class page shows the credits left from their enrollment (GET /users/{id}/enrollments);
//   - on the Settings page the student saves a time zone other than the browser's (Asia/Tokyo): GET /me has it,
//     and the lessons page shows the booking on Tokyo's clock and says whose zone that is; the student
//     creates their calendar feed, whose address is on the school's public https URL
//     (LIVECLASS_PUBLIC_URL): it answers text/calendar with their lesson and meetings on Tokyo's clock
//     (TZID), and after they turn it off, 404;
//   - a parent signs in, sees the pending consent request on their home page, grants every scope with a
//     verification method, then revokes chat after reading what it does; the request's link
//     (`#/consent/<id>`) still opens after signing out and in again;
//   - every page of the student and the parent (and the tutor's and staff's home) is saved as a screenshot,
//     desktop (1280×900) and phone (390×844), in web/e2e/screenshots/ (or E2E_SCREENSHOTS), and no page
//     shows an error.
//
// Run: `bash web/e2e/run.sh` (installs, builds, runs every e2e test), or after a build
// `node --test-reporter=spec web/e2e/people.test.mjs`. Environment: LIVECLASS_BIN (default
// target/debug/liveclass), CHROMIUM (default /usr/bin/chromium), E2E_SCREENSHOTS (default web/e2e/screenshots).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  PHONE,
  PASSWORD,
  api,
  chromiumArgs,
  createClass,
  createCourse,
  desktopAndPhone,
  errorsOn,
  go,
  launchChromium,
  newPerson,
  seedDemo,
  settled,
  shot,
  signIn,
  startRun,
  startServer,
} from './harness.mjs';

const DEADLINE_MS = 180_000;
const STUDENT_ZONE = 'America/New_York';
const TUTOR_ZONE = 'Europe/Berlin';
/** The student's zone chosen on the Settings page: not the browser's. */
const SAVED_ZONE = 'Asia/Tokyo';
/** The school's public address (LIVECLASS_PUBLIC_URL), in the calendar feed's address. */
const PUBLIC_URL = 'https://school.liveclass.test';

const run = startRun('people', { deadlineMs: DEADLINE_MS });
const log = run.log;
let browser = null;

/** The demo tenant; the tutor's availability; a class the student knows the tutor from; a consent request. */
async function prepare(server) {
  const base = server.base;
  const demo = await seedDemo(run, server);
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
  const course = await createCourse(base, admin, 'Conversation course', ['Greetings', 'At the market']);
  const DAY = 24 * 60;
  const cls = await createClass(base, admin, {
    title: 'Spanish A1',
    courseId: course.id,
    instructorId: demo.tutor.id,
    capacity: 8,
    timezone: TUTOR_ZONE,
    meetings: [
      [-1, 59],
      [2 * DAY, 2 * DAY + 60],
      [4 * DAY, 4 * DAY + 60],
    ],
    students: [demo.student.id],
  });
  const lessons = await api(base, 'GET', `/classes/${cls.id}/lessons`, admin);
  await api(base, 'POST', `/classes/${cls.id}/unlocks`, demo.tutor.access_token, { lesson_id: lessons[0].lesson_id });
  const consent = await api(base, 'POST', '/consent-requests', admin, {
    child_id: demo.minor.id,
    scopes: ['live_video', 'chat', 'recording'],
  });
  // The minor's class, in draft until the parent's consent lets the minor enrol.
  const kids = await createClass(base, admin, {
    title: 'Young readers',
    courseId: course.id,
    instructorId: demo.tutor.id,
    capacity: 8,
    timezone: TUTOR_ZONE,
    meetings: [
      [DAY, DAY + 45],
      [3 * DAY, 3 * DAY + 45],
    ],
  });
  return { demo, classId: cls.id, kidsClassId: kids.id, consentId: consent.id };
}

/** A fresh browser context (profile) for one person, in `timezoneId`. */
const person = (who, timezoneId) => newPerson(run, browser, who, { timezoneId });

/** Opens each route and saves it at desktop and phone size: `<who>-<name>-desktop.png`, `…-phone.png`. */
async function screenshots(page, who, routes) {
  for (const [name, path] of routes) {
    await page.setViewportSize(DESKTOP);
    if (path !== null) await go(page, path, '.page-root');
    await settled(page);
    await desktopAndPhone(page, `${who}-${name}`, async () => {
      const wide = await overflowing(page);
      assert.deepEqual(wide, [], `${who}'s ${name} page is wider than a phone`);
      const faint = await lowContrast(page);
      assert.deepEqual(faint, [], `${who}'s ${name} page has text below WCAG AA contrast`);
      assert.equal(await errorsOn(page), 'none', `${who}'s ${name} page shows errors`);
    });
  }
}

/** Elements that stick out of the page's width, except inside a box that scrolls sideways on purpose. */
function overflowing(page) {
  return page.evaluate(() => {
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

/** `9:00` (no AM/PM: a range names it once) on the clock of `zone`. */
function clockIn(iso, zone) {
  return new Date(iso)
    .toLocaleTimeString('en-US', { timeZone: zone, hour: 'numeric', minute: '2-digit' })
    .replace(/\s*[AP]M$/, '');
}

/** `20261208T090000`: an iCalendar local time in `zone` (Swedish dates are `2026-12-08 09:00:00`). */
function icsLocal(iso, zone) {
  return new Date(iso)
    .toLocaleString('sv-SE', { timeZone: zone, hourCycle: 'h23' })
    .replace(/[-:]/g, '')
    .replace(' ', 'T');
}

function berlinHour(iso) {
  return Number(new Date(iso).toLocaleString('en-GB', { timeZone: TUTOR_ZONE, hour: '2-digit', hourCycle: 'h23' }));
}

test('the people’s pages', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  const server = await startServer(run, { env: { LIVECLASS_PUBLIC_URL: PUBLIC_URL } });
  const base = server.base;
  log(`server up at ${base} (log: ${run.serverLog})`);
  const { demo, classId, kidsClassId, consentId } = await prepare(server);
  log(`tutor ${demo.tutor.id} publishes ${TUTOR_ZONE} hours; class ${classId}; consent request ${consentId}`);
  browser = await launchChromium(run, chromiumArgs({ scrollbars: false }));

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
    await shot(student, 'student-cancel-quote-desktop');
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
    await go(student, '/progress');
    const lesson = student.locator('li[data-lesson][data-completed="false"]').first();
    await lesson.locator('button').click();
    await student.waitForSelector('li[data-lesson][data-completed="true"]');
    // The phone layout: the navigation folds behind the Menu button.
    await student.setViewportSize(PHONE);
    assert.equal(await student.isVisible('#nav-list a[data-path="/tutors"]'), false, 'the phone menu is open');
    await student.click('#nav-toggle');
    await student.waitForSelector('#nav-list a[data-path="/tutors"]', { state: 'visible' });
    await shot(student, 'student-menu-phone', { fullPage: false });
    await student.click('#nav-toggle');
    await student.waitForSelector('#nav-list a[data-path="/tutors"]', { state: 'hidden' });
    await student.setViewportSize(DESKTOP);
  });

  await t.test('the class page’s credits are the enrollment’s balance', async () => {
    const credits = `.credits[data-class="${classId}"][data-credits]`;
    await go(student, `/classes/${classId}`, credits);
    const enrollments = await api(base, 'GET', `/users/${demo.student.id}/enrollments`, demo.student.access_token);
    const enrollment = enrollments.find((e) => e.class_id === classId);
    assert.ok(enrollment, `no enrollment in the class: ${JSON.stringify(enrollments)}`);
    assert.equal(Number(await student.getAttribute(credits, 'data-credits')), enrollment.balance);
    assert.match(await student.textContent(credits), new RegExp(`^${enrollment.balance} credits? left`));
  });

  await t.test('the student saves a time zone: the pages show it, and PATCH /me kept it', async () => {
    const me = () => api(base, 'GET', '/me', demo.student.access_token);
    assert.notEqual((await me()).timezone, SAVED_ZONE);
    const when = student.locator('tr', { has: student.locator(`a[href="#/bookings/${bookingId}"]`) }).locator('td');
    await go(student, '/bookings', `.zone-note[data-zone="${STUDENT_ZONE}"]`);
    const before = await when.first().textContent();
    await go(student, '/settings', '#zone-form');
    assert.equal(await student.getAttribute('#zone-state', 'data-zone'), '', 'a zone is already chosen');
    await student.selectOption('#zone-form select[name=timezone]', SAVED_ZONE);
    await student.click('#zone-form button[type=submit]');
    await student.waitForSelector(`#zone-state[data-zone="${SAVED_ZONE}"]`);
    assert.match(await student.textContent('#zone-state'), /Your time zone is Asia\/Tokyo/);
    assert.equal((await me()).timezone, SAVED_ZONE, 'GET /me does not have the saved zone');
    // The booking's time on the lessons page is now on Tokyo's clock, and the page says so.
    await go(student, '/bookings', `.zone-note[data-zone="${SAVED_ZONE}"]`);
    assert.match(await student.textContent('.zone-note'), /your time zone as set in your settings/);
    const { starts_at } = await api(base, 'GET', `/bookings/${bookingId}`, demo.student.access_token);
    const after = await when.first().textContent();
    assert.notEqual(after, before);
    assert.ok(
      after.includes(clockIn(starts_at, SAVED_ZONE)) && after.includes('GMT+9'),
      `the lesson at ${starts_at} reads "${after}" (before: "${before}"), not Tokyo's ${clockIn(starts_at, SAVED_ZONE)}`,
    );
    log(`the lesson at ${starts_at}: "${before}" in New York, then "${after}"`);
  });

  await t.test('the calendar feed: created, in the saved zone, then turned off', async () => {
    await go(student, '/settings', '#zone-form');
    await student.click('[data-action=create-feed]');
    await student.waitForSelector('#calendar-feed [data-feed="on"]');
    const url = await student.inputValue('#calendar-feed input[name=url]');
    assert.match(url, /^https:\/\/school\.liveclass\.test\/api\/v1\/calendar\/[0-9a-f]{64}\.ics$/);
    assert.equal(await student.inputValue('#calendar-feed input[name=webcal_url]'), url.replace(/^https:/, 'webcal:'));
    await screenshots(student, 'student', [['settings', null]]);
    // The address is on the school's public URL; this server answers its path.
    const feed = `${base}${new URL(url).pathname}`;
    const res = await fetch(feed);
    const ics = await res.text();
    assert.equal(res.status, 200, ics);
    assert.match(res.headers.get('content-type'), /^text\/calendar/);
    assert.match(ics, /^BEGIN:VEVENT\r?$/m, 'the feed has no event');
    assert.match(ics, /^SUMMARY:.*Spanish A1/m, 'the class meetings are not in the feed');
    assert.match(ics, /^TZID:Asia\/Tokyo\r?$/m, 'the feed has no VTIMEZONE for the saved zone');
    const { starts_at } = await api(base, 'GET', `/bookings/${bookingId}`, demo.student.access_token);
    const dtstart = `DTSTART;TZID=${SAVED_ZONE}:${icsLocal(starts_at, SAVED_ZONE)}`;
    assert.ok(ics.includes(dtstart), `the lesson at ${starts_at} is not in the feed as ${dtstart}:\n${ics}`);
    log(`the feed lists ${ics.match(/^BEGIN:VEVENT/gm).length} events in ${SAVED_ZONE}`);
    await student.click('[data-action=revoke-feed]');
    await student.click('.confirm [data-confirm]');
    await student.waitForSelector('#calendar-feed [data-feed="off"]');
    assert.equal((await fetch(feed)).status, 404, 'the feed still answers after it was turned off');
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
    await go(parent, `/children/${demo.minor.id}`);
    await parent.click('[data-revoke="chat"]');
    const consequence = parent.locator('.confirm .consequence');
    await consequence.waitFor();
    assert.match(await consequence.textContent(), /taken out of any live room/);
    await shot(parent, 'parent-revoke-confirm-desktop');
    await parent.click('.confirm [data-confirm]');
    await parent.waitForSelector('[data-scope="chat"] [data-state="revoked"]');
    await parent.waitForSelector('[data-scope="live_video"] [data-state="granted"]');
  });

  await t.test('the parent’s list follows a new consent request live, without a reload', async () => {
    await go(parent, '/consent');
    const marker = await parent.evaluate(() => (window.__samePage = Math.random()));
    const asked = await api(base, 'POST', '/consent-requests', demo.admin.access_token, {
      child_id: demo.minor.id,
      scopes: ['chat'],
    });
    await parent.waitForSelector(`[data-consent-request="${asked.id}"]`, { timeout: 10_000 });
    assert.equal(await parent.evaluate(() => window.__samePage), marker, 'the page was not reloaded');
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
    await parent.fill('#login-password', PASSWORD);
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
    await tutor.keyboard.type(PASSWORD);
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
