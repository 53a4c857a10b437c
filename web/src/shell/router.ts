// Hash routing: the location's hash is `#/path?query` (so a refresh, a bookmark or a link in a mail opens the
// same page, and the server only ever serves `/`). Pages declare paths like `/classes/:id`.

import type { Role } from '../api';
import type { Page } from '../pages/types';

export interface Route {
  path: string;
  query: Record<string, string>;
}

/** The current route; a hash that isn't a route (`#main`, empty) is `/`. */
export function currentRoute(hash = location.hash): Route {
  const raw = hash.startsWith('#/') ? hash.slice(1) : '/';
  const q = raw.indexOf('?');
  const path = normalize(decodeURI(q < 0 ? raw : raw.slice(0, q)));
  const query = Object.fromEntries(new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)));
  return { path, query };
}

/** `/a/b/` → `/a/b`; empty → `/`. */
function normalize(path: string): string {
  const p = path.replace(/\/+$/, '');
  return p.startsWith('/') ? p || '/' : `/${p}`;
}

/** The hash of a path (`/bookings/1?x=2` → `#/bookings/1?x=2`). */
export function hashOf(path: string): string {
  return `#${path.startsWith('/') ? path : `/${path}`}`;
}

/** Path parameters when `pattern` (`/classes/:id`) matches `path`, else null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}

/** The page for `path` among those `role` may see, with its parameters. */
export function find(pages: Page[], role: Role, path: string): { page: Page; params: Record<string, string> } | null {
  for (const page of pages) {
    if (!page.roles.includes(role)) continue;
    const params = match(page.path, path);
    if (params) return { page, params };
  }
  return null;
}
