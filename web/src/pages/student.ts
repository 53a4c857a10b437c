// The student's pages: tutors and their slots on the student's own clock, holding a slot, checkout (offline
// instructions, or the card form with Stripe.js: src/shell/card.ts), the booking's status live, cancelling (the
// server's quote, `GET /bookings/{id}/cancellation`, shown before confirming; its real outcome after) and
// rescheduling under the school's policy, packages, classes with credits left, unlocked lessons, XP, levels,
// streaks, badges and the opt-in leaderboards.
//
// Tutors come from the tenant's directory (`GET /tutors`: those taking bookings, by name); credits left from
// the student's enrollments (`GET /users/{id}/enrollments`), reloaded on every `credits` push.
//
// Times are in the student's own zone (the one in their settings, else the browser's), named on each page;
// the slot list asks the API for that zone (`tz`), so daylight-saving changes are the server's arithmetic, not
// ours.

import { describe, idempotencyKey } from '../api';
import {
  addDays,
  clockTime,
  dateIn,
  dateTime,
  dayName,
  el,
  money,
  relative,
  timeRange,
  userZone,
  words,
  zoneAbbr,
  zoneNote,
} from '../dom';
import { cardPayment, cardPayments } from '../shell/card';
import { joinButton } from '../shell/join';
import {
  BOOKING_STATUS,
  bookingPolicy,
  clientConfig,
  enrollmentsOf,
  tutorDirectory,
  userNames,
  type AvailabilityDoc,
  type Booking,
  type BookingPolicy,
  type BookingView,
  type ClassInfo,
  type ClassLesson,
  type ClassView,
  type Enrollment,
  type Gamification,
  type Leaderboard,
  type Outcome,
  type Package,
  type Payment,
  type SlotList,
  type StudentReport,
  type TutorCard,
  type Upcoming,
  lessonItem,
  meetingItem,
} from '../shell/model';
import {
  announce,
  button,
  confirmPanel,
  empty,
  field,
  input,
  link,
  loading,
  pill,
  section,
  select,
  table,
} from '../shell/ui';
import { agenda, reloadOn } from './home';
import type { Page, PageContext } from './types';

const STUDENT: Page['roles'] = ['student'];

// --- tutors ---------------------------------------------------------------------------------------

/**
 * How the student knows each tutor, by tutor id: their classes' instructors, their lessons' and packages'
 * tutors (`teaches your class “Spanish A1”`).
 */
async function tutorRelations(ctx: PageContext): Promise<Map<string, string[]>> {
  const known = new Map<string, string[]>();
  const add = (id: string, how: string) => {
    const list = known.get(id) ?? [];
    if (!list.includes(how)) list.push(how);
    known.set(id, list);
  };
  const [classes, bookings, packages] = await Promise.all([
    ctx.api.get<ClassInfo[]>('/classes').catch(() => [] as ClassInfo[]),
    ctx.api.get<Booking[]>('/bookings?limit=500').catch(() => [] as Booking[]),
    ctx.api.get<Package[]>('/packages').catch(() => [] as Package[]),
  ]);
  for (const c of classes) add(c.instructor_id, `teaches your class “${c.title}”`);
  for (const b of bookings) add(b.tutor_id, 'your tutor for earlier lessons');
  for (const p of packages) add(p.tutor_id, 'your package tutor');
  return known;
}

/** Tutor names by id, from the tenant's directory (tutors taking bookings). */
async function tutorNames(ctx: PageContext): Promise<Map<string, string>> {
  const list = await tutorDirectory(ctx.api).catch((e) => (ctx.error(e), [] as TutorCard[]));
  return new Map(list.map((t) => [t.id, t.display_name]));
}

/** A tutor's name, or how to call one who no longer takes bookings (the directory lists only those who do). */
function tutorName(names: Map<string, string>, id: string): string {
  return names.get(id) ?? `Tutor ${id.slice(-6)}`;
}

const WEEKDAYS: Record<string, string> = {
  mon: 'Mon',
  tue: 'Tue',
  wed: 'Wed',
  thu: 'Thu',
  fri: 'Fri',
  sat: 'Sat',
  sun: 'Sun',
};

function hoursSummary(doc: AvailabilityDoc): string {
  if (!doc.weekly.length) return 'No weekly hours published.';
  return doc.weekly
    .map((w) => `${WEEKDAYS[w.weekday] ?? w.weekday} ${w.start}–${w.end === '00:00' ? '24:00' : w.end}`)
    .join(', ');
}

function lengthsSummary(doc: Pick<AvailabilityDoc, 'lengths' | 'currency'>): string {
  return doc.lengths.map((l) => `${l.minutes} min ${money(l.price_minor, doc.currency)}`).join(' · ');
}

/** Above this many tutors, the list gets a name filter. */
const FILTER_FROM = 6;

async function renderTutors(ctx: PageContext): Promise<void> {
  const list = el('div', {}, loading());
  const body = section('Tutors taking bookings', list);
  ctx.root.append(body);
  const [tutors, known] = await Promise.all([tutorDirectory(ctx.api), tutorRelations(ctx)]);
  if (!tutors.length) {
    list.replaceChildren(empty('No tutor is taking bookings at the moment. Please check again later.'));
    return;
  }
  // The tutors the student already knows first, then everyone else, each by name (as the API sorts them).
  const ordered = [...tutors.filter((t) => known.has(t.id)), ...tutors.filter((t) => !known.has(t.id))];
  const items = ordered.map((t) => {
    const how = known.get(t.id) ?? [];
    const li = el(
      'li',
      { class: 'tutor', 'data-tutor': t.id, 'data-name': t.display_name.toLowerCase() },
      el(
        'div',
        {},
        el('strong', { class: 'tutor-name' }, t.display_name),
        how.length ? el('span', { class: 'muted' }, ` · ${how.join('; ')}`) : '',
      ),
      el(
        'div',
        { class: 'muted small' },
        el('div', {}, `Works in ${t.timezone} (${zoneAbbr(t.timezone)}). Lessons: ${lengthsSummary(t)}.`),
      ),
      link(`/tutors/${t.id}`, 'See free times and book', {
        class: 'button-link primary',
        'aria-label': `See ${t.display_name}’s free times and book`,
      }),
    );
    return li;
  });
  const ul = el('ul', { class: 'items tutors' }, ...items);
  const count = el('p', { class: 'muted small', role: 'status' });
  const parts: Node[] = [];
  if (tutors.length >= FILTER_FROM) {
    const search = input({ name: 'search', type: 'search', autocomplete: 'off' });
    const none = empty('No tutor’s name matches.');
    none.hidden = true;
    search.oninput = () => {
      const q = search.value.trim().toLowerCase();
      const shown = items.filter((li) => !q || (li.dataset.name ?? '').includes(q));
      ul.replaceChildren(...shown);
      none.hidden = shown.length > 0;
      count.textContent = q ? `${shown.length} of ${items.length} tutors.` : '';
    };
    parts.push(
      el('form', { class: 'inline-form', role: 'search' }, field('Find a tutor by name', search)),
      count,
      none,
    );
  }
  list.replaceChildren(...parts, ul);
}

// --- slots and holding ------------------------------------------------------------------------------

/** Days shown at once in the slot list. */
const WEEK = 7;

/** A slot picker: lesson length, week navigation, slots grouped by the student's days. */
function slotPicker(
  ctx: PageContext,
  tutorId: string,
  opts: {
    minutes?: number;
    lengths: { minutes: number; price_minor: number }[];
    currency: string;
    onPick: (slot: SlotList['slots'][0], list: SlotList) => void;
    fixedLength?: boolean;
  },
): HTMLElement {
  const zone = userZone();
  let from = dateIn(new Date(), zone);
  let minutes = opts.minutes ?? opts.lengths[0]?.minutes ?? 60;
  const days = el('div', { class: 'slot-days' });
  const count = el('p', { class: 'muted', role: 'status' });
  const range = el('span', { class: 'range' });
  const lengthSelect = select(
    'minutes',
    opts.lengths.map((l) => [String(l.minutes), `${l.minutes} minutes · ${money(l.price_minor, opts.currency)}`]),
    String(minutes),
  );
  lengthSelect.disabled = Boolean(opts.fixedLength);
  lengthSelect.onchange = () => {
    minutes = Number(lengthSelect.value);
    void load();
  };
  const prev = button('← Earlier', () => {
    from = addDays(from, -WEEK);
    return load();
  });
  const next = button('Later →', () => {
    from = addDays(from, WEEK);
    return load();
  });
  const load = async () => {
    const to = addDays(from, WEEK - 1);
    prev.disabled = from <= dateIn(new Date(), zone);
    range.textContent = `${dayName(from)} – ${dayName(to)}`;
    days.replaceChildren(loading());
    count.textContent = '';
    let list: SlotList;
    try {
      list = await ctx.api.get<SlotList>(
        `/tutors/${tutorId}/slots?from=${from}&to=${to}&tz=${encodeURIComponent(zone)}&minutes=${minutes}`,
      );
    } catch (e) {
      days.replaceChildren();
      ctx.error(e);
      return;
    }
    if (!list.slots.length) {
      days.replaceChildren(empty('No free times in these days. Try later days.'));
      return;
    }
    const byDay = new Map<string, SlotList['slots']>();
    for (const s of list.slots) {
      const d = s.local_start.slice(0, 10); // the date on the student's clock, as the API computed it
      byDay.set(d, [...(byDay.get(d) ?? []), s]);
    }
    count.textContent = `${list.slots.length} free start times on ${byDay.size} day(s).`;
    // A day per disclosure (the first one open), so a phone isn't a wall of buttons.
    days.replaceChildren(
      ...[...byDay].map(([d, slots], i) => {
        const day = el(
          'details',
          { class: 'slot-day', 'data-date': d },
          el(
            'summary',
            {},
            el('strong', {}, dayName(d)),
            el(
              'span',
              { class: 'muted' },
              ` · ${slots.length} time${slots.length === 1 ? '' : 's'}, ${clockTime(slots[0].starts_at, zone)} – ${clockTime(slots[slots.length - 1].starts_at, zone)}`,
            ),
          ),
          el(
            'ul',
            { class: 'slots' },
            ...slots.map((s) => {
              const b = el(
                'button',
                {
                  type: 'button',
                  class: 'slot',
                  'data-start': s.starts_at,
                  'aria-label': timeRange(s.starts_at, s.ends_at),
                },
                clockTime(s.starts_at, zone),
              );
              b.onclick = () => opts.onPick(s, list);
              return el('li', {}, b);
            }),
          ),
        );
        day.open = i === 0;
        return day;
      }),
    );
  };
  void load();
  return el(
    'div',
    { class: 'slot-picker' },
    el(
      'div',
      { class: 'slot-controls' },
      field('Lesson length', lengthSelect),
      el('div', { class: 'week-nav' }, prev, range, next),
    ),
    el('p', { class: 'muted' }, `Free start times on your clock (${zone}, ${zoneAbbr(zone)}).`),
    count,
    days,
  );
}

async function renderTutor(ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  let doc: AvailabilityDoc;
  try {
    doc = await ctx.api.get<AvailabilityDoc>(`/tutors/${id}/availability`);
  } catch (e) {
    ctx.error(e);
    ctx.root.append(el('p', {}, link('/tutors', 'Back to your tutors')));
    return;
  }
  const name = (await tutorDirectory(ctx.api).catch(() => [] as TutorCard[])).find((t) => t.id === id)?.display_name;
  ctx.setTitle(name ? `Book a lesson: ${name}` : 'Book a lesson');
  const packages = (await ctx.api.get<Package[]>('/packages').catch(() => [] as Package[])).filter(
    (p) => p.tutor_id === id && p.status === 'active' && p.remaining > 0,
  );
  const policy = await bookingPolicy(ctx.api, ctx.me).catch(() => null);
  const confirmSlot = el('div', { class: 'confirm-slot' });
  ctx.root.append(
    zoneNote(),
    section(
      'About these lessons',
      el(
        'p',
        {},
        `${name ?? 'The tutor'} works in ${doc.timezone} (${zoneAbbr(doc.timezone)}). Their weekly hours there: ${hoursSummary(doc)}.`,
      ),
      el(
        'p',
        {},
        `Lessons: ${lengthsSummary(doc)}. `,
        link(`/packages?tutor=${id}`, 'Buy several lessons at once as a package'),
      ),
      doc.min_notice_minutes
        ? el(
            'p',
            { class: 'muted' },
            `Book at least ${Math.round(doc.min_notice_minutes / 60) || doc.min_notice_minutes + ' min'}${doc.min_notice_minutes >= 60 ? ' hour(s)' : ''} ahead, up to ${doc.horizon_days} days ahead.`,
          )
        : null,
      policy ? policyText(policy) : null,
    ),
    section(
      'Pick a time',
      confirmSlot,
      slotPicker(ctx, id, {
        lengths: doc.lengths,
        currency: doc.currency,
        onPick: (slot, list) => {
          const pkg = packages.find((p) => p.minutes === list.minutes);
          const pay = pkg
            ? select(
                'pay',
                [
                  ['money', `Pay ${money(list.price_minor, list.currency)}`],
                  [pkg.id, `Use a lesson from my package (${pkg.remaining} left)`],
                ],
                pkg.id,
              )
            : null;
          confirmSlot.replaceChildren(
            confirmPanel({
              title: 'Hold this time?',
              body: [
                el(
                  'p',
                  { class: 'slot-choice' },
                  el('strong', {}, timeRange(slot.starts_at, slot.ends_at)),
                  ` · ${list.minutes} minutes · ${money(list.price_minor, list.currency)}`,
                ),
                el(
                  'p',
                  { class: 'muted' },
                  `For the tutor (${doc.timezone}) that is ${timeRange(slot.starts_at, slot.ends_at, doc.timezone)}.`,
                ),
                pay ? field('How to pay', pay) : null,
                el(
                  'p',
                  {},
                  policy
                    ? `We keep this time for you for ${policy.hold_minutes} minutes while you go on to payment.`
                    : 'We keep this time for you for a few minutes while you go on to payment.',
                ),
              ],
              confirm: 'Hold this time',
              cancel: 'Choose another time',
              onConfirm: async () => {
                const usePackage = pay && pay.value !== 'money' ? pay.value : undefined;
                const b = await ctx.api.post<BookingView>(
                  '/bookings',
                  {
                    tutor_id: id,
                    starts_at: slot.starts_at,
                    minutes: list.minutes,
                    ...(usePackage ? { package_id: usePackage } : {}),
                  },
                  { idempotencyKey: idempotencyKey() },
                );
                ctx.navigate(`/bookings/${b.id}`);
              },
            }),
          );
        },
      }),
    ),
  );
}

function policyText(p: BookingPolicy): HTMLElement {
  return el(
    'p',
    { class: 'muted' },
    `Cancelling at least ${p.free_cancel_hours} hours before the start is free; later you get ${p.late_refund_bps / 100}% back. ` +
      `You can move a lesson up to ${p.reschedule_until_hours} hours before it starts, ${p.max_reschedules} time(s).`,
  );
}

// --- bookings ------------------------------------------------------------------------------------------

const OVER = [
  'completed',
  'expired',
  'cancelled_by_student',
  'cancelled_by_tutor',
  'no_show_student',
  'no_show_tutor',
  'refunded',
];

function statusPill(status: string): HTMLElement {
  const p = pill(BOOKING_STATUS[status] ?? words(status), `status-${status}`);
  p.dataset.status = status;
  return p;
}

const HEADS = ['When', 'Tutor', 'Length', 'Status', 'Price', ''];

async function renderBookings(ctx: PageContext): Promise<void> {
  ctx.root.append(zoneNote());
  const body = el('div', {}, loading());
  ctx.root.append(body);
  const names = await tutorNames(ctx);
  const load = async () => {
    const all = await ctx.api.get<Booking[]>('/bookings?limit=500');
    const now = Date.now();
    const ahead = all.filter((b) => !OVER.includes(b.status) && Date.parse(b.ends_at) > now - 30 * 60_000);
    const past = all.filter((b) => !ahead.includes(b)).reverse();
    const row = (b: Booking): (Node | string)[] => [
      timeRange(b.starts_at, b.ends_at),
      tutorName(names, b.tutor_id),
      `${b.minutes} min`,
      statusPill(b.status),
      b.package_id ? 'package lesson' : money(b.price_minor, b.currency),
      link(`/bookings/${b.id}`, 'Details'),
    ];
    body.replaceChildren(
      section(
        'Coming up',
        ahead.length ? table(HEADS, ahead.map(row)) : empty('No lessons booked.'),
        el('p', {}, link('/tutors', 'Book a lesson')),
      ),
      section('Earlier', past.length ? table(HEADS, past.slice(0, 50).map(row)) : empty('None yet.')),
    );
  };
  reloadOn(ctx, ['booking', 'booking_rescheduled'], () => void load().catch(ctx.error));
  await load();
}

/**
 * What cancelling does, in words, from the server's outcome (`GET /bookings/{id}/cancellation` beforehand, the
 * cancel's own answer after): the refund, a package lesson back, or what the tutor keeps for a late cancellation.
 * `done`: said after the fact. `policy`, when loaded, names the free-cancellation limit for a late one.
 */
function outcomeText(b: BookingView, o: Outcome, done: boolean, policy: BookingPolicy | null, own: boolean): string {
  const your = own ? 'your' : 'the';
  const limit = policy
    ? ` (cancelling is free until ${policy.free_cancel_hours} hour${policy.free_cancel_hours === 1 ? '' : 's'} before the start)`
    : '';
  if (b.package_id) {
    if (o.return_credit)
      return done
        ? `The lesson went back to ${your} package.`
        : `Cancelling now is free: the lesson goes back to ${your} package.`;
    const keeps = o.tutor_keeps_minor ? ` (${money(o.tutor_keeps_minor, b.currency)})` : '';
    return done
      ? `It was a late cancellation${limit}: the lesson didn’t go back to ${your} package; the tutor is paid for the time${keeps}.`
      : `This is a late cancellation${limit}: the lesson doesn’t go back to ${your} package; the tutor is paid for the time${keeps}.`;
  }
  const paid = o.refund_minor + o.tutor_keeps_minor;
  if (!paid)
    return done
      ? 'Nothing had been paid, so nothing is refunded and nothing is owed.'
      : 'Nothing has been paid yet, so nothing is refunded and nothing is owed.';
  const back = money(o.refund_minor, b.currency);
  const of = money(paid, b.currency);
  if (!o.tutor_keeps_minor)
    return done
      ? `${back} of the ${of} paid will be refunded.`
      : `Cancelling now is free: you get ${back} back of the ${of} you paid.`;
  const keeps = money(o.tutor_keeps_minor, b.currency);
  return done
    ? `It was a late cancellation${limit}: ${back} of the ${of} paid will be refunded; the tutor keeps ${keeps}.`
    : `This is a late cancellation${limit}: you get ${back} back of the ${of} you paid; the tutor keeps ${keeps}.`;
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  return (
    a.refund_minor === b.refund_minor &&
    a.return_credit === b.return_credit &&
    a.tutor_keeps_minor === b.tutor_keeps_minor
  );
}

/** Whether the student may move this lesson now (`policy::may_reschedule`), and why not. */
function rescheduleBlock(p: BookingPolicy, b: BookingView, now = Date.now()): string | null {
  const start = Date.parse(b.starts_at);
  if (b.status !== 'confirmed') return 'Only a confirmed lesson can be moved.';
  if (now >= start) return 'The lesson has started.';
  if (start - now < p.reschedule_until_hours * 3600_000)
    return `Lessons can be moved until ${p.reschedule_until_hours} hours before they start.`;
  if (b.reschedules >= p.max_reschedules)
    return `This lesson has already been moved ${b.reschedules} time(s), the most allowed.`;
  return null;
}

/** How to pay offline: the amount and the school's instructions; staff record the money. */
function offlineSection(payment: Payment, what: 'lesson' | 'package'): HTMLElement {
  return el(
    'div',
    { class: 'payment offline', 'data-provider': payment.provider, 'data-payment': payment.id },
    el('p', {}, `Amount: `, el('strong', {}, money(payment.amount_minor, payment.currency))),
    payment.instructions
      ? el('div', { class: 'instructions' }, ...payment.instructions.split('\n').map((l) => el('p', {}, l)))
      : null,
    el(
      'p',
      { class: 'muted' },
      what === 'lesson'
        ? 'When the school records your payment, the lesson is confirmed and this page updates by itself.'
        : 'When the school records your payment, the package becomes active and this page updates by itself.',
    ),
  );
}

async function renderBooking(ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  const zone = userZone();
  const [policy, config] = await Promise.all([bookingPolicy(ctx.api, ctx.me), clientConfig(ctx.api).catch(() => null)]);
  /** A client secret only comes with the checkout answer (the API never stores it): kept for this visit. */
  let lastCheckout: Payment | null = null;
  const head = el('div');
  /** How to pay, its own part of the page: rebuilt only for another payment (Stripe's form can't be moved). */
  const pay = el('div');
  const actions = el('div');
  const history = el('div');
  ctx.root.append(zoneNote(), head, pay, actions, history);
  let b: BookingView;
  /** The tutor (from the directory of tutors taking bookings), and for a parent the child's name. */
  let tutor: TutorCard | null | undefined;
  let child: string | undefined;

  const load = async () => {
    b = await ctx.api.get<BookingView>(`/bookings/${id}`);
    if (tutor === undefined) {
      const [directory, kids] = await Promise.all([
        tutorDirectory(ctx.api).catch(() => [] as TutorCard[]),
        b.student_id === ctx.me.id ? new Map<string, string>() : userNames(ctx.api, [b.student_id]),
      ]);
      tutor = directory.find((t) => t.id === b.tutor_id) ?? null;
      child = kids.get(b.student_id);
    }
    const tutorZone = tutor?.timezone;
    ctx.setTitle(`Lesson, ${dateTime(b.starts_at, zone)}`);
    const status = el(
      'strong',
      { id: 'booking-status', 'data-status': b.status },
      BOOKING_STATUS[b.status] ?? words(b.status),
    );
    head.replaceChildren(
      section(
        'This lesson',
        el('p', { class: 'big' }, timeRange(b.starts_at, b.ends_at, zone)),
        el(
          'p',
          { class: 'lesson-who' },
          child ? `${child}’s lesson with ` : 'With ',
          el('strong', {}, tutor?.display_name ?? 'your tutor'),
          '.',
        ),
        tutorZone && tutorZone !== zone
          ? el(
              'p',
              { class: 'muted' },
              `For the tutor (${tutorZone}): ${timeRange(b.starts_at, b.ends_at, tutorZone)}.`,
            )
          : null,
        el(
          'p',
          {},
          `${b.minutes} minutes · ${b.package_id ? 'a lesson from your package' : money(b.price_minor, b.currency)}`,
        ),
        el(
          'p',
          { class: 'status-line' },
          'Status: ',
          status,
          ' ',
          el('span', { class: 'muted small' }, '(updates live)'),
        ),
        b.expires_at && ['hold', 'pending_payment'].includes(b.status)
          ? el('p', {}, `We keep this time for you until ${clockTime(b.expires_at, zone)} (${relative(b.expires_at)}).`)
          : null,
        // Just cancelled here: the server's outcome in words; otherwise what the booking records.
        cancelled
          ? el(
              'p',
              { class: 'outcome', 'data-refund': String(cancelled.outcome.refund_minor) },
              outcomeText(b, cancelled.outcome, true, policy, own()),
              cancelled.differs
                ? ' That differs from what was shown before: the time passed the school’s limit for a free cancellation while the step was open.'
                : '',
            )
          : null,
        !cancelled && b.refund_minor ? el('p', {}, `Refund: ${money(b.refund_minor, b.currency)}.`) : null,
        !cancelled && b.credit_returned
          ? el('p', {}, `The lesson went back to ${own() ? 'your' : 'the'} package.`)
          : null,
        b.cancel_reason ? el('p', { class: 'muted' }, `Reason: ${b.cancel_reason}`) : null,
      ),
    );
    renderPayment();
    renderActions();
    history.replaceChildren(
      section(
        'What happened',
        el(
          'ol',
          { class: 'history' },
          ...b.history.map((h) =>
            el(
              'li',
              {},
              `${dateTime(h.at, zone)}: ${BOOKING_STATUS[h.to] ?? words(h.to)}`,
              h.reason ? el('span', { class: 'muted' }, ` (${h.reason})`) : null,
            ),
          ),
        ),
      ),
    );
  };

  /** The payment whose way to pay is shown in `pay` (kept across reloads: a push mustn't empty the card form). */
  let shown: string | null = null;
  /** The payment Stripe has taken in this visit, waiting for the webhook's confirmation. */
  let sent: string | null = null;
  /** What cancelling did (the server's answer), and whether it differs from the quote shown before. */
  let cancelled: { outcome: Outcome; differs: boolean } | null = null;
  const own = () => b.student_id === ctx.me.id;

  const checkout = async (): Promise<Payment | null> => {
    const c = await ctx.api.post<{ booking: BookingView; payment: Payment | null }>(
      `/bookings/${id}/checkout`,
      undefined,
      { idempotencyKey: idempotencyKey() },
    );
    lastCheckout = c.payment;
    return c.payment;
  };

  /** How to pay the pending payment: the offline instructions, or the card form (Stripe) for an online one. */
  const renderPayment = () => {
    const pending = b.status === 'pending_payment' ? b.payments.find((p) => p.status === 'pending') : undefined;
    if (!pending) {
      shown = null;
      pay.replaceChildren();
      return;
    }
    if (shown === pending.id) return;
    shown = pending.id;
    if (pending.provider === 'offline') {
      pay.replaceChildren(section('How to pay', offlineSection(pending, 'lesson')));
      return;
    }
    pay.replaceChildren(
      section(
        'Pay by card',
        cardPayment({
          config,
          payment: lastCheckout?.id === pending.id ? lastCheckout : pending,
          what: 'lesson',
          // A reload has no client secret (it is never stored): checkout again answers with the same one, or
          // after a decline the server recorded, with a new payment (whose form is this one).
          resume: async () => {
            const p = await checkout();
            if (p) shown = p.id;
            return p?.status === 'pending' ? p : null;
          },
          // Paid at Stripe: releasing the time now would only race the confirmation.
          onSent: () => {
            sent = shown;
            renderActions();
          },
        }),
      ),
    );
  };

  /** Checkout (again), then the booking as it now is; a refusal is shown as a sentence. */
  const payNow = async () => {
    try {
      await checkout();
    } catch (e) {
      ctx.error(e);
    }
    await load();
  };

  const renderActions = () => {
    const parts: (Node | null)[] = [];
    const slot = el('div', { class: 'action-slot' });
    if (b.status === 'hold') {
      parts.push(
        el('p', {}, 'Go on to payment to keep this lesson.'),
        button('Continue to payment', payNow, { class: 'primary', 'data-action': 'checkout' }),
      );
    }
    if (b.status === 'pending_payment' && !b.payments.some((p) => p.status === 'pending')) {
      parts.push(
        el('p', {}, 'The last payment attempt didn’t go through. Nothing was charged for it.'),
        button('Try paying again', payNow, { class: 'primary', 'data-action': 'checkout' }),
      );
    }
    if (['confirmed', 'in_progress'].includes(b.status)) {
      parts.push(el('p', {}, joinButton(ctx, lessonItem(b, 'this lesson'))));
    }
    const buttons: HTMLElement[] = [];
    if (b.status === 'confirmed') {
      buttons.push(
        button(
          'Move this lesson',
          () => {
            const why = rescheduleBlock(policy, b);
            if (why) {
              slot.replaceChildren(el('p', { class: 'inline-error', role: 'alert' }, why));
              return;
            }
            const chosen = el('div');
            slot.replaceChildren(
              el('h3', {}, 'Choose the new time'),
              el(
                'p',
                { class: 'muted' },
                `Moving is free: the price stays the same. After this move, ${policy.max_reschedules - b.reschedules - 1} more move(s) are allowed.`,
              ),
              chosen,
              slotPicker(ctx, b.tutor_id, {
                minutes: b.minutes,
                lengths: [{ minutes: b.minutes, price_minor: b.price_minor }],
                currency: b.currency,
                fixedLength: true,
                onPick: (s) =>
                  chosen.replaceChildren(
                    confirmPanel({
                      title: 'Move the lesson?',
                      body: [
                        el(
                          'p',
                          {},
                          'From ',
                          el('strong', {}, timeRange(b.starts_at, b.ends_at, zone)),
                          ' to ',
                          el('strong', {}, timeRange(s.starts_at, s.ends_at, zone)),
                          '.',
                        ),
                      ],
                      confirm: 'Move it',
                      cancel: 'Keep the current time',
                      onConfirm: async () => {
                        await ctx.api.post(
                          `/bookings/${id}/reschedule`,
                          { starts_at: s.starts_at },
                          { idempotencyKey: idempotencyKey() },
                        );
                        slot.replaceChildren();
                        await load();
                      },
                    }),
                  ),
              }),
            );
          },
          { 'data-action': 'reschedule' },
        ),
      );
    }
    const paying = b.status === 'pending_payment' && sent !== null && sent === shown;
    if (['hold', 'pending_payment', 'confirmed'].includes(b.status) && !paying) {
      const lesson = b.status === 'confirmed';
      buttons.push(
        button(
          lesson ? 'Cancel this lesson' : 'Release this time',
          async () => {
            // The server's quote: what cancelling now would refund or return, by the rule cancel applies.
            slot.replaceChildren(el('p', { class: 'muted', role: 'status' }, 'Checking what cancelling would mean…'));
            let q: Outcome;
            try {
              q = await ctx.api.get<Outcome>(`/bookings/${id}/cancellation`);
            } catch (e) {
              slot.replaceChildren(el('p', { class: 'inline-error', role: 'alert' }, describe(e)));
              return;
            }
            const reason = input({ name: 'reason', maxlength: '500', autocomplete: 'off' });
            slot.replaceChildren(
              confirmPanel({
                title: lesson ? 'Cancel the lesson?' : 'Release this time?',
                body: [
                  el(
                    'p',
                    {
                      class: 'quote',
                      'data-refund': String(q.refund_minor),
                      'data-return-credit': String(q.return_credit),
                      'data-tutor-keeps': String(q.tutor_keeps_minor),
                    },
                    outcomeText(b, q, false, policy, own()),
                  ),
                  el(
                    'p',
                    { class: 'muted small' },
                    `That is what cancelling means now, at ${clockTime(new Date().toISOString(), zone)}. Once you confirm, this page shows what was done.`,
                  ),
                  field('Reason (optional)', reason),
                ],
                confirm: lesson ? 'Cancel the lesson' : 'Release this time',
                cancel: lesson ? 'Keep the lesson' : 'Keep this time',
                danger: true,
                onConfirm: async () => {
                  const r = await ctx.api.post<{ outcome: Outcome }>(
                    `/bookings/${id}/cancel`,
                    { reason: reason.value || undefined },
                    { idempotencyKey: idempotencyKey() },
                  );
                  // The server's outcome is what counts: said out loud, and kept on the page.
                  cancelled = { outcome: r.outcome, differs: !sameOutcome(q, r.outcome) };
                  announce(`Cancelled. ${outcomeText(b, r.outcome, true, policy, own())}`);
                  await load();
                },
              }),
            );
          },
          { 'data-action': 'cancel' },
        ),
      );
    }
    if (buttons.length) parts.push(el('div', { class: 'actions' }, ...buttons), slot);
    if (b.status === 'confirmed') parts.push(policyText(policy));
    actions.replaceChildren(parts.length ? section('What you can do', ...parts) : '');
  };

  ctx.onUserEvent((e) => {
    const mine = e.booking_id === id;
    if (e.kind === 'resync' || (mine && ['booking', 'booking_rescheduled', 'lesson_room'].includes(e.kind)))
      void load().catch(ctx.error);
  });
  await load();
}

// --- packages ------------------------------------------------------------------------------------------

async function renderPackages(ctx: PageContext): Promise<void> {
  const mine = el('div', {}, loading());
  const buy = el('div');
  ctx.root.append(mine, buy);
  const [tutors, known, config] = await Promise.all([
    tutorDirectory(ctx.api).catch((e) => (ctx.error(e), [] as TutorCard[])),
    tutorRelations(ctx),
    clientConfig(ctx.api).catch(() => null),
  ]);
  const names = new Map(tutors.map((t) => [t.id, t.display_name]));
  const load = async () => {
    const list = await ctx.api.get<Package[]>('/packages');
    mine.replaceChildren(
      section(
        'Your packages',
        list.length
          ? table(
              ['Tutor', 'Lessons', 'Left', 'Price', 'Status'],
              list.map((p) => [
                tutorName(names, p.tutor_id),
                `${p.lessons} × ${p.minutes} min`,
                String(p.remaining),
                money(p.price_minor, p.currency),
                pill(words(p.status), `status-${p.status}`),
              ]),
            )
          : empty('You have no packages. A package is several lessons with one tutor, paid at once.'),
        list.some((p) => p.status === 'pending_payment')
          ? el(
              'p',
              { class: 'muted small' },
              'A package waiting for payment becomes active when the payment arrives. ',
              cardPayments(config)
                ? 'If you left the card form before paying, please ask the school: a package’s card payment can’t be picked up again on this page yet.'
                : 'The school records the payment when your money arrives.',
            )
          : null,
      ),
    );
  };
  // The purchase form: a tutor who takes bookings (those the student knows first), a length they offer, how
  // many lessons.
  const bookable = tutors.filter((t) => t.lengths.length);
  const docs = new Map<string, TutorCard>(
    [...bookable.filter((t) => known.has(t.id)), ...bookable.filter((t) => !known.has(t.id))].map((t) => [t.id, t]),
  );
  if (docs.size) {
    const tutorSel = select(
      'tutor',
      [...docs.values()].map((t) => [t.id, t.display_name]),
      ctx.params.tutor && docs.has(ctx.params.tutor) ? ctx.params.tutor : undefined,
    );
    const lengthSel = select('minutes', []);
    const count = input({ name: 'lessons', type: 'number', min: '1', max: '100', value: '5', required: '' });
    const total = el('p', { class: 'total', 'aria-live': 'polite' });
    const result = el('div');
    const fill = () => {
      const d = docs.get(tutorSel.value)!;
      lengthSel.replaceChildren(
        ...d.lengths.map((l) =>
          el('option', { value: String(l.minutes) }, `${l.minutes} minutes · ${money(l.price_minor, d.currency)} each`),
        ),
      );
      price();
    };
    const price = () => {
      const d = docs.get(tutorSel.value)!;
      const l = d.lengths.find((x) => String(x.minutes) === lengthSel.value) ?? d.lengths[0];
      const n = Math.max(1, Math.min(100, Number(count.value) || 1));
      total.textContent = `Total: ${money(l.price_minor * n, d.currency)} for ${n} lesson(s).`;
    };
    tutorSel.onchange = fill;
    lengthSel.onchange = price;
    count.oninput = price;
    fill();
    const form = el(
      'form',
      {},
      field('Tutor', tutorSel),
      field('Lesson length', lengthSel),
      field('Number of lessons', count, '1 to 100.'),
      total,
      el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Buy the package')),
      result,
    );
    const submit = form.querySelector<HTMLButtonElement>('button[type="submit"]')!;
    /** The package just bought here: when it becomes active (the payment arrived), that replaces how to pay. */
    let bought: Package | null = null;
    ctx.onUserEvent((e) => {
      if (e.kind !== 'package' || !bought || e.package_id !== bought.id || e.status !== 'active') return;
      const p = bought;
      bought = null;
      result.replaceChildren(
        el(
          'p',
          { class: 'paid', role: 'status', 'data-package': p.id },
          `Paid: your package of ${p.lessons} lessons of ${p.minutes} minutes is active. `,
          link(`/tutors/${p.tutor_id}`, 'Book a lesson with it'),
        ),
      );
    });
    form.onsubmit = async (e) => {
      e.preventDefault();
      if (submit.getAttribute('aria-busy') === 'true') return;
      submit.setAttribute('aria-busy', 'true');
      try {
        const r = await ctx.api.post<{ package: Package; payment: Payment }>(
          '/packages',
          { tutor_id: tutorSel.value, minutes: Number(lengthSel.value), lessons: Number(count.value) },
          { idempotencyKey: idempotencyKey() },
        );
        bought = r.package;
        result.replaceChildren(
          el('h3', {}, 'How to pay'),
          r.payment.provider === 'offline'
            ? offlineSection(r.payment, 'package')
            : cardPayment({ config, payment: r.payment, what: 'package' }),
        );
        await load();
      } catch (err) {
        ctx.error(err);
      } finally {
        submit.removeAttribute('aria-busy');
      }
    };
    buy.replaceChildren(section('Buy a package', form));
  }
  reloadOn(ctx, ['package'], () => void load().catch(ctx.error));
  await load();
}

// --- classes, credits, lessons, progress ------------------------------------------------------------

/**
 * The student's credits left in a class: the ledger's balance (`GET /users/{id}/enrollments`), which counts the
 * package, the meetings attended and the school's adjustments.
 */
function creditsText(c: ClassInfo, enrollment: Enrollment | undefined): HTMLElement {
  if (!enrollment)
    return el('span', { class: 'credits muted', 'data-class': c.id }, 'Credits: not enrolled in this class.');
  const n = enrollment.balance;
  return el(
    'span',
    { class: 'credits', 'data-class': c.id, 'data-credits': String(n) },
    el('strong', {}, `${n} credit${n === 1 ? '' : 's'} left`),
    el('span', { class: 'muted small' }, ` · ${enrollment.attended} of ${c.total_meetings} meetings attended`),
  );
}

function meetingItems(c: ClassView): Upcoming[] {
  return c.meetings.map((m) => meetingItem(c, m));
}

async function renderClasses(ctx: PageContext): Promise<void> {
  ctx.root.append(zoneNote());
  const body = el('div', {}, loading());
  ctx.root.append(body);
  const load = async () => {
    const [list, enrollments] = await Promise.all([
      ctx.api.get<ClassInfo[]>('/classes'),
      enrollmentsOf(ctx.api, ctx.me.id),
    ]);
    const enrolled = new Map(enrollments.map((e) => [e.class_id, e]));
    if (!list.length) {
      body.replaceChildren(empty('You are not enrolled in any class.'));
      return;
    }
    const views = await Promise.all(list.map((c) => ctx.api.get<ClassView>(`/classes/${c.id}`)));
    body.replaceChildren(
      ...views.map((c) => {
        const next = meetingItems(c)
          .filter((m) => Date.parse(m.ends_at) > Date.now() - 30 * 60_000)
          .slice(0, 1);
        return section(
          c.title,
          el(
            'p',
            {},
            pill(words(c.status)),
            ' ',
            `${c.kind === 'group' ? 'Group class' : 'Private class'} · ${c.total_meetings} meetings · `,
            creditsText(c, enrolled.get(c.id)),
          ),
          next.length
            ? el('div', {}, el('h3', {}, 'Next meeting'), agenda(ctx, next))
            : el('p', { class: 'muted' }, 'No more meetings scheduled.'),
          el('p', {}, link(`/classes/${c.id}`, 'Meetings, lessons and leaderboard')),
        );
      }),
    );
  };
  reloadOn(ctx, ['credits', 'attendance', 'unlock'], () => void load().catch(ctx.error));
  await load();
}

const BADGES: Record<string, [string, string]> = {
  first_lesson: ['First lesson', 'Attended your first lesson'],
  streak_5: ['Five in a row', 'Five meetings in a row on time'],
  perfect_attendance: ['Perfect attendance', 'Every meeting of a class attended'],
  xp_1000: ['1,000 XP', 'Earned 1,000 experience points'],
};

function lessonList(ctx: PageContext, lessons: ClassLesson[], reload: () => Promise<void>): HTMLElement {
  const unlocked = lessons.filter((l) => l.unlocked).sort((a, b) => a.position - b.position);
  if (!unlocked.length) return empty('No lessons unlocked yet. Your instructor unlocks them as the class goes on.');
  return el(
    'ul',
    { class: 'items lessons' },
    ...unlocked.map((l) =>
      el(
        'li',
        { 'data-lesson': l.lesson_id, 'data-completed': String(Boolean(l.completed)) },
        el('span', {}, `${l.position}. ${l.title}`),
        l.completed
          ? pill('completed', 'status-completed')
          : button(
              'Mark complete',
              async () => {
                try {
                  await ctx.api.post(`/classes/${l.class_id}/lessons/${l.lesson_id}/complete`);
                  await reload();
                } catch (e) {
                  ctx.error(e);
                }
              },
              { 'aria-label': `Mark “${l.title}” complete` },
            ),
      ),
    ),
  );
}

async function renderClass(ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  const zone = userZone();
  ctx.root.append(zoneNote());
  const body = el('div', {}, loading());
  ctx.root.append(body);
  const load = async () => {
    const [c, report, enrollments, lessons, board] = await Promise.all([
      ctx.api.get<ClassView>(`/classes/${id}`),
      ctx.api.get<StudentReport>(`/users/${ctx.me.id}/attendance`),
      enrollmentsOf(ctx.api, ctx.me.id),
      ctx.api.get<ClassLesson[]>(`/classes/${id}/lessons`).catch((e) => (ctx.error(e), [] as ClassLesson[])),
      ctx.api.get<Leaderboard>(`/classes/${id}/leaderboard?limit=100`).catch(() => null),
    ]);
    ctx.setTitle(c.title);
    const marks = new Map(report.records.filter((r) => r.class_id === id).map((r) => [r.meeting_id, r.status]));
    const upcomingMeetings = meetingItems(c).filter((m) => Date.parse(m.ends_at) > Date.now() - 30 * 60_000);
    const past = c.meetings.filter((m) => Date.parse(m.ends_at) <= Date.now() - 30 * 60_000);
    const onBoard = board?.entries.some((e) => e.student_id === ctx.me.id) ?? false;
    body.replaceChildren(
      section(
        'Credits',
        el(
          'p',
          {},
          creditsText(
            c,
            enrollments.find((e) => e.class_id === id),
          ),
        ),
        el(
          'p',
          { class: 'muted small' },
          'A meeting you attend (present or late) uses one credit; absent or excused uses none.',
        ),
      ),
      section('Coming up', agenda(ctx, upcomingMeetings, undefined, 'No more meetings scheduled.')),
      section('Unlocked lessons', lessonList(ctx, lessons, load)),
      section(
        'Leaderboard',
        el(
          'p',
          {},
          onBoard
            ? 'You are on this class’s leaderboard.'
            : 'You are not on this class’s leaderboard. Joining it is up to you.',
        ),
        onBoard
          ? button(
              'Leave the leaderboard',
              async () => {
                await ctx.api.post(`/classes/${id}/leaderboard/opt-out`).catch(ctx.error);
                await load();
              },
              { 'data-action': 'opt-out' },
            )
          : button(
              'Join the leaderboard',
              async () => {
                await ctx.api.post(`/classes/${id}/leaderboard/opt-in`).catch(ctx.error);
                await load();
              },
              { 'data-action': 'opt-in' },
            ),
        board && board.entries.length
          ? table(
              ['Rank', 'Student', 'XP in this class'],
              board.entries.map((e) => [
                String(e.rank),
                e.student_id === ctx.me.id ? el('strong', {}, `${e.display_name} (you)`) : e.display_name,
                String(e.xp),
              ]),
            )
          : empty('Nobody is on the leaderboard yet.'),
      ),
      section(
        'Past meetings',
        past.length
          ? table(
              ['When', 'Your attendance'],
              past.reverse().map((m) => [timeRange(m.starts_at, m.ends_at, zone), marks.get(m.id) ?? 'not marked']),
            )
          : empty('None yet.'),
      ),
    );
  };
  reloadOn(ctx, ['credits', 'attendance', 'unlock', 'xp', 'streak'], () => void load().catch(ctx.error));
  await load();
}

async function renderProgress(ctx: PageContext): Promise<void> {
  const body = el('div', {}, loading());
  ctx.root.append(body);
  const load = async () => {
    const [g, lessons, classes] = await Promise.all([
      ctx.api.get<Gamification>(`/users/${ctx.me.id}/gamification`),
      ctx.api.get<ClassLesson[]>(`/users/${ctx.me.id}/lessons`).catch((e) => (ctx.error(e), [] as ClassLesson[])),
      ctx.api.get<ClassInfo[]>('/classes').catch(() => [] as ClassInfo[]),
    ]);
    const title = new Map(classes.map((c) => [c.id, c.title]));
    const span = Math.max(1, g.next_level_xp - g.level_xp);
    const into = g.xp - g.level_xp;
    const bar = el('progress', { id: 'level-progress', max: String(span), value: String(into) });
    const byClass = new Map<string, ClassLesson[]>();
    for (const l of lessons) byClass.set(l.class_id, [...(byClass.get(l.class_id) ?? []), l]);
    body.replaceChildren(
      section(
        'Level and XP',
        el(
          'p',
          { class: 'big', 'data-xp': String(g.xp), 'data-level': String(g.level) },
          `Level ${g.level} · ${g.xp} XP`,
        ),
        el('label', { for: 'level-progress' }, `${into} of ${span} XP to level ${g.level + 1}`),
        bar,
      ),
      section(
        'Streaks',
        g.streaks.length
          ? el(
              'ul',
              { class: 'items' },
              ...g.streaks.map((s) =>
                el('li', {}, `${title.get(s.class_id) ?? 'A class'}: ${s.streak} meeting(s) in a row`),
              ),
            )
          : empty('Attend meetings in a row to build a streak.'),
      ),
      section(
        'Badges',
        g.badges.length
          ? el(
              'ul',
              { class: 'badges' },
              ...g.badges.map((b) =>
                el(
                  'li',
                  { class: 'badge', 'data-badge': b.badge },
                  el('strong', {}, BADGES[b.badge]?.[0] ?? words(b.badge)),
                  el(
                    'span',
                    { class: 'muted small' },
                    ` ${BADGES[b.badge]?.[1] ?? ''}${b.class_id ? ` in ${title.get(b.class_id) ?? 'a class'}` : ''} · ${dateTime(b.awarded_at)}`,
                  ),
                ),
              ),
            )
          : empty('No badges yet. Your first comes with your first lesson.'),
      ),
      section(
        'Unlocked lessons',
        byClass.size
          ? el(
              'div',
              {},
              ...[...byClass].map(([cid, ls]) =>
                el('div', {}, el('h3', {}, title.get(cid) ?? 'A class'), lessonList(ctx, ls, load)),
              ),
            )
          : empty('No lessons unlocked yet.'),
      ),
    );
  };
  reloadOn(ctx, ['xp', 'level', 'badge', 'streak', 'unlock'], () => void load().catch(ctx.error));
  await load();
}

export const studentPages: Page[] = [
  { path: '/tutors', title: 'Find a tutor', roles: STUDENT, nav: true, render: renderTutors },
  { path: '/tutors/:id', title: 'Book a lesson', roles: STUDENT, render: renderTutor },
  { path: '/bookings', title: 'My lessons', roles: STUDENT, nav: true, render: renderBookings },
  // Parents see (and may pay for, move or cancel) their children's lessons too.
  { path: '/bookings/:id', title: 'Lesson', roles: ['student', 'parent'], render: renderBooking },
  { path: '/packages', title: 'Packages', roles: STUDENT, nav: true, render: renderPackages },
  { path: '/classes', title: 'My classes', roles: STUDENT, nav: true, render: renderClasses },
  { path: '/classes/:id', title: 'Class', roles: STUDENT, render: renderClass },
  { path: '/progress', title: 'Progress', roles: STUDENT, nav: true, render: renderProgress },
];
