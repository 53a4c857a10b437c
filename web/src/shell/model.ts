// What the API answers, as the pages use it (the OpenAPI document at GET /api/v1/openapi.json has it all),
// and the few loaders several pages share.

import type { Api, User } from '../api';

export interface Booking {
  id: string;
  tutor_id: string;
  student_id: string;
  booked_by: string;
  starts_at: string;
  ends_at: string;
  minutes: number;
  status: string;
  price_minor: number;
  currency: string;
  package_id: string | null;
  expires_at: string | null;
  reschedules: number;
  room: string | null;
  refund_minor: number;
  credit_returned: boolean;
  cancel_reason: string | null;
  created_at: string;
}

export interface Payment {
  id: string;
  subject: string;
  provider: string;
  amount_minor: number;
  currency: string;
  status: string;
  /** The provider's id of the payment (Stripe: the PaymentIntent's `pi_…`). */
  provider_ref: string | null;
  instructions: string | null;
  /** Online providers, in checkout's answer only (never stored): what Stripe.js confirms the payment with. */
  client_secret?: string;
  created_at: string;
  settled_at: string | null;
}

export interface BookingView extends Booking {
  history: { from: string | null; to: string; at: string; reason?: string | null }[];
  payments: Payment[];
  refunds: { amount_minor: number; status: string; created_at?: string }[];
}

/**
 * What ending a booking early does: `POST /bookings/{id}/cancel`'s outcome, and beforehand the same from
 * `GET /bookings/{id}/cancellation` (the quote).
 */
export interface Outcome {
  status: string;
  refund_minor: number;
  return_credit: boolean;
  tutor_keeps_minor: number;
}

/** The tenant's booking policy (`GET /tenants/{id}/booking-policy`), every field the server sends. */
export interface BookingPolicy {
  hold_minutes: number;
  payment_minutes: number;
  free_cancel_hours: number;
  late_refund_bps: number;
  reschedule_until_hours: number;
  max_reschedules: number;
  reminder_minutes: number[];
  no_show_grace_minutes: number;
  auto_end_grace_minutes: number;
  join_lead_minutes: number;
  dispute_window_hours: number;
  commission_bps: number;
  late_after_minutes: number;
  parents_observe: boolean;
  min_presence_bps: number;
}

export interface Meeting {
  id: string;
  class_id: string;
  starts_at: string;
  ends_at: string;
  starts_at_local: string;
}

export interface ClassInfo {
  id: string;
  kind: 'group' | 'private';
  title: string;
  course_id: string;
  instructor_id: string;
  total_meetings: number;
  capacity: number | null;
  timezone: string;
  status: 'draft' | 'active' | 'completed' | 'cancelled';
  created_at: string;
  activated_at: string | null;
  ended_at: string | null;
}

export interface ClassView extends ClassInfo {
  meetings: Meeting[];
  enrolled: number;
}

export interface RosterEntry {
  enrollment_id: string;
  student_id: string;
  display_name: string;
  email: string;
  minor: boolean;
  balance: number;
  attended: number;
}

export interface AttendanceRecord {
  meeting_id: string;
  meeting_starts_at: string;
  class_id: string;
  class_title: string;
  student_id: string;
  student_name: string;
  status: string | null;
}

export interface StudentReport {
  student_id: string;
  present: number;
  late: number;
  absent: number;
  excused: number;
  unmarked: number;
  records: AttendanceRecord[];
}

export interface ClassLesson {
  class_id: string;
  lesson_id: string;
  position: number;
  title: string;
  unlocked: boolean;
  unlocked_at: string | null;
  completed: boolean | null;
}

export interface Gamification {
  user_id: string;
  xp: number;
  level: number;
  level_xp: number;
  next_level_xp: number;
  badges: { badge: string; class_id: string | null; awarded_at: string }[];
  streaks: { class_id: string; streak: number }[];
}

export interface Leaderboard {
  class_id: string;
  entries: { rank: number; student_id: string; display_name: string; xp: number }[];
}

export interface Package {
  id: string;
  student_id: string;
  tutor_id: string;
  minutes: number;
  lessons: number;
  remaining: number;
  price_minor: number;
  currency: string;
  status: string;
  created_at: string;
}

export interface LessonLength {
  minutes: number;
  price_minor: number;
}
export interface WeeklyWindow {
  weekday: string;
  start: string;
  end: string;
}
export type DateException =
  | { kind: 'time_off'; start: string; end: string }
  | { kind: 'time_off_local'; start: string; end: string }
  | { kind: 'extra_hours'; date: string; start: string; end: string };

export interface AvailabilityDoc {
  timezone: string;
  currency: string;
  lengths: LessonLength[];
  buffer_before_minutes: number;
  buffer_after_minutes: number;
  min_notice_minutes: number;
  max_per_day: number | null;
  horizon_days: number;
  weekly: WeeklyWindow[];
  exceptions: DateException[];
}

export interface SlotList {
  tutor_id: string;
  tutor_timezone: string;
  viewer_timezone: string;
  minutes: number;
  price_minor: number;
  currency: string;
  slots: { starts_at: string; ends_at: string; local_start: string; local_end: string }[];
}

/** A bookable tutor of the tenant (`GET /tutors`): those who published availability, by name. */
export interface TutorCard {
  id: string;
  display_name: string;
  /** The zone of the tutor's weekly hours. */
  timezone: string;
  currency: string;
  lengths: LessonLength[];
}

/** One of a student's enrollments with the credits left (`GET /users/{id}/enrollments`). */
export interface Enrollment {
  enrollment_id: string;
  class_id: string;
  class_title: string;
  class_status: string;
  balance: number;
  /** Meetings marked present or late. */
  attended: number;
}

export type Scope = 'live_video' | 'chat' | 'recording';

export interface ConsentRequest {
  id: string;
  child_id: string;
  parent_id: string;
  scopes: Scope[];
  status: 'pending' | 'answered';
  requested_by: string;
  created_at: string;
  answered_at: string | null;
}

export interface ConsentState {
  child_id: string;
  minor: boolean;
  scopes: {
    scope: Scope;
    state: 'granted' | 'denied' | 'revoked' | 'none';
    parent_id: string | null;
    method: string | null;
    decided_at: string | null;
  }[];
}

/** Meetings and lessons around now: what "today" lists. */
export interface Upcoming {
  kind: 'lesson' | 'meeting';
  id: string;
  starts_at: string;
  ends_at: string;
  title: string;
  status: string;
  booking?: Booking;
  cls?: ClassView;
}

/** A booked lesson as an item of the upcoming list (and of the Join button); titled by its length by default. */
export function lessonItem(b: Booking, title = `${b.minutes}-minute lesson`): Upcoming {
  return { kind: 'lesson', id: b.id, starts_at: b.starts_at, ends_at: b.ends_at, title, status: b.status, booking: b };
}

/** A class meeting as an item of the upcoming list (and of the Join button). */
export function meetingItem(c: ClassView, m: Meeting): Upcoming {
  return {
    kind: 'meeting',
    id: m.id,
    starts_at: m.starts_at,
    ends_at: m.ends_at,
    title: c.title,
    status: c.status,
    cls: c,
  };
}

/** How long after its end a lesson or meeting is still listed (the rooms stay open a while after). */
export const LISTED_AFTER_END_MS = 30 * 60_000;

/** The caller's lessons and class meetings from a little before now to `days` ahead, earliest first. */
export async function upcoming(
  api: Api,
  days = 7,
  onError: (e: unknown) => void = () => {},
): Promise<{ items: Upcoming[]; bookings: Booking[]; classes: ClassView[] }> {
  const since = new Date(Date.now() - LISTED_AFTER_END_MS - 6 * 3600_000).toISOString();
  const until = new Date(Date.now() + days * 86400_000).toISOString();
  const [bookings, classes] = await Promise.allSettled([
    api.get<Booking[]>(`/bookings?from=${encodeURIComponent(since)}&to=${encodeURIComponent(until)}&limit=200`),
    api
      .get<ClassInfo[]>('/classes?status=active')
      .then((cs) => Promise.all(cs.map((c) => api.get<ClassView>(`/classes/${c.id}`)))),
  ]);
  const items: Upcoming[] = [];
  const alive = (end: string) => Date.parse(end) + LISTED_AFTER_END_MS > Date.now();
  const bs = bookings.status === 'fulfilled' ? bookings.value : (onError(bookings.reason), []);
  const cs = classes.status === 'fulfilled' ? classes.value : (onError(classes.reason), []);
  for (const b of bs) {
    if (!alive(b.ends_at) || ['expired', 'cancelled_by_student', 'cancelled_by_tutor', 'refunded'].includes(b.status))
      continue;
    items.push(lessonItem(b));
  }
  for (const c of cs) {
    for (const m of c.meetings) {
      if (!alive(m.ends_at) || Date.parse(m.starts_at) > Date.parse(until)) continue;
      items.push(meetingItem(c, m));
    }
  }
  items.sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  return { items, bookings: bs, classes: cs };
}

/** The tenant's booking policy, loaded once per page load (any member may read it). */
let policyCache: Promise<BookingPolicy> | null = null;
export function bookingPolicy(api: Api, me: User): Promise<BookingPolicy> {
  policyCache ??= api.get<BookingPolicy>(`/tenants/${me.tenant_id}/booking-policy`).catch((e) => {
    policyCache = null;
    throw e;
  });
  return policyCache;
}

/** What the app needs to know of the server before anyone signs in (`GET /client-config`). */
export interface ClientConfig {
  /** `stripe`: card payments in the page with Stripe.js; `offline`: staff record the money. */
  payments: 'stripe' | 'offline';
  /** Stripe.js's key, with `payments` = `stripe` (null when the server has none). */
  stripe_publishable_key: string | null;
  /** `embedded`, `livekit` or `none`. */
  media: string;
}

/** The server's client config, loaded once per page load (a failure is retried on the next call). */
let configCache: Promise<ClientConfig> | null = null;
export function clientConfig(api: Api): Promise<ClientConfig> {
  configCache ??= api.get<ClientConfig>('/client-config').catch((e) => {
    configCache = null;
    throw e;
  });
  return configCache;
}

/** The tenant's bookable tutors, by name (any member may read them). */
export function tutorDirectory(api: Api): Promise<TutorCard[]> {
  return api.get<TutorCard[]>('/tutors');
}

/** A student's enrollments with their credits left (the student, their parents, staff). */
export function enrollmentsOf(api: Api, studentId: string): Promise<Enrollment[]> {
  return api.get<Enrollment[]>(`/users/${studentId}/enrollments`);
}

/** Display names by user id, loaded once per sign-in (a name that can't be read is remembered as null). */
const names = new Map<string, Promise<string | null>>();

/**
 * The display names of `ids` that the caller may read (`GET /users/{id}`: staff anyone, parents their
 * children, tutors their students), by id; the others are left out.
 */
export async function userNames(api: Api, ids: Iterable<string>): Promise<Map<string, string>> {
  const wanted = [...new Set(ids)];
  for (const id of wanted) {
    if (!names.has(id))
      names.set(
        id,
        api.get<User>(`/users/${id}`).then(
          (u) => u.display_name,
          () => null,
        ),
      );
  }
  const out = new Map<string, string>();
  await Promise.all(
    wanted.map(async (id) => {
      const name = await names.get(id);
      if (name) out.set(id, name);
    }),
  );
  return out;
}

/** Forgets cached tenant data (at sign-out). */
export function forgetCaches(): void {
  policyCache = null;
  names.clear();
}

export const SCOPE_NAMES: Record<Scope, string> = {
  live_video: 'Live video lessons',
  chat: 'Chat in lessons',
  recording: 'Being recorded',
};

export const SCOPE_HELP: Record<Scope, string> = {
  live_video: 'take part in live video lessons and class meetings, and book or enrol in them',
  chat: 'write in the lesson chat, raise a hand and react',
  recording: 'appear in recordings of lessons and meetings',
};

/** What revoking a scope does, said before the parent confirms. */
export const REVOKE_CONSEQUENCE: Record<Scope, string> = {
  live_video:
    'takes effect at once: your child is removed from any lesson or class meeting they are in right now, and can’t join live video, book lessons or enrol until consent is given again.',
  chat: 'takes effect at once: your child is taken out of any live room they are in; when they come back they can watch and listen but can’t chat, raise a hand or react.',
  recording: 'takes effect at once: your child is no longer recorded in lessons and meetings from now on.',
};

/** The verification methods the API accepts for a grant (orchestrator/src/consent, COPPA 16 CFR 312.5(b)). */
export const METHODS: [string, string][] = [
  ['signed_form', 'A signed consent form (returned by post, fax or scan)'],
  ['credit_card', 'A card payment that notifies the account holder'],
  ['video_call', 'A video call with the school’s trained staff'],
  ['government_id', 'A government-issued ID, checked and then deleted'],
  ['knowledge_based', 'Knowledge-based questions only a parent could answer'],
  ['email_plus', 'E-mail plus a confirming step (only if nothing is shared with others)'],
];

/** The same methods, short (`verified by a signed form`). */
export const METHOD_SHORT: Record<string, string> = {
  signed_form: 'a signed form',
  credit_card: 'a card payment',
  video_call: 'a video call',
  government_id: 'a government ID',
  knowledge_based: 'knowledge questions',
  email_plus: 'e-mail plus',
};

export const BOOKING_STATUS: Record<string, string> = {
  hold: 'held for you',
  pending_payment: 'waiting for payment',
  confirmed: 'confirmed',
  in_progress: 'in progress',
  completed: 'completed',
  expired: 'expired',
  cancelled_by_student: 'cancelled by the student',
  cancelled_by_tutor: 'cancelled by the tutor',
  no_show_student: 'missed by the student',
  no_show_tutor: 'missed by the tutor',
  refunded: 'refunded',
};
