// Small DOM helpers and the error list every part of the page reports to.

import { describe } from './api';

export function $<T extends HTMLElement = HTMLElement>(selector: string): T {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/** `el('li', {class: 'x', 'data-user': id}, 'text', child)`. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | undefined> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** Shows an error (an API or WebSocket error as `code: message`) until dismissed; keeps the last five. */
export function showError(e: unknown): void {
  const list = $('#errors');
  const text = describe(e);
  const code = (e as { code?: string })?.code;
  const close = el('button', { type: 'button', title: 'dismiss' }, '×');
  const item = el('li', { 'data-code': code }, text, close);
  close.onclick = () => item.remove();
  list.append(item);
  while (list.children.length > 5) list.firstElementChild?.remove();
  console.warn('liveclass:', text);
}

export function clearErrors(): void {
  $('#errors').replaceChildren();
}

export function setStatus(selector: string, text: string, ok: boolean): void {
  const s = $(selector);
  s.textContent = text;
  s.classList.toggle('ok', ok);
}

export function show(view: 'login' | 'list' | 'room'): void {
  for (const v of ['login', 'list', 'room']) $(`#${v}-view`).hidden = v !== view;
}

export function time(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
