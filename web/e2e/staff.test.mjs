// End-to-end: staff run a class and a tutor publishes availability, in headless Chromium, against the real
// server (the same setup as lesson.test.mjs: `target/debug/liveclass serve` on a free port, a temporary
// SQLite database, `liveclass seed-demo --json`).
//
// Checked, through the pages only (the API is used to check what the pages did, and as the student):
//   - the admin signs in, creates a course, then a group class with one meeting entered on the class's clock
//     (Europe/Berlin) while the browser runs in America/Sao_Paulo: the server stores the right UTC instant;
//   - enrolls the adult demo student (who gets the package's credits), cancels an activation at the
//     confirmation with Escape (nothing changes), then activates the class;
//   - the tutor (browser in America/New_York) publishes weekly hours in the availability editor, adding
//     windows with the keyboard alone; the student's slot list (GET /tutors/{id}/slots, in Asia/Tokyo)
//     goes from "not bookable" to slots inside those hours; the tutor narrows the hours and the student's
//     list follows; the editor's own preview agrees with the API;
//   - the tutor's other pages (lessons and meetings, classes, the class with attendance and lessons,
//     earnings with the "payouts offline" sentence) and the staff pages render without errors;
//   - on a 390×844 phone viewport no page scrolls sideways (wide tables scroll inside their own region).
// Screenshots of every page (desktop and phone) go to web/e2e/screenshots/ (or E2E_SCREENSHOTS).
//
// Run: `bash web/e2e/run.sh` (installs, builds, runs), or after a build `node web/e2e/staff.test.mjs`.
// Environment: LIVECLASS_BIN (default target/debug/liveclass), CHROMIUM (default /usr/bin/chromium).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  assertNoErrors,
  call,
  chromiumArgs,
  createClass,
  desktopAndPhone,
  go,
  ownChromium,
  seedDemo,
  signIn,
  startRun,
  startServer,
} from './harness.mjs';

const DEADLINE_MS = 150_000;

const run = startRun('e2e-staff', { deadlineMs: DEADLINE_MS });
const log = run.log;

/** `YYYY-MM-DD` in `tz`, `days` from today. */
function dateIn(tz, days = 0) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: tz }).format(new Date(Date.now() + days * 86_400_000));
}

/** `HH:MM` of an instant in `tz`. */
function clockIn(iso, tz) {
  return new Intl.DateTimeFormat('en-GB', {
    timeZone: tz,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).format(new Date(iso));
}

/** One person's browser (its own Chromium), signed in through the page. */
async function person(who, origin, email, timezoneId) {
  const page = await ownChromium(run, who, chromiumArgs(), { timezoneId, locale: 'en-GB' });
  await signIn(page, origin, email);
  return page;
}

/** Desktop and phone screenshots of the page on screen; on the phone, nothing may scroll sideways. */
async function shoot(page, name) {
  await desktopAndPhone(page, name, async () => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${name}: on a phone the page scrolls sideways by ${overflow}px`);
  });
}

test('staff run a class; a tutor publishes availability', { timeout: DEADLINE_MS - 5_000 }, async (t) => {
  const server = await startServer(run);
  const base = server.base;
  log(`server up at ${base} (log: ${run.serverLog})`);
  const demo = await seedDemo(run, server);
  const admin = demo.admin.access_token;
  const tutorId = demo.tutor.id;
  const studentId = demo.student.id;

  const staff = await person('staff', base, 'admin@demo.liveclass.test', 'America/Sao_Paulo');
  log('the admin is signed in');
  let courseId;
  let classId;
  let slot;

  await t.test('staff create a course', async () => {
    await staff.click('#nav-list a[data-path="/staff/courses"]');
    await staff.waitForSelector('#course-form');
    await staff.fill('#course-form [name=title]', 'Spanish A1');
    await staff.fill('#course-form [name=lessons]', 'Greetings\nNumbers\nThe family\nFood');
    await staff.click('#course-form button[type=submit]');
    await staff.waitForSelector('#course-lessons li');
    courseId = /\/staff\/courses\/([^/?]+)/.exec(await staff.evaluate(() => location.hash))?.[1];
    assert.ok(courseId, 'no course page after creating the course');
    assert.equal(await staff.locator('#course-lessons li').count(), 4);
    assert.equal(await staff.textContent('#page-title'), 'Spanish A1');
    await shoot(staff, 'staff-course');
    await assertNoErrors(staff, 'staff');
  });

  const meetingDay = dateIn('Europe/Berlin', 2);
  await t.test('staff create a group class with a meeting on the class’s clock', async () => {
    await go(staff, `/staff/classes?course=${courseId}`, '#class-form');
    await staff.selectOption('#class-form [name=kind]', 'group');
    await staff.fill('#class-form [name=title]', 'Spanish A1, evening group');
    await staff.selectOption('#class-form [name=course_id]', courseId);
    await staff.selectOption('#class-form [name=instructor_id]', tutorId);
    await staff.fill('#class-form [name=total_meetings]', '4');
    await staff.fill('#class-form [name=capacity]', '6');
    await staff.fill('#class-form [name=timezone]', 'Europe/Berlin');
    await staff.click('#class-form button:has-text("Add a meeting")');
    await staff.fill('#class-form [name=meeting_start]', `${meetingDay}T18:30`);
    await staff.fill('#class-form [name=meeting_minutes]', '90');
    await shoot(staff, 'staff-classes');
    await staff.click('#class-form button[type=submit]');
    await staff.waitForSelector('#class-summary[data-status="draft"]');
    classId = /\/staff\/classes\/([^/?]+)/.exec(await staff.evaluate(() => location.hash))?.[1];
    assert.ok(classId, 'no class page after creating the class');
    const cls = await call(base, 'GET', `/classes/${classId}`, admin);
    assert.equal(cls.status, 200);
    assert.equal(cls.body.meetings.length, 1);
    const m = cls.body.meetings[0];
    assert.equal(clockIn(m.starts_at, 'Europe/Berlin'), '18:30', `meeting stored as ${m.starts_at}`);
    assert.equal(dateIn('Europe/Berlin', 0) <= meetingDay, true);
    assert.equal((Date.parse(m.ends_at) - Date.parse(m.starts_at)) / 60_000, 90);
    assert.equal(await staff.locator('#class-meetings tbody tr').count(), 1);
    // The reader's zone is named (the browser runs in São Paulo).
    assert.match(await staff.textContent('.lc-zone'), /America\/Sao_Paulo/);
    await assertNoErrors(staff, 'staff');
  });

  await t.test('staff enroll a student with credits', async () => {
    await staff.selectOption('#enroll-form [name=student_id]', studentId);
    await staff.fill('#enroll-form [name=reference]', 'INV-1001');
    await staff.click('#enroll-form button[type=submit]');
    await staff.locator('#roster tbody tr', { hasText: 'Demo student' }).waitFor();
    const roster = await call(base, 'GET', `/classes/${classId}/roster`, admin);
    assert.equal(roster.body.length, 1);
    assert.equal(roster.body[0].student_id, studentId);
    assert.equal(roster.body[0].balance, 4, 'the package’s 4 credits');
    await staff.locator('.lc-status', { hasText: 'Enrolled Demo student with 4 credits' }).waitFor();
    await assertNoErrors(staff, 'staff');
  });

  await t.test('staff activate the class after a confirmation', async () => {
    // Escape at the confirmation changes nothing.
    await staff.click('#activate');
    await staff.waitForSelector('dialog.lc-dialog[open]');
    await staff.keyboard.press('Escape');
    await staff.waitForSelector('dialog.lc-dialog', { state: 'detached' });
    assert.equal((await call(base, 'GET', `/classes/${classId}`, admin)).body.status, 'draft');
    await staff.click('#activate');
    await staff.click('dialog.lc-dialog button[value=ok]');
    await staff.waitForSelector('#class-summary[data-status="active"]');
    assert.equal((await call(base, 'GET', `/classes/${classId}`, admin)).body.status, 'active');
    await staff.waitForSelector('#class-lessons tbody tr');
    await shoot(staff, 'staff-class');
    await assertNoErrors(staff, 'staff');
  });

  const tutor = await person('tutor', base, 'tutor@demo.liveclass.test', 'America/New_York');
  log('the tutor is signed in');
  const viewer = 'Asia/Tokyo';
  const slotsFor = async () =>
    call(
      base,
      'GET',
      `/tutors/${tutorId}/slots?from=${dateIn(viewer, 1)}&to=${dateIn(viewer, 8)}&tz=${encodeURIComponent(viewer)}`,
      demo.student.access_token,
    );

  await t.test('a tutor edits availability and the student’s slots follow', async () => {
    const before = await slotsFor();
    assert.equal(before.status, 404, 'nothing is published yet');
    assert.equal(before.body.error.code, 'tutor_not_bookable');

    await tutor.click('#nav-list a[data-path="/tutor/availability"]');
    await tutor.waitForSelector('#availability-form');
    await tutor.fill('#availability-form [name=timezone]', 'America/New_York');
    await tutor.fill('#availability-form [name=currency]', 'USD');
    await tutor.fill('#availability-form [name=length_price]', '40.00');
    await tutor.fill('#availability-form [name=min_notice_minutes]', '60');
    // Hours every day, 09:00–12:00, added with the keyboard: focus the day's button, Enter, type the times.
    for (const day of ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']) {
      await tutor.focus(`fieldset[data-day="${day}"] button.lc-add`);
      await tutor.keyboard.press('Enter');
      const focused = await tutor.evaluate(() => document.activeElement?.getAttribute('name'));
      assert.equal(focused, 'start', 'Enter on “Add hours” puts the focus in the new window');
      await tutor.keyboard.type('0900');
      // Tab walks through the time field's parts, then on to the window's end.
      for (let i = 0; i < 4; i++) {
        await tutor.keyboard.press('Tab');
        if ((await tutor.evaluate(() => document.activeElement?.getAttribute('name'))) === 'end') break;
      }
      await tutor.keyboard.type('1200');
    }
    await tutor.click('#availability-form button[type=submit]');
    await tutor.locator('#availability-form .lc-status', { hasText: 'Saved' }).waitFor();
    await tutor.waitForSelector('.lc-preview [data-minutes="60"]');

    const first = await slotsFor();
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.tutor_timezone, 'America/New_York');
    assert.equal(first.body.viewer_timezone, viewer);
    assert.equal(first.body.price_minor, 4000);
    assert.equal(first.body.currency, 'USD');
    assert.ok(first.body.slots.length >= 7, `only ${first.body.slots.length} slots in 8 days`);
    const published = (await call(base, 'GET', `/tutors/${tutorId}/availability`, admin)).body;
    for (const s of first.body.slots) {
      const at = clockIn(s.starts_at, 'America/New_York');
      assert.ok(
        at >= '09:00' && clockIn(s.ends_at, 'America/New_York') <= '12:00',
        `slot at ${at} New York; published ${JSON.stringify(published.weekly)}`,
      );
    }
    log(`student sees ${first.body.slots.length} slots (09:00–12:00 New York)`);
    // The editor's preview (7 days from today, on the tutor's clock) is what the API lists for those days.
    const shown = Number(await tutor.getAttribute('.lc-preview [data-minutes="60"]', 'data-slots'));
    const ny = 'America/New_York';
    const same = await call(
      base,
      'GET',
      `/tutors/${tutorId}/slots?from=${dateIn(ny)}&to=${dateIn(ny, 6)}&tz=${encodeURIComponent(ny)}`,
      demo.tutor.access_token,
    );
    assert.equal(shown, same.body.slots.length, 'the preview and the API disagree');
    await shoot(tutor, 'tutor-availability');

    // Narrower hours: 14:00–15:00 every day. The student's list follows.
    for (const start of await tutor.locator('.lc-week [name=start]').all()) await start.fill('14:00');
    for (const end of await tutor.locator('.lc-week [name=end]').all()) await end.fill('15:00');
    await tutor.click('#availability-form button[type=submit]');
    await tutor.waitForFunction(
      (n) => Number(document.querySelector('.lc-preview [data-minutes="60"]')?.getAttribute('data-slots')) !== n,
      shown,
    );
    const second = await slotsFor();
    assert.equal(second.status, 200);
    assert.ok(second.body.slots.length > 0, 'no slots after narrowing the hours');
    assert.ok(second.body.slots.length < first.body.slots.length, 'narrower hours, fewer slots');
    for (const s of second.body.slots) {
      assert.equal(clockIn(s.starts_at, 'America/New_York'), '14:00', `slot at ${s.local_start}`);
      // …which is 03:00 or 04:00 the next day in Tokyo, as the student's own clock says.
      assert.match(s.local_start, /T0[34]:00:00\+09:00$/);
    }
    const stored = await call(base, 'GET', `/tutors/${tutorId}/availability`, demo.student.access_token);
    assert.equal(stored.body.weekly.length, 7);
    assert.ok(stored.body.weekly.every((w) => w.start === '14:00' && w.end === '15:00'));
    log(`after the edit the student sees ${second.body.slots.length} slots (14:00 New York)`);
    slot = second.body.slots[0];
    await assertNoErrors(tutor, 'tutor');
  });

  await t.test('the tutor’s other pages', async () => {
    await go(tutor, '/tutor/lessons', '#tutor-meetings');
    await tutor.locator('#tutor-meetings tbody tr', { hasText: 'Spanish A1, evening group' }).waitFor();
    // On the tutor's pages the tutor's zone is named.
    assert.match(await tutor.textContent('.lc-zone'), /America\/New_York/);
    await shoot(tutor, 'tutor-lessons');
    await go(tutor, '/tutor/classes', '.lc-page[data-page="tutor-classes"] table');
    await shoot(tutor, 'tutor-classes');
    await go(tutor, `/tutor/classes/${classId}`, '#class-lessons tbody tr');
    await tutor.waitForSelector(`#attendance-table tr[data-student="${studentId}"]`);
    // Unlock the first lesson, after the confirmation.
    await tutor.click('#class-lessons button[data-lesson]');
    await tutor.click('dialog.lc-dialog button[value=ok]');
    await tutor.locator('#lessons .lc-status', { hasText: 'Unlocked “Greetings”' }).waitFor();
    const lessons = await call(base, 'GET', `/classes/${classId}/lessons`, demo.student.access_token);
    assert.deepEqual(
      lessons.body.map((l) => l.title),
      ['Greetings'],
      'the student sees the unlocked lesson',
    );
    await shoot(tutor, 'tutor-class');
    // A class whose meeting began a minute ago (made over the API): the tutor marks the student present.
    const now = await createClass(base, admin, {
      title: 'Spanish A1, running now',
      courseId,
      instructorId: tutorId,
      total_meetings: 2,
      meetings: [[-1, 59]],
      students: [studentId],
    });
    await go(tutor, `/tutor/classes/${now.id}`, `#attendance-table tr[data-student="${studentId}"]`);
    const rowSel = `#attendance-table tr[data-student="${studentId}"]`;
    await tutor.click(`${rowSel} button[data-status="present"]`);
    await tutor.waitForSelector(`${rowSel} button[data-status="present"][aria-pressed="true"]`);
    await tutor.locator('#attendance .lc-status', { hasText: 'Demo student: present; 1 credit left' }).waitFor();
    const roster = await call(base, 'GET', `/classes/${now.id}/roster`, admin);
    assert.equal(roster.body[0].balance, 1, 'present costs one of the 2 credits');
    await tutor.locator('#report-students tbody tr', { hasText: 'Demo student' }).waitFor();
    await shoot(tutor, 'tutor-attendance');

    await go(tutor, '/tutor/earnings', '#payout-onboard');
    await tutor.click('#payout-onboard');
    await tutor.locator('#payout-account .lc-status', { hasText: 'staff pay tutors by hand' }).waitFor();
    await shoot(tutor, 'tutor-earnings');
    await assertNoErrors(tutor, 'tutor');
  });

  await t.test('the staff pages render', async () => {
    const pages = [
      ['/staff/users', '#users tbody tr', 'staff-users'],
      [`/staff/users/${demo.parent.id}`, '#children tbody tr', 'staff-user-parent'],
      ['/staff/tutors', '#tutors tbody tr', 'staff-tutors'],
      ['/staff/bookings', '#bookings', 'staff-bookings'],
      ['/staff/consent', '#consent-requests', 'staff-consent'],
      ['/staff/reports', '#revenue-lines', 'staff-reports'],
      ['/staff/policy', '#policy-form', 'staff-policy'],
      ['/staff/jobs', '#jobs', 'staff-jobs'],
      ['/staff/mail', '#mailbox', 'staff-mailbox'],
      ['/staff/audit', '#audit tbody tr', 'staff-audit'],
      [`/tutors/${tutorId}/availability`, '.lc-preview [data-minutes]', 'staff-tutor-availability'],
    ];
    for (const [path, ready, name] of pages) {
      await go(staff, path, ready);
      await shoot(staff, name);
      await assertNoErrors(staff, `staff (${path})`);
    }
    // A consent request for the demo minor, sent to their linked parent.
    await go(staff, '/staff/consent', '#consent-form');
    await staff.selectOption('#consent-form [name=child_id]', demo.minor.id);
    await staff.click('#consent-form button[type=submit]');
    await staff.locator('#consent-requests tbody tr', { hasText: 'Demo minor' }).waitFor();
    const pending = await call(base, 'GET', '/consent-requests?status=pending', admin);
    assert.equal(pending.body.requests.length, 1);
    assert.equal(pending.body.requests[0].parent_id, demo.parent.id);
    // The booking policy: the admin sets the commission to 25 %.
    await go(staff, '/staff/policy', '#policy-form');
    await staff.fill('#policy-form [name=commission_bps]', '25');
    await staff.click('#policy-form button[type=submit]');
    await staff.locator('#policy-form .lc-status', { hasText: 'Saved' }).waitFor();
    const policy = await call(base, 'GET', `/tenants/${demo.tenant_id}/booking-policy`, admin);
    assert.equal(policy.body.commission_bps, 2500);
    // The class's attendance as CSV, downloaded with the bearer token.
    await go(staff, '/staff/reports', '#revenue-lines');
    await staff.selectOption('[name=class_id]', classId);
    await staff.waitForSelector('#attendance-students tbody tr');
    const [download] = await Promise.all([
      staff.waitForEvent('download'),
      staff.click('#attendance-summary button.lc-csv'),
    ]);
    const csv = readFileSync(await download.path(), 'utf8');
    assert.match(csv, /^class_id,class_title,meeting_id,meeting_starts_at,student_id,student_name,status/);
    assert.ok(csv.includes(`,${studentId},Demo student,`), `CSV: ${csv}`);
    assert.equal(download.suggestedFilename(), `attendance-${classId}.csv`);
    // The audit log shows the class's activation.
    await go(staff, '/staff/audit', '#audit tbody tr');
    await staff.locator('#audit tbody tr', { hasText: 'class.status_changed' }).first().waitFor();
    await assertNoErrors(staff, 'staff');
  });
  await t.test('staff record an offline payment; the tutor’s lessons follow live', async () => {
    const student = demo.student.access_token;
    const hold = await call(base, 'POST', '/bookings', student, {
      tutor_id: tutorId,
      starts_at: slot.starts_at,
      minutes: 60,
    });
    assert.equal(hold.status, 201, JSON.stringify(hold.body));
    const checkout = await call(base, 'POST', `/bookings/${hold.body.id}/checkout`, student);
    assert.equal(checkout.status, 200, JSON.stringify(checkout.body));
    assert.equal(checkout.body.booking.status, 'pending_payment');
    await go(tutor, '/tutor/lessons', '#tutor-bookings');
    await tutor.locator('#tutor-bookings tbody tr', { hasText: 'pending payment' }).waitFor();

    await go(staff, '/staff/bookings?status=pending_payment', `#bookings button[data-booking="${hold.body.id}"]`);
    await staff.click(`#bookings button[data-booking="${hold.body.id}"]`);
    await staff.selectOption('#received-form [name=method]', 'bank_transfer');
    await staff.fill('#received-form [name=note]', 'transfer 2026-12');
    await shoot(staff, 'staff-booking');
    await staff.click('#received-form button[type=submit]');
    await staff.locator('#booking-detail .lc-badge', { hasText: 'confirmed' }).first().waitFor();
    const booking = await call(base, 'GET', `/bookings/${hold.body.id}`, student);
    assert.equal(booking.body.status, 'confirmed');
    // The tutor's page hears of it on the user channel and shows it without a reload.
    await tutor.locator('#tutor-bookings tbody tr', { hasText: 'confirmed' }).waitFor();
    await assertNoErrors(staff, 'staff');
    await assertNoErrors(tutor, 'tutor');
  });
});
