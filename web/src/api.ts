// The HTTP API: JSON in and out, bearer token, one retry after refreshing an expired access token.
// Every error the server sends is `{"error":{"code","message"}}`; it surfaces as an ApiError.

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
}

interface Session {
  access_token: string;
  refresh_token: string;
  user: User;
}

const STORE = 'liveclass.session';

export class Api {
  token: string | null = null;
  private refreshToken: string | null = null;
  private refreshing: Promise<void> | null = null;

  constructor(private readonly base = '/api/v1') {
    const saved = sessionStorage.getItem(STORE);
    if (saved) ({ token: this.token, refresh: this.refreshToken } = JSON.parse(saved));
  }

  async login(tenant: string, email: string, password: string): Promise<User> {
    const s = await this.call<Session>('POST', '/auth/login', { tenant, email, password }, false);
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
    if (refresh) this.call('POST', '/auth/logout', { refresh_token: refresh }, false).catch(() => {});
    this.keep(null, null);
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  /** An access token good for at least another minute (refreshed if needed), e.g. to open a WebSocket. */
  async freshToken(): Promise<string> {
    if (this.refreshToken && expiresWithin(this.token, 60)) await this.refresh();
    if (!this.token) throw new ApiError(401, 'unauthorized', 'not logged in');
    return this.token;
  }

  private async call<T>(method: string, path: string, body?: unknown, retry = true): Promise<T> {
    const res = await fetch(this.base + path, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && retry && this.refreshToken) {
      await this.refresh();
      return this.call<T>(method, path, body, false);
    }
    const text = await res.text();
    const json = text ? safeJson(text) : undefined;
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text || res.statusText));
    }
    return json as T;
  }

  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const s = await this.call<Session>('POST', '/auth/refresh', { refresh_token: this.refreshToken }, false);
        this.keep(s.access_token, s.refresh_token);
      } catch (e) {
        this.keep(null, null);
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

/** A readable line for any error: an API error's `code: message`, otherwise its message. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.toString();
  if (e instanceof Error) return e.message;
  return String(e);
}
