// Everyone's settings: their time zone (`PATCH /me`), used for the times in the app, in their mail and in their
// calendar feed; and their personal calendar feed (`POST /me/calendar-token` creates or replaces its address,
// shown once; `DELETE` turns it off).

import type { User } from '../api';
import { browserZone, clockTime, dateTime, el, isZone, setSavedZone, zoneAbbr } from '../dom';
import { announce, button, confirmPanel, field, section, uid } from '../shell/ui';
import type { Page, PageContext } from './types';

const EVERYONE: User['role'][] = ['admin', 'staff', 'tutor', 'student', 'parent'];

/** `POST /me/calendar-token`: the feed's addresses (the token is in them), shown only in this answer. */
interface CalendarFeed {
  url: string;
  webcal_url: string;
  created_at: string;
}

/** Every IANA zone the browser knows, grouped by region (`Europe`, `America`, …), plus the two given. */
function zoneOptions(...also: string[]): Map<string, string[]> {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  const all = new Set([...(intl.supportedValuesOf?.('timeZone') ?? []), ...also.filter(isZone), 'UTC']);
  const groups = new Map<string, string[]>();
  for (const z of [...all].sort()) {
    const region = z.includes('/') ? z.slice(0, z.indexOf('/')) : 'Other';
    groups.set(region, [...(groups.get(region) ?? []), z]);
  }
  return groups;
}

/** `America/New_York` → `America/New York (EST)`. */
function zoneLabel(zone: string): string {
  const abbr = zoneAbbr(zone);
  return `${zone.replace(/_/g, ' ')}${abbr === zone ? '' : ` (${abbr})`}`;
}

/** Which zones are used while the person has chosen none (the server's rule: `users::zone_of`). */
function unsetText(me: User, device: string): string {
  return me.role === 'tutor'
    ? `Until you do, your e-mails, calendar feed and teaching pages use the time zone of your published availability (e-mails and calendar: UTC if there is none), and other pages this device’s zone, ${device}.`
    : `Until you do, the app shows times in this device’s zone, ${device}, and your e-mails and calendar feed use UTC.`;
}

function timeZoneSection(ctx: PageContext): HTMLElement {
  const state = el('p', { id: 'zone-state', role: 'status' });
  const now = el('p', { class: 'muted small', 'aria-live': 'polite' });
  const saved = el('p', { class: 'muted', role: 'status' });
  const zoneSelect = el('select', { name: 'timezone', id: uid('zone') });
  const device = browserZone();
  for (const [region, zones] of zoneOptions(device, ctx.me.timezone ?? '')) {
    const group = el('optgroup', { label: region });
    for (const z of zones) group.append(el('option', { value: z }, z.replace(/_/g, ' ')));
    zoneSelect.append(group);
  }
  const showNow = () => {
    const z = zoneSelect.value;
    now.textContent = `It is now ${clockTime(new Date().toISOString(), z)} in ${z.replace(/_/g, ' ')}.`;
  };
  zoneSelect.onchange = showNow;

  const clear = button(
    'Clear my time zone',
    async () => {
      saved.textContent = '';
      await store(null);
    },
    { 'data-action': 'clear-zone' },
  );
  const paint = () => {
    const mine = ctx.me.timezone && isZone(ctx.me.timezone) ? ctx.me.timezone : null;
    // Preselected: the zone chosen before, else this device's.
    zoneSelect.value = mine ?? device;
    showNow();
    state.dataset.zone = mine ?? '';
    state.replaceChildren(
      ...(mine
        ? [
            'Your time zone is ',
            el('strong', {}, zoneLabel(mine)),
            '. The app shows times in it, and your e-mails and calendar feed use it.',
          ]
        : [el('strong', {}, 'You haven’t chosen a time zone yet. '), unsetText(ctx.me, zoneLabel(device))]),
    );
    clear.hidden = !mine;
  };
  const store = async (zone: string | null) => {
    try {
      const out = await ctx.api.patch<User>('/me', { timezone: zone });
      ctx.me.timezone = out.timezone ?? null;
      setSavedZone(ctx.me.timezone);
      paint();
      const text = ctx.me.timezone
        ? `Saved: times are now shown in ${zoneLabel(ctx.me.timezone)}.`
        : `Your time zone is cleared: this device’s zone, ${zoneLabel(device)}, is used.`;
      saved.textContent = text;
    } catch (e) {
      ctx.error(e);
    }
  };
  const form = el(
    'form',
    { id: 'zone-form' },
    field('Time zone', zoneSelect, `This device is set to ${zoneLabel(device)}.`),
    now,
    el(
      'div',
      { class: 'actions' },
      el('button', { type: 'submit', class: 'primary', 'data-action': 'save-zone' }, 'Save time zone'),
      clear,
    ),
    saved,
  );
  form.onsubmit = async (e) => {
    e.preventDefault();
    const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!;
    submit.setAttribute('aria-busy', 'true');
    saved.textContent = '';
    try {
      await store(zoneSelect.value);
    } finally {
      submit.removeAttribute('aria-busy');
    }
  };
  paint();
  return section(
    'Time zone',
    state,
    el(
      'p',
      { class: 'muted small' },
      'Lesson and meeting times in this app, in the e-mails the school sends you and in your calendar feed are shown on this clock.',
    ),
    form,
  );
}

/** Copies `text` (the Clipboard API, else selecting the field and the old copy command). */
async function copy(text: string, from: HTMLInputElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    from.focus();
    from.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}

/** A read-only address with a Copy button beside it that says when it copied. */
function addressField(label: string, value: string, hint: string, name: string): HTMLElement {
  const id = uid('addr');
  const hintId = uid('hint');
  const box = el('input', {
    id,
    type: 'text',
    readonly: '',
    value,
    name,
    spellcheck: 'false',
    autocomplete: 'off',
    'aria-describedby': hintId,
  });
  box.onfocus = () => box.select();
  const said = el('span', { class: 'muted small', role: 'status' });
  const b = button(
    'Copy',
    async () => {
      said.textContent = (await copy(value, box)) ? 'Copied.' : 'Select the address and copy it by hand.';
    },
    { 'aria-label': `Copy the ${label.toLowerCase()}`, 'data-copy': name },
  );
  return el(
    'div',
    { class: 'field address' },
    el('label', { for: id }, label),
    el('div', { class: 'address-row' }, box, b),
    el('p', { class: 'hint', id: hintId }, hint, ' ', said),
  );
}

function calendarSection(ctx: PageContext): HTMLElement {
  const result = el('div', { id: 'calendar-feed' });
  const slot = el('div', { class: 'action-slot' });
  const what =
    ctx.me.role === 'parent'
      ? 'your children’s lessons and class meetings'
      : ctx.me.role === 'tutor'
        ? 'the lessons you give and the meetings of the classes you teach'
        : ctx.me.role === 'student'
          ? 'your lessons and class meetings'
          : 'the lessons you give or take and the meetings of the classes you teach or attend';
  const create = button(
    'Create my calendar address',
    async () => {
      slot.replaceChildren();
      try {
        const feed = await ctx.api.post<CalendarFeed>('/me/calendar-token');
        show(feed);
      } catch (e) {
        ctx.error(e);
      }
    },
    { class: 'primary', 'data-action': 'create-feed' },
  );
  const revoke = button(
    'Turn off my calendar feed',
    () =>
      slot.replaceChildren(
        confirmPanel({
          title: 'Turn off your calendar feed?',
          body: [
            el(
              'p',
              {},
              'Its address stops working at once: calendar apps subscribed to it get no more updates, and the lessons they show may go stale or disappear. You can create a new address at any time.',
            ),
          ],
          confirm: 'Turn it off',
          cancel: 'Keep it',
          danger: true,
          onConfirm: async () => {
            await ctx.api.delete('/me/calendar-token');
            result.replaceChildren(
              el(
                'p',
                { role: 'status', 'data-feed': 'off' },
                'Your calendar feed is off. Its address no longer works.',
              ),
            );
            create.textContent = 'Create my calendar address';
            announce('Your calendar feed is off.');
          },
        }),
      ),
    { 'data-action': 'revoke-feed' },
  );
  const show = (feed: CalendarFeed) => {
    result.replaceChildren(
      el(
        'div',
        { class: 'attention', 'data-feed': 'on' },
        el(
          'p',
          {},
          el('strong', {}, 'Copy your address now: '),
          `it is shown only this once (created ${dateTime(feed.created_at)}). Keep it private, as anyone who has it can see your schedule.`,
        ),
        addressField(
          'Calendar app address (webcal)',
          feed.webcal_url,
          'Apple Calendar and Outlook open it as a subscription.',
          'webcal_url',
        ),
        addressField(
          'Web address',
          feed.url,
          'For Google Calendar (Other calendars › + › From URL), or any app that asks for a URL.',
          'url',
        ),
        el('p', {}, el('a', { href: feed.webcal_url, class: 'button-link' }, 'Open in my calendar app')),
      ),
    );
    create.textContent = 'Create a new address';
    announce('Your calendar address is ready. Copy it now: it is shown only once.');
  };
  return section(
    'Calendar feed',
    el(
      'p',
      {},
      `Subscribe to your own calendar address in Google Calendar, Apple Calendar, Outlook or any calendar app: it lists ${what}, from 30 days back to a year ahead, in the time zone above, and your calendar app keeps it up to date (most check every few hours).`,
    ),
    el(
      'p',
      { class: 'muted small' },
      'For your privacy the address is shown only when it is created. If you lose it, or think someone else has it, create a new one: the old one stops working.',
    ),
    el('div', { class: 'actions' }, create, revoke),
    slot,
    result,
  );
}

function renderSettings(ctx: PageContext): void {
  ctx.root.append(
    section(
      'Your account',
      el(
        'p',
        {},
        el('strong', {}, ctx.me.display_name),
        el('span', { class: 'muted account-email' }, ` · ${ctx.me.email}`),
      ),
    ),
    timeZoneSection(ctx),
    calendarSection(ctx),
  );
}

export const settingsPages: Page[] = [
  { path: '/settings', title: 'Settings', roles: EVERYONE, nav: true, render: renderSettings },
];
