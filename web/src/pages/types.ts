// The contract between the app shell (src/main.ts: sign-in, navigation, the router, the user's live channel)
// and the pages of each person (src/pages/*.ts). A page module exports a list of `Page`s; the shell shows
// the ones whose `roles` include the signed-in user's role in its navigation and renders the one whose
// `path` matches the location's hash (`#/bookings/new?tutor=…`).

import type { Api, Role, User } from '../api';

/**
 * A push on the user's channel (`user:<id>` on /ws): the `data` of a room message, e.g. `{kind: "credits", ...}`.
 * The shell adds one kind of its own: `{kind: "resync"}` after a reconnect that may have missed pushes — reload
 * what the page shows.
 */
export type UserEvent = { kind: string } & Record<string, unknown>;

export interface PageContext {
  api: Api;
  me: User;
  /** The element the page renders into (emptied by the shell before `render`). */
  root: HTMLElement;
  /** Path parameters (`:id` in `Page.path`) and the hash's query string, merged. */
  params: Record<string, string>;
  /** Goes to another page (`navigate('/classes/123')`). */
  navigate(path: string): void;
  /** Calls `handler` for every push on the user's channel while this page is shown; returns an unsubscribe. */
  onUserEvent(handler: (event: UserEvent) => void): () => void;
  /** Shows an error (an `ApiError` as a sentence) in the page's error list. */
  error(e: unknown): void;
  /** Replaces the page's heading (and the document title), e.g. with the name of what it shows. */
  setTitle(title: string): void;
}

export interface Page {
  /** `/children`, `/classes/:id`: matched against the hash path; `:name` segments become params. */
  path: string;
  /** The heading and the navigation label. */
  title: string;
  roles: Role[];
  /** Listed in the navigation (pages reached by a link only, like a detail page, are not). */
  nav?: boolean;
  render(ctx: PageContext): Promise<void> | void;
}
