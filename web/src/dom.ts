// Small DOM helpers, the error list every part of the page reports to, and how times, dates and money are
// shown: always in a named time zone (the reader's own unless a page says otherwise).

import { describe } from './api';

export function $<T extends HTMLElement = HTMLElement>(selector: string): T {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

type Child = Node | string | null | undefined | false;

/** `el('li', {class: 'x', 'data-user': id}, 'text', child)`; null, undefined and false children are skipped. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** Shows an error as a sentence until dismissed; keeps the last five. */
export function showError(e: unknown): void {
  const list = $('#errors');
  const text = describe(e);
  const code = (e as { code?: string })?.code;
  const close = el('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss this message' }, '×');
  const item = el('li', { 'data-code': code }, el('span', {}, text), close);
  close.onclick = () => item.remove();
  list.append(item);
  while (list.children.length > 5) list.firstElementChild?.remove();
  console.warn('liveclass:', code ? `${code}: ${text}` : text);
}

export function clearErrors(): void {
  $('#errors').replaceChildren();
}

export function setStatus(selector: string, text: string, ok: boolean): void {
  const s = $(selector);
  s.textContent = text;
  s.classList.toggle('ok', ok);
}

export function show(view: 'login' | 'page' | 'room'): void {
  for (const v of ['login', 'page', 'room']) $(`#${v}-view`).hidden = v !== view;
}

// --- time zones, times and money ---

/** The zone the signed-in person chose in their settings (`User.timezone`), if any. */
let savedZone: string | null = null;

/** Whether `zone` is an IANA time zone this browser knows. */
export function isZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Remembers the zone the signed-in person chose (null: none, or signed out); the times shown follow it. */
export function setSavedZone(zone: string | null | undefined): void {
  savedZone = zone && isZone(zone) ? zone : null;
}

/** The zone the person chose in their settings, or null. */
export function savedZoneOf(): string | null {
  return savedZone;
}

/** The browser's IANA time zone (`America/New_York`). */
export function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** The reader's IANA time zone: the one saved in their settings, else the browser's. */
export function userZone(): string {
  return savedZone ?? browserZone();
}

/** The zone's short name at `at` in the reader's language (`EST`, `GMT+1`). */
export function zoneAbbr(zone = userZone(), at: Date | string = new Date()): string {
  const parts = new Intl.DateTimeFormat(undefined, { timeZone: zone, timeZoneName: 'short' }).formatToParts(
    new Date(at),
  );
  return parts.find((p) => p.type === 'timeZoneName')?.value ?? zone;
}

/** `Tue, Dec 8, 2026, 9:00 AM EST`: a moment in `zone`, the zone named. */
export function dateTime(iso: string, zone = userZone()): string {
  return new Date(iso).toLocaleString(undefined, {
    timeZone: zone,
    weekday: 'short',
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: 'numeric',
    minute: '2-digit',
    timeZoneName: 'short',
  });
}

/** `Tue, Dec 8, 9:00 – 10:00 AM EST` (both ends in `zone`; the date repeated only when it changes). */
export function timeRange(startIso: string, endIso: string, zone = userZone()): string {
  const f = new Intl.DateTimeFormat(undefined, {
    timeZone: zone,
    weekday: 'short',
    month: 'short',
    day: 'numeric',
    hour: 'numeric',
    minute: '2-digit',
    timeZoneName: 'short',
  });
  return f.formatRange(new Date(startIso), new Date(endIso));
}

/** `9:00 AM` in `zone`, no date and no zone (for lists under a heading that names both). */
export function clockTime(iso: string, zone = userZone()): string {
  return new Date(iso).toLocaleTimeString(undefined, { timeZone: zone, hour: 'numeric', minute: '2-digit' });
}

/** `Tuesday, December 8` for a `YYYY-MM-DD` calendar date (no zone: a date is a date). */
export function dayName(date: string): string {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(undefined, {
    timeZone: 'UTC',
    weekday: 'long',
    month: 'long',
    day: 'numeric',
  });
}

/** The calendar date (`YYYY-MM-DD`) of `at` in `zone`. */
export function dateIn(at: Date | string, zone = userZone()): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(
    new Date(at),
  );
}

/** `YYYY-MM-DD` plus `days`. */
export function addDays(date: string, days: number): string {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** `in 3 hours`, `5 minutes ago`. */
export function relative(iso: string, now = Date.now()): string {
  const secs = (Date.parse(iso) - now) / 1000;
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const units: [Intl.RelativeTimeFormatUnit, number][] = [
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) if (Math.abs(secs) >= size) return rtf.format(Math.round(secs / size), unit);
  return rtf.format(Math.round(secs), 'second');
}

/**
 * `Times are in America/New_York (EST), your time zone.` — put one on every page that shows times. In the
 * reader's zone, the note says where it comes from (their settings, or this device) and links to the settings.
 */
export function zoneNote(zone = userZone(), whose?: string): HTMLElement {
  const abbr = zoneAbbr(zone);
  const named = abbr === zone ? zone : `${zone} (${abbr})`;
  const note = el('p', { class: 'zone-note', 'data-zone': zone });
  if (whose !== undefined || zone !== userZone()) {
    note.textContent = `Times are in ${named}, ${whose ?? 'the zone named'}.`;
    return note;
  }
  note.append(
    `Times are in ${named}, ${savedZone ? 'your time zone as set in your settings' : 'your device’s time zone'}. `,
    el('a', { href: '#/settings' }, savedZone ? 'Change it' : 'Choose your time zone'),
  );
  return note;
}

/** A moment in the reader's zone, zone named (kept for older callers). */
export function time(iso: string): string {
  return dateTime(iso);
}

/** `€30.00` from minor units of an ISO 4217 currency. */
export function money(minor: number, currency: string): string {
  try {
    const f = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
    return f.format(minor / 10 ** digits);
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

/** `cancelled_by_student` → `cancelled by student`. */
export function words(code: string): string {
  return code.replace(/_/g, ' ');
}
