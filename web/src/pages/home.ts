// Everyone's home — what matters today, by role — and their messages.
//   student: pending bookings to finish, today's and this week's lessons and meetings (Join), progress;
//   parent:  consent requests waiting for an answer, each child's next lessons and meetings;
//   tutor:   lessons (with the student's name) and meetings coming up (Join);
//   staff:   the school's lessons and meetings today, consent requests waiting, failed jobs.
// Times are in the reader's own zone (their settings', else the browser's), named on the page.

import type { User } from '../api';
import { dateIn, dateTime, dayName, el, relative, timeRange, userZone, zoneNote } from '../dom';
import { joinButton } from '../shell/join';
import {
  BOOKING_STATUS,
  SCOPE_NAMES,
  enrollmentsOf,
  tutorDirectory,
  upcoming,
  userNames,
  type ConsentRequest,
  type Gamification,
  type TutorCard,
  type Upcoming,
} from '../shell/model';
import { empty, link, loading, pill, section } from '../shell/ui';
import { staffPages } from './staff';
import type { Page, PageContext } from './types';

const EVERYONE: User['role'][] = ['admin', 'staff', 'tutor', 'student', 'parent'];

/** One row of an agenda: when, what, its state, and what to do (Join, or finish the booking). */
export function agendaItem(ctx: PageContext, item: Upcoming, who?: string): HTMLElement {
  const b = item.booking;
  const action: (Node | null)[] = [];
  if (b && ['hold', 'pending_payment'].includes(b.status) && ctx.me.role !== 'tutor') {
    action.push(link(`/bookings/${b.id}`, 'Finish booking', { class: 'button-link' }));
  } else {
    action.push(joinButton(ctx, item));
  }
  if (b && ctx.me.role === 'student') action.push(link(`/bookings/${b.id}`, 'Details', { class: 'button-link' }));
  // (not on the class's own page)
  if (item.cls && ctx.me.role === 'student' && !location.hash.startsWith(`#/classes/${item.cls.id}`))
    action.push(link(`/classes/${item.cls.id}`, 'Class', { class: 'button-link' }));
  const status = b ? (BOOKING_STATUS[b.status] ?? b.status) : '';
  return el(
    'li',
    { class: 'agenda-item', 'data-kind': item.kind, 'data-id': item.id },
    el(
      'div',
      { class: 'agenda-what' },
      el('span', { class: 'agenda-time' }, timeRange(item.starts_at, item.ends_at)),
      el('span', { class: 'agenda-title' }, item.kind === 'lesson' ? 'Lesson' : item.title, who ? ` · ${who}` : ''),
      status ? pill(status, `status-${b!.status}`) : null,
      el('span', { class: 'muted small' }, relative(item.starts_at)),
    ),
    el('div', { class: 'agenda-actions' }, ...action),
  );
}

/** Items grouped under Today / Tomorrow / the date, in the reader's zone. */
export function agenda(
  ctx: PageContext,
  items: Upcoming[],
  whoOf?: (i: Upcoming) => string | undefined,
  none = 'Nothing scheduled in the next seven days.',
): HTMLElement {
  if (!items.length) return empty(none);
  const zone = userZone();
  const today = dateIn(new Date(), zone);
  const tomorrow = dateIn(new Date(Date.now() + 86400_000), zone);
  const wrap = el('div', { class: 'agenda' });
  let day = '';
  let list: HTMLElement | null = null;
  for (const item of items) {
    const d = dateIn(item.starts_at, zone);
    if (d !== day || !list) {
      day = d;
      const label = d === today ? 'Today' : d === tomorrow ? 'Tomorrow' : dayName(d);
      list = el('ul', { class: 'items' });
      wrap.append(el('h3', {}, label), list);
    }
    list.append(agendaItem(ctx, item, whoOf?.(item)));
  }
  return wrap;
}

/** Calls `load` again when one of `kinds` is pushed (or after a resync), at most every half second. */
export function reloadOn(ctx: PageContext, kinds: string[], load: () => void): void {
  let timer: number | undefined;
  ctx.onUserEvent((e) => {
    if (e.kind !== 'resync' && !kinds.includes(e.kind)) return;
    clearTimeout(timer);
    timer = window.setTimeout(load, 300);
  });
}

async function renderHome(ctx: PageContext): Promise<void> {
  ctx.setTitle(`Hello, ${ctx.me.display_name}`);
  ctx.root.append(zoneNote());
  switch (ctx.me.role) {
    case 'student':
      return studentHome(ctx);
    case 'parent':
      return parentHome(ctx);
    case 'tutor':
      return tutorHome(ctx);
    default:
      return staffHome(ctx);
  }
}

async function studentHome(ctx: PageContext): Promise<void> {
  const todo = el('div');
  const coming = section('Today and this week', loading());
  const progress = el('div');
  ctx.root.append(todo, coming, progress);
  // Whom each lesson is with: the tenant's tutors by name.
  const tutors = new Map(
    (await tutorDirectory(ctx.api).catch(() => [] as TutorCard[])).map((t) => [t.id, t.display_name]),
  );
  const load = async () => {
    const { items, bookings } = await upcoming(ctx.api, 7, ctx.error);
    const pending = bookings.filter((b) => ['hold', 'pending_payment'].includes(b.status));
    todo.replaceChildren(
      pending.length
        ? section(
            'To finish',
            el(
              'ul',
              { class: 'items' },
              ...pending.map((b) =>
                el(
                  'li',
                  { 'data-booking-pending': b.id },
                  `Lesson ${timeRange(b.starts_at, b.ends_at)}: ${BOOKING_STATUS[b.status]}`,
                  b.expires_at ? el('span', { class: 'muted' }, ` (kept until ${dateTime(b.expires_at)})`) : null,
                  ' ',
                  link(`/bookings/${b.id}`, b.status === 'hold' ? 'Pay now' : 'See how to pay', {
                    class: 'button-link',
                  }),
                ),
              ),
            ),
          )
        : '',
    );
    coming.replaceChildren(
      coming.firstElementChild!,
      agenda(
        ctx,
        items.filter((i) => !(i.booking && ['hold', 'pending_payment'].includes(i.booking.status))),
        (i) => (i.booking ? tutors.get(i.booking.tutor_id) : undefined),
      ),
      el('p', {}, link('/tutors', 'Book a lesson with a tutor'), ' · ', link('/bookings', 'All my lessons')),
    );
    try {
      const g = await ctx.api.get<Gamification>(`/users/${ctx.me.id}/gamification`);
      progress.replaceChildren(
        section(
          'Your progress',
          el(
            'p',
            { class: 'stat-line' },
            el('strong', {}, `Level ${g.level}`),
            ` · ${g.xp} XP · ${g.badges.length} badge${g.badges.length === 1 ? '' : 's'} `,
          ),
          el('p', {}, link('/progress', 'XP, badges and unlocked lessons')),
        ),
      );
    } catch (e) {
      ctx.error(e);
    }
  };
  reloadOn(ctx, ['booking', 'booking_rescheduled', 'lesson_room', 'xp', 'level', 'badge', 'unlock'], () => void load());
  await load();
}

async function parentHome(ctx: PageContext): Promise<void> {
  const requests = el('div');
  const kids = section('Your children', loading());
  ctx.root.append(requests, kids);
  const [children, pending] = await Promise.all([
    ctx.api.get<User[]>(`/users/${ctx.me.id}/children`).catch((e) => (ctx.error(e), [] as User[])),
    ctx.api
      .get<{ requests: ConsentRequest[] }>('/consent-requests?status=pending&limit=100')
      .then((p) => p.requests)
      .catch((e) => (ctx.error(e), [] as ConsentRequest[])),
  ]);
  const nameOf = (id: string) => children.find((c) => c.id === id)?.display_name ?? 'your child';
  if (pending.length) {
    requests.append(
      section(
        'Consent needed',
        el('p', {}, 'The school asks for your consent before your child can take part. Please review each request.'),
        el(
          'ul',
          { class: 'items' },
          ...pending.map((r) =>
            el(
              'li',
              { class: 'attention', 'data-consent-request': r.id },
              el('strong', {}, nameOf(r.child_id)),
              `: ${r.scopes.map((s) => SCOPE_NAMES[s]).join(', ')} `,
              el('span', { class: 'muted' }, `(asked ${relative(r.created_at)})`),
              ' ',
              link(`/consent/${r.id}`, 'Review and answer', { class: 'button-link primary' }),
            ),
          ),
        ),
      ),
    );
  }
  const { items } = await upcoming(ctx.api, 7, ctx.error);
  // Which child a class meeting is for: each child's enrollments.
  const classKids = new Map<string, string[]>();
  await Promise.all(
    children.map(async (c) => {
      try {
        for (const e of await enrollmentsOf(ctx.api, c.id)) {
          classKids.set(e.class_id, [...(classKids.get(e.class_id) ?? []), c.display_name]);
        }
      } catch {
        /* shown on the child's page */
      }
    }),
  );
  const whoOf = (i: Upcoming) =>
    i.booking ? nameOf(i.booking.student_id) : i.cls ? classKids.get(i.cls.id)?.join(', ') : undefined;
  kids.replaceChildren(
    kids.firstElementChild!,
    children.length
      ? el(
          'ul',
          { class: 'items' },
          ...children.map((c) =>
            el(
              'li',
              { 'data-child': c.id },
              link(`/children/${c.id}`, c.display_name),
              c.minor ? el('span', { class: 'muted' }, ' · needs a parent’s consent (under the school’s age)') : '',
            ),
          ),
        )
      : empty('No children are linked to your account yet. Ask the school to link them.'),
  );
  ctx.root.append(section('Coming up for your children', agenda(ctx, items, whoOf)));
}

async function tutorHome(ctx: PageContext): Promise<void> {
  const coming = section('Today and this week', loading());
  ctx.root.append(coming);
  const load = async () => {
    const { items } = await upcoming(ctx.api, 7, ctx.error);
    const shown = items.filter((i) => !(i.booking && ['hold', 'pending_payment'].includes(i.booking.status)));
    // Whom each lesson is with (a tutor may read their students' profiles).
    const names = await userNames(
      ctx.api,
      shown.flatMap((i) => (i.booking ? [i.booking.student_id] : [])),
    );
    coming.replaceChildren(
      coming.firstElementChild!,
      agenda(ctx, shown, (i) => (i.booking ? names.get(i.booking.student_id) : undefined)),
    );
  };
  reloadOn(ctx, ['booking', 'booking_rescheduled', 'lesson_room'], () => void load());
  await load();
}

/** A link to a staff page, when that page exists (src/pages/staff.ts). */
function staffLink(path: string): HTMLElement | null {
  return staffPages.some((p) => p.path === path) ? link(path, 'Open') : null;
}

async function staffHome(ctx: PageContext): Promise<void> {
  const facts = el('ul', { class: 'facts' });
  ctx.root.append(section('Needs attention', facts));
  const coming = section('Lessons and meetings in the next two days', loading());
  ctx.root.append(coming);
  const [consents, jobs] = await Promise.allSettled([
    ctx.api.get<{ requests: ConsentRequest[] }>('/consent-requests?status=pending&limit=500'),
    ctx.api.get<{ jobs: unknown[] }>('/admin/jobs?status=dead&limit=500'),
  ]);
  if (consents.status === 'fulfilled')
    facts.append(
      el(
        'li',
        {},
        `${consents.value.requests.length} consent request(s) waiting for a parent `,
        staffLink('/staff/consent'),
      ),
    );
  if (jobs.status === 'fulfilled')
    facts.append(el('li', {}, `${jobs.value.jobs.length} failed background job(s) `, staffLink('/staff/jobs')));
  const { items } = await upcoming(ctx.api, 2, ctx.error);
  coming.replaceChildren(coming.firstElementChild!, agenda(ctx, items));
}

interface Mail {
  id: number;
  subject: string;
  body: string;
  created_at: string;
}

async function renderMessages(ctx: PageContext): Promise<void> {
  ctx.root.append(zoneNote());
  const page = await ctx.api.get<{ messages: Mail[] }>('/me/mailbox?limit=100');
  if (!page.messages.length) {
    ctx.root.append(empty('No messages yet.'));
    return;
  }
  ctx.root.append(
    el(
      'ul',
      { class: 'messages' },
      ...page.messages.map((m) =>
        el(
          'li',
          { class: 'card' },
          el(
            'details',
            {},
            el(
              'summary',
              {},
              el('strong', {}, m.subject),
              el('span', { class: 'muted' }, ` · ${dateTime(m.created_at)}`),
            ),
            el('pre', { class: 'mail-body' }, m.body),
          ),
        ),
      ),
    ),
  );
}

export const homePages: Page[] = [
  { path: '/', title: 'Home', roles: EVERYONE, nav: true, render: renderHome },
  { path: '/messages', title: 'Messages', roles: EVERYONE, nav: true, render: renderMessages },
];
