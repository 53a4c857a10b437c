// The HTTP API: JSON in and out, bearer token, one retry after refreshing an expired access token.
// Every error the server sends is `{"error":{"code","message"}}`; it surfaces as an ApiError, shown to people
// as a sentence (`describe`): a known code's sentence, else the server's own message.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

export type Role = 'admin' | 'staff' | 'tutor' | 'student' | 'parent';

export interface User {
  id: string;
  tenant_id: string;
  email: string;
  display_name: string;
  role: Role;
  minor: boolean;
  /** `YYYY-MM-DD`; students only. */
  birth_date?: string | null;
  /**
   * The IANA zone the person chose (`PATCH /me`), used for their mail and calendar feed, and preferred by the
   * app over the browser's zone; null or absent: not chosen.
   */
  timezone?: string | null;
  created_at?: string;
  /** `GET /me` only, for parents: their linked children. */
  children?: User[];
}

interface Session {
  access_token: string;
  refresh_token: string;
  user: User;
}

/** Options of a write: an `Idempotency-Key`, so that a repeated click or a retry does the thing once. */
export interface WriteOptions {
  idempotencyKey?: string;
}

const STORE = 'liveclass.session';

export class Api {
  token: string | null = null;
  private refreshToken: string | null = null;
  private refreshing: Promise<void> | null = null;
  /** Called when the session is gone (a refresh was refused): the shell shows the sign-in form. */
  onSignedOut: (() => void) | null = null;

  constructor(private readonly base = '/api/v1') {
    const saved = sessionStorage.getItem(STORE);
    if (saved) ({ token: this.token, refresh: this.refreshToken } = JSON.parse(saved));
  }

  async login(tenant: string, email: string, password: string): Promise<User> {
    const s = await this.call<Session>('POST', '/auth/login', { tenant, email, password }, {}, false);
    this.keep(s.access_token, s.refresh_token);
    return s.user;
  }

  /** A pasted access token (no refresh token: it works until it expires). */
  async useToken(token: string): Promise<User> {
    this.keep(token.trim(), null);
    return this.me();
  }

  me(): Promise<User> {
    return this.call<User>('GET', '/me');
  }

  logout(): void {
    const refresh = this.refreshToken;
    if (refresh) this.call('POST', '/auth/logout', { refresh_token: refresh }, {}, false).catch(() => {});
    this.keep(null, null);
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body?: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.call<T>('POST', path, body, opts);
  }

  put<T>(path: string, body?: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.call<T>('PUT', path, body, opts);
  }

  patch<T>(path: string, body?: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.call<T>('PATCH', path, body, opts);
  }

  delete<T>(path: string, body?: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.call<T>('DELETE', path, body, opts);
  }

  /**
   * Downloads a non-JSON answer (a CSV report) as a file named `filename`, with the bearer token (a plain
   * link can't carry it).
   */
  async download(path: string, filename: string): Promise<void> {
    const res = await this.fetch('GET', path);
    if (!res.ok) throw await errorOf(res);
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  /** An access token good for at least another minute (refreshed if needed), e.g. to open a WebSocket. */
  async freshToken(): Promise<string> {
    if (this.refreshToken && expiresWithin(this.token, 60)) await this.refresh();
    if (!this.token) throw new ApiError(401, 'unauthorized', 'not logged in');
    return this.token;
  }

  private async fetch(
    method: string,
    path: string,
    body?: unknown,
    opts: WriteOptions = {},
    retry = true,
  ): Promise<Response> {
    const res = await fetch(this.base + path, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}),
        ...(opts.idempotencyKey ? { 'Idempotency-Key': opts.idempotencyKey } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && retry && this.refreshToken) {
      await this.refresh();
      return this.fetch(method, path, body, opts, false);
    }
    return res;
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: WriteOptions = {},
    retry = true,
  ): Promise<T> {
    const res = await this.fetch(method, path, body, opts, retry);
    if (!res.ok) throw await errorOf(res);
    const text = await res.text();
    return (text ? safeJson(text) : undefined) as T;
  }

  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const s = await this.call<Session>('POST', '/auth/refresh', { refresh_token: this.refreshToken }, {}, false);
        this.keep(s.access_token, s.refresh_token);
      } catch (e) {
        this.keep(null, null);
        this.onSignedOut?.();
        throw e;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private keep(token: string | null, refresh: string | null): void {
    this.token = token;
    this.refreshToken = refresh;
    if (token) sessionStorage.setItem(STORE, JSON.stringify({ token, refresh }));
    else sessionStorage.removeItem(STORE);
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  const json = text ? safeJson(text) : undefined;
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  return new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text || res.statusText));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function expiresWithin(token: string | null, secs: number): boolean {
  if (!token) return true;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp === 'number' && payload.exp * 1000 - Date.now() < secs * 1000;
  } catch {
    return false;
  }
}

/** A fresh `Idempotency-Key`. */
export function idempotencyKey(): string {
  return crypto.randomUUID();
}

/**
 * What the common error codes mean for the person reading them (the API's codes, and the WebSocket's).
 * A code that isn't here shows the server's own message, which is written as a sentence too.
 */
const SENTENCES: Record<string, string> = {
  // signing in
  invalid_credentials: 'That school, e-mail and password don’t match an account. Check them and try again.',
  tenant_not_found: 'There is no school with that short name. Check the name your school gave you.',
  rate_limited: 'Too many attempts in a short time. Wait a minute, then try again.',
  invalid_token: 'Your session is no longer valid. Please sign in again.',
  token_expired: 'Your session has expired. Please sign in again.',
  session_revoked: 'You were signed out (perhaps on another device). Please sign in again.',
  invalid_refresh_token: 'Your session has ended. Please sign in again.',
  missing_token: 'Please sign in first.',
  unauthorized: 'Please sign in first.',
  // permissions
  forbidden: 'You don’t have permission to do that.',
  forbidden_role: 'Your role doesn’t allow that.',
  wrong_tenant: 'That belongs to another school.',
  // not found
  not_found: 'That page or item doesn’t exist (any more).',
  user_not_found: 'That person doesn’t exist (any more).',
  booking_not_found: 'That lesson booking doesn’t exist, or you have no part in it.',
  class_not_found: 'That class doesn’t exist, or you aren’t part of it.',
  meeting_not_found: 'That class meeting doesn’t exist.',
  package_not_found: 'That lesson package doesn’t exist.',
  consent_request_not_found: 'That consent request doesn’t exist, or it wasn’t sent to you.',
  tutor_not_bookable: 'This tutor hasn’t published any availability yet, so they can’t be booked.',
  // consent
  consent_required: 'A parent’s consent is needed first. Your parent gets a request and can grant it from their page.',
  already_answered: 'This consent request has already been answered.',
  method_required: 'Choose how you were verified before granting consent.',
  scopes_required: 'Choose at least one thing to grant or deny.',
  conflicting_scopes: 'Something can’t be both granted and denied.',
  not_addressed_parent: 'Only the parent this request was sent to can answer it.',
  parent_not_linked: 'You are no longer linked to this child.',
  scope_not_requested: 'That wasn’t part of the request.',
  // bookings
  slot_unavailable: 'That time was just taken or is no longer bookable. Please pick another slot.',
  student_busy: 'You already have a lesson at that time.',
  hold_expired: 'The reservation ran out before payment. Please pick the slot again.',
  length_not_offered: 'This tutor doesn’t offer lessons of that length.',
  illegal_transition: 'That can’t be done to this lesson in its current state.',
  too_late_to_cancel: 'The lesson has started, so it can no longer be cancelled.',
  too_late_to_reschedule: 'It is too late to move this lesson.',
  reschedule_limit: 'This lesson has already been moved as often as the school allows.',
  outside_lesson_window: 'The room isn’t open now. It opens shortly before the start.',
  lesson_not_open: 'This lesson isn’t confirmed yet, so its room isn’t open.',
  invalid_range: 'That date range is too long or empty.',
  invalid_timezone: 'That time zone wasn’t recognised. Pick one from the list, for example Europe/Berlin.',
  stripe_not_configured: 'Card payments aren’t set up for this school. Please pay as instructed.',
  payment_declined: 'The payment was declined. Nothing was charged; please try again or use another card.',
  payment_provider_error:
    'The payment provider couldn’t be reached. Nothing was charged; please try again in a moment.',
  package_used_up: 'This package has no lessons left.',
  package_not_active: 'This package isn’t paid for yet.',
  package_mismatch: 'This package is for another tutor or lesson length.',
  // classes
  not_enrolled: 'You aren’t enrolled in this class.',
  lesson_locked: 'This lesson hasn’t been unlocked yet.',
  class_not_active: 'This class isn’t running.',
  attendance_not_open: 'Attendance can’t be marked at this time.',
  // generic
  invalid_body: 'Some of what was sent isn’t valid.',
  invalid_json: 'Some of what was sent isn’t valid.',
  internal: 'Something went wrong on the server. Please try again in a moment.',
  unavailable: 'The service is briefly unavailable. Please try again in a moment.',
  disconnected: 'The live connection dropped. Reconnecting…',
};

/** The sentence for an error code, if it is a common one. */
export function sentenceFor(code: string): string | undefined {
  return SENTENCES[code];
}

/** A readable sentence for any error: a known code's sentence, else the server's (or the error's) message. */
export function describe(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  const known = typeof code === 'string' ? SENTENCES[code] : undefined;
  if (known) return known;
  if (e instanceof TypeError && /fetch/i.test(e.message)) return 'The server can’t be reached. Check your connection.';
  const message = e instanceof Error ? e.message : String(e);
  return sentence(message);
}

/** `the access token is invalid` → `The access token is invalid.` */
function sentence(s: string): string {
  const t = s.trim();
  if (!t) return 'Something went wrong.';
  const capital = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}
