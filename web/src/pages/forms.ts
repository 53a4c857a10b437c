// Small helpers shared by the tutor and staff pages (src/pages/tutor.ts, src/pages/staff.ts): elements,
// labelled fields, scrollable tables, a confirmation dialog, time zones and money, and the HTTP calls
// `Api` has no method for (PUT, and CSV downloads that need the bearer token).

import { ApiError, type Api } from '../api';
import { isZone, userZone } from '../dom';
import type { PageContext } from './types';

// ---------------------------------------------------------------------------------------------------
// Elements

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | undefined | null>;

/** `h('td', {class: 'x'}, 'text', child)`. Boolean `true` sets an empty attribute; false/null/undefined skip it. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

let fieldSeq = 0;

/** A labelled control: `<label for>` + the control (+ a hint tied by aria-describedby). */
export function field(label: string, control: HTMLElement, hint?: string): HTMLDivElement {
  const id = control.id || `lc-f${++fieldSeq}`;
  control.id = id;
  const wrap = h('div', { class: 'lc-field' }, h('label', { for: id }, label), control);
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    wrap.append(h('small', { id: hintId, class: 'lc-hint' }, hint));
  }
  return wrap;
}

export function input(name: string, attrs: Attrs = {}): HTMLInputElement {
  return h('input', { name, ...attrs });
}

export function select(
  name: string,
  options: [string, string][],
  value?: string,
  attrs: Attrs = {},
): HTMLSelectElement {
  const s = h('select', { name, ...attrs });
  for (const [v, label] of options) s.append(h('option', { value: v }, label));
  if (value !== undefined) s.value = value;
  return s;
}

export function button(label: string, onClick: (ev: MouseEvent) => unknown, attrs: Attrs = {}): HTMLButtonElement {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', (ev) => void onClick(ev));
  return b;
}

/** A section with a heading (h3 by default) and its content. */
export function section(title: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'lc-section' }, h('h2', {}, title), ...children);
}

/** A polite live region for "Saved." and similar confirmations. */
export function statusLine(): HTMLParagraphElement {
  return h('p', { class: 'lc-status', role: 'status', 'aria-live': 'polite' });
}

export function note(text: string): HTMLParagraphElement {
  return h('p', { class: 'lc-note' }, text);
}

export function link(ctx: PageContext, path: string, label: string, attrs: Attrs = {}): HTMLAnchorElement {
  const a = h('a', { href: `#${path}`, ...attrs }, label);
  a.addEventListener('click', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    ctx.navigate(path);
  });
  return a;
}

/**
 * A table in a region that scrolls sideways on narrow screens (and can be scrolled with the keyboard:
 * the region takes focus). `rows` are arrays of cells; a cell may be a node.
 */
export function table(caption: string, head: string[], rows: (Child | Child[])[][], attrs: Attrs = {}): HTMLElement {
  const t = h('table', { class: 'lc-table', ...attrs }, h('caption', {}, caption));
  t.append(h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))));
  const body = h('tbody');
  for (const r of rows) body.append(row(r));
  t.append(body);
  if (!rows.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'lc-empty' }, 'Nothing yet.')));
  return h('div', { class: 'lc-scroll', role: 'region', 'aria-label': caption, tabindex: 0 }, t);
}

export function row(cells: (Child | Child[])[], attrs: Attrs = {}): HTMLTableRowElement {
  return h('tr', attrs, ...cells.map((c) => (Array.isArray(c) ? h('td', {}, ...c) : h('td', {}, c))));
}

/**
 * Runs `fn` with the button disabled; errors go to the page's error list. Returns whether it succeeded.
 */
export async function busy(
  ctx: PageContext,
  b: HTMLButtonElement | null,
  fn: () => Promise<unknown>,
): Promise<boolean> {
  if (b) b.disabled = true;
  try {
    await fn();
    return true;
  } catch (e) {
    ctx.error(e);
    return false;
  } finally {
    if (b) b.disabled = false;
  }
}

/** Wires a form: prevents the real submit, runs `fn` with its submit button disabled. */
export function onSubmit(ctx: PageContext, form: HTMLFormElement, fn: (data: FormData) => Promise<unknown>): void {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const submit = form.querySelector<HTMLButtonElement>('button[type=submit]');
    void busy(ctx, submit, () => fn(new FormData(form)));
  });
}

/** "Loading…" in `root` until replaced. */
export function loading(root: HTMLElement): void {
  root.replaceChildren(h('p', { class: 'lc-note', role: 'status' }, 'Loading…'));
}

// ---------------------------------------------------------------------------------------------------
// Confirmation before destructive actions: a modal <dialog> (focus stays inside, Escape cancels).

export function confirmAction(message: string, confirmLabel: string, details?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', value: 'ok', class: 'lc-danger' }, confirmLabel);
    const cancel = h('button', { type: 'submit', value: 'cancel' }, 'Cancel');
    const form = h(
      'form',
      { method: 'dialog' },
      h('p', { class: 'lc-confirm-msg' }, message),
      details ? h('p', { class: 'lc-note' }, details) : null,
      h('div', { class: 'lc-actions' }, cancel, ok),
    );
    const dialog = h('dialog', { class: 'lc-dialog', 'aria-label': message }, form);
    const previous = document.activeElement as HTMLElement | null;
    dialog.addEventListener('close', () => {
      const yes = dialog.returnValue === 'ok';
      dialog.remove();
      previous?.focus?.();
      resolve(yes);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

// ---------------------------------------------------------------------------------------------------
// HTTP beyond `Api.get/post`: PUT, and CSV downloads (authorised, so not a plain link).

/** A JSON request with any method, with the same bearer token and error shape as `Api`. */
export async function send<T>(api: Api, method: string, path: string, body?: unknown): Promise<T> {
  const token = await api.freshToken();
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text || res.statusText));
  }
  return json as T;
}

export function put<T>(api: Api, path: string, body: unknown): Promise<T> {
  return send<T>(api, 'PUT', path, body);
}

/** Fetches `path` (a CSV report) with the bearer token and saves it as `filename`. */
export async function downloadCsv(api: Api, path: string, filename: string): Promise<void> {
  const token = await api.freshToken();
  const res = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const text = await res.text();
    let e: { code?: string; message?: string } | undefined;
    try {
      e = JSON.parse(text).error;
    } catch {
      e = undefined;
    }
    throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text || res.statusText));
  }
  const disposition = res.headers.get('Content-Disposition') ?? '';
  const named = /filename="([^"]+)"/.exec(disposition)?.[1];
  const url = URL.createObjectURL(await res.blob());
  const a = h('a', { href: url, download: named ?? filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A button that downloads a CSV report. */
export function csvButton(ctx: PageContext, label: string, path: () => string, filename: string): HTMLButtonElement {
  const b: HTMLButtonElement = button(label, () => busy(ctx, b, () => downloadCsv(ctx.api, path(), filename)), {
    class: 'lc-csv',
  });
  return b;
}

/** Every page of a paged listing (`next_after`/`next_before` cursors), up to `max` items. */
export async function allPages<T>(
  fetchPage: (cursor: string | null) => Promise<{ items: T[]; next: string | number | null | undefined }>,
  max = 2000,
): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (;;) {
    const { items, next } = await fetchPage(cursor);
    out.push(...items);
    if (next === null || next === undefined || out.length >= max) return out;
    cursor = String(next);
  }
}

export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

// ---------------------------------------------------------------------------------------------------
// Time zones. Instants travel in UTC; they're shown in a named zone: the reader's own (their settings', else
// the browser's), or on a tutor's pages the tutor's.

/** The reader's IANA zone: the one saved in their settings, else the browser's. */
export function readerZone(): string {
  return userZone();
}

export { isZone };

export function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  return intl.supportedValuesOf?.('timeZone') ?? [readerZone(), 'UTC'];
}

/** A <datalist> of IANA zones, for a zone <input list=…>. */
export function zoneList(id: string): HTMLDataListElement {
  const dl = h('datalist', { id });
  for (const z of zones()) dl.append(h('option', { value: z }));
  return dl;
}

const fmtCache = new Map<string, Intl.DateTimeFormat>();
function fmtFor(tz: string, kind: 'full' | 'time' | 'date'): Intl.DateTimeFormat {
  const key = `${tz}|${kind}`;
  let f = fmtCache.get(key);
  if (!f) {
    const opts: Intl.DateTimeFormatOptions =
      kind === 'full'
        ? { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' }
        : kind === 'time'
          ? { hour: '2-digit', minute: '2-digit' }
          : { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' };
    f = new Intl.DateTimeFormat(undefined, { ...opts, timeZone: tz });
    fmtCache.set(key, f);
  }
  return f;
}

/** `Mon, 8 Dec 2025, 14:00` in `tz` (the zone is named once on the page, see `zoneNote`). */
export function when(iso: string | null | undefined, tz: string): string {
  if (!iso) return '—';
  return fmtFor(tz, 'full').format(new Date(iso));
}

/** `Mon, 8 Dec 2025, 14:00–15:00` (the end's date only when it differs). */
export function span(start: string, end: string, tz: string): string {
  const sameDay = fmtFor(tz, 'date').format(new Date(start)) === fmtFor(tz, 'date').format(new Date(end));
  return `${when(start, tz)}–${sameDay ? fmtFor(tz, 'time').format(new Date(end)) : when(end, tz)}`;
}

export function day(iso: string, tz: string): string {
  return fmtFor(tz, 'date').format(new Date(iso));
}

/** "Times are in Europe/Berlin (UTC+01:00)." */
export function zoneNote(tz: string, whose: string): HTMLParagraphElement {
  return h('p', { class: 'lc-zone', 'data-zone': tz }, `Times are in ${tz} (${offsetLabel(tz)}), ${whose}.`);
}

function offsetLabel(tz: string): string {
  const min = offsetMinutes(Date.now(), tz);
  const sign = min < 0 ? '−' : '+';
  const a = Math.abs(min);
  return `UTC${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

function partsIn(ms: number, tz: string): Record<string, number> {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(ms));
  const out: Record<string, number> = {};
  for (const p of parts) if (p.type !== 'literal') out[p.type] = Number(p.value);
  return out;
}

/** How far `tz` is ahead of UTC at the instant `ms`, in minutes. */
export function offsetMinutes(ms: number, tz: string): number {
  const p = partsIn(ms, tz);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second);
  return Math.round((asUtc - Math.floor(ms / 1000) * 1000) / 60_000);
}

/** A wall-clock reading `YYYY-MM-DDTHH:MM` in `tz` → the UTC instant (RFC 3339, seconds precision). */
export function wallToUtc(local: string, tz: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
  if (!m) throw new Error(`${local} is not a date and time`);
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  const first = offsetMinutes(guess, tz);
  let utc = guess - first * 60_000;
  const second = offsetMinutes(utc, tz);
  if (second !== first) utc = guess - second * 60_000;
  return new Date(utc).toISOString().replace('.000Z', 'Z');
}

/** The UTC instant `iso` as a `YYYY-MM-DDTHH:MM` wall-clock reading in `tz` (for datetime-local inputs). */
export function utcToWall(iso: string, tz: string): string {
  const p = partsIn(Date.parse(iso), tz);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${p.year}-${two(p.month)}-${two(p.day)}T${two(p.hour % 24)}:${two(p.minute)}`;
}

/** Today's date (`YYYY-MM-DD`) in `tz`, plus `days`. */
export function dateIn(tz: string, days = 0): string {
  return utcToWall(new Date(Date.now() + days * 86_400_000).toISOString(), tz).slice(0, 10);
}

// ---------------------------------------------------------------------------------------------------
// Money: integer minor units with an ISO 4217 currency.

export function digits(currency: string): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

export function money(minor: number | null | undefined, currency: string): string {
  if (minor === null || minor === undefined) return '—';
  const d = digits(currency);
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(minor / 10 ** d);
  } catch {
    return `${(minor / 10 ** d).toFixed(d)} ${currency}`;
  }
}

/** `"12.50"` in `currency` → 1250. */
export function toMinor(major: string, currency: string): number {
  const n = Number(major.replace(',', '.'));
  if (!Number.isFinite(n)) throw new Error(`${major} is not an amount`);
  return Math.round(n * 10 ** digits(currency));
}

export function toMajor(minor: number, currency: string): string {
  const d = digits(currency);
  return (minor / 10 ** d).toFixed(d);
}

export function percent(bps: number): string {
  return `${(bps / 100).toLocaleString(undefined, { maximumFractionDigits: 2 })}%`;
}

/** `pending_payment` → `pending payment`. */
export function words(code: string): string {
  return code.replace(/_/g, ' ');
}

export function badge(text: string, kind = text): HTMLSpanElement {
  return h('span', { class: `lc-badge lc-${kind.replace(/[^a-z_]/g, '')}` }, words(text));
}

// ---------------------------------------------------------------------------------------------------
// Styles for these pages, added once.

const CSS = `
.lc-page { max-width: 72rem; }
.lc-page h2 { margin: 1.4rem 0 0.5rem; font-size: 1.2rem; }
.lc-page h3 { margin: 1rem 0 0.4rem; font-size: 1.02rem; }
.lc-section { margin-bottom: 1.2rem; }
.lc-field { display: flex; flex-direction: column; gap: 0.15rem; margin: 0.35rem 0; min-width: 0; }
.lc-field label { font-weight: 600; font-size: 0.9rem; margin: 0; display: block; }
.lc-field input, .lc-field select, .lc-field textarea { width: 100%; max-width: 22rem; box-sizing: border-box;
  font: inherit; padding: 0.3rem 0.4rem; border: 1px solid #9aa5b1; border-radius: 4px; background: #fff; }
.lc-field textarea { max-width: 36rem; }
.lc-hint { color: #52606d; font-size: 0.8rem; }
.lc-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: 0.3rem 1rem; align-items: start; }
.lc-inline { display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; align-items: flex-end; }
.lc-inline .lc-field input, .lc-inline .lc-field select { width: auto; }
.lc-actions { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.6rem 0; align-items: center; }
.lc-page button, .lc-dialog button { font: inherit; padding: 0.3rem 0.8rem; border-radius: 4px; border: 1px solid #7b8794;
  background: #fff; color: #1f2933; min-height: 2rem; }
.lc-page button:hover { background: #eef2f7; }
.lc-page button.lc-primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
.lc-page button.lc-primary:hover { background: #1e40af; }
.lc-page button.lc-danger, .lc-dialog button.lc-danger { background: #b91c1c; border-color: #b91c1c; color: #fff; }
.lc-page button[aria-pressed='true'] { background: #1e3a8a; border-color: #1e3a8a; color: #fff; font-weight: 600; }
.lc-page button:disabled { opacity: 0.55; cursor: default; }
.lc-page a.lc-button-link { display: inline-block; padding: 0.45rem 1rem; border-radius: 4px; background: #1d4ed8;
  color: #fff; font-weight: 600; text-decoration: none; }
.lc-page a.lc-button-link:hover { background: #1e40af; }
.lc-page :focus-visible, .lc-dialog :focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.lc-scroll { position: relative; overflow-x: auto; max-width: 100%; margin: 0.4rem 0 0.8rem; -webkit-overflow-scrolling: touch; }
.lc-table { border-collapse: collapse; background: #fff; min-width: 100%; font-size: 0.92rem; }
.lc-table caption { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.lc-table th, .lc-table td { border: 1px solid #cbd2d9; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
.lc-table th { background: #e4e7eb; white-space: nowrap; }
.lc-table td.lc-num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.lc-table td button { margin: 0.1rem 0.2rem 0.1rem 0; padding: 0.15rem 0.5rem; min-height: 1.8rem; }
.lc-table .lc-empty { color: #52606d; font-style: italic; }
.lc-nowrap { white-space: nowrap; }
.lc-note, .lc-zone { color: #52606d; font-size: 0.9rem; margin: 0.3rem 0; }
.lc-zone { font-style: italic; }
.lc-status { color: #166534; min-height: 1.2em; margin: 0.3rem 0; }
.lc-badge { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 1rem; background: #e4e7eb; font-size: 0.82rem; white-space: nowrap; }
.lc-active, .lc-confirmed, .lc-completed, .lc-present, .lc-succeeded, .lc-done, .lc-answered { background: #d1fae5; }
.lc-draft, .lc-hold, .lc-pending_payment, .lc-pending, .lc-queued, .lc-late { background: #fef3c7; }
.lc-cancelled, .lc-absent, .lc-dead, .lc-expired, .lc-failed { background: #fee2e2; }
.lc-card > h2:first-child, .lc-card > h3:first-child { margin-top: 0.2rem; }
.lc-page label.lc-check { display: flex; align-items: center; gap: 0.45rem; font-weight: normal; margin: 0.35rem 0; width: auto; }
.lc-page label.lc-check input { display: inline-block; width: 1.1rem; height: 1.1rem; margin: 0; flex: none; }
.lc-week { display: grid; grid-template-columns: repeat(auto-fill, minmax(19rem, 1fr)); gap: 0 0.8rem; }
.lc-card { background: #fff; border: 1px solid #cbd2d9; border-radius: 6px; padding: 0.6rem 0.9rem; margin: 0.5rem 0; }
.lc-day { border: 1px solid #cbd2d9; border-radius: 6px; padding: 0.4rem 0.7rem; margin: 0.4rem 0; background: #fff; }
.lc-day legend { font-weight: 600; padding: 0 0.3rem; }
.lc-window { display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; align-items: flex-end; margin: 0.2rem 0; }
.lc-window .lc-field input, .lc-window .lc-field select { width: auto; }
.lc-picker { background: #eef2f7; border-radius: 6px; padding: 0.4rem 0.8rem; margin: 0.4rem 0; }
.lc-dialog { border: 1px solid #7b8794; border-radius: 8px; max-width: min(32rem, 92vw); padding: 1rem 1.2rem; }
.lc-dialog::backdrop { background: rgba(15, 23, 42, 0.45); }
.lc-confirm-msg { font-weight: 600; }
.lc-slots { display: flex; flex-wrap: wrap; gap: 0.3rem; list-style: none; padding: 0; margin: 0.3rem 0; }
.lc-slots li { background: #fff; border: 1px solid #cbd2d9; border-radius: 4px; padding: 0.1rem 0.4rem; font-size: 0.85rem; }
.lc-kv { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0.4rem 0; }
.lc-kv dt { font-weight: 600; }
.lc-kv dd { margin: 0; }
.lc-mail-body { white-space: pre-wrap; font-family: inherit; margin: 0.3rem 0; background: #f8fafc; padding: 0.4rem; }
@media (max-width: 40rem) {
  .lc-field input, .lc-field select, .lc-field textarea { max-width: 100%; }
  .lc-page h2 { margin-top: 1rem; }
}
`;

let styled = false;

/** The container of one of these pages, inside `ctx.root`, with their styles added (once). */
export function pageRoot(ctx: PageContext, name: string): HTMLElement {
  if (!styled) {
    document.head.append(h('style', { 'data-lc': 'pages' }, CSS));
    styled = true;
  }
  const root = h('div', { class: 'lc-page', 'data-page': name });
  ctx.root.append(root);
  return root;
}

// ---------------------------------------------------------------------------------------------------
// Shared API shapes and look-ups.

export interface UserRow {
  id: string;
  email: string;
  display_name: string;
  role: string;
  birth_date: string | null;
  minor: boolean;
  created_at: string;
}

/** The tenant's users (staff only), every page; `role` narrows. */
export function listUsers(api: Api, role?: string): Promise<UserRow[]> {
  return allPages(async (after) => {
    const page = await api.get<{ users: UserRow[]; next_after?: string | null }>(
      `/users${qs({ role, after, limit: 500 })}`,
    );
    return { items: page.users, next: page.next_after };
  });
}

/** `Name (email)` by user id, for staff pages; unknown ids show as a short id. */
export class Directory {
  private byId = new Map<string, UserRow>();
  constructor(users: UserRow[]) {
    for (const u of users) this.byId.set(u.id, u);
  }
  static async load(api: Api): Promise<Directory> {
    return new Directory(await listUsers(api));
  }
  get(id: string | null | undefined): UserRow | undefined {
    return id ? this.byId.get(id) : undefined;
  }
  name(id: string | null | undefined): string {
    if (!id) return '—';
    const u = this.byId.get(id);
    return u ? u.display_name : shortId(id);
  }
  all(): UserRow[] {
    return [...this.byId.values()];
  }
}

export function shortId(id: string): string {
  return `#${id.slice(0, 8)}`;
}
