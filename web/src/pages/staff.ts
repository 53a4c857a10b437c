// Staff and admin pages: courses, classes (schedule, lifecycle, package, enrollments, credits), users and
// parent links, tutors, bookings (payments received, payouts paid by hand), consent requests, reports with
// CSV downloads, the booking policy, failed jobs, the mailbox and the audit log.
//
// Times are in the reader's own zone (their settings', else the browser's), named on each page; a class's meetings are entered on
// the class's clock (its time zone, named at the inputs).

import type { Page, PageContext } from './types';
import {
  allPages,
  badge,
  busy,
  button,
  confirmAction,
  csvButton,
  dateIn,
  Directory,
  field,
  h,
  input,
  isZone,
  link,
  listUsers,
  loading,
  money,
  note,
  onSubmit,
  pageRoot,
  percent,
  put,
  qs,
  readerZone,
  section,
  select,
  shortId,
  span,
  statusLine,
  table,
  type UserRow,
  utcToWall,
  wallToUtc,
  when,
  words,
  zoneList,
  zoneNote,
} from './forms';
import type { Booking, BookingPolicy, ClassInfo, ClassView, RosterEntry } from '../shell/model';
import { teachingSections } from './tutor';

const STAFF: PageContext['me']['role'][] = ['admin', 'staff'];
const ADMIN: PageContext['me']['role'][] = ['admin'];

interface Course {
  id: string;
  title: string;
  lessons: { id: string; position: number; title: string }[];
  created_at: string;
}

/** A sentence to show after the class page re-renders (activated, enrolled, ...). */
let flash = '';

const isAdmin = (ctx: PageContext) => ctx.me.role === 'admin';
const you = () => zoneNote(readerZone(), 'your zone');

// ---------------------------------------------------------------------------------------------------
// Courses (`GET /courses`: the tenant's courses by title, with how many lessons each has).

interface CourseSummary {
  id: string;
  title: string;
  lessons: number;
  created_at: string;
}

function listCourses(ctx: PageContext): Promise<CourseSummary[]> {
  return ctx.api.get<CourseSummary[]>('/courses');
}

async function renderCourses(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-courses');
  const title = input('title', { required: true, maxlength: 100, autocomplete: 'off' });
  const lessons = h('textarea', { name: 'lessons', rows: 6, required: true });
  const form = h(
    'form',
    { id: 'course-form', class: 'lc-card' },
    h('h2', {}, 'New course'),
    field('Course title', title),
    field('Lessons, one per line, in teaching order', lessons, '1 to 500 lessons.'),
    h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Create course')),
  );
  const list = h('div');
  root.append(form, list);
  onSubmit(ctx, form, async () => {
    const course = await ctx.api.post<Course>('/courses', {
      title: title.value,
      lessons: lessons.value
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .map((t) => ({ title: t })),
    });
    ctx.navigate(`/staff/courses/${course.id}`);
  });
  loading(list);
  const [classes, courses] = await Promise.all([ctx.api.get<ClassInfo[]>('/classes'), listCourses(ctx)]);
  list.replaceChildren(
    section(
      'All courses',
      you(),
      table(
        'Courses',
        ['Course', 'Lessons', 'Classes', 'Created'],
        courses.map((c) => [
          link(ctx, `/staff/courses/${c.id}`, c.title),
          String(c.lessons),
          String(classes.filter((x) => x.course_id === c.id).length),
          when(c.created_at, readerZone()),
        ]),
        { id: 'courses' },
      ),
    ),
  );
}

async function renderCourse(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-course');
  loading(root);
  const [course, classes] = await Promise.all([
    ctx.api.get<Course>(`/courses/${ctx.params.id}`),
    ctx.api.get<ClassInfo[]>('/classes'),
  ]);
  ctx.setTitle(course.title);
  root.replaceChildren(
    h('h2', {}, 'Lessons'),
    h('ol', { id: 'course-lessons' }, ...course.lessons.map((l) => h('li', {}, l.title))),
    section(
      'Classes teaching it',
      table(
        'Classes of this course',
        ['Class', 'Kind', 'Status'],
        classes
          .filter((c) => c.course_id === course.id)
          .map((c) => [link(ctx, `/staff/classes/${c.id}`, c.title), c.kind, badge(c.status)]),
      ),
      h('p', {}, link(ctx, `/staff/classes${qs({ course: course.id })}`, 'Create a class with this course')),
    ),
  );
}

// ---------------------------------------------------------------------------------------------------
// Classes

/** Rows of meetings to schedule: a start on the class's clock and a length. */
function meetingRows(zone: () => string): { box: HTMLElement; read: () => { starts_at: string; ends_at: string }[] } {
  const rows = h('div', { class: 'lc-meetings' });
  const add = (start?: string, minutes = 60) => {
    const n = rows.children.length + 1;
    const s = input('meeting_start', { type: 'datetime-local', required: true, value: start ?? '' });
    const len = input('meeting_minutes', { type: 'number', min: 5, max: 720, step: 5, required: true, value: minutes });
    const line = h('div', { class: 'lc-window lc-meeting' });
    const remove = button('Remove', () => line.remove(), { 'aria-label': `Remove meeting ${n}` });
    line.append(field(`Meeting ${n} starts`, s), field('Length (minutes)', len), remove);
    rows.append(line);
    return line;
  };
  const box = h(
    'div',
    {},
    rows,
    button('Add a meeting', () => {
      const last = [...rows.querySelectorAll<HTMLInputElement>('[name=meeting_start]')].pop()?.value;
      const next = last
        ? utcToWall(new Date(Date.parse(wallToUtc(last, 'UTC')) + 7 * 86_400_000).toISOString(), 'UTC')
        : undefined;
      add(next).querySelector('input')?.focus();
    }),
  );
  const read = () =>
    [...rows.querySelectorAll('.lc-meeting')].map((l) => {
      const start = l.querySelector<HTMLInputElement>('[name=meeting_start]')!.value;
      const minutes = Number(l.querySelector<HTMLInputElement>('[name=meeting_minutes]')!.value);
      const starts_at = wallToUtc(start, zone());
      return {
        starts_at,
        ends_at: new Date(Date.parse(starts_at) + minutes * 60_000).toISOString().replace('.000Z', 'Z'),
      };
    });
  return { box, read };
}

async function renderClasses(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-classes');
  loading(root);
  const [classes, dir, courses] = await Promise.all([
    ctx.api.get<ClassInfo[]>('/classes'),
    Directory.load(ctx.api),
    listCourses(ctx),
  ]);
  const tutors = dir.all().filter((u) => u.role === 'tutor');
  root.replaceChildren();

  // New class
  const kind = select('kind', [
    ['group', 'Group'],
    ['private', 'Private (one student)'],
  ]);
  const title = input('title', { required: true, maxlength: 100, autocomplete: 'off' });
  const course = select(
    'course_id',
    [
      ['', courses.length ? 'Choose a course…' : 'Create a course first'],
      ...courses.map((c): [string, string] => [c.id, c.title]),
    ],
    ctx.params.course ?? '',
    { required: true },
  );
  const instructor = select(
    'instructor_id',
    [['', 'Choose a tutor…'], ...tutors.map((t): [string, string] => [t.id, `${t.display_name} (${t.email})`])],
    '',
    { required: true },
  );
  const total = input('total_meetings', { type: 'number', min: 1, max: 500, required: true, value: 10 });
  const capacity = input('capacity', { type: 'number', min: 1, max: 10000, value: 10 });
  const capacityField = field('Capacity (students)', capacity);
  const zone = input('timezone', { required: true, list: 'lc-zones-class', value: readerZone(), autocomplete: 'off' });
  const zoneLabel = h('span', {}, zone.value);
  zone.addEventListener('input', () => (zoneLabel.textContent = zone.value));
  kind.addEventListener('change', () => {
    capacityField.hidden = kind.value === 'private';
    capacity.required = kind.value === 'group';
  });
  const meetings = meetingRows(() => zone.value.trim());
  const form = h(
    'form',
    { id: 'class-form', class: 'lc-card' },
    h('h2', {}, 'New class'),
    h(
      'div',
      { class: 'lc-grid' },
      field('Kind', kind),
      field('Title', title),
      field('Course', course),
      field('Instructor', instructor),
      field('Package (meetings and credits per student)', total),
      capacityField,
      field('Class time zone', zone, 'Meetings below are entered on this clock.'),
    ),
    zoneList('lc-zones-class'),
    h('h3', {}, 'Meetings (on the class’s clock: ', zoneLabel, ')'),
    note('You can add meetings later too, while the class is a draft (private classes: any time).'),
    meetings.box,
    h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Create class (draft)')),
  );
  onSubmit(ctx, form, async () => {
    if (!isZone(zone.value.trim())) throw new Error(`“${zone.value}” is not a time zone, e.g. Europe/Berlin.`);
    const cls = await ctx.api.post<ClassView>('/classes', {
      kind: kind.value,
      title: title.value,
      course_id: course.value,
      instructor_id: instructor.value,
      total_meetings: Number(total.value),
      capacity: kind.value === 'group' ? Number(capacity.value) : undefined,
      timezone: zone.value.trim(),
      meetings: meetings.read(),
    });
    ctx.navigate(`/staff/classes/${cls.id}`);
  });

  // List
  const status = select(
    'status',
    [
      ['', 'All'],
      ['draft', 'Draft'],
      ['active', 'Active'],
      ['completed', 'Completed'],
      ['cancelled', 'Cancelled'],
    ],
    ctx.params.status ?? '',
  );
  status.addEventListener('change', () => ctx.navigate(`/staff/classes${qs({ status: status.value })}`));
  const shown = classes.filter((c) => !status.value || c.status === status.value);
  const views = await Promise.all(shown.map((c) => ctx.api.get<ClassView>(`/classes/${c.id}`)));
  const now = Date.now();
  root.append(
    section(
      'All classes',
      you(),
      h('div', { class: 'lc-inline' }, field('Status', status)),
      table(
        'Classes',
        ['Class', 'Kind', 'Status', 'Instructor', 'Students', 'Meetings', 'Next meeting'],
        views.map((c) => {
          const next = c.meetings.find((m) => Date.parse(m.ends_at) > now);
          return [
            link(ctx, `/staff/classes/${c.id}`, c.title),
            c.kind,
            badge(c.status),
            dir.name(c.instructor_id),
            c.capacity ? `${c.enrolled} / ${c.capacity}` : String(c.enrolled),
            `${c.meetings.length} of ${c.total_meetings}`,
            next ? h('span', { class: 'lc-nowrap' }, when(next.starts_at, readerZone())) : '—',
          ];
        }),
        { id: 'classes' },
      ),
    ),
    form,
  );
}

async function renderClass(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-class');
  loading(root);
  const id = ctx.params.id;
  const [cls, dir] = await Promise.all([ctx.api.get<ClassView>(`/classes/${id}`), Directory.load(ctx.api)]);
  const course = await ctx.api.get<Course>(`/courses/${cls.course_id}`).catch(() => null);
  ctx.setTitle(cls.title);
  const tz = readerZone();
  const reload = (message: string) => {
    flash = message;
    ctx.navigate(`/staff/classes/${id}`);
  };
  const saved = statusLine();
  saved.textContent = flash;
  flash = '';
  const ended = cls.status === 'completed' || cls.status === 'cancelled';

  const transition = async (b: HTMLButtonElement, action: 'activate' | 'complete' | 'cancel') => {
    const texts = {
      activate: [
        `Activate ${cls.title}?`,
        'Activate',
        cls.kind === 'group'
          ? 'A group class takes no more enrollments once active, and its package and schedule are fixed.'
          : 'Students can join the meetings; more meetings can still be added.',
      ],
      complete: [`Complete ${cls.title}?`, 'Complete the class', 'Attendance can then be corrected by staff only.'],
      cancel: [
        `Cancel ${cls.title}?`,
        'Cancel the class',
        'Every student’s remaining credits are refunded. This can’t be undone.',
      ],
    }[action];
    if (!(await confirmAction(texts[0], texts[1], texts[2]))) return;
    await busy(ctx, b, async () => {
      const out = await ctx.api.post<ClassView>(`/classes/${id}/${action}`);
      reload(`The class is ${out.status}.`);
    });
  };
  const actions = h('div', { class: 'lc-actions', id: 'class-actions' });
  if (cls.status === 'draft')
    actions.append(
      button('Activate', (ev) => transition(ev.currentTarget as HTMLButtonElement, 'activate'), {
        class: 'lc-primary',
        id: 'activate',
      }),
    );
  if (cls.status === 'active')
    actions.append(
      button('Complete', (ev) => transition(ev.currentTarget as HTMLButtonElement, 'complete'), { id: 'complete' }),
    );
  if (!ended)
    actions.append(
      button('Cancel class', (ev) => transition(ev.currentTarget as HTMLButtonElement, 'cancel'), {
        class: 'lc-danger',
        id: 'cancel',
      }),
    );

  root.replaceChildren(
    h(
      'dl',
      { class: 'lc-kv', id: 'class-summary', 'data-status': cls.status },
      h('dt', {}, 'Status'),
      h('dd', {}, badge(cls.status)),
      h('dt', {}, 'Kind'),
      h('dd', {}, cls.kind),
      h('dt', {}, 'Course'),
      h('dd', {}, course ? link(ctx, `/staff/courses/${course.id}`, course.title) : shortId(cls.course_id)),
      h('dt', {}, 'Instructor'),
      h('dd', {}, link(ctx, `/tutors/${cls.instructor_id}/lessons`, dir.name(cls.instructor_id))),
      h('dt', {}, 'Package'),
      h('dd', {}, `${cls.total_meetings} meetings; ${cls.meetings.length} scheduled`),
      h('dt', {}, 'Students'),
      h('dd', {}, cls.capacity ? `${cls.enrolled} of ${cls.capacity}` : String(cls.enrolled)),
      h('dt', {}, 'Class time zone'),
      h('dd', {}, cls.timezone),
    ),
    actions,
    saved,
    you(),
  );

  // Meetings: the schedule is shown with attendance (teachingSections); staff add meetings under it.
  const canAddMeetings = cls.status === 'draft' || (cls.kind === 'private' && cls.status === 'active');
  const scheduleExtra = h('div');
  if (canAddMeetings && cls.meetings.length < cls.total_meetings) {
    const rows = meetingRows(() => cls.timezone);
    const form = h(
      'form',
      { class: 'lc-card', id: 'add-meetings' },
      h('h3', {}, `Add meetings (on the class’s clock: ${cls.timezone})`),
      rows.box,
      h('div', { class: 'lc-actions' }, h('button', { type: 'submit' }, 'Add meetings')),
    );
    onSubmit(ctx, form, async () => {
      const list = rows.read();
      if (!list.length) throw new Error('Add at least one meeting first.');
      await ctx.api.post(`/classes/${id}/meetings`, list);
      reload(`Added ${list.length} meeting${list.length === 1 ? '' : 's'}.`);
    });
    scheduleExtra.append(form);
  } else if (canAddMeetings) {
    scheduleExtra.append(note('Every meeting of the package is scheduled; enlarge the package to add more.'));
  }

  // Package
  const canChangePackage = cls.status === 'draft' || (cls.kind === 'private' && cls.status === 'active');
  if (canChangePackage) {
    const total = input('total_meetings', {
      type: 'number',
      min: 1,
      max: 500,
      required: true,
      value: cls.total_meetings,
    });
    const form = h(
      'form',
      { class: 'lc-inline lc-card', id: 'package-form' },
      field(
        'Package (meetings)',
        total,
        cls.enrolled ? 'Enrolled students get the added credits; it can’t shrink now.' : '',
      ),
      h('button', { type: 'submit' }, 'Change package'),
    );
    onSubmit(ctx, form, async () => {
      const out = await put<ClassView>(ctx.api, `/classes/${id}/package`, { total_meetings: Number(total.value) });
      reload(`The package is now ${out.total_meetings} meetings.`);
    });
    root.append(section('Package', form));
  }

  // Roster, enrollments, credits
  const roster = await ctx.api.get<RosterEntry[]>(`/classes/${id}/roster`);
  const rosterBox = h('div');
  const ledgerBox = h('div', { id: 'ledger', 'aria-live': 'polite' });
  const adjust = (r: RosterEntry) => {
    const delta = input('delta', { type: 'number', required: true, min: -10000, max: 10000, step: 1 });
    const reason = input('reason', { required: true, maxlength: 500, autocomplete: 'off' });
    const kind = select('kind', [
      ['manual_adjustment', 'Adjustment'],
      ['refund', 'Refund (removes credits)'],
    ]);
    const negative = input('allow_negative', { type: 'checkbox' });
    const form = h(
      'form',
      { class: 'lc-card', id: 'adjust-form', 'data-enrollment': r.enrollment_id },
      h('h3', {}, `Adjust ${r.display_name}’s credits (now ${r.balance})`),
      h(
        'div',
        { class: 'lc-grid' },
        field('Credits to add (negative to remove)', delta),
        field('Reason', reason, 'Required; kept in the ledger and the audit log.'),
        field('Kind', kind),
      ),
      h('label', { class: 'lc-check' }, negative, ' Allow the balance to go below zero (audited override)'),
      h(
        'div',
        { class: 'lc-actions' },
        h('button', { type: 'submit', class: 'lc-primary' }, 'Adjust credits'),
        button('Close', () => ledgerBox.replaceChildren()),
      ),
    );
    onSubmit(ctx, form, async () => {
      const d = Number(delta.value);
      if (
        d < 0 &&
        !(await confirmAction(`Remove ${-d} credit(s) from ${r.display_name}?`, 'Remove credits', reason.value))
      )
        return;
      const entry = await ctx.api.post<{ balance_after: number }>(`/enrollments/${r.enrollment_id}/adjustments`, {
        delta: d,
        reason: reason.value,
        kind: kind.value,
        allow_negative: negative.checked,
      });
      r.balance = entry.balance_after;
      saved.textContent = `${r.display_name} now has ${entry.balance_after} credits.`;
      paintRoster();
      await showLedger(r);
    });
    ledgerBox.replaceChildren(form);
    delta.focus();
  };
  const showLedger = async (r: RosterEntry) => {
    const ledger = await ctx.api.get<{
      balance: number;
      entries: {
        kind: string;
        delta: number;
        balance_after: number;
        reason: string | null;
        reference: string | null;
        actor_id: string | null;
        created_at: string;
      }[];
    }>(`/enrollments/${r.enrollment_id}/ledger`);
    ledgerBox.append(
      section(
        `${r.display_name}’s credits: ${ledger.balance}`,
        table(
          'Credit history, oldest first',
          ['When', 'Entry', 'Change', 'Balance', 'Reason', 'By'],
          ledger.entries.map((e) => [
            h('span', { class: 'lc-nowrap' }, when(e.created_at, tz)),
            words(e.kind),
            h('span', { class: 'lc-num' }, e.delta > 0 ? `+${e.delta}` : String(e.delta)),
            h('span', { class: 'lc-num' }, String(e.balance_after)),
            [e.reason ?? '', e.reference ? ` (${e.reference})` : ''].join(''),
            dir.name(e.actor_id),
          ]),
          { id: 'ledger-entries' },
        ),
      ),
    );
  };
  const paintRoster = () =>
    rosterBox.replaceChildren(
      table(
        'Enrolled students',
        ['Student', 'E-mail', 'Credits', 'Attended', ''],
        roster.map((r) => [
          [r.display_name, r.minor ? h('span', { class: 'lc-note' }, ' (minor)') : ''],
          r.email,
          h('span', { class: 'lc-num' }, String(r.balance)),
          h('span', { class: 'lc-num' }, String(r.attended)),
          [
            button('Adjust credits', () => adjust(r), { 'aria-label': `Adjust ${r.display_name}’s credits` }),
            button(
              'Credit history',
              (ev) =>
                busy(ctx, ev.currentTarget as HTMLButtonElement, async () => {
                  ledgerBox.replaceChildren();
                  await showLedger(r);
                }),
              { 'aria-label': `${r.display_name}’s credit history` },
            ),
          ],
        ]),
        { id: 'roster' },
      ),
    );
  paintRoster();
  const enrollSection = section('Students', rosterBox, ledgerBox);
  const open = (cls.kind === 'group' && cls.status === 'draft') || (cls.kind === 'private' && !ended);
  if (open) {
    const enrolled = new Set(roster.map((r) => r.student_id));
    const students = dir.all().filter((u) => u.role === 'student' && !enrolled.has(u.id));
    const student = select(
      'student_id',
      [
        ['', 'Choose a student…'],
        ...students.map((s): [string, string] => [
          s.id,
          `${s.display_name} (${s.email})${s.minor ? ', minor: needs consent' : ''}`,
        ]),
      ],
      '',
      { required: true },
    );
    const reference = input('reference', { maxlength: 200, autocomplete: 'off' });
    const form = h(
      'form',
      { class: 'lc-card', id: 'enroll-form' },
      h('h3', {}, `Enroll a student (gets ${cls.total_meetings} credits)`),
      h(
        'div',
        { class: 'lc-grid' },
        field('Student', student),
        field('Payment or grant reference', reference, 'Optional, e.g. an invoice number.'),
      ),
      h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Enroll')),
    );
    onSubmit(ctx, form, async () => {
      const out = await ctx.api.post<{ balance: number }>(`/classes/${id}/enrollments`, {
        student_id: student.value,
        reference: reference.value || undefined,
      });
      reload(`Enrolled ${dir.name(student.value)} with ${out.balance} credits.`);
    });
    enrollSection.append(form);
  } else {
    enrollSection.append(
      note(
        cls.kind === 'group'
          ? 'Enrollment is closed: a group class enrolls only while it is a draft.'
          : 'The class has ended.',
      ),
    );
  }
  root.append(enrollSection);

  await teachingSections(ctx, root, cls, tz, { classClock: true, scheduleExtra });
}

// ---------------------------------------------------------------------------------------------------
// Users and parent links

const ROLE_NAMES: [string, string][] = [
  ['student', 'Student'],
  ['parent', 'Parent'],
  ['tutor', 'Tutor'],
  ['staff', 'Staff'],
  ['admin', 'Admin'],
];

async function renderUsers(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-users');
  const role = select('role', [['', 'All'], ...ROLE_NAMES], ctx.params.role ?? '');
  role.addEventListener('change', () => ctx.navigate(`/staff/users${qs({ role: role.value })}`));

  const creatable = isAdmin(ctx) ? ROLE_NAMES : ROLE_NAMES.filter(([r]) => r !== 'staff' && r !== 'admin');
  const newRole = select('role', creatable, 'student');
  const birth = input('birth_date', { type: 'date', required: true, max: dateIn(readerZone()) });
  const birthField = field('Birth date', birth, 'Students only: consent rules depend on it.');
  newRole.addEventListener('change', () => {
    birthField.hidden = newRole.value !== 'student';
    birth.required = newRole.value === 'student';
  });
  const email = input('email', { type: 'email', required: true, autocomplete: 'off' });
  const name = input('display_name', { required: true, maxlength: 100, autocomplete: 'off' });
  const password = input('password', { type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const form = h(
    'form',
    { class: 'lc-card', id: 'user-form' },
    h('h2', {}, 'New user'),
    h(
      'div',
      { class: 'lc-grid' },
      field('Role', newRole),
      field('Name', name),
      field('E-mail', email),
      field('Initial password', password, '8 characters or more; tell the user to change it.'),
      birthField,
    ),
    h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Create user')),
  );
  onSubmit(ctx, form, async () => {
    const u = await ctx.api.post<UserRow>('/users', {
      email: email.value,
      display_name: name.value,
      role: newRole.value,
      password: password.value,
      birth_date: newRole.value === 'student' ? birth.value : undefined,
    });
    ctx.navigate(`/staff/users/${u.id}`);
  });

  const list = h('div');
  root.append(section('All users', you(), h('div', { class: 'lc-inline' }, field('Role', role)), list), form);
  loading(list);
  const users = await listUsers(ctx.api, role.value || undefined);
  list.replaceChildren(
    table(
      'Users',
      ['Name', 'E-mail', 'Role', 'Since'],
      users.map((u) => [
        [link(ctx, `/staff/users/${u.id}`, u.display_name), u.minor ? h('span', { class: 'lc-note' }, ' (minor)') : ''],
        u.email,
        u.role,
        h('span', { class: 'lc-nowrap' }, when(u.created_at, readerZone())),
      ]),
      { id: 'users' },
    ),
  );
}

async function renderUser(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-user');
  loading(root);
  const u = await ctx.api.get<UserRow>(`/users/${ctx.params.id}`);
  ctx.setTitle(u.display_name);
  const saved = statusLine();
  root.replaceChildren(
    h(
      'dl',
      { class: 'lc-kv', id: 'user-summary' },
      h('dt', {}, 'E-mail'),
      h('dd', {}, u.email),
      h('dt', {}, 'Role'),
      h('dd', {}, u.role),
      u.birth_date ? h('dt', {}, 'Birth date') : '',
      u.birth_date ? h('dd', {}, u.birth_date, u.minor ? ' (a minor: needs a parent’s consent)' : '') : '',
      h('dt', {}, 'Since'),
      h('dd', {}, when(u.created_at, readerZone())),
    ),
    saved,
  );

  if (isAdmin(ctx) && u.id !== ctx.me.id) {
    const choices =
      u.role === 'student' ? ROLE_NAMES.filter(([r]) => r === 'student') : ROLE_NAMES.filter(([r]) => r !== 'student');
    if (choices.length > 1) {
      const role = select('role', choices, u.role);
      const form = h(
        'form',
        { class: 'lc-inline lc-card', id: 'role-form' },
        field('Role', role, 'Takes effect with the user’s next access token.'),
        h('button', { type: 'submit' }, 'Change role'),
      );
      onSubmit(ctx, form, async () => {
        if (role.value === u.role) return;
        if (!(await confirmAction(`Make ${u.display_name} ${role.value}?`, 'Change role', `Now: ${u.role}.`))) return;
        const out = await put<UserRow>(ctx.api, `/users/${u.id}/role`, { role: role.value });
        saved.textContent = `${out.display_name} is now ${out.role}.`;
        u.role = out.role;
      });
      root.append(section('Role', form));
    }
  }

  if (u.role === 'parent') {
    const box = h('div');
    const paint = async () => {
      const [children, students] = await Promise.all([
        ctx.api.get<UserRow[]>(`/users/${u.id}/children`),
        listUsers(ctx.api, 'student'),
      ]);
      const linked = new Set(children.map((c) => c.id));
      const child = select(
        'child_id',
        [
          ['', 'Choose a student…'],
          ...students
            .filter((s) => !linked.has(s.id))
            .map((s): [string, string] => [s.id, `${s.display_name} (${s.email})`]),
        ],
        '',
        { required: true },
      );
      const form = h(
        'form',
        { class: 'lc-inline lc-card', id: 'link-child-form' },
        field('Link a child', child),
        h('button', { type: 'submit' }, 'Link'),
      );
      onSubmit(ctx, form, async () => {
        await ctx.api.post(`/users/${u.id}/children`, { child_id: child.value });
        saved.textContent = 'Linked.';
        await paint();
      });
      box.replaceChildren(
        table(
          'Children',
          ['Child', 'E-mail', 'Minor', ''],
          children.map((c) => [
            link(ctx, `/staff/users/${c.id}`, c.display_name),
            c.email,
            c.minor ? 'yes' : 'no',
            c.minor ? link(ctx, `/staff/consent${qs({ child: c.id, parent: u.id })}`, 'Request consent') : '',
          ]),
          { id: 'children' },
        ),
        form,
      );
    };
    root.append(section('Children', box));
    await paint();
  }

  if (u.role === 'student' && u.minor) {
    root.append(
      section(
        'Consent',
        h('p', {}, link(ctx, `/staff/consent${qs({ child: u.id })}`, 'Consent requests for this student')),
      ),
    );
  }

  if (u.role === 'tutor') {
    const links = h(
      'p',
      {},
      link(ctx, `/tutors/${u.id}/availability`, 'Availability'),
      ' · ',
      link(ctx, `/tutors/${u.id}/lessons`, 'Lessons and meetings'),
      ' · ',
      link(ctx, `/tutors/${u.id}/earnings`, 'Earnings'),
    );
    const tutorSection = section('Tutor', links);
    if (isAdmin(ctx)) {
      const bps = input('commission_percent', { type: 'number', min: 0, max: 100, step: 0.01, autocomplete: 'off' });
      const form = h(
        'form',
        { class: 'lc-inline lc-card', id: 'commission-form' },
        field(
          'Commission for this tutor (%)',
          bps,
          'Empty: the school’s rate. Applies to earnings released from now on.',
        ),
        h('button', { type: 'submit' }, 'Set commission'),
      );
      onSubmit(ctx, form, async () => {
        const value = bps.value.trim() === '' ? null : Math.round(Number(bps.value) * 100);
        const out = await put<{ commission_bps: number | null }>(ctx.api, `/tutors/${u.id}/commission`, {
          commission_bps: value,
        });
        saved.textContent =
          out.commission_bps === null
            ? 'The tutor pays the school’s rate.'
            : `Commission set to ${percent(out.commission_bps)}.`;
      });
      tutorSection.append(form);
    }
    root.append(tutorSection);
  }
}

async function renderTutors(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-tutors');
  loading(root);
  const tutors = await listUsers(ctx.api, 'tutor');
  const zones = await Promise.all(
    tutors.map((t) =>
      ctx.api
        .get<{ timezone: string; weekly: unknown[] }>(`/tutors/${t.id}/availability`)
        .then((d) => `${d.timezone}, ${d.weekly.length} weekly windows`)
        .catch(() => 'not published'),
    ),
  );
  root.replaceChildren(
    table(
      'Tutors',
      ['Tutor', 'E-mail', 'Availability', ''],
      tutors.map((t, i) => [
        link(ctx, `/staff/users/${t.id}`, t.display_name),
        t.email,
        zones[i],
        [
          link(ctx, `/tutors/${t.id}/availability`, 'Availability'),
          ' · ',
          link(ctx, `/tutors/${t.id}/lessons`, 'Lessons'),
          ' · ',
          link(ctx, `/tutors/${t.id}/earnings`, 'Earnings'),
        ],
      ]),
      { id: 'tutors' },
    ),
  );
}

// ---------------------------------------------------------------------------------------------------
// Bookings: offline payments received, payouts paid by hand

interface BookingView extends Booking {
  history: { from: string | null; to: string; at: string; reason: string | null }[];
  payments: {
    id: string;
    provider: string;
    amount_minor: number;
    currency: string;
    status: string;
    created_at: string;
    settled_at: string | null;
  }[];
  refunds: { id: string; amount_minor: number; currency: string; status: string; created_at: string }[];
}

const BOOKING_STATUSES = [
  'hold',
  'pending_payment',
  'confirmed',
  'in_progress',
  'completed',
  'expired',
  'cancelled_by_student',
  'cancelled_by_tutor',
  'no_show_student',
  'no_show_tutor',
  'refunded',
];

async function renderBookings(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-bookings');
  const tz = readerZone();
  const status = select(
    'status',
    [['', 'All'], ...BOOKING_STATUSES.map((s): [string, string] => [s, words(s)])],
    ctx.params.status ?? '',
  );
  const from = input('from', { type: 'date', value: ctx.params.from ?? dateIn(tz, -7) });
  const filters = h(
    'form',
    { class: 'lc-inline', id: 'booking-filters' },
    field('Status', status),
    field('Starting from', from),
    h('button', { type: 'submit' }, 'Show'),
  );
  onSubmit(ctx, filters, async () => ctx.navigate(`/staff/bookings${qs({ status: status.value, from: from.value })}`));
  const list = h('div');
  const detail = h('div', { id: 'booking-detail', 'aria-live': 'polite' });
  root.append(you(), filters, list, detail);
  loading(list);
  const [bookings, dir] = await Promise.all([
    ctx.api.get<Booking[]>(
      `/bookings${qs({ status: status.value, from: from.value ? wallToUtc(`${from.value}T00:00`, tz) : undefined, limit: 500 })}`,
    ),
    Directory.load(ctx.api),
  ]);

  const show = async (b: Booking) => {
    const v = await ctx.api.get<BookingView>(`/bookings/${b.id}`);
    const saved = statusLine();
    const method = select('method', [
      ['bank_transfer', 'Bank transfer'],
      ['cash', 'Cash'],
      ['card_terminal', 'Card terminal'],
      ['other', 'Other'],
    ]);
    const noteInput = input('note', { maxlength: 200, autocomplete: 'off' });
    const pending = v.payments.filter((p) => p.status === 'pending');
    const parts: (Node | string)[] = [
      h('h3', {}, `Lesson ${span(v.starts_at, v.ends_at, tz)}`),
      h(
        'dl',
        { class: 'lc-kv' },
        h('dt', {}, 'Tutor'),
        h('dd', {}, dir.name(v.tutor_id)),
        h('dt', {}, 'Student'),
        h('dd', {}, dir.name(v.student_id)),
        h('dt', {}, 'Status'),
        h('dd', {}, badge(v.status)),
        h('dt', {}, 'Price'),
        h('dd', {}, v.package_id ? 'package credit' : money(v.price_minor, v.currency)),
      ),
      table(
        'Payments',
        ['Created', 'Provider', 'Amount', 'Status', 'Settled'],
        v.payments.map((p) => [
          when(p.created_at, tz),
          p.provider,
          money(p.amount_minor, p.currency),
          badge(p.status),
          when(p.settled_at, tz),
        ]),
        { id: 'booking-payments' },
      ),
    ];
    if (pending.length) {
      const form = h(
        'form',
        { class: 'lc-card', id: 'received-form' },
        h('h3', {}, `Record money received: ${money(pending[0].amount_minor, pending[0].currency)}`),
        h('div', { class: 'lc-grid' }, field('How it was paid', method), field('Note', noteInput, 'Optional.')),
        h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Mark as received')),
      );
      onSubmit(ctx, form, async () => {
        await ctx.api.post(`/payments/${pending[0].id}/received`, {
          method: method.value,
          note: noteInput.value || undefined,
        });
        saved.textContent = 'Payment recorded; the lesson is confirmed.';
        await show(b);
      });
      parts.push(form);
    }
    if (v.status === 'completed' || v.status === 'no_show_student') {
      const payMethod = select('payout_method', [
        ['bank_transfer', 'Bank transfer'],
        ['cash', 'Cash'],
        ['other', 'Other'],
      ]);
      const form = h(
        'form',
        { class: 'lc-inline lc-card', id: 'payout-form' },
        field('Tutor’s share paid by hand via', payMethod, 'When no online provider pays tutors.'),
        h('button', { type: 'submit' }, 'Record payout'),
      );
      onSubmit(ctx, form, async () => {
        if (
          !(await confirmAction('Record the tutor’s share as paid?', 'Record payout', 'Only after the money was sent.'))
        )
          return;
        const out = await ctx.api.post<{ recorded: boolean }>(`/payouts/${v.id}/paid`, { method: payMethod.value });
        saved.textContent = out.recorded ? 'Payout recorded.' : 'It had already been paid out.';
      });
      parts.push(form);
    }
    parts.push(
      table(
        'History',
        ['When', 'From', 'To', 'Reason'],
        v.history.map((e) => [when(e.at, tz), e.from ? words(e.from) : '—', words(e.to), e.reason ?? '']),
      ),
      saved,
    );
    detail.replaceChildren(section('Booking', ...parts));
    detail.querySelector<HTMLElement>('h3')?.setAttribute('tabindex', '-1');
    detail.querySelector<HTMLElement>('h3')?.focus();
  };

  list.replaceChildren(
    table(
      'Bookings',
      ['When', 'Tutor', 'Student', 'Status', 'Price', ''],
      bookings.map((b) => [
        h('span', { class: 'lc-nowrap' }, span(b.starts_at, b.ends_at, tz)),
        dir.name(b.tutor_id),
        dir.name(b.student_id),
        badge(b.status),
        h('span', { class: 'lc-nowrap' }, b.package_id ? 'package credit' : money(b.price_minor, b.currency)),
        button('Details', (ev) => busy(ctx, ev.currentTarget as HTMLButtonElement, () => show(b)), {
          'data-booking': b.id,
          'aria-controls': 'booking-detail',
        }),
      ]),
      { id: 'bookings' },
    ),
  );
}

// ---------------------------------------------------------------------------------------------------
// Consent requests

interface ConsentRequest {
  id: string;
  child_id: string;
  parent_id: string;
  scopes: string[];
  status: string;
  requested_by: string;
  created_at: string;
  answered_at: string | null;
}

const SCOPES: [string, string][] = [
  ['live_video', 'Live video'],
  ['chat', 'Chat'],
  ['recording', 'Recording'],
];

async function renderConsent(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-consent');
  loading(root);
  const dir = await Directory.load(ctx.api);
  const tz = readerZone();
  root.replaceChildren();
  const minors = dir.all().filter((u) => u.role === 'student' && u.minor);
  const parents = dir.all().filter((u) => u.role === 'parent');
  const child = select(
    'child_id',
    [['', 'Choose a student…'], ...minors.map((s): [string, string] => [s.id, `${s.display_name} (${s.email})`])],
    ctx.params.child ?? '',
    { required: true },
  );
  const parent = select(
    'parent_id',
    [
      ['', 'The child’s only linked parent'],
      ...parents.map((p): [string, string] => [p.id, `${p.display_name} (${p.email})`]),
    ],
    ctx.params.parent ?? '',
  );
  const scopes = h(
    'fieldset',
    { class: 'lc-day' },
    h('legend', {}, 'Scopes'),
    ...SCOPES.map(([v, label]) =>
      h(
        'label',
        { class: 'lc-check' },
        input('scope', { type: 'checkbox', value: v, checked: v === 'live_video' }),
        ` ${label}`,
      ),
    ),
  );
  const form = h(
    'form',
    { class: 'lc-card', id: 'consent-form' },
    h('h2', {}, 'Ask a parent for consent'),
    minors.length ? '' : note('No student is under the school’s consent age.'),
    h(
      'div',
      { class: 'lc-grid' },
      field('Student (a minor)', child),
      field('Parent', parent, 'The parent is mailed a link.'),
    ),
    scopes,
    h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Send the request')),
  );
  const saved = statusLine();
  onSubmit(ctx, form, async () => {
    const chosen = [...scopes.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value);
    const r = await ctx.api.post<ConsentRequest>('/consent-requests', {
      child_id: child.value,
      scopes: chosen,
      parent_id: parent.value || undefined,
    });
    saved.textContent = `Request sent to ${dir.name(r.parent_id)}.`;
    await fill();
  });

  const status = select(
    'status',
    [
      ['', 'All'],
      ['pending', 'Pending'],
      ['answered', 'Answered'],
    ],
    '',
  );
  const list = h('div');
  status.addEventListener('change', () => void fill().catch(ctx.error));
  root.append(
    form,
    saved,
    section('Requests', zoneNote(tz, 'your zone'), h('div', { class: 'lc-inline' }, field('Status', status)), list),
  );

  const fill = async () => {
    const requests = await allPages(async (before) => {
      const p = await ctx.api.get<{ requests: ConsentRequest[]; next_before?: string | null }>(
        `/consent-requests${qs({ status: status.value, child_id: ctx.params.child, before, limit: 200 })}`,
      );
      return { items: p.requests, next: p.next_before };
    }, 400);
    list.replaceChildren(
      table(
        'Consent requests, newest first',
        ['Requested', 'Student', 'Parent', 'Scopes', 'Status', 'Answered'],
        requests.map((r) => [
          h('span', { class: 'lc-nowrap' }, when(r.created_at, tz)),
          dir.name(r.child_id),
          dir.name(r.parent_id),
          r.scopes.map(words).join(', '),
          badge(r.status),
          when(r.answered_at, tz),
        ]),
        { id: 'consent-requests' },
      ),
    );
  };
  await fill();
}

// ---------------------------------------------------------------------------------------------------
// Reports

interface RevenueReport {
  lines: {
    currency: string;
    payments_minor: number;
    refunds_minor: number;
    revenue_minor: number;
    tutor_earnings_minor: number;
    paid_out_minor: number;
  }[];
  reconciliation: {
    ledger_balanced: boolean;
    unbalanced_transactions: number;
    matches_records: boolean;
    differences: string[];
  };
}

async function renderReports(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-reports');
  const tz = readerZone();
  const from = input('from', { type: 'date', value: dateIn(tz, -30) });
  const to = input('to', { type: 'date', value: dateIn(tz) });
  const period = () => ({
    from: from.value ? wallToUtc(`${from.value}T00:00`, tz) : undefined,
    to: to.value ? wallToUtc(`${nextDay(to.value)}T00:00`, tz) : undefined,
  });
  const revenueBox = h('div', { id: 'revenue' });
  const form = h(
    'form',
    { class: 'lc-inline', id: 'revenue-form' },
    field('From', from),
    field('To (inclusive)', to),
    h('button', { type: 'submit' }, 'Show'),
    csvButton(
      ctx,
      'Download revenue (CSV)',
      () => `/reports/revenue${qs({ ...period(), format: 'csv' })}`,
      'revenue.csv',
    ),
  );
  const fillRevenue = async () => {
    const r = await ctx.api.get<RevenueReport>(`/reports/revenue${qs(period())}`);
    const rec = r.reconciliation;
    revenueBox.replaceChildren(
      table(
        'Revenue per currency',
        ['Currency', 'Received', 'Refunded', 'Commission earned', 'Tutors’ shares', 'Paid out to tutors'],
        r.lines.map((l) => [
          l.currency,
          ...[l.payments_minor, l.refunds_minor, l.revenue_minor, l.tutor_earnings_minor, l.paid_out_minor].map((v) =>
            h('span', { class: 'lc-num' }, money(v, l.currency)),
          ),
        ]),
        { id: 'revenue-lines' },
      ),
      h(
        'p',
        { id: 'reconciliation', class: rec.ledger_balanced && rec.matches_records ? 'lc-status' : '' },
        rec.ledger_balanced && rec.matches_records
          ? 'Reconciled: the ledger balances and matches the payment records.'
          : `Not reconciled: ${rec.unbalanced_transactions} unbalanced transactions. ${rec.differences.join('; ')}`,
      ),
    );
  };
  onSubmit(ctx, form, fillRevenue);

  const classes = await ctx.api.get<ClassInfo[]>('/classes');
  const cls = select(
    'class_id',
    [['', 'Choose a class…'], ...classes.map((c): [string, string] => [c.id, `${c.title} (${c.status})`])],
    ctx.params.class ?? '',
  );
  const attendanceBox = h('div', { id: 'attendance-summary' });
  const fillAttendance = async () => {
    if (!cls.value) return attendanceBox.replaceChildren();
    const r = await ctx.api.get<{
      class_title: string;
      students: {
        student_name: string;
        present: number;
        late: number;
        absent: number;
        excused: number;
        unmarked: number;
        balance: number;
      }[];
      meetings: unknown[];
    }>(`/classes/${cls.value}/attendance`);
    attendanceBox.replaceChildren(
      table(
        `${r.class_title}: ${r.meetings.length} meetings`,
        ['Student', 'Present', 'Late', 'Absent', 'Excused', 'Not marked', 'Credits left'],
        r.students.map((s) => [
          s.student_name,
          ...[s.present, s.late, s.absent, s.excused, s.unmarked, s.balance].map((v) =>
            h('span', { class: 'lc-num' }, String(v)),
          ),
        ]),
        { id: 'attendance-students' },
      ),
      h(
        'div',
        { class: 'lc-actions' },
        csvButton(
          ctx,
          'Download attendance (CSV)',
          () => `/classes/${cls.value}/attendance?format=csv`,
          `attendance-${cls.value}.csv`,
        ),
        link(ctx, `/staff/classes/${cls.value}`, 'Open the class'),
      ),
    );
  };
  cls.addEventListener('change', () => void fillAttendance().catch(ctx.error));

  root.append(
    section('Revenue', zoneNote(tz, 'your zone; days run midnight to midnight'), form, revenueBox),
    section('Attendance', h('div', { class: 'lc-inline' }, field('Class', cls)), attendanceBox),
  );
  await Promise.all([fillRevenue(), fillAttendance()]);
}

function nextDay(date: string): string {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------------
// Booking policy

type PolicyField = [keyof BookingPolicy, string, string, 'int' | 'pct' | 'list' | 'bool', number?, number?];

const POLICY_FIELDS: PolicyField[] = [
  ['hold_minutes', 'Hold a slot for (minutes)', 'How long a hold reserves a slot before checkout.', 'int', 1, 1440],
  ['payment_minutes', 'Wait for payment (minutes)', 'How long checkout keeps the slot.', 'int', 1, 10080],
  [
    'free_cancel_hours',
    'Free cancellation until (hours before)',
    'Cancelling earlier is refunded in full.',
    'int',
    0,
    2160,
  ],
  ['late_refund_bps', 'Late cancellation refund (%)', 'Share of the price refunded for a later cancellation.', 'pct'],
  ['reschedule_until_hours', 'Students reschedule until (hours before)', '', 'int', 0, 2160],
  ['max_reschedules', 'Reschedules per lesson', '', 'int', 0, 100],
  [
    'reminder_minutes',
    'Reminders (minutes before, comma-separated)',
    'E.g. 1440, 60: a day and an hour before.',
    'list',
  ],
  ['no_show_grace_minutes', 'No-show after (minutes)', 'After the start, for whoever hasn’t joined.', 'int', 0, 1440],
  ['auto_end_grace_minutes', 'Auto-end after the scheduled end (minutes)', '', 'int', 0, 1440],
  ['join_lead_minutes', 'Room opens before the start (minutes)', '', 'int', 0, 1440],
  [
    'dispute_window_hours',
    'Tutor’s share released after (hours)',
    'Time for disputes after completion.',
    'int',
    0,
    2160,
  ],
  ['commission_bps', 'Platform commission (%)', 'Kept from each lesson’s price.', 'pct'],
  [
    'late_after_minutes',
    'Late after (minutes)',
    'A class meeting’s proposal marks later arrivals late.',
    'int',
    0,
    1440,
  ],
  ['min_presence_bps', 'Minimum presence for a lesson to count (%)', 'With media presence.', 'pct'],
  ['parents_observe', 'Parents may watch their child’s lessons', '', 'bool'],
];

async function renderPolicy(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-policy');
  loading(root);
  const policy = await ctx.api.get<BookingPolicy>(`/tenants/${ctx.me.tenant_id}/booking-policy`);
  const editable = isAdmin(ctx);
  const form = h('form', { id: 'policy-form', class: 'lc-card' });
  const grid = h('div', { class: 'lc-grid' });
  const controls = new Map<keyof BookingPolicy, HTMLInputElement>();
  for (const [key, label, hint, kind, min, max] of POLICY_FIELDS) {
    const v = policy[key];
    let control: HTMLInputElement;
    if (kind === 'bool') {
      control = input(key, { type: 'checkbox', checked: !!v, disabled: !editable });
      grid.append(h('div', { class: 'lc-field' }, h('label', { class: 'lc-check' }, control, ` ${label}`)));
    } else {
      control =
        kind === 'pct'
          ? input(key, { type: 'number', min: 0, max: 100, step: 0.01, required: true, value: (v as number) / 100 })
          : kind === 'list'
            ? input(key, {
                value: (v as number[]).join(', '),
                pattern: '\\s*(\\d+\\s*(,\\s*\\d+\\s*)*)?',
                autocomplete: 'off',
              })
            : input(key, { type: 'number', min, max, step: 1, required: true, value: v as number });
      control.disabled = !editable;
      grid.append(field(label, control, hint || undefined));
    }
    controls.set(key, control);
  }
  const saved = statusLine();
  form.append(
    grid,
    editable
      ? h('div', { class: 'lc-actions' }, h('button', { type: 'submit', class: 'lc-primary' }, 'Save policy'), saved)
      : note('Only admins change the booking policy.'),
  );
  onSubmit(ctx, form, async () => {
    const next: Record<string, unknown> = {};
    for (const [key, , , kind] of POLICY_FIELDS) {
      const c = controls.get(key)!;
      next[key] =
        kind === 'bool'
          ? c.checked
          : kind === 'pct'
            ? Math.round(Number(c.value) * 100)
            : kind === 'list'
              ? c.value
                  .split(',')
                  .map((s) => s.trim())
                  .filter(Boolean)
                  .map(Number)
              : Number(c.value);
    }
    await put(ctx.api, `/tenants/${ctx.me.tenant_id}/booking-policy`, next);
    saved.textContent = 'Saved. It applies to what happens from now on.';
  });
  root.replaceChildren(
    note('The school’s rules for one-to-one lessons: holds, payment, cancellations, reminders, payouts.'),
    form,
  );
}

// ---------------------------------------------------------------------------------------------------
// Jobs, mailbox, audit log

interface JobRecord {
  id: number;
  kind: string;
  status: string;
  run_at: string;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  payload: unknown;
  created_at: string;
  finished_at: string | null;
}

async function renderJobs(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-jobs');
  const tz = readerZone();
  const status = select(
    'status',
    [
      ['dead', 'Failed (gave up)'],
      ['queued', 'Queued'],
      ['done', 'Done'],
      ['cancelled', 'Cancelled'],
      ['', 'All'],
    ],
    ctx.params.status ?? 'dead',
  );
  const kind = input('kind', { value: ctx.params.kind ?? '', autocomplete: 'off', placeholder: 'e.g. mail' });
  const filters = h(
    'form',
    { class: 'lc-inline', id: 'job-filters' },
    field('Status', status),
    field('Kind', kind),
    h('button', { type: 'submit' }, 'Show'),
  );
  onSubmit(ctx, filters, async () =>
    ctx.navigate(`/staff/jobs${qs({ status: status.value || 'all', kind: kind.value })}`),
  );
  if (ctx.params.status === 'all') status.value = '';
  const list = h('div');
  const saved = statusLine();
  root.append(you(), filters, saved, list);
  loading(list);
  const jobs = await allPages(async (before) => {
    const p = await ctx.api.get<{ jobs: JobRecord[]; next_before?: number | null }>(
      `/admin/jobs${qs({ status: status.value, kind: kind.value, before, limit: 200 })}`,
    );
    return { items: p.jobs, next: p.next_before };
  }, 400);
  list.replaceChildren(
    table(
      'Jobs, newest first',
      ['Job', 'Kind', 'Status', 'Attempts', 'Due', 'Last error', 'Finished', ''],
      jobs.map((j) => [
        String(j.id),
        j.kind,
        badge(j.status),
        `${j.attempts} / ${j.max_attempts}`,
        h('span', { class: 'lc-nowrap' }, when(j.run_at, tz)),
        j.last_error ?? '',
        when(j.finished_at, tz),
        j.status === 'dead' || j.status === 'cancelled'
          ? button(
              'Retry',
              (ev) =>
                busy(ctx, ev.currentTarget as HTMLButtonElement, async () => {
                  const out = await ctx.api.post<JobRecord>(`/admin/jobs/${j.id}/retry`);
                  saved.textContent = `Job ${out.id} (${out.kind}) is queued again.`;
                  (ev.currentTarget as HTMLButtonElement | null)
                    ?.closest('tr')
                    ?.querySelector('.lc-badge')
                    ?.replaceWith(badge(out.status));
                  (ev.target as HTMLButtonElement).remove();
                }),
              { 'data-job': j.id, 'aria-label': `Retry job ${j.id}` },
            )
          : '',
      ]),
      { id: 'jobs' },
    ),
  );
}

interface MailRecord {
  id: number;
  to_user_id: string;
  to_email: string;
  subject: string;
  body: string;
  created_at: string;
}

async function renderMailbox(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-mailbox');
  const tz = readerZone();
  loading(root);
  const mails = await allPages(async (before) => {
    const p = await ctx.api.get<{ messages: MailRecord[]; next_before?: number | null }>(
      `/mailbox${qs({ to_user_id: ctx.params.to, before, limit: 200 })}`,
    );
    return { items: p.messages, next: p.next_before };
  }, 200);
  root.replaceChildren(
    note('Mail the server queued for people (consent requests, bookings, reminders), newest first.'),
    you(),
    table(
      'Mailbox',
      ['Queued', 'To', 'Subject'],
      mails.map((m) => [
        h('span', { class: 'lc-nowrap' }, when(m.created_at, tz)),
        m.to_email,
        h('details', {}, h('summary', {}, m.subject), h('pre', { class: 'lc-mail-body' }, m.body)),
      ]),
      { id: 'mailbox' },
    ),
  );
}

interface AuditRecord {
  id: number;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  details: unknown;
  ip: string | null;
  created_at: string;
}

async function renderAudit(ctx: PageContext): Promise<void> {
  const root = pageRoot(ctx, 'staff-audit');
  const tz = readerZone();
  loading(root);
  const dir = await Directory.load(ctx.api);
  const action = input('action', {
    value: ctx.params.action ?? '',
    autocomplete: 'off',
    placeholder: 'e.g. credits.adjusted',
  });
  const actor = select(
    'actor_id',
    [['', 'Anyone'], ...dir.all().map((u): [string, string] => [u.id, `${u.display_name} (${u.role})`])],
    ctx.params.actor ?? '',
  );
  const filters = h(
    'form',
    { class: 'lc-inline', id: 'audit-filters' },
    field('Action', action),
    field('By', actor),
    h('button', { type: 'submit' }, 'Show'),
  );
  onSubmit(ctx, filters, async () => ctx.navigate(`/staff/audit${qs({ action: action.value, actor: actor.value })}`));
  const list = h('div');
  const more = h('div', { class: 'lc-actions' });
  root.replaceChildren(you(), filters, list, more);

  const rows: AuditRecord[] = [];
  const load = async (before?: number) => {
    const p = await ctx.api.get<{ entries: AuditRecord[]; next_before?: number | null }>(
      `/audit${qs({ action: action.value, actor_id: actor.value, before, limit: 100 })}`,
    );
    rows.push(...p.entries);
    list.replaceChildren(
      table(
        'Audit log, newest first',
        ['When', 'Who', 'Action', 'Target', 'Details', 'IP'],
        rows.map((e) => [
          h('span', { class: 'lc-nowrap' }, when(e.created_at, tz)),
          dir.name(e.actor_id),
          e.action,
          e.target_type
            ? `${e.target_type} ${e.target_type === 'user' ? dir.name(e.target_id) : (e.target_id ?? '')}`
            : '',
          h('code', {}, details(e.details)),
          e.ip ?? '',
        ]),
        { id: 'audit' },
      ),
    );
    more.replaceChildren(
      p.next_before
        ? button('Older entries', (ev) => busy(ctx, ev.currentTarget as HTMLButtonElement, () => load(p.next_before!)))
        : '',
    );
  };
  await load();
}

function details(d: unknown): string {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return Object.entries(d as Record<string, unknown>)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}

// ---------------------------------------------------------------------------------------------------

export const staffPages: Page[] = [
  { path: '/staff/classes', title: 'Classes', roles: STAFF, nav: true, render: renderClasses },
  { path: '/staff/classes/:id', title: 'Class', roles: STAFF, render: renderClass },
  { path: '/staff/courses', title: 'Courses', roles: STAFF, nav: true, render: renderCourses },
  { path: '/staff/courses/:id', title: 'Course', roles: STAFF, render: renderCourse },
  { path: '/staff/users', title: 'Users', roles: STAFF, nav: true, render: renderUsers },
  { path: '/staff/users/:id', title: 'User', roles: STAFF, render: renderUser },
  { path: '/staff/tutors', title: 'Tutors', roles: STAFF, nav: true, render: renderTutors },
  { path: '/staff/bookings', title: 'Bookings', roles: STAFF, nav: true, render: renderBookings },
  { path: '/staff/consent', title: 'Consent requests', roles: STAFF, nav: true, render: renderConsent },
  { path: '/staff/reports', title: 'Reports', roles: STAFF, nav: true, render: renderReports },
  { path: '/staff/policy', title: 'Booking policy', roles: STAFF, nav: true, render: renderPolicy },
  { path: '/staff/jobs', title: 'Jobs', roles: STAFF, nav: true, render: renderJobs },
  { path: '/staff/mail', title: 'Mailbox', roles: STAFF, nav: true, render: renderMailbox },
  { path: '/staff/audit', title: 'Audit log', roles: ADMIN, nav: true, render: renderAudit },
];
