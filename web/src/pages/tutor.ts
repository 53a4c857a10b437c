// The tutor's and instructor's pages: weekly availability and booking rules, upcoming lessons and class
// meetings, a class they teach (attendance with the media room's proposal, the report, unlocking lessons),
// and earnings with the commission, payouts and Stripe Connect onboarding.
//
// Times on these pages are in the tutor's own zone — the one in their settings, else the `timezone` of their
// published availability (as the server does for their mail and calendar) — named on the page; the
// availability editor works on the availability's own clock. Students show by name (a tutor may read their
// students' profiles). Staff reach the same pages for any tutor through `/tutors/:tutor/...`.
//
// Stripe Connect onboarding returns to `#/tutor/earnings?onboarding=refresh` (the link expired or was used:
// a fresh one is offered) or `?onboarding=done` (Stripe checks the details; the account's state is shown).

import { ApiError } from '../api';
import { savedZoneOf } from '../dom';
import { joinButton } from '../shell/join';
import { lessonItem, meetingItem, userNames } from '../shell/model';
import type { Page, PageContext } from './types';
import {
  badge,
  busy,
  button,
  confirmAction,
  csvButton,
  dateIn,
  field,
  h,
  input,
  isZone,
  link,
  loading,
  money,
  note,
  onSubmit,
  pageRoot,
  percent,
  put,
  qs,
  readerZone,
  row,
  section,
  shortId,
  span,
  statusLine,
  table,
  toMajor,
  toMinor,
  wallToUtc,
  when,
  zoneList,
  zoneNote,
} from './forms';
import type {
  AvailabilityDoc,
  Booking,
  ClassInfo,
  ClassLesson,
  ClassView,
  DateException,
  LessonLength,
  Meeting,
  RosterEntry,
  SlotList,
  WeeklyWindow,
} from '../shell/model';

// ---------------------------------------------------------------------------------------------------
// API shapes (see orchestrator/src/bookings/tutors.rs, classes/*.rs, money/*.rs)

interface ProposedMark {
  student_id: string;
  status: string;
  minutes_attended: number;
  first_joined_at: string | null;
}

interface Proposal {
  meeting_id: string;
  late_after_minutes: number;
  marks: ProposedMark[];
}

interface AttendanceRecord {
  meeting_id: string;
  meeting_starts_at: string;
  student_id: string;
  student_name: string;
  status: string | null;
  marked_by: string | null;
  marked_at: string | null;
}

interface StudentSummary {
  student_id: string;
  student_name: string;
  balance: number;
  present: number;
  late: number;
  absent: number;
  excused: number;
  unmarked: number;
}

interface ClassReport {
  class_id: string;
  class_title: string;
  meetings: Meeting[];
  students: StudentSummary[];
  records: AttendanceRecord[];
}

interface EarningLine {
  booking_id: string;
  starts_at: string;
  status: string;
  currency: string;
  gross_minor: number;
  commission_minor: number;
  net_minor: number;
  released_at: string;
  paid_out_at: string | null;
  transfer_ref: string | null;
}

interface EarningsStatement {
  lines: EarningLine[];
  totals: Record<string, { gross_minor: number; commission_minor: number; net_minor: number; paid_out_minor: number }>;
  balance: Record<string, number>;
}

interface PayoutAccount {
  account_id: string | null;
  details_submitted: boolean;
  payouts_enabled: boolean;
  onboarding_url?: string;
}

const STATUSES = ['present', 'late', 'absent', 'excused'] as const;
const WEEKDAYS: [string, string][] = [
  ['mon', 'Monday'],
  ['tue', 'Tuesday'],
  ['wed', 'Wednesday'],
  ['thu', 'Thursday'],
  ['fri', 'Friday'],
  ['sat', 'Saturday'],
  ['sun', 'Sunday'],
];

// ---------------------------------------------------------------------------------------------------
// Whose pages: the signed-in tutor, or for staff the tutor in the path.

interface Tutor {
  id: string;
  /** The tutor's zone: the one in their settings, else their availability's, else the reader's. */
  tz: string;
  /** Where `tz` comes from. */
  zoneFrom: 'settings' | 'availability' | 'reader';
  published: boolean;
  doc: AvailabilityDoc | null;
  /** Path prefix of this tutor's pages: `/tutor` for themself, `/tutors/<id>` for staff. */
  base: string;
  self: boolean;
}

async function loadAvailability(ctx: PageContext, id: string): Promise<AvailabilityDoc | null> {
  try {
    return await ctx.api.get<AvailabilityDoc>(`/tutors/${id}/availability`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'tutor_not_bookable') return null;
    throw e;
  }
}

async function whichTutor(ctx: PageContext, root: HTMLElement, what: string): Promise<Tutor | null> {
  const self = ctx.me.role === 'tutor' && !ctx.params.tutor;
  const id = self ? ctx.me.id : ctx.params.tutor;
  if (!id) {
    root.append(note('Open a tutor from Staff › Tutors to see their pages.'));
    return null;
  }
  const [doc, profile] = await Promise.all([
    loadAvailability(ctx, id),
    self
      ? Promise.resolve(null)
      : ctx.api
          .get<{ display_name: string; email: string; timezone?: string | null }>(`/users/${id}`)
          .catch(() => null),
  ]);
  const chosen = self ? savedZoneOf() : profile?.timezone && isZone(profile.timezone) ? profile.timezone : null;
  const tutor: Tutor = {
    id,
    tz: chosen ?? doc?.timezone ?? readerZone(),
    zoneFrom: chosen ? 'settings' : doc ? 'availability' : 'reader',
    published: !!doc,
    doc,
    base: self ? '/tutor' : `/tutors/${id}`,
    self,
  };
  if (!self) {
    if (profile) ctx.setTitle(`${what}: ${profile.display_name}`);
    root.append(
      h(
        'p',
        { class: 'lc-picker' },
        `Tutor: ${profile ? `${profile.display_name} (${profile.email})` : shortId(id)}. `,
        link(ctx, `/tutors/${id}/availability`, 'Availability'),
        ' · ',
        link(ctx, `/tutors/${id}/lessons`, 'Lessons and meetings'),
        ' · ',
        link(ctx, `/tutors/${id}/earnings`, 'Earnings'),
        ' · ',
        link(ctx, '/staff/tutors', 'All tutors'),
      ),
    );
  }
  return tutor;
}

function tutorZoneNote(t: Tutor): HTMLParagraphElement {
  const whose = {
    settings: t.self ? 'your time zone as set in your settings' : 'the tutor’s time zone (from their settings)',
    availability: t.self ? 'your zone as published with your availability' : 'the tutor’s zone',
    reader: t.self
      ? 'your device’s zone (no availability published and no time zone chosen in your settings yet)'
      : 'your zone (the tutor has published no availability yet)',
  }[t.zoneFrom];
  return zoneNote(t.tz, whose);
}

/** The signed-in tutor's own zone: their settings', else their availability's, else the reader's. */
function ownZone(doc: AvailabilityDoc | null): string {
  return savedZoneOf() ?? doc?.timezone ?? readerZone();
}

// ---------------------------------------------------------------------------------------------------
// Availability editor

function defaultDoc(): AvailabilityDoc {
  return {
    timezone: readerZone(),
    currency: 'EUR',
    lengths: [{ minutes: 60, price_minor: 3000 }],
    buffer_before_minutes: 0,
    buffer_after_minutes: 10,
    min_notice_minutes: 720,
    max_per_day: null,
    horizon_days: 60,
    weekly: [],
    exceptions: [],
  };
}

function num(form: HTMLElement, name: string): number {
  const v = form.querySelector<HTMLInputElement>(`[name="${name}"]`)!.value.trim();
  return v === '' ? NaN : Number(v);
}

async function renderAvailability(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'availability');
  const tutor = await whichTutor(ctx, root, 'Availability');
  if (!tutor) return;
  const doc = tutor.doc ?? defaultDoc();

  root.append(
    note(
      tutor.published
        ? 'Students see bookable slots from these weekly hours, on their own clock. Saving replaces the whole set.'
        : 'Nothing is published yet: students can’t book until you save your hours.',
    ),
  );

  const form = h('form', { id: 'availability-form', novalidate: false });
  const zone = input('timezone', { required: true, list: 'lc-zones', value: doc.timezone, autocomplete: 'off' });
  const currency = input('currency', {
    required: true,
    value: doc.currency,
    pattern: '[A-Za-z]{3}',
    maxlength: 3,
    size: 4,
    autocomplete: 'off',
  });
  const general = h(
    'fieldset',
    { class: 'lc-card' },
    h('legend', {}, 'Zone and rules'),
    h(
      'div',
      { class: 'lc-grid' },
      field('Time zone', zone, 'IANA name; your weekly hours are on this clock.'),
      field('Currency', currency, 'ISO code, e.g. EUR, USD, GBP.'),
      field(
        'Buffer before a lesson (minutes)',
        input('buffer_before_minutes', {
          type: 'number',
          min: 0,
          max: 240,
          step: 5,
          required: true,
          value: doc.buffer_before_minutes,
        }),
        '0 to 240',
      ),
      field(
        'Buffer after a lesson (minutes)',
        input('buffer_after_minutes', {
          type: 'number',
          min: 0,
          max: 240,
          step: 5,
          required: true,
          value: doc.buffer_after_minutes,
        }),
        '0 to 240',
      ),
      field(
        'Minimum notice (minutes)',
        input('min_notice_minutes', {
          type: 'number',
          min: 0,
          max: 43200,
          step: 15,
          required: true,
          value: doc.min_notice_minutes,
        }),
        'How soon before the start a lesson can still be booked (720 = 12 hours).',
      ),
      field(
        'Most lessons per day',
        input('max_per_day', { type: 'number', min: 1, max: 48, value: doc.max_per_day ?? '' }),
        'Empty: no limit.',
      ),
      field(
        'Bookable ahead (days)',
        input('horizon_days', { type: 'number', min: 1, max: 365, required: true, value: doc.horizon_days }),
        '1 to 365',
      ),
    ),
    zoneList('lc-zones'),
  );

  // Lesson lengths and prices
  const lengths = h('div', { class: 'lc-lengths' });
  const currencyNow = () => currency.value.trim().toUpperCase() || 'EUR';
  const addLength = (l?: LessonLength) => {
    const minutes = input('length_minutes', {
      type: 'number',
      min: 15,
      max: 480,
      step: 5,
      required: true,
      value: l?.minutes ?? 60,
    });
    const price = input('length_price', {
      inputmode: 'decimal',
      required: true,
      pattern: '[0-9]+([.,][0-9]{1,3})?',
      value: l ? toMajor(l.price_minor, currencyNow()) : '',
      size: 8,
    });
    const line = h('div', { class: 'lc-window lc-length' });
    const remove = button('Remove', () => {
      if (lengths.querySelectorAll('.lc-length').length > 1) line.remove();
      else ctx.error(new Error('Offer at least one lesson length.'));
    });
    remove.setAttribute('aria-label', 'Remove this lesson length');
    line.append(field('Length (minutes)', minutes), field('Price', price, 'In the currency above, e.g. 30.00'), remove);
    lengths.append(line);
    return line;
  };
  doc.lengths.forEach((l) => addLength(l));
  const lengthBox = h(
    'fieldset',
    { class: 'lc-card' },
    h('legend', {}, 'Lesson lengths and prices'),
    lengths,
    button('Add a lesson length', () => {
      if (lengths.children.length >= 8) return ctx.error(new Error('At most 8 lesson lengths.'));
      addLength().querySelector('input')?.focus();
    }),
  );

  // Weekly hours
  const week = h('div', { class: 'lc-week' });
  const dayBoxes = new Map<string, HTMLElement>();
  const addWindow = (weekday: string, w?: WeeklyWindow) => {
    const list = dayBoxes.get(weekday)!;
    const label = WEEKDAYS.find(([d]) => d === weekday)![1];
    const start = input('start', { type: 'time', required: true, value: w?.start ?? '09:00', step: 300 });
    const end = input('end', { type: 'time', required: true, value: w?.end ?? '17:00', step: 300 });
    const line = h('div', { class: 'lc-window', 'data-weekday': weekday });
    const remove = button('Remove', () => {
      line.remove();
      list.closest('fieldset')?.querySelector<HTMLButtonElement>('.lc-add')?.focus();
    });
    remove.setAttribute('aria-label', `Remove these ${label} hours`);
    line.append(field('From', start), field('Until', end, '00:00 is midnight'), remove);
    list.append(line);
    return line;
  };
  for (const [d, label] of WEEKDAYS) {
    const list = h('div', { class: 'lc-windows' });
    dayBoxes.set(d, list);
    const add = button(`Add hours on ${label}`, () => addWindow(d).querySelector('input')?.focus(), {
      class: 'lc-add',
    });
    week.append(h('fieldset', { class: 'lc-day', 'data-day': d }, h('legend', {}, label), list, add));
  }
  doc.weekly.forEach((w) => dayBoxes.has(w.weekday) && addWindow(w.weekday, w));
  const weekBox = h(
    'fieldset',
    { class: 'lc-card' },
    h('legend', {}, 'Weekly hours'),
    note('Each window is on your clock in the time zone above; lessons can start on every quarter hour inside them.'),
    week,
  );

  // Exceptions: time off (local), extra hours; UTC time-off entries are kept as they are.
  const exceptions = h('div', { class: 'lc-exceptions' });
  const addException = (x: DateException) => {
    const line = h('div', { class: 'lc-window lc-exception', 'data-kind': x.kind });
    const remove = button('Remove', () => line.remove());
    if (x.kind === 'time_off_local') {
      line.append(
        field('Time off from', input('off_start', { type: 'datetime-local', required: true, value: x.start })),
        field('until', input('off_end', { type: 'datetime-local', required: true, value: x.end })),
      );
      remove.setAttribute('aria-label', 'Remove this time off');
    } else if (x.kind === 'extra_hours') {
      line.append(
        field('Extra hours on', input('extra_date', { type: 'date', required: true, value: x.date })),
        field('from', input('extra_start', { type: 'time', required: true, value: x.start, step: 300 })),
        field('until', input('extra_end', { type: 'time', required: true, value: x.end, step: 300 })),
      );
      remove.setAttribute('aria-label', 'Remove these extra hours');
    } else {
      line.dataset.start = x.start;
      line.dataset.end = x.end;
      line.append(h('span', {}, `Time off ${span(x.start, x.end, tutor.tz)}`));
      remove.setAttribute('aria-label', 'Remove this time off');
    }
    line.append(remove);
    exceptions.append(line);
    return line;
  };
  doc.exceptions.forEach(addException);
  const exceptionBox = h(
    'fieldset',
    { class: 'lc-card' },
    h('legend', {}, 'Time off and extra hours'),
    exceptions,
    h(
      'div',
      { class: 'lc-actions' },
      button('Add time off', () => {
        const today = dateIn(zone.value || tutor.tz);
        addException({ kind: 'time_off_local', start: `${today}T00:00`, end: `${today}T23:59` })
          .querySelector('input')
          ?.focus();
      }),
      button('Add extra hours', () => {
        addException({ kind: 'extra_hours', date: dateIn(zone.value || tutor.tz, 1), start: '09:00', end: '12:00' })
          .querySelector('input')
          ?.focus();
      }),
    ),
  );

  const saved = statusLine();
  const preview = h('div', { class: 'lc-preview' });
  form.append(
    general,
    lengthBox,
    weekBox,
    exceptionBox,
    h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Save availability'), saved),
  );
  root.append(form, preview);

  const read = (): AvailabilityDoc => {
    const cur = currencyNow();
    const tz = zone.value.trim();
    if (!isZone(tz)) throw new Error(`“${tz}” is not a time zone; pick one from the list, e.g. Europe/Berlin.`);
    const maxPerDay = num(form, 'max_per_day');
    return {
      timezone: tz,
      currency: cur,
      lengths: [...lengths.querySelectorAll('.lc-length')].map((l) => ({
        minutes: Number(l.querySelector<HTMLInputElement>('[name=length_minutes]')!.value),
        price_minor: toMinor(l.querySelector<HTMLInputElement>('[name=length_price]')!.value, cur),
      })),
      buffer_before_minutes: num(form, 'buffer_before_minutes'),
      buffer_after_minutes: num(form, 'buffer_after_minutes'),
      min_notice_minutes: num(form, 'min_notice_minutes'),
      max_per_day: Number.isNaN(maxPerDay) ? null : maxPerDay,
      horizon_days: num(form, 'horizon_days'),
      weekly: [...week.querySelectorAll<HTMLElement>('.lc-window')].map((w) => ({
        weekday: w.dataset.weekday!,
        start: w.querySelector<HTMLInputElement>('[name=start]')!.value.slice(0, 5),
        end: w.querySelector<HTMLInputElement>('[name=end]')!.value.slice(0, 5),
      })),
      exceptions: [...exceptions.querySelectorAll<HTMLElement>('.lc-exception')].map((x): DateException => {
        const v = (n: string) => x.querySelector<HTMLInputElement>(`[name=${n}]`)!.value;
        if (x.dataset.kind === 'time_off_local')
          return { kind: 'time_off_local', start: v('off_start'), end: v('off_end') };
        if (x.dataset.kind === 'extra_hours')
          return {
            kind: 'extra_hours',
            date: v('extra_date'),
            start: v('extra_start').slice(0, 5),
            end: v('extra_end').slice(0, 5),
          };
        return { kind: 'time_off', start: x.dataset.start!, end: x.dataset.end! };
      }),
    };
  };

  onSubmit(ctx, form, async () => {
    saved.textContent = '';
    const next = read();
    const stored = await putAvailability(ctx, tutor.id, next);
    if (tutor.zoneFrom !== 'settings') {
      tutor.tz = stored.timezone;
      tutor.zoneFrom = 'availability';
    }
    tutor.published = true;
    saved.textContent = `Saved. Students now see these hours (${stored.weekly.length} weekly windows).`;
    await showPreview(ctx, preview, tutor, stored);
  });

  if (tutor.published) await showPreview(ctx, preview, tutor, doc);
}

function putAvailability(ctx: PageContext, id: string, doc: AvailabilityDoc): Promise<AvailabilityDoc> {
  return put<AvailabilityDoc>(ctx.api, `/tutors/${id}/availability`, doc);
}

/** The next week's slots as the listing computes them, on the tutor's clock, for each lesson length. */
async function showPreview(ctx: PageContext, box: HTMLElement, tutor: Tutor, doc: AvailabilityDoc): Promise<void> {
  const tz = doc.timezone;
  box.replaceChildren(h('h2', {}, 'What students can book in the next 7 days'), zoneNote(tz, 'your zone'));
  for (const l of doc.lengths) {
    let list: SlotList;
    try {
      list = await ctx.api.get<SlotList>(
        `/tutors/${tutor.id}/slots${qs({ from: dateIn(tz), to: dateIn(tz, 6), tz, minutes: l.minutes })}`,
      );
    } catch (e) {
      ctx.error(e);
      return;
    }
    const byDay = new Map<string, string[]>();
    for (const s of list.slots) {
      const d = s.local_start.slice(0, 10);
      byDay.set(d, [...(byDay.get(d) ?? []), s.local_start.slice(11, 16)]);
    }
    const part = h(
      'div',
      { class: 'lc-card', 'data-minutes': l.minutes, 'data-slots': list.slots.length },
      h('h3', {}, `${l.minutes}-minute lessons, ${money(list.price_minor, list.currency)}: ${list.slots.length} slots`),
    );
    if (!list.slots.length) part.append(note('No bookable slots in the next 7 days.'));
    for (const [d, times] of byDay) {
      const label = new Intl.DateTimeFormat(undefined, {
        weekday: 'long',
        day: 'numeric',
        month: 'short',
        timeZone: 'UTC',
      }).format(new Date(`${d}T12:00:00Z`));
      part.append(
        h('p', { class: 'lc-note' }, label),
        h('ul', { class: 'lc-slots', 'aria-label': `Slots on ${label}` }, ...times.map((x) => h('li', {}, x))),
      );
    }
    box.append(part);
  }
}

// ---------------------------------------------------------------------------------------------------
// Lessons and class meetings

async function renderLessons(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'tutor-lessons');
  const tutor = await whichTutor(ctx, root, 'Lessons and meetings');
  if (!tutor) return;
  const body = h('div');
  const past = input('past', { type: 'checkbox' });
  past.addEventListener('change', () => void fill());
  root.append(
    tutorZoneNote(tutor),
    h('div', { class: 'lc-inline' }, h('label', { class: 'lc-check' }, past, ' Include the last 30 days')),
    body,
  );

  const fill = async () => {
    loading(body);
    const from = new Date(Date.now() - (past.checked ? 30 * 86_400_000 : 3 * 3600_000)).toISOString();
    const [bookings, classes] = await Promise.all([
      ctx.api.get<Booking[]>(`/bookings${qs({ from, limit: 500, user_id: tutor.self ? undefined : tutor.id })}`),
      ctx.api.get<ClassInfo[]>('/classes'),
    ]);
    const mine = bookings.filter((b) => b.tutor_id === tutor.id);
    const students = await userNames(
      ctx.api,
      mine.map((b) => b.student_id),
    );
    const taught = classes.filter(
      (c) => c.instructor_id === tutor.id && (c.status === 'active' || c.status === 'draft'),
    );
    const views = await Promise.all(taught.map((c) => ctx.api.get<ClassView>(`/classes/${c.id}`)));
    const cutoff = Date.parse(from);
    const meetings = views
      .flatMap((c) => c.meetings.map((m) => ({ c, m })))
      .filter(({ m }) => Date.parse(m.ends_at) >= cutoff)
      .sort((a, b) => Date.parse(a.m.starts_at) - Date.parse(b.m.starts_at));

    body.replaceChildren(
      section(
        'Lessons',
        table(
          'One-to-one lessons',
          ['When', 'Length', 'Status', 'Student', 'Price', ''],
          mine.map((b) => [
            h('span', { class: 'lc-nowrap' }, span(b.starts_at, b.ends_at, tutor.tz)),
            `${b.minutes} min`,
            badge(b.status),
            h('span', { 'data-student': b.student_id }, students.get(b.student_id) ?? shortId(b.student_id)),
            h('span', { class: 'lc-nowrap' }, b.package_id ? 'package credit' : money(b.price_minor, b.currency)),
            joinLesson(ctx, tutor, b),
          ]),
          { id: 'tutor-bookings' },
        ),
      ),
      section(
        'Class meetings',
        table(
          'Meetings of the classes you teach',
          ['When', 'Class', 'Status', '', ''],
          meetings.map(({ c, m }) => [
            h('span', { class: 'lc-nowrap' }, span(m.starts_at, m.ends_at, tutor.tz)),
            link(ctx, classPath(ctx, c.id), c.title),
            badge(c.status),
            link(ctx, `${classPath(ctx, c.id)}${qs({ meeting: m.id })}`, 'Attendance'),
            tutor.self ? joinMeeting(ctx, c, m, tutor.tz) : '',
          ]),
          { id: 'tutor-meetings' },
        ),
      ),
    );
  };
  const stop = ctx.onUserEvent((e) => {
    if (e.kind === 'booking' || e.kind === 'booking_rescheduled') void fill().catch(ctx.error);
  });
  try {
    await fill();
  } catch (e) {
    stop();
    throw e;
  }
}

/** The shell's Join button for a lesson (enabled inside the room's window), for the tutor themself. */
function joinLesson(ctx: PageContext, tutor: Tutor, b: Booking): Node | string {
  if (!tutor.self || (b.status !== 'confirmed' && b.status !== 'in_progress')) return '';
  return joinButton(ctx, lessonItem(b), tutor.tz);
}

function joinMeeting(ctx: PageContext, c: ClassView, m: Meeting, tz: string): Node | string {
  if (c.status !== 'active') return '';
  return joinButton(ctx, meetingItem(c, m), tz);
}

/** A class's page: the teaching view for its instructor, the management view for staff. */
function classPath(ctx: PageContext, id: string): string {
  return ctx.me.role === 'tutor' ? `/tutor/classes/${id}` : `/staff/classes/${id}`;
}

// ---------------------------------------------------------------------------------------------------
// The classes a tutor teaches

async function renderClasses(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'tutor-classes');
  loading(root);
  const classes = (await ctx.api.get<ClassInfo[]>('/classes')).filter((c) => c.instructor_id === ctx.me.id);
  const views = await Promise.all(classes.map((c) => ctx.api.get<ClassView>(`/classes/${c.id}`)));
  const tz = ownZone(await loadAvailability(ctx, ctx.me.id));
  const now = Date.now();
  root.replaceChildren(
    zoneNote(tz, 'your zone'),
    table(
      'Classes you teach',
      ['Class', 'Kind', 'Status', 'Students', 'Meetings', 'Next meeting'],
      views.map((c) => {
        const next = c.meetings.find((m) => Date.parse(m.ends_at) > now);
        return [
          link(ctx, `/tutor/classes/${c.id}`, c.title),
          c.kind,
          badge(c.status),
          String(c.enrolled),
          `${c.meetings.length} of ${c.total_meetings}`,
          next ? span(next.starts_at, next.ends_at, tz) : '—',
        ];
      }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------------
// One class: meetings, attendance (proposal and marks), report, lessons to unlock. Also used by staff.

async function renderClass(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'tutor-class');
  loading(root);
  const cls = await ctx.api.get<ClassView>(`/classes/${ctx.params.id}`);
  const tutorDoc = await loadAvailability(ctx, cls.instructor_id).catch(() => null);
  const mine = ctx.me.id === cls.instructor_id;
  const tz = mine ? ownZone(tutorDoc) : readerZone();
  ctx.setTitle(cls.title);
  root.replaceChildren(
    h(
      'dl',
      { class: 'lc-kv', id: 'class-summary', 'data-status': cls.status },
      h('dt', {}, 'Status'),
      h('dd', {}, badge(cls.status)),
      h('dt', {}, 'Kind'),
      h('dd', {}, cls.kind),
      h('dt', {}, 'Package'),
      h('dd', {}, `${cls.total_meetings} meetings (credits per student)`),
      h('dt', {}, 'Students'),
      h('dd', {}, String(cls.enrolled)),
      h('dt', {}, 'Class time zone'),
      h('dd', {}, cls.timezone),
    ),
    zoneNote(tz, 'your zone'),
    ctx.me.role === 'tutor' ? '' : h('p', {}, link(ctx, `/staff/classes/${cls.id}`, 'Manage this class (staff)')),
  );
  await teachingSections(ctx, root, cls, tz);
}

/** Attendance for a meeting, the attendance report, and the lessons to unlock: for the instructor and staff. */
export async function teachingSections(
  ctx: PageContext,
  root: HTMLElement,
  cls: ClassView,
  tz: string,
  opts: { classClock?: boolean; scheduleExtra?: Node } = {},
): Promise<void> {
  const attendance = h('div', { id: 'attendance' });
  const report = h('div', { id: 'attendance-report' });
  const lessons = h('div', { id: 'lessons' });
  const now = Date.now();
  const meetings = [...cls.meetings].sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  const current =
    meetings.find((m) => m.id === ctx.params.meeting) ??
    meetings.find((m) => Date.parse(m.starts_at) - 15 * 60_000 <= now && now <= Date.parse(m.ends_at) + 30 * 60_000) ??
    [...meetings].reverse().find((m) => Date.parse(m.starts_at) <= now) ??
    meetings[0];

  let selected = current?.id ?? '';
  const showMeeting = async (id: string) => {
    selected = id;
    for (const b of root.querySelectorAll<HTMLButtonElement>('button[data-pick-meeting]'))
      b.setAttribute('aria-pressed', String(b.dataset.pickMeeting === id));
    await attendancePanel(
      ctx,
      attendance,
      cls,
      meetings.find((m) => m.id === id)!,
      tz,
      () => fillReport(),
    );
  };

  const clock = opts.classClock && cls.timezone !== tz;
  root.append(
    section(
      'Meetings',
      table(
        'Meetings',
        ['#', clock ? 'When (your zone)' : 'When', ...(clock ? [`On the class’s clock (${cls.timezone})`] : []), ''],
        meetings.map((m, i) => [
          String(i + 1),
          h('span', { class: 'lc-nowrap' }, span(m.starts_at, m.ends_at, tz)),
          ...(clock ? [h('span', { class: 'lc-nowrap' }, span(m.starts_at, m.ends_at, cls.timezone))] : []),
          button('Attendance', () => showMeeting(m.id).catch(ctx.error), {
            'data-pick-meeting': m.id,
            'aria-pressed': String(m.id === selected),
            'aria-controls': 'attendance',
          }),
        ]),
        { id: 'class-meetings' },
      ),
      opts.scheduleExtra ?? '',
    ),
    attendance,
    report,
    lessons,
  );

  const fillReport = async () => {
    const r = await ctx.api.get<ClassReport>(`/classes/${cls.id}/attendance`);
    report.replaceChildren(
      section(
        'Attendance report',
        table(
          'Attendance per student',
          ['Student', 'Present', 'Late', 'Absent', 'Excused', 'Not marked', 'Credits left'],
          r.students.map((s) =>
            [s.student_name, s.present, s.late, s.absent, s.excused, s.unmarked, s.balance].map((v, i) =>
              i === 0 ? String(v) : h('span', { class: 'lc-num' }, String(v)),
            ),
          ),
          { id: 'report-students' },
        ),
        h(
          'div',
          { class: 'lc-actions' },
          csvButton(
            ctx,
            'Download attendance (CSV)',
            () => `/classes/${cls.id}/attendance?format=csv`,
            `attendance-${cls.id}.csv`,
          ),
        ),
      ),
    );
  };
  await Promise.all([
    current ? showMeeting(current.id) : Promise.resolve(attendance.append(note('No meetings scheduled yet.'))),
    fillReport(),
    lessonsPanel(ctx, lessons, cls, tz),
  ]);
}

/** The roster of one meeting: what the media room proposes, the current mark, buttons to mark. */
async function attendancePanel(
  ctx: PageContext,
  box: HTMLElement,
  cls: ClassView,
  meeting: Meeting,
  tz: string,
  changed: () => Promise<void>,
): Promise<void> {
  const [roster, report] = await Promise.all([
    ctx.api.get<RosterEntry[]>(`/classes/${cls.id}/roster`),
    ctx.api.get<ClassReport>(`/classes/${cls.id}/attendance`),
  ]);
  const marks = new Map(
    report.records.filter((r) => r.meeting_id === meeting.id).map((r) => [r.student_id, r.status] as const),
  );
  let proposal: Proposal | null = null;
  const proposalNote = h('p', { class: 'lc-note', id: 'proposal-note' });
  const saved = statusLine();
  const tbody = h('tbody');
  const started = Date.parse(meeting.starts_at) <= Date.now();
  // Instructors mark while the class is active; staff may still correct a completed class.
  const canMark = cls.status === 'active' || (cls.status === 'completed' && ctx.me.role !== 'tutor');

  const paint = () => {
    tbody.replaceChildren();
    for (const s of roster) {
      const p = proposal?.marks.find((m) => m.student_id === s.student_id);
      const mark = marks.get(s.student_id) ?? null;
      const buttons = STATUSES.map((st) =>
        button(st[0].toUpperCase() + st.slice(1), (ev) => markOne(ev.currentTarget as HTMLButtonElement, s, st), {
          'data-status': st,
          'aria-pressed': String(mark === st),
          'aria-label': `Mark ${s.display_name} ${st}`,
          disabled: !canMark,
        }),
      );
      tbody.append(
        row(
          [
            s.display_name,
            p && started
              ? [badge(p.status), h('span', { class: 'lc-note' }, ` ${p.minutes_attended} min`)]
              : h('span', { class: 'lc-note' }, started ? '…' : 'not started'),
            mark ? badge(mark) : h('span', { class: 'lc-note' }, 'not marked'),
            h('span', { class: 'lc-num' }, String(s.balance)),
            buttons,
          ],
          { 'data-student': s.student_id },
        ),
      );
    }
    if (!roster.length)
      tbody.append(h('tr', {}, h('td', { colspan: 5, class: 'lc-empty' }, 'No students are enrolled.')));
  };

  const markOne = async (b: HTMLButtonElement, s: RosterEntry, status: string) => {
    await busy(ctx, b, async () => {
      const out = await put<{ status: string; balance: number; changed: boolean }>(
        ctx.api,
        `/meetings/${meeting.id}/attendance/${s.student_id}`,
        { status },
      );
      marks.set(s.student_id, out.status);
      s.balance = out.balance;
      saved.textContent = `${s.display_name}: ${out.status}${out.changed ? '' : ' (unchanged)'}; ${out.balance} credit${out.balance === 1 ? '' : 's'} left.`;
      paint();
      tbody
        .querySelector<HTMLButtonElement>(`tr[data-student="${s.student_id}"] button[data-status="${status}"]`)
        ?.focus();
      await changed();
    });
  };

  const applyAll = button(
    'Mark everyone as proposed',
    async () => {
      if (!proposal?.marks.length) return ctx.error(new Error('There is no proposal to apply yet.'));
      const list = proposal.marks.map(
        (m) =>
          `${roster.find((r) => r.student_id === m.student_id)?.display_name ?? shortId(m.student_id)}: ${m.status}`,
      );
      if (!(await confirmAction('Mark every student as proposed?', 'Mark all', list.join(', ')))) return;
      await busy(ctx, applyAll, async () => {
        const out = await ctx.api.post<{ student_id: string; status: string; balance: number }[]>(
          `/meetings/${meeting.id}/attendance`,
          { marks: proposal!.marks.map((m) => ({ student_id: m.student_id, status: m.status })) },
        );
        for (const o of out) {
          marks.set(o.student_id, o.status);
          const r = roster.find((x) => x.student_id === o.student_id);
          if (r) r.balance = o.balance;
        }
        saved.textContent = `Marked ${out.length} students as proposed.`;
        paint();
        await changed();
      });
    },
    { id: 'apply-proposal', disabled: !canMark || !started },
  );

  const loadProposal = async () => {
    try {
      proposal = await ctx.api.get<Proposal>(`/meetings/${meeting.id}/attendance/proposal`);
      proposalNote.textContent = `Proposed from who was in the media room: late means first in more than ${proposal.late_after_minutes} minutes after the start. Updated ${new Intl.DateTimeFormat(undefined, { timeStyle: 'medium', timeZone: tz }).format(new Date())}.`;
    } catch (e) {
      proposalNote.textContent = 'The media room’s proposal is not available.';
      ctx.error(e);
    }
    paint();
  };

  box.replaceChildren(
    section(
      `Attendance: ${span(meeting.starts_at, meeting.ends_at, tz)}`,
      canMark ? '' : note('Attendance is taken while the class is active.'),
      proposalNote,
      h(
        'div',
        { class: 'lc-scroll', role: 'region', 'aria-label': 'Attendance of this meeting', tabindex: 0 },
        h(
          'table',
          { class: 'lc-table', id: 'attendance-table', 'data-meeting': meeting.id },
          h('caption', {}, 'Students of this meeting'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Student', 'Proposed', 'Marked', 'Credits', 'Mark'].map((c) => h('th', { scope: 'col' }, c)),
            ),
          ),
          tbody,
        ),
      ),
      h(
        'div',
        { class: 'lc-actions' },
        applyAll,
        button('Refresh the proposal', (ev) => busy(ctx, ev.currentTarget as HTMLButtonElement, loadProposal)),
        h('span', {}, link(ctx, `/room/meeting/${meeting.id}${qs({ class: cls.id })}`, 'Open the live room')),
      ),
      saved,
    ),
  );
  paint();
  await loadProposal();
  // While the meeting runs, the proposal follows the media room.
  const live = () => {
    const t = Date.now();
    return t >= Date.parse(meeting.starts_at) - 15 * 60_000 && t <= Date.parse(meeting.ends_at) + 15 * 60_000;
  };
  if (live()) {
    const timer = setInterval(() => {
      if (!box.isConnected || box.querySelector('#attendance-table')?.getAttribute('data-meeting') !== meeting.id) {
        clearInterval(timer);
        return;
      }
      void loadProposal();
    }, 15_000);
  }
}

async function lessonsPanel(ctx: PageContext, box: HTMLElement, cls: ClassView, tz: string): Promise<void> {
  const lessons = await ctx.api.get<ClassLesson[]>(`/classes/${cls.id}/lessons`);
  const unlocked = lessons.filter((l) => l.unlocked).length;
  const saved = statusLine();
  const canUnlock = cls.status === 'active';
  box.replaceChildren(
    section(
      'Lessons',
      note(
        `${unlocked} of at most ${cls.total_meetings} lessons unlocked. An unlocked lesson is visible to every enrolled student at once.` +
          (canUnlock ? '' : ' Lessons are unlocked while the class is active.'),
      ),
      table(
        'Course lessons',
        ['#', 'Lesson', 'Unlocked', ''],
        lessons.map((l) => [
          String(l.position),
          l.title,
          l.unlocked ? when(l.unlocked_at, tz) : h('span', { class: 'lc-note' }, 'locked'),
          l.unlocked
            ? ''
            : button(
                'Unlock',
                async (ev) => {
                  const b = ev.currentTarget as HTMLButtonElement;
                  const ok = await confirmAction(
                    `Unlock “${l.title}” for every student of ${cls.title}?`,
                    'Unlock',
                    'Students see it at once; it can’t be locked again.',
                  );
                  if (!ok) return;
                  await busy(ctx, b, async () => {
                    await ctx.api.post(`/classes/${cls.id}/unlocks`, { lesson_id: l.lesson_id });
                    await lessonsPanel(ctx, box, cls, tz);
                    box.querySelector('.lc-status')!.textContent = `Unlocked “${l.title}”.`;
                  });
                },
                {
                  'data-lesson': l.lesson_id,
                  disabled: !canUnlock || unlocked >= cls.total_meetings,
                  'aria-label': `Unlock ${l.title}`,
                },
              ),
        ]),
        { id: 'class-lessons' },
      ),
      saved,
    ),
  );
}

// ---------------------------------------------------------------------------------------------------
// Earnings and payouts

async function renderEarnings(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'tutor-earnings');
  const tutor = await whichTutor(ctx, root, 'Earnings');
  if (!tutor) return;
  const tz = tutor.tz;
  const from = input('from', { type: 'date', value: dateIn(tz, -90) });
  const to = input('to', { type: 'date', value: '' });
  const period = h(
    'form',
    { class: 'lc-inline', id: 'earnings-period' },
    field('Released from', from),
    field('until (inclusive)', to, 'Empty: up to now.'),
    h('button', { type: 'submit' }, 'Show'),
  );
  const body = h('div');
  const payout = h('div', { id: 'payout-account' });
  // Back from Stripe's onboarding (`?onboarding=`): what it means comes first.
  if (tutor.self && ctx.params.onboarding) root.append(tutorZoneNote(tutor), payout, period, body);
  else root.append(tutorZoneNote(tutor), period, body, payout);

  const range = () => ({
    from: from.value ? wallToUtc(`${from.value}T00:00`, tz) : undefined,
    to: to.value ? wallToUtc(`${dateAfter(to.value)}T00:00`, tz) : undefined,
  });

  const fill = async () => {
    loading(body);
    const [statement, policy] = await Promise.all([
      ctx.api.get<EarningsStatement>(`/tutors/${tutor.id}/earnings${qs(range())}`),
      ctx.api.get<{ commission_bps: number }>(`/tenants/${ctx.me.tenant_id}/booking-policy`).catch(() => null),
    ]);
    const rates = new Set(
      statement.lines
        .filter((l) => l.gross_minor > 0)
        .map((l) => Math.round((l.commission_minor * 10_000) / l.gross_minor)),
    );
    const rateText =
      rates.size === 1
        ? `The school kept ${percent([...rates][0])} commission on these lessons.`
        : policy
          ? `The school’s commission is ${percent(policy.commission_bps)} of each lesson’s price.`
          : '';
    const currencies = Object.keys(statement.totals);
    for (const c of Object.keys(statement.balance)) if (!currencies.includes(c)) currencies.push(c);
    body.replaceChildren(
      section(
        'Totals',
        rateText ? note(rateText) : '',
        table(
          'Totals per currency',
          ['Currency', 'Lessons’ price', 'Commission', 'Your share', 'Paid out', 'Owed to you now'],
          currencies.map((c) => {
            const t = statement.totals[c] ?? { gross_minor: 0, commission_minor: 0, net_minor: 0, paid_out_minor: 0 };
            return [
              c,
              ...[t.gross_minor, t.commission_minor, t.net_minor, t.paid_out_minor, statement.balance[c] ?? 0].map(
                (v) => h('span', { class: 'lc-num' }, money(v, c)),
              ),
            ];
          }),
          { id: 'earnings-totals' },
        ),
      ),
      section(
        'Lessons',
        table(
          'Earnings per lesson',
          ['Lesson', 'Status', 'Price', 'Commission', 'Your share', 'Released', 'Paid out'],
          statement.lines.map((l) => [
            h('span', { class: 'lc-nowrap' }, when(l.starts_at, tz)),
            badge(l.status),
            h('span', { class: 'lc-num' }, money(l.gross_minor, l.currency)),
            h('span', { class: 'lc-num' }, money(l.commission_minor, l.currency)),
            h('span', { class: 'lc-num' }, money(l.net_minor, l.currency)),
            h('span', { class: 'lc-nowrap' }, when(l.released_at, tz)),
            l.paid_out_at
              ? h('span', { class: 'lc-nowrap' }, when(l.paid_out_at, tz), l.transfer_ref ? ` (${l.transfer_ref})` : '')
              : badge('owed', 'pending'),
          ]),
          { id: 'earnings-lines' },
        ),
        h(
          'div',
          { class: 'lc-actions' },
          csvButton(
            ctx,
            'Download earnings (CSV)',
            () => `/tutors/${tutor.id}/earnings${qs({ ...range(), format: 'csv' })}`,
            `earnings-${tutor.id}.csv`,
          ),
        ),
      ),
    );
  };
  onSubmit(ctx, period, fill);
  await Promise.all([fill(), payoutPanel(ctx, payout, tutor)]);
}

function dateAfter(date: string): string {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

/** The payout account's state in a sentence. */
function payoutState(account: PayoutAccount): string {
  return account.payouts_enabled
    ? `Payouts are on: your share is transferred to your Stripe account (${account.account_id}) after each lesson is released.`
    : account.account_id
      ? account.details_submitted
        ? 'Your details are with Stripe; payouts start once Stripe enables the account.'
        : 'Stripe onboarding was started but isn’t finished.'
      : 'No payout account yet. Until there is one, staff pay your share by hand.';
}

/**
 * Payouts: the account's state and the onboarding button. Back from Stripe (`?onboarding=` on the tutor's own
 * page), `refresh` asks for a fresh onboarding link and offers it, `done` says that Stripe is checking.
 */
async function payoutPanel(ctx: PageContext, box: HTMLElement, tutor: Tutor): Promise<void> {
  const returned = tutor.self ? ctx.params.onboarding : undefined;
  let account = await ctx.api.get<PayoutAccount>(`/tutors/${tutor.id}/payout-account`);
  const message = statusLine();
  const offline = (e: unknown): boolean => {
    if (!(e instanceof ApiError && e.code === 'payouts_offline')) return false;
    message.textContent =
      'This school has no online payment provider, so there is no Stripe account to connect: staff pay tutors by hand.';
    message.dataset.code = e.code;
    return true;
  };
  const start: HTMLButtonElement = button(
    account.account_id ? 'Continue Stripe onboarding' : 'Set up payouts with Stripe',
    async () => {
      message.textContent = '';
      try {
        start.disabled = true;
        const out = await ctx.api.post<PayoutAccount>(`/tutors/${tutor.id}/payout-account`);
        if (!out.onboarding_url) {
          message.textContent = 'Stripe returned no onboarding link; try again.';
        } else if (tutor.self) {
          message.textContent = 'Opening Stripe…';
          window.location.assign(out.onboarding_url);
        } else {
          message.replaceChildren(
            'Onboarding link for the tutor (one-time): ',
            h('a', { href: out.onboarding_url, target: '_blank', rel: 'noopener' }, out.onboarding_url),
          );
        }
      } catch (e) {
        if (!offline(e)) ctx.error(e);
      } finally {
        start.disabled = false;
      }
    },
    { class: 'lc-primary', id: 'payout-onboard' },
  );
  const again = (label: string) =>
    button(label, (ev) => busy(ctx, ev.currentTarget as HTMLButtonElement, () => payoutPanel(ctx, box, tutor)), {
      'data-action': 'payout-recheck',
    });

  // Back from Stripe.
  let back: HTMLElement | string = '';
  // Back from Stripe with the details given, there is nothing to continue: Stripe checks them.
  let showStart = !account.payouts_enabled && !(returned === 'done' && account.details_submitted);
  if (returned === 'done') {
    const [title, text] = account.payouts_enabled
      ? [
          'Your payout account is ready',
          'Stripe has enabled your account: your share of each lesson is paid out to it.',
        ]
      : account.details_submitted
        ? [
            'Stripe is checking your account',
            'Thank you: Stripe has your details and is verifying them. That usually takes a few minutes, sometimes a day or two. Payouts start by themselves as soon as Stripe enables the account, and this page says so then.',
          ]
        : [
            'Stripe hasn’t confirmed your details yet',
            'If you have just finished, Stripe may still be telling us: check again in a minute. If you left before the end, continue the onboarding.',
          ];
    back = h(
      'div',
      { class: 'lc-card', id: 'onboarding-return', 'data-onboarding': 'done', role: 'status' },
      h('h3', {}, title),
      h('p', {}, text),
      account.payouts_enabled ? '' : h('div', { class: 'lc-actions' }, again('Check again')),
    );
  } else if (returned === 'refresh') {
    const card = h(
      'div',
      { class: 'lc-card', id: 'onboarding-return', 'data-onboarding': 'refresh' },
      h('h3', {}, 'Continue your Stripe onboarding'),
      h('p', { role: 'status' }, 'Your Stripe link had expired or was already used. Getting a fresh one…'),
    );
    back = card;
    if (!account.payouts_enabled) {
      showStart = false;
      try {
        const out = await ctx.api.post<PayoutAccount>(`/tutors/${tutor.id}/payout-account`);
        if (!out.onboarding_url) throw new Error('Stripe returned no onboarding link. Please try again.');
        account = out;
        card.replaceChildren(
          card.firstElementChild!,
          h(
            'p',
            { role: 'status' },
            'Your Stripe link had expired or was already used, so here is a fresh one. It works once, for a few minutes.',
          ),
          h(
            'p',
            {},
            h(
              'a',
              { href: out.onboarding_url, class: 'lc-button-link', id: 'onboarding-link' },
              'Continue with Stripe',
            ),
          ),
        );
      } catch (e) {
        if (offline(e)) {
          card.remove();
          back = '';
        } else {
          ctx.error(e);
          card.replaceChildren(
            card.firstElementChild!,
            h('p', {}, 'A fresh link couldn’t be made just now.'),
            h('div', { class: 'lc-actions' }, again('Try again')),
          );
        }
      }
    } else {
      card.replaceChildren(
        h('h3', {}, 'Your payout account is ready'),
        h('p', {}, 'Nothing left to do with Stripe: payouts are already on.'),
      );
    }
  }
  box.replaceChildren(
    section(
      'Payouts',
      back,
      h('p', { id: 'payout-state' }, payoutState(account)),
      showStart ? h('div', { class: 'lc-actions' }, start) : '',
      message,
    ),
  );
}

// ---------------------------------------------------------------------------------------------------

const TUTOR: PageContext['me']['role'][] = ['tutor'];
const STAFF: PageContext['me']['role'][] = ['admin', 'staff'];

export const tutorPages: Page[] = [
  { path: '/tutor/lessons', title: 'Lessons and meetings', roles: TUTOR, nav: true, render: renderLessons },
  { path: '/tutor/classes', title: 'My classes', roles: TUTOR, nav: true, render: renderClasses },
  { path: '/tutor/availability', title: 'Availability', roles: TUTOR, nav: true, render: renderAvailability },
  { path: '/tutor/earnings', title: 'Earnings', roles: TUTOR, nav: true, render: renderEarnings },
  { path: '/tutor/classes/:id', title: 'Class', roles: [...TUTOR, ...STAFF], render: renderClass },
  // Staff see a tutor's pages (reached from Staff › Tutors).
  { path: '/tutors/:tutor/availability', title: 'Tutor’s availability', roles: STAFF, render: renderAvailability },
  { path: '/tutors/:tutor/lessons', title: 'Tutor’s lessons and meetings', roles: STAFF, render: renderLessons },
  { path: '/tutors/:tutor/earnings', title: 'Tutor’s earnings', roles: STAFF, render: renderEarnings },
];
