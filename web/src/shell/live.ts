// The user's own channel on /ws (docs/protocol.md, "user:<user id> — the personal channel"): one connection
// for the signed-in person, opened with an `auth` frame; the server joins `user:<id>` by itself and pushes
// credits, XP, levels, badges, streaks, unlocks, attendance and booking changes there. Each live push goes to
// `onEvent`. After a reconnect, pushes missed in between come from the join's history when the stream is the
// same and has no hole; otherwise the pages are told to reload (`{kind: "resync"}`).

import type { UserEvent } from '../pages/types';
import { keepAlive, nextAttempt, wsUrl } from '../socket';

type Frame = { type: string } & Record<string, any>;

export interface ChannelHandlers {
  event(e: UserEvent): void;
  status(text: string, ok: boolean): void;
}

export class UserChannel {
  private ws: WebSocket | null = null;
  private closed = false;
  private backoff = 500;
  private pinger: number | undefined;
  private lastFrame = 0;
  /** Where we are in the personal channel's stream: its epoch and the last offset handled. */
  private position: { epoch: string; offset: number } | null = null;

  constructor(
    private readonly userId: string,
    private readonly token: () => Promise<string>,
    private readonly on: ChannelHandlers,
  ) {}

  get room(): string {
    return `user:${this.userId}`;
  }

  connect(): void {
    this.closed = false;
    void this.open();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pinger);
    this.ws?.close(1000, 'bye');
    this.ws = null;
  }

  private async open(): Promise<void> {
    let token: string;
    try {
      token = await this.token();
    } catch {
      this.on.status('live updates off: not signed in', false);
      return;
    }
    if (this.closed) return;
    const ws = new WebSocket(wsUrl());
    this.ws = ws;
    this.on.status('connecting…', false);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
    ws.onmessage = (ev) => {
      this.lastFrame = Date.now();
      try {
        this.frame(JSON.parse(ev.data as string));
      } catch (e) {
        console.warn('liveclass: bad frame on the user channel', e);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      if (this.closed) return;
      this.on.status(`live updates paused (${ev.code}); reconnecting…`, false);
      const next = nextAttempt(this.backoff);
      this.backoff = next.backoff;
      setTimeout(() => void this.open(), next.delay);
    };
  }

  private frame(f: Frame): void {
    switch (f.type) {
      case 'welcome':
        clearInterval(this.pinger);
        this.pinger = keepAlive(
          () => this.ws,
          () => this.lastFrame,
          f.heartbeat_secs,
        );
        break;
      case 'joined':
        if (f.room === this.room) this.joined(f);
        break;
      case 'message':
        if (f.room !== this.room) break;
        if (f.offset > 0) {
          if (this.position && f.epoch === this.position.epoch && f.offset <= this.position.offset) break;
          this.position = { epoch: f.epoch, offset: f.offset };
        }
        this.on.event(f.data as UserEvent);
        break;
      case 'error':
        if (['invalid_token', 'token_expired', 'session_revoked', 'unauthorized'].includes(f.code)) {
          // The server closes with 4001. An expired token is refreshed by the next attempt; others won't do better.
          if (f.code !== 'token_expired') this.closed = true;
          this.on.status('live updates off: sign in again', false);
        } else if (f.id === undefined && f.code !== 'rate_limited') {
          console.warn(`liveclass: user channel: ${f.code}: ${f.message}`);
        }
        break;
    }
  }

  /** The personal channel's join, at every (re)connect: never a recovery, so find holes ourselves. */
  private joined(f: Frame): void {
    this.backoff = 500;
    this.on.status('live', true);
    const history = (f.history as { offset: number; data: UserEvent }[]) ?? [];
    let last = Number(f.position?.offset ?? 0);
    for (const h of history) last = Math.max(last, h.offset);
    const before = this.position;
    this.position = { epoch: String(f.position?.epoch ?? ''), offset: last };
    if (!before) return; // the first connect: pages load their state over HTTP anyway
    if (before.epoch !== this.position.epoch) {
      this.on.event({ kind: 'resync' });
      return;
    }
    const missed = history.filter((h) => h.offset > before.offset);
    const hole = last > before.offset && (missed.length === 0 || missed[0].offset !== before.offset + 1);
    if (hole) this.on.event({ kind: 'resync' });
    else for (const h of missed) this.on.event(h.data);
  }
}
