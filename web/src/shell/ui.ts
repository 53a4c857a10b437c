// Building blocks the pages share, so every person's pages look and behave alike: labelled form fields,
// sections, status pills, empty and loading notes, a confirm step, a polite announcement.

import { describe } from '../api';
import { $, el } from '../dom';

let ids = 0;
/** A unique id for label/control pairs. */
export function uid(prefix = 'f'): string {
  return `${prefix}-${++ids}`;
}

/** `<label for>` + control (+ a hint tied with aria-describedby): every input has a visible label. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  control.id ||= uid();
  const parts: (Node | string)[] = [el('label', { for: control.id }, label), control];
  if (hint) {
    const h = el('p', { class: 'hint', id: uid('hint') }, hint);
    control.setAttribute('aria-describedby', h.id);
    parts.push(h);
  }
  return el('div', { class: 'field' }, ...parts);
}

export function input(attrs: Record<string, string | undefined>): HTMLInputElement {
  return el('input', attrs);
}

export function select(name: string, options: [string, string][], value?: string): HTMLSelectElement {
  const s = el('select', { name });
  for (const [v, text] of options) s.append(el('option', { value: v }, text));
  if (value !== undefined) s.value = value;
  return s;
}

export function button(
  text: string,
  onClick: (b: HTMLButtonElement) => void | Promise<void>,
  attrs: Record<string, string | undefined> = {},
): HTMLButtonElement {
  const b = el('button', { type: 'button', ...attrs }, text);
  b.onclick = async () => {
    if (b.getAttribute('aria-busy') === 'true') return;
    b.setAttribute('aria-busy', 'true');
    try {
      await onClick(b);
    } finally {
      b.removeAttribute('aria-busy');
    }
  };
  return b;
}

/** `<section aria-labelledby>` with an `h2`. */
export function section(title: string, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const h = el('h2', { id: uid('h') }, title);
  return el('section', { class: 'card', 'aria-labelledby': h.id }, h, ...children);
}

export function pill(text: string, kind = ''): HTMLElement {
  return el('span', { class: `pill ${kind}`.trim() }, text);
}

export function empty(text: string): HTMLElement {
  return el('p', { class: 'muted empty' }, text);
}

export function loading(): HTMLElement {
  return el('p', { class: 'muted', role: 'status' }, 'Loading…');
}

/** A link to a route (`/bookings/1`). */
export function link(path: string, text: string, attrs: Record<string, string | undefined> = {}): HTMLAnchorElement {
  return el('a', { href: `#${path}`, ...attrs }, text);
}

/**
 * A table; on a phone each row becomes a small card of `header: value` lines (the cells carry `data-label`),
 * and anything still too wide scrolls sideways inside it instead of breaking the layout.
 */
export function table(headers: string[], rows: (Node | string)[][], caption?: string): HTMLElement {
  return el(
    'div',
    { class: 'table-wrap stack' },
    el(
      'table',
      {},
      caption ? el('caption', {}, caption) : null,
      el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col' }, h)))),
      el(
        'tbody',
        {},
        ...rows.map((r) => el('tr', {}, ...r.map((c, i) => el('td', { 'data-label': headers[i] || undefined }, c)))),
      ),
    ),
  );
}

/**
 * A confirm step shown in place (not a modal): the consequence in words, then Confirm and Keep buttons. Focus
 * moves to it; Escape or Keep closes it. `confirm` may throw: the error is shown inside the panel.
 */
export function confirmPanel(opts: {
  title: string;
  body: (Node | string | null | undefined | false)[];
  confirm: string;
  cancel?: string;
  danger?: boolean;
  onConfirm: () => Promise<void>;
  onClose?: () => void;
}): HTMLElement {
  const h = el('h3', { id: uid('h'), tabindex: '-1' }, opts.title);
  const err = el('p', { class: 'inline-error', role: 'alert' });
  err.hidden = true;
  const panel = el('div', { class: 'confirm', role: 'group', 'aria-labelledby': h.id }, h, ...opts.body, err);
  const close = () => {
    panel.remove();
    opts.onClose?.();
  };
  const ok = button(
    opts.confirm,
    async () => {
      err.hidden = true;
      try {
        await opts.onConfirm();
        panel.remove();
      } catch (e) {
        err.textContent = describe(e);
        err.hidden = false;
      }
    },
    { class: opts.danger ? 'danger' : 'primary', 'data-confirm': '' },
  );
  const no = button(opts.cancel ?? 'Keep it as it is', close, { 'data-cancel': '' });
  panel.append(el('div', { class: 'actions' }, ok, no));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') close();
  });
  queueMicrotask(() => h.focus());
  return panel;
}

/** Tells screen readers (and shows briefly) that something changed: "Your lesson is confirmed." */
export function announce(text: string): void {
  const n = $('#notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout((n as unknown as { timer?: number }).timer);
  (n as unknown as { timer?: number }).timer = window.setTimeout(() => (n.hidden = true), 8000);
}
