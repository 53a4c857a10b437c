// The parent's pages: their children; each consent request with its scopes, answered with the verification
// method the API requires; revoking a scope after being told what it does; and each child's consents,
// upcoming lessons and class meetings, attendance, credits, XP, badges and unlocked lessons.
//
// `#/consent/<request id>` opens one request (`GET /consent-requests/{id}`; the link a consent mail can carry);
// signing in keeps it. Credits left come from the child's enrollments (`GET /users/{id}/enrollments`).
// Times are in the parent's own zone (their settings', else the browser's), named on each page.

import { ApiError, idempotencyKey, type User } from '../api';
import { dateTime, el, relative, words, zoneNote } from '../dom';
import {
  METHODS,
  METHOD_SHORT,
  REVOKE_CONSEQUENCE,
  SCOPE_HELP,
  SCOPE_NAMES,
  enrollmentsOf,
  upcoming,
  type ClassInfo,
  type ClassLesson,
  type ConsentRequest,
  type ConsentState,
  type Enrollment,
  type Gamification,
  type Scope,
  type StudentReport,
  type Upcoming,
} from '../shell/model';
import { button, confirmPanel, empty, field, link, loading, pill, section, select, table, uid } from '../shell/ui';
import { agenda } from './home';
import type { Page, PageContext, UserEvent } from './types';

const PARENT: Page['roles'] = ['parent'];

const STATE_TEXT: Record<ConsentState['scopes'][0]['state'], string> = {
  granted: 'granted',
  denied: 'denied',
  revoked: 'revoked',
  none: 'not answered',
};

interface ConsentRecord {
  scope: Scope;
  parent_id: string;
  status: string;
  method: string | null;
  request_id: string | null;
  decided_at: string;
}

type FullState = ConsentState & { records: ConsentRecord[] };

function children(ctx: PageContext): Promise<User[]> {
  return ctx.api.get<User[]>(`/users/${ctx.me.id}/children`);
}

/** The parent's consent requests (newest first), every page of them. */
async function requests(ctx: PageContext, status?: 'pending' | 'answered'): Promise<ConsentRequest[]> {
  const all: ConsentRequest[] = [];
  let before: string | undefined;
  for (let i = 0; i < 20; i++) {
    const q = new URLSearchParams({ limit: '500', ...(status ? { status } : {}), ...(before ? { before } : {}) });
    const page = await ctx.api.get<{ requests: ConsentRequest[]; next_before?: string | null }>(
      `/consent-requests?${q}`,
    );
    all.push(...page.requests);
    if (!page.next_before) break;
    before = page.next_before;
  }
  return all;
}

/** `verified by a signed form`. */
function methodName(m: string | null): string {
  return m ? `verified by ${METHOD_SHORT[m] ?? words(m)}` : '';
}

function scopePill(state: ConsentState['scopes'][0]['state']): HTMLElement {
  const p = pill(STATE_TEXT[state], `consent-${state}`);
  p.dataset.state = state;
  return p;
}

// --- children ----------------------------------------------------------------------------------------

/** A push about one of the parent's children (the server adds `child_id` to every push a child gets) or about
 *  their consent. */
const aboutChildren = (e: UserEvent): boolean =>
  typeof e.child_id === 'string' || e.kind === 'consent_requested' || e.kind === 'consent';

/**
 * Renders a list page, then again in place (focus stays where it is) shortly after each relevant push, so
 * credits, attendance, XP and consent change on screen without a reload. Not for pages with a form being
 * filled in: a new render would drop what was typed. While a confirm step is open (the parent is reading what
 * a revocation does), the new render waits until it closes, so the page never moves under a decision.
 */
async function live(
  ctx: PageContext,
  render: (ctx: PageContext) => Promise<void>,
  relevant: (e: UserEvent) => boolean = aboutChildren,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let version = 0;
  const refresh = (): void => {
    if (ctx.root.querySelector('.confirm')) {
      timer = setTimeout(refresh, 500);
      return;
    }
    const mine = ++version;
    const root = el('div', { 'data-live': String(mine) });
    void render({ ...ctx, root })
      .then(() => {
        if (mine !== version) return;
        if (ctx.root.querySelector('.confirm')) timer = setTimeout(refresh, 500);
        else ctx.root.replaceChildren(...root.childNodes);
      })
      .catch(ctx.error);
  };
  ctx.onUserEvent((e) => {
    if (e.kind !== 'resync' && !relevant(e)) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  await render(ctx);
}

async function renderChildren(ctx: PageContext): Promise<void> {
  const list = el('div', {}, loading());
  ctx.root.append(list);
  const [kids, pending] = await Promise.all([children(ctx), requests(ctx, 'pending')]);
  if (!kids.length) {
    list.replaceChildren(empty('No children are linked to your account yet. Ask the school to link them.'));
    return;
  }
  const cards = await Promise.all(
    kids.map(async (c) => {
      const state = await ctx.api.get<ConsentState>(`/users/${c.id}/consents`).catch(() => null);
      const waiting = pending.filter((r) => r.child_id === c.id);
      return el(
        'li',
        { class: 'card child', 'data-child': c.id },
        el('h2', {}, link(`/children/${c.id}`, c.display_name)),
        c.minor
          ? el('p', {}, 'Under the school’s consent age: live lessons need your consent.')
          : el('p', { class: 'muted' }, 'Old enough not to need a parent’s consent.'),
        state
          ? el(
              'ul',
              { class: 'consent-summary' },
              ...state.scopes.map((s) => el('li', {}, `${SCOPE_NAMES[s.scope]}: `, scopePill(s.state))),
            )
          : null,
        waiting.length
          ? el(
              'p',
              { class: 'attention' },
              `${waiting.length} consent request(s) waiting for you. `,
              link(`/consent/${waiting[0].id}`, 'Review', { class: 'button-link primary' }),
            )
          : null,
        el('p', {}, link(`/children/${c.id}`, `Lessons, attendance and progress of ${c.display_name}`)),
      );
    }),
  );
  list.replaceChildren(el('ul', { class: 'cards' }, ...cards));
}

async function renderChild(ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  let child: User;
  try {
    child = await ctx.api.get<User>(`/users/${id}`);
  } catch (e) {
    ctx.error(e);
    ctx.root.append(el('p', {}, link('/children', 'Back to your children')));
    return;
  }
  ctx.setTitle(child.display_name);
  const consent = el('div', {}, loading());
  const coming = el('div');
  const attendance = el('div');
  const progress = el('div');
  ctx.root.append(zoneNote(), consent, coming, attendance, progress);

  const loadConsent = async () => {
    const [state, pending] = await Promise.all([
      ctx.api.get<FullState>(`/users/${id}/consents`),
      requests(ctx, 'pending').then((rs) => rs.filter((r) => r.child_id === id)),
    ]);
    const slot = el('div', { class: 'action-slot' });
    const rows = state.scopes.map((s) => [
      el(
        'span',
        {},
        el('strong', {}, SCOPE_NAMES[s.scope]),
        el('span', { class: 'muted small' }, ` — ${SCOPE_HELP[s.scope]}`),
      ),
      el('span', { 'data-scope': s.scope }, scopePill(s.state)),
      s.state === 'granted'
        ? `${methodName(s.method).replace(/^v/, 'V')}${s.decided_at ? `, ${dateTime(s.decided_at)}` : ''}`
        : s.decided_at
          ? dateTime(s.decided_at)
          : '',
      s.state === 'granted'
        ? button(
            'Revoke',
            () =>
              slot.replaceChildren(
                confirmPanel({
                  title: `Revoke “${SCOPE_NAMES[s.scope]}”?`,
                  body: [
                    el(
                      'p',
                      { class: 'consequence', 'data-scope': s.scope },
                      `Revoking ${SCOPE_NAMES[s.scope].toLowerCase()} for ${child.display_name} ${REVOKE_CONSEQUENCE[s.scope]}`,
                    ),
                    el(
                      'p',
                      { class: 'muted' },
                      'To give consent again later, ask the school for a new consent request.',
                    ),
                  ],
                  confirm: 'Revoke consent',
                  cancel: 'Keep consent',
                  danger: true,
                  onConfirm: async () => {
                    await ctx.api.post(
                      `/users/${id}/consents/revoke`,
                      { scopes: [s.scope] },
                      { idempotencyKey: idempotencyKey() },
                    );
                    await loadConsent();
                  },
                }),
              ),
            { 'data-revoke': s.scope, 'aria-label': `Revoke ${SCOPE_NAMES[s.scope]}` },
          )
        : '',
    ]);
    consent.replaceChildren(
      section(
        'Consent',
        state.minor
          ? el('p', {}, `${child.display_name} is under the school’s consent age, so each of these needs your consent.`)
          : el(
              'p',
              { class: 'muted' },
              `${child.display_name} is old enough not to need consent; what is recorded is kept.`,
            ),
        table(['What', 'State', 'How and when', ''], rows),
        slot,
        pending.length
          ? el(
              'p',
              { class: 'attention' },
              'Waiting for your answer: ',
              ...pending.map((r) =>
                link(`/consent/${r.id}`, r.scopes.map((s) => SCOPE_NAMES[s]).join(', '), {
                  class: 'button-link primary',
                }),
              ),
            )
          : null,
      ),
    );
  };

  const loadRest = async () => {
    const [bookingsAndClasses, report, enrollments, g, lessons] = await Promise.all([
      upcoming(ctx.api, 14, ctx.error),
      ctx.api.get<StudentReport>(`/users/${id}/attendance`).catch((e) => (ctx.error(e), null)),
      enrollmentsOf(ctx.api, id).catch((e) => (ctx.error(e), [] as Enrollment[])),
      ctx.api.get<Gamification>(`/users/${id}/gamification`).catch((e) => (ctx.error(e), null)),
      ctx.api.get<ClassLesson[]>(`/users/${id}/lessons`).catch(() => [] as ClassLesson[]),
    ]);
    const classIds = new Set([
      ...enrollments.map((e) => e.class_id),
      ...(report?.records.map((r) => r.class_id) ?? []),
    ]);
    const items = bookingsAndClasses.items.filter((i: Upcoming) =>
      i.booking ? i.booking.student_id === id : i.cls ? classIds.has(i.cls.id) : false,
    );
    coming.replaceChildren(
      section('Coming up (next two weeks)', agenda(ctx, items, undefined, 'Nothing scheduled in the next two weeks.')),
    );

    const classes: ClassInfo[] = bookingsAndClasses.classes.filter((c) => classIds.has(c.id));
    const marks = report?.records ?? [];
    // Every enrollment of the child with its balance (running classes first).
    const order = ['active', 'draft', 'completed', 'cancelled'];
    const credits = [...enrollments]
      .sort((a, b) => order.indexOf(a.class_status) - order.indexOf(b.class_status))
      .map((e) => {
        const total = bookingsAndClasses.classes.find((c) => c.id === e.class_id)?.total_meetings;
        return [
          e.class_title,
          el('strong', { 'data-class': e.class_id, 'data-credits': String(e.balance) }, String(e.balance)),
          total ? `${e.attended} of ${total}` : String(e.attended),
          pill(words(e.class_status), `status-${e.class_status}`),
        ];
      });
    const past = marks
      .filter((r) => Date.parse(r.meeting_starts_at) <= Date.now())
      .reverse()
      .slice(0, 20);
    attendance.replaceChildren(
      section(
        'Attendance',
        report
          ? el(
              'p',
              { class: 'tally' },
              `Present ${report.present} · late ${report.late} · absent ${report.absent} · excused ${report.excused}` +
                (report.unmarked ? ` · not marked yet ${report.unmarked}` : ''),
            )
          : null,
        past.length
          ? table(
              ['Meeting', 'Class', 'Attendance'],
              past.map((r) => [dateTime(r.meeting_starts_at), r.class_title, r.status ?? 'not marked']),
            )
          : empty('No meetings yet.'),
      ),
      section(
        'Credits left',
        credits.length
          ? table(['Class', 'Credits left', 'Meetings attended', 'Class status'], credits)
          : empty('Not enrolled in any class.'),
        el(
          'p',
          { class: 'muted small' },
          'From the school’s records: each meeting attended (present or late) uses one credit, and the school’s own adjustments are included.',
        ),
      ),
    );
    progress.replaceChildren(
      section(
        'Progress',
        g ? el('p', { class: 'big' }, `Level ${g.level} · ${g.xp} XP`) : null,
        g && g.badges.length
          ? el(
              'ul',
              { class: 'badges' },
              ...g.badges.map((b) =>
                el(
                  'li',
                  { class: 'badge', 'data-badge': b.badge },
                  words(b.badge),
                  el('span', { class: 'muted small' }, ` · ${dateTime(b.awarded_at)}`),
                ),
              ),
            )
          : empty('No badges yet.'),
        g && g.streaks.length
          ? el(
              'p',
              {},
              `Streaks: ${g.streaks.map((s) => `${classes.find((c) => c.id === s.class_id)?.title ?? 'a class'} ${s.streak}`).join(', ')}`,
            )
          : null,
        el('h3', {}, 'Unlocked lessons'),
        lessons.length
          ? el(
              'ul',
              { class: 'items' },
              ...lessons.map((l) =>
                el('li', {}, `${l.title} `, l.completed ? pill('completed', 'status-completed') : pill('not done yet')),
              ),
            )
          : empty('None unlocked yet.'),
      ),
    );
  };
  await Promise.all([loadConsent().catch(ctx.error), loadRest().catch(ctx.error)]);
}

// --- consent requests --------------------------------------------------------------------------------

async function renderRequests(ctx: PageContext): Promise<void> {
  const [all, kids] = await Promise.all([requests(ctx), children(ctx)]);
  const name = (id: string) => kids.find((k) => k.id === id)?.display_name ?? 'your child';
  const pending = all.filter((r) => r.status === 'pending');
  const answered = all.filter((r) => r.status === 'answered');
  const row = (r: ConsentRequest) =>
    el(
      'li',
      { 'data-consent-request': r.id, class: r.status === 'pending' ? 'attention' : '' },
      el('strong', {}, name(r.child_id)),
      `: ${r.scopes.map((s) => SCOPE_NAMES[s]).join(', ')} `,
      el(
        'span',
        { class: 'muted' },
        r.status === 'pending'
          ? `(asked ${relative(r.created_at)})`
          : `(answered ${dateTime(r.answered_at ?? r.created_at)})`,
      ),
      ' ',
      link(`/consent/${r.id}`, r.status === 'pending' ? 'Review and answer' : 'See the answer', {
        class: r.status === 'pending' ? 'button-link primary' : 'button-link',
      }),
    );
  ctx.root.append(
    section(
      'Waiting for your answer',
      pending.length ? el('ul', { class: 'items' }, ...pending.map(row)) : empty('Nothing is waiting for you.'),
    ),
    section('Answered', answered.length ? el('ul', { class: 'items' }, ...answered.map(row)) : empty('None yet.')),
  );
}

async function renderRequest(ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  let r: ConsentRequest;
  let kids: User[];
  try {
    [r, kids] = await Promise.all([ctx.api.get<ConsentRequest>(`/consent-requests/${id}`), children(ctx)]);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
    ctx.root.append(
      el(
        'p',
        { class: 'attention', 'data-consent-missing': id },
        'This consent request wasn’t found among those sent to you. It may be addressed to another parent, or the link may be incomplete.',
      ),
      el('p', {}, link('/consent', 'See your consent requests')),
    );
    return;
  }
  const child = kids.find((k) => k.id === r.child_id);
  const childName = child?.display_name ?? 'your child';
  ctx.setTitle(`Consent for ${childName}`);
  const body = el('div');
  ctx.root.append(body);

  const showAnswer = async () => {
    const state = await ctx.api.get<FullState>(`/users/${r.child_id}/consents`);
    const mine = state.records.filter((x) => x.request_id === r.id);
    body.replaceChildren(
      section(
        'Your answer',
        el(
          'p',
          { role: 'status' },
          `This request was answered${r.answered_at ? ` on ${dateTime(r.answered_at)}` : ''}.`,
        ),
        table(
          ['What', 'Your answer', 'Now'],
          r.scopes.map((s) => {
            const rec = mine.find((x) => x.scope === s);
            const now = state.scopes.find((x) => x.scope === s);
            return [
              SCOPE_NAMES[s],
              rec ? `${words(rec.status)}${rec.method ? `, ${methodName(rec.method)}` : ''}` : 'not answered',
              el('span', { 'data-scope': s }, scopePill(now?.state ?? 'none')),
            ];
          }),
        ),
        el('p', {}, link(`/children/${r.child_id}`, `${childName}’s consents, lessons and progress`)),
      ),
    );
  };
  if (r.status === 'answered') {
    await showAnswer();
    return;
  }

  // The decision form: for each requested scope, grant or deny (or leave it for later); how the parent was verified.
  const choices = r.scopes.map((s) => {
    const name = `scope-${s}`;
    const legend = el('legend', {}, SCOPE_NAMES[s]);
    const opt = (value: string, text: string, checked = false) => {
      const inputId = uid('r');
      const i = el('input', { type: 'radio', name, value, id: inputId });
      i.checked = checked;
      return el('div', { class: 'choice' }, i, el('label', { for: inputId }, text));
    };
    return {
      scope: s,
      set: el(
        'fieldset',
        { class: 'scope-choice', 'data-scope': s },
        legend,
        el('p', { class: 'muted small' }, `Lets ${childName} ${SCOPE_HELP[s]}.`),
        opt('grant', 'I consent'),
        opt('deny', 'I do not consent'),
        opt('later', 'Decide later', true),
      ),
    };
  });
  const method = select('method', [['', 'Choose…'], ...METHODS]);
  const form = el(
    'form',
    { class: 'consent-form' },
    el(
      'p',
      {},
      `${childName} is under the school’s consent age. The school asks for your consent for the following. You can revoke it at any time, and it takes effect at once.`,
    ),
    ...choices.map((c) => c.set),
    field(
      'How were you verified as the parent?',
      method,
      'Required when you consent: the school records the method used to check that you are the parent (COPPA).',
    ),
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Send my answer')),
  );
  form.onsubmit = async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const grant = choices.filter((c) => data.get(`scope-${c.scope}`) === 'grant').map((c) => c.scope);
    const deny = choices.filter((c) => data.get(`scope-${c.scope}`) === 'deny').map((c) => c.scope);
    if (!grant.length && !deny.length) {
      ctx.error(new Error('Choose “I consent” or “I do not consent” for at least one item.'));
      return;
    }
    if (grant.length && !method.value) {
      ctx.error({ code: 'method_required' });
      method.focus();
      return;
    }
    try {
      const out = await ctx.api.post<{ request: ConsentRequest }>(
        `/consent-requests/${r.id}/decision`,
        { grant, deny, ...(grant.length ? { method: method.value } : {}) },
        { idempotencyKey: idempotencyKey() },
      );
      Object.assign(r, out.request);
      await showAnswer();
    } catch (err) {
      ctx.error(err);
    }
  };
  body.replaceChildren(section(`What ${childName} needs`, form));
}

export const parentPages: Page[] = [
  { path: '/children', title: 'My children', roles: PARENT, nav: true, render: (ctx) => live(ctx, renderChildren) },
  {
    path: '/children/:id',
    title: 'Child',
    roles: PARENT,
    render: (ctx) => live(ctx, renderChild, (e) => e.child_id === ctx.params.id),
  },
  { path: '/consent', title: 'Consent requests', roles: PARENT, nav: true, render: (ctx) => live(ctx, renderRequests) },
  { path: '/consent/:id', title: 'Consent request', roles: PARENT, render: renderRequest },
];
