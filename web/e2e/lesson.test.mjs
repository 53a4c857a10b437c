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

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import {
  WEB,
  WEB_DIR,
  chromiumArgs,
  errorsOn,
  freePort,
  ownChromium,
  seedDemoMeeting,
  shot,
  signIn,
  startRun,
  startServer,
  track,
  waitUntilUp,
} from './harness.mjs';

const MEDIA = process.env.E2E_MEDIA !== 'off';
const VITE = process.env.E2E_PAGE === 'vite';
const DEADLINE_MS = 120_000;

const run = startRun('e2e', { deadlineMs: DEADLINE_MS });
const log = run.log;

/** Where the page is served: by the server itself (GET /), or with E2E_PAGE=vite by `vite preview`. */
async function pageOrigin(base) {
  if (!VITE) {
    const res = await fetch(`${base}/`);
    const html = await res.text();
    assert.ok(
      res.ok && html.includes('<title>liveclass</title>'),
      `the server does not serve the page: GET / answered ${res.status} (LIVECLASS_WEB_DIR=${WEB_DIR})`,
    );
    return base;
  }
  const port = await freePort();
  const viteLog = openSync(join(run.tmp, 'vite.log'), 'a');
  const vite = track(
    run,
    spawn(
      join(WEB, 'node_modules/.bin/vite'),
      ['preview', '--port', String(port), '--strictPort', '--host', '127.0.0.1'],
      {
        cwd: WEB,
        env: { ...process.env, LIVECLASS_API: base },
        stdio: ['ignore', viteLog, viteLog],
      },
    ),
  );
  const origin = `http://127.0.0.1:${port}`;
  await waitUntilUp(origin, 'vite preview', { tries: 100, alive: () => vite.exitCode === null });
  return origin;
}

/** One person: their own Chromium with a fresh profile, logged in on the page and inside the meeting. */
async function person(who, origin, email, meetingId) {
  const page = await ownChromium(run, who, chromiumArgs({ media: true }));
  await signIn(page, origin, email);
  await page.click(`button[data-meeting="${meetingId}"]`);
  await page.waitForSelector('#rt-status.ok');
  return page;
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
  // A server that doesn't know `web_dir` refuses to start with it, so vite mode leaves it out; the SFU's log
  // stays in.
  const server = await startServer(run, { webDir: !VITE, env: { LIVECLASS_LOG_FILTER: 'info,sqlx=warn' } });
  log(`server up at ${server.base} (log: ${run.serverLog})`);
  // The demo tenant, and a class whose one meeting began a minute ago: tutor teaching, student enrolled.
  const { demo, meetingId } = await seedDemoMeeting(run, server, {
    course: 'E2E course',
    lesson: 'Lesson 1',
    title: 'E2E class',
    enrol: ['student'],
  });
  log(`meeting ${meetingId}: tutor ${demo.tutor.id}, student ${demo.student.id}`);
  const origin = await pageOrigin(server.base);
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
      if (process.env.E2E_SCREENSHOTS) await shot(page, who);
      assert.equal(await errorsOn(page), 'none', `${who}'s page shows errors`);
    }
  });
});
