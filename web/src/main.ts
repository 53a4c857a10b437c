// The page: log in (or paste a token), list the user's lessons and class meetings, join one.

import './style.css';
import { Api, type User } from './api';
import { $, clearErrors, el, show, showError, time } from './dom';
import { LiveRoom, type Target } from './room';

interface Booking {
  id: string;
  tutor_id: string;
  student_id: string;
  starts_at: string;
  ends_at: string;
  status: string;
  room: string | null;
}

interface Meeting {
  id: string;
  starts_at: string;
  ends_at: string;
}

interface ClassView {
  id: string;
  title: string;
  instructor_id: string;
  status: string;
  meetings: Meeting[];
}

const api = new Api();
let me: User | null = null;
let current: LiveRoom | null = null;

/** How long after its end a lesson or meeting is still listed (the rooms stay open 15 minutes). */
const LISTED_AFTER_END_MS = 30 * 60_000;

async function start(): Promise<void> {
  $('#login-form').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    localStorage.setItem('liveclass.tenant', String(f.get('tenant')));
    void signIn(() => api.login(String(f.get('tenant')), String(f.get('email')), String(f.get('password'))));
  };
  $('#token-form').onsubmit = (e) => {
    e.preventDefault();
    void signIn(() => api.useToken(String(new FormData(e.target as HTMLFormElement).get('token'))));
  };
  $('#logout').onclick = () => {
    current?.leave();
    current = null;
    api.logout();
    me = null;
    loggedOut();
  };
  $('#reload').onclick = () => void list();
  const tenant = new URLSearchParams(location.search).get('tenant') ?? localStorage.getItem('liveclass.tenant');
  if (tenant) $<HTMLInputElement>('#login-form [name=tenant]').value = tenant;

  if (api.token) await signIn(() => api.me(), true);
  else loggedOut();
}

async function signIn(how: () => Promise<User>, quiet = false): Promise<void> {
  try {
    me = await how();
  } catch (e) {
    if (!quiet) showError(e);
    loggedOut();
    return;
  }
  clearErrors();
  $('#whoami').textContent = `${me.display_name} (${me.role})`;
  $('#logout').hidden = false;
  document.body.dataset.user = me.id;
  await list();
}

function loggedOut(): void {
  $('#whoami').textContent = '';
  $('#logout').hidden = true;
  delete document.body.dataset.user;
  show('login');
}

async function list(): Promise<void> {
  show('list');
  const lessons = $('#lessons');
  const meetings = $('#meetings');
  lessons.replaceChildren(el('li', { class: 'muted' }, 'loading…'));
  meetings.replaceChildren(el('li', { class: 'muted' }, 'loading…'));
  const since = new Date(Date.now() - LISTED_AFTER_END_MS - 6 * 3600_000).toISOString();
  const [bookings, classes] = await Promise.allSettled([
    api.get<Booking[]>(`/bookings?from=${encodeURIComponent(since)}`),
    api
      .get<{ id: string }[]>('/classes')
      .then((cs) => Promise.all(cs.map((c) => api.get<ClassView>(`/classes/${c.id}`)))),
  ]);

  lessons.replaceChildren();
  if (bookings.status === 'rejected') showError(bookings.reason);
  else {
    for (const b of bookings.value.filter((b) => Date.parse(b.ends_at) + LISTED_AFTER_END_MS > Date.now())) {
      const open = b.status === 'confirmed' || b.status === 'in_progress';
      const join = el('button', { type: 'button', 'data-booking': b.id }, 'Join');
      join.disabled = !open;
      join.onclick = () =>
        enter({
          kind: 'lesson',
          booking: b.id,
          room: b.room ?? `lesson:${b.id}`,
          title: `Lesson ${time(b.starts_at)}`,
        });
      lessons.append(
        el('li', {}, `${time(b.starts_at)}–${time(b.ends_at)} `, el('span', { class: 'muted' }, b.status), join),
      );
    }
  }
  if (!lessons.children.length) lessons.append(el('li', { class: 'muted' }, 'none coming up'));

  meetings.replaceChildren();
  if (classes.status === 'rejected') showError(classes.reason);
  else {
    const rows = classes.value
      .flatMap((c) => c.meetings.map((m) => ({ c, m })))
      .filter(({ m }) => Date.parse(m.ends_at) + LISTED_AFTER_END_MS > Date.now())
      .sort((a, b) => Date.parse(a.m.starts_at) - Date.parse(b.m.starts_at))
      .slice(0, 20);
    for (const { c, m } of rows) {
      const join = el('button', { type: 'button', 'data-meeting': m.id }, 'Join');
      join.onclick = () =>
        enter({
          kind: 'meeting',
          meeting: m.id,
          classId: c.id,
          room: `meeting:${m.id}`,
          title: `${c.title}, ${time(m.starts_at)}`,
          moderator: me!.role === 'admin' || me!.role === 'staff' || c.instructor_id === me!.id,
        });
      meetings.append(
        el(
          'li',
          {},
          `${c.title}: ${time(m.starts_at)}–${time(m.ends_at)} `,
          el('span', { class: 'muted' }, c.status),
          join,
        ),
      );
    }
  }
  if (!meetings.children.length) meetings.append(el('li', { class: 'muted' }, 'none coming up'));
}

function enter(target: Target): void {
  clearErrors();
  current?.leave();
  current = new LiveRoom(api, me!, target, () => {
    current = null;
    void list();
  });
  show('room');
  current.start();
}

void start();
