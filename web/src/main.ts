// The app shell: sign in and out, the navigation of the signed-in person's role (from the page lists in
// src/pages/*.ts), hash routing (`#/path?query`, so a refresh or a link keeps the place), the user's live
// channel on /ws dispatched to the pages, and the live room (src/room.ts) at `#/room/...`.

import './style.css';
import { Api, type User } from './api';
import { $, clearErrors, dateTime, el, setSavedZone, setStatus, show, showError, timeRange } from './dom';
import { homePages } from './pages/home';
import { parentPages } from './pages/parent';
import { settingsPages } from './pages/settings';
import { staffPages } from './pages/staff';
import { studentPages } from './pages/student';
import { tutorPages } from './pages/tutor';
import type { Page, PageContext, UserEvent } from './pages/types';
import type { LiveRoom, Target } from './room';
import { UserChannel } from './shell/live';
import { BOOKING_STATUS, forgetCaches, type BookingView, type ClassView } from './shell/model';
import { currentRoute, find, hashOf, type Route } from './shell/router';
import { announce } from './shell/ui';

const PAGES: Page[] = [...homePages, ...studentPages, ...parentPages, ...tutorPages, ...staffPages, ...settingsPages];
const ROLE_NAMES: Record<User['role'], string> = {
  admin: 'admin',
  staff: 'staff',
  tutor: 'tutor',
  student: 'student',
  parent: 'parent',
};

const api = new Api();
let me: User | null = null;
let channel: UserChannel | null = null;
/** Resolves once the live channel has joined (or after a short wait), so the first page misses no push. */
let channelReady: Promise<void> = Promise.resolve();
let room: { key: string; live: LiveRoom } | null = null;
/** Where Leave goes back to: the page the room was opened from. */
let returnTo = '/';
/** The handlers of the page on screen (cleared whenever another page is rendered). */
const subscribers = new Set<(e: UserEvent) => void>();
let renderSeq = 0;
let firstRender = true;

function start(): void {
  $<HTMLFormElement>('#login-form').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const tenant = String(f.get('tenant')).trim();
    localStorage.setItem('liveclass.tenant', tenant);
    void signIn(() => api.login(tenant, String(f.get('email')).trim(), String(f.get('password'))));
  };
  $<HTMLFormElement>('#token-form').onsubmit = (e) => {
    e.preventDefault();
    void signIn(() => api.useToken(String(new FormData(e.target as HTMLFormElement).get('token'))));
  };
  $('#logout').onclick = () => signOut();
  $('#nav-toggle').onclick = () => toggleNav();
  $('#nav-list').addEventListener('click', (e) => {
    if ((e.target as HTMLElement).closest('a')) toggleNav(false);
  });
  // The skip link moves focus to the content without touching the route in the hash.
  $('.skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    $('#main').focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && $('#nav').classList.contains('open')) toggleNav(false);
  });
  window.addEventListener('hashchange', () => void route());
  api.onSignedOut = () => {
    if (me) signOut('Your session has ended. Please sign in again.');
  };
  const tenant = new URLSearchParams(location.search).get('tenant') ?? localStorage.getItem('liveclass.tenant');
  if (tenant) $<HTMLInputElement>('#login-tenant').value = tenant;

  if (api.token) void signIn(() => api.me(), true);
  else signedOut();
}

async function signIn(how: () => Promise<User>, quiet = false): Promise<void> {
  let user: User;
  try {
    user = await how();
  } catch (e) {
    if (!quiet) showError(e);
    signedOut();
    return;
  }
  clearErrors();
  me = user;
  // Times are shown in the zone the person chose, if they chose one (else the browser's).
  setSavedZone(user.timezone);
  $('#whoami').textContent = `${user.display_name} (${ROLE_NAMES[user.role]})`;
  $('#logout').hidden = false;
  $('#nav').hidden = false;
  $('#nav-toggle').hidden = false;
  document.body.dataset.user = user.id;
  document.body.dataset.role = user.role;
  openChannel(user);
  buildNav(user);
  $<HTMLInputElement>('#login-password').value = '';
  // Signing in by hand moves focus to the new page's heading (the form it was in is gone).
  if (!quiet) firstRender = false;
  await route();
}

function signOut(message?: string): void {
  leaveRoom();
  channel?.close();
  channel = null;
  subscribers.clear();
  if (me) api.logout();
  me = null;
  setSavedZone(null);
  forgetCaches();
  signedOut();
  if (message) showError(new Error(message));
}

function signedOut(): void {
  $('#whoami').textContent = '';
  $('#logout').hidden = true;
  $('#nav').hidden = true;
  $('#nav-toggle').hidden = true;
  $('#live-status').hidden = true;
  delete document.body.dataset.user;
  delete document.body.dataset.role;
  delete document.body.dataset.live;
  document.title = 'Sign in · liveclass';
  // Followed a link (a consent request in a mail): say that signing in leads there.
  $('#login-next').hidden = currentRoute().path === '/';
  show('login');
}

// --- the live channel ---

function openChannel(user: User): void {
  channel?.close();
  let ready: () => void = () => {};
  channelReady = Promise.race([new Promise<void>((r) => (ready = r)), new Promise<void>((r) => setTimeout(r, 3000))]);
  const status = $('#live-status');
  channel = new UserChannel(user.id, () => api.freshToken(), {
    event: (e) => dispatch(e),
    status: (text, ok) => {
      if (ok) ready();
      document.body.dataset.live = ok ? 'on' : 'off';
      // Shown only when live updates are off: that is when the page may be out of date.
      status.hidden = ok;
      setStatus('#live-status', ok ? 'live' : text, ok);
    },
  });
  channel.connect();
}

function dispatch(e: UserEvent): void {
  notify(e);
  for (const handler of [...subscribers]) {
    try {
      handler(e);
    } catch (err) {
      showError(err);
    }
  }
}

/** A sentence for the pushes a person wants to hear about, wherever they are in the app. */
function notify(e: UserEvent): void {
  switch (e.kind) {
    case 'booking': {
      const status = BOOKING_STATUS[String(e.status)] ?? String(e.status);
      announce(`Your lesson on ${dateTime(String(e.starts_at))} is now ${status}.`);
      break;
    }
    case 'booking_rescheduled':
      announce(`A lesson moved to ${dateTime(String(e.starts_at))}.`);
      break;
    case 'badge':
      announce(`New badge: ${String(e.badge).replace(/_/g, ' ')}!`);
      break;
    case 'level':
      announce(`You reached level ${e.level}!`);
      break;
    case 'unlock':
      announce('A new lesson was unlocked for you.');
      break;
    case 'reminder':
      announce(`Reminder: a lesson starts at ${dateTime(String(e.starts_at))}.`);
      break;
  }
}

// --- navigation ---

function buildNav(user: User): void {
  // Home first, then each role's pages, Messages and Settings last.
  const last = ['/messages', '/settings'];
  const items = PAGES.filter((p) => p.nav && p.roles.includes(user.role)).sort(
    (a, b) => last.indexOf(a.path) - last.indexOf(b.path),
  );
  $('#nav-list').replaceChildren(
    ...items.map((p) => el('li', {}, el('a', { href: hashOf(p.path), 'data-path': p.path }, p.title))),
  );
}

function markNav(path: string): void {
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav-list a')) {
    const p = a.dataset.path ?? '';
    const here = p === path || (p !== '/' && path.startsWith(`${p}/`));
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function toggleNav(open?: boolean): void {
  const nav = $('#nav');
  const now = open ?? !nav.classList.contains('open');
  nav.classList.toggle('open', now);
  $('#nav-toggle').setAttribute('aria-expanded', String(now));
}

function navigate(path: string): void {
  const hash = hashOf(path);
  if (location.hash === hash) void route();
  else location.hash = hash;
}

// --- routing ---

async function route(): Promise<void> {
  if (!me) {
    signedOut();
    return;
  }
  const r = currentRoute();
  markNav(r.path);
  const roomMatch = /^\/room\/(meeting|lesson)\/([^/]+)$/.exec(r.path);
  if (roomMatch) {
    await enterRoom(roomMatch[1] as 'meeting' | 'lesson', roomMatch[2], r);
    return;
  }
  entering = null;
  leaveRoom();
  returnTo = r.path + (Object.keys(r.query).length ? `?${new URLSearchParams(r.query)}` : '');
  await renderPage(r);
}

async function renderPage(r: Route): Promise<void> {
  const user = me!;
  const seq = ++renderSeq;
  subscribers.clear();
  show('page');
  const found = find(PAGES, user.role, r.path);
  const title = found?.page.title ?? 'Page not found';
  setTitle(title);
  // A fresh element per render: a slow page that finishes after the person moved on writes into nothing.
  const root = el('div', { class: 'page-root', 'data-page': found?.page.path ?? 'none' });
  $('#page').replaceChildren(root);
  if (!firstRender) $('#page-title').focus();
  firstRender = false;
  if (!found) {
    root.append(
      el('p', {}, 'There is no such page for your account.'),
      el('p', {}, el('a', { href: '#/' }, 'Go to your home page')),
    );
    return;
  }
  await channelReady;
  if (seq !== renderSeq) return;
  const ctx: PageContext = {
    api,
    me: user,
    root,
    params: { ...r.query, ...found.params },
    navigate,
    onUserEvent(handler) {
      if (seq !== renderSeq) return () => {};
      subscribers.add(handler);
      return () => subscribers.delete(handler);
    },
    error: (e) => showError(e),
    setTitle: (t) => {
      if (seq === renderSeq) setTitle(t);
    },
  };
  try {
    await found.page.render(ctx);
  } catch (e) {
    if (seq === renderSeq) showError(e);
  }
}

function setTitle(title: string): void {
  $('#page-title').textContent = title;
  document.title = `${title} · liveclass`;
}

// --- the live room ---

async function enterRoom(kind: 'meeting' | 'lesson', id: string, r: Route): Promise<void> {
  const key = `${kind}:${id}`;
  if (room?.key === key || entering === key) return;
  entering = key;
  try {
    await openRoom(kind, id, r, key);
  } finally {
    if (entering === key) entering = null;
  }
}

/** The room being opened (loading its class or booking, and the room's code). */
let entering: string | null = null;

async function openRoom(kind: 'meeting' | 'lesson', id: string, r: Route, key: string): Promise<void> {
  leaveRoom();
  subscribers.clear();
  renderSeq++;
  let target: Target;
  try {
    if (kind === 'meeting') {
      const classId = r.query.class;
      if (!classId) throw new Error('This link to a class meeting is incomplete (it names no class).');
      const c = await api.get<ClassView>(`/classes/${classId}`);
      const m = c.meetings.find((m) => m.id === id);
      target = {
        kind: 'meeting',
        meeting: id,
        classId,
        room: `meeting:${id}`,
        title: m ? `${c.title}, ${timeRange(m.starts_at, m.ends_at)}` : c.title,
        moderator: me!.role === 'admin' || me!.role === 'staff' || c.instructor_id === me!.id,
      };
    } else {
      const b = await api.get<BookingView>(`/bookings/${id}`);
      target = {
        kind: 'lesson',
        booking: id,
        room: b.room ?? `lesson:${id}`,
        title: `Lesson, ${timeRange(b.starts_at, b.ends_at)}`,
      };
    }
  } catch (e) {
    showError(e);
    navigate(returnTo);
    return;
  }
  // The room (with livekit-client, most of the app's weight) loads only when someone enters one.
  let Room: typeof LiveRoom;
  try {
    ({ LiveRoom: Room } = await import('./room'));
  } catch (e) {
    showError(e);
    navigate(returnTo);
    return;
  }
  if (currentRoute().path !== r.path) return; // moved on while loading
  clearErrors();
  document.title = `${target.title} · liveclass`;
  setStatus('#rt-status', 'room: connecting…', false);
  setStatus('#media-status', 'media: connecting…', false);
  show('room');
  const live = new Room(api, me!, target, () => {
    room = null;
    navigate(returnTo);
  });
  room = { key, live };
  live.start();
  $('#room-title').focus?.();
}

function leaveRoom(): void {
  if (!room) return;
  room.live.leave();
  room = null;
}

start();
