// One room on our WebSocket (`/ws`, docs/protocol.md): authenticates with an `auth` first frame, joins the
// room, keeps the room's (epoch, offset) position so a reconnect rejoins with `recover`, drops repeated
// stored publications, pings, and reconnects with backoff. Requests that carry an `id` resolve on their
// `ack` (or `joined`) and reject with the server's `error`.

import { keepAlive, nextAttempt, wsUrl } from './socket';

export interface Position {
  epoch: string;
  offset: number;
}

export interface PresenceEntry {
  user_id: string;
  name: string;
  role: string;
  devices: number;
}

export interface BoardObject {
  key: string;
  object: unknown;
}

export interface Joined {
  room: string;
  position: Position;
  recovered: boolean;
  history: { offset: number; data: Publication }[];
  presence: PresenceEntry[];
  presence_total: number;
  board: { offset: number; objects: BoardObject[] };
}

/** A publication's `data`: `kind` says what it is (chat, draw, hand, presence, attendance, ...). */
export type Publication = { kind: string } & Record<string, unknown>;

export class RealtimeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

export interface RoomHandlers {
  /** A (re)join succeeded: fresh state unless `recovered` (then only `history` is new). */
  joined(j: Joined): void;
  /** A live publication (stored ones in offset order, without repeats; ephemeral ones have offset 0). */
  message(data: Publication, offset: number): void;
  /** The room's stream restarted under a new epoch while we were in it. */
  restarted(position: Position): void;
  status(text: string, ok: boolean): void;
  error(e: RealtimeError): void;
}

type Pending = { resolve: (v: any) => void; reject: (e: RealtimeError) => void };

export class RealtimeRoom {
  private ws: WebSocket | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private position: Position | null = null;
  private closed = false;
  private backoff = 500;
  private lastFrame = 0;
  private pinger: number | undefined;
  /** A join is under way: a `not_recoverable` now belongs to it (its `joined` follows). */
  private joining = false;

  constructor(
    readonly room: string,
    private readonly token: () => Promise<string>,
    private readonly on: RoomHandlers,
  ) {}

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

  /** Leaves and joins again without recovery: a fresh snapshot (after a stream restart with a gap). */
  rejoin(): void {
    this.position = null;
    this.request({ type: 'leave', room: this.room })
      .catch(() => {})
      .then(() => this.sendJoin());
  }

  chat(text: string): Promise<unknown> {
    return this.request({ type: 'chat', room: this.room, text });
  }

  draw(op: unknown): Promise<unknown> {
    return this.request({ type: 'draw', room: this.room, op });
  }

  hand(raised: boolean): Promise<unknown> {
    return this.request({ type: 'hand', room: this.room, raised });
  }

  command(name: string, args: unknown): Promise<unknown> {
    return this.request({ type: 'command', room: this.room, name, args });
  }

  private request(msg: Record<string, unknown>): Promise<any> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RealtimeError('disconnected', 'not connected to the room'));
    }
    const id = this.nextId++;
    ws.send(JSON.stringify({ ...msg, id }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  private async open(): Promise<void> {
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      this.on.error(new RealtimeError('unauthorized', `no access token: ${(e as Error).message}`));
      return;
    }
    if (this.closed) return;
    const ws = new WebSocket(wsUrl());
    this.ws = ws;
    this.on.status('connecting…', false);
    // The auth frame joins our room too (recovering from where we were, after a reconnect): its `joined` comes
    // with the `welcome`, one round trip sooner than a `join` sent after it.
    ws.onopen = () => {
      this.joining = true;
      const recover = this.position ? { recover: this.position } : {};
      ws.send(JSON.stringify({ type: 'auth', token, join: this.room, ...recover }));
    };
    ws.onmessage = (ev) => {
      this.lastFrame = Date.now();
      this.frame(JSON.parse(ev.data as string));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      for (const p of this.pending.values()) p.reject(new RealtimeError('disconnected', 'the connection closed'));
      this.pending.clear();
      if (this.closed) return;
      this.on.status(`disconnected (${ev.code}${ev.reason ? ` ${ev.reason}` : ''}); reconnecting…`, false);
      const next = nextAttempt(this.backoff);
      this.backoff = next.backoff;
      setTimeout(() => void this.open(), next.delay);
    };
  }

  private frame(f: any): void {
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
        if (f.room === this.room) {
          this.joinedRoom(f as Joined);
          this.settle(f.id, f); // a rejoin's reply; the join made while connecting has no id
        }
        break;
      case 'ack':
      case 'left':
      case 'pong':
        this.settle(f.id, f);
        break;
      case 'error': {
        const e = new RealtimeError(f.code, f.message);
        if (f.id !== undefined && this.pending.has(f.id)) this.settle(f.id, undefined, e);
        else this.on.error(e);
        if (f.id === undefined && f.room === this.room) {
          // Our room refused us (the join made while connecting).
          this.joining = false;
          this.on.status(`could not join: ${f.code}`, false);
        }
        if (f.code === 'invalid_token' || f.code === 'token_expired' || f.code === 'unauthorized') {
          this.closed = true; // the server closes with 4001; the same token won't do better
          this.on.status(`not connected (${f.code}): log in again`, false);
        }
        break;
      }
      case 'not_recoverable':
        if (f.room !== this.room) break;
        this.position = f.position;
        if (!this.joining) this.on.restarted(f.position);
        break;
      case 'kicked':
        if (f.room !== this.room) break;
        this.closed = true;
        this.ws?.close(1000, 'kicked');
        this.on.status(`removed from the room (${f.reason})`, false);
        break;
      case 'message':
        if (f.room !== this.room) break;
        if (f.offset > 0) {
          if (this.position && f.epoch === this.position.epoch && f.offset <= this.position.offset) break;
          this.position = { epoch: f.epoch, offset: f.offset };
        }
        this.on.message(f.data, f.offset);
        break;
    }
  }

  private sendJoin(): void {
    const id = this.nextId++;
    this.joining = true;
    const recover = this.position ? { recover: this.position } : {};
    this.ws?.send(JSON.stringify({ type: 'join', id, room: this.room, ...recover }));
    this.pending.set(id, {
      resolve: () => {},
      reject: (e) => {
        this.joining = false;
        this.on.error(e);
        this.on.status(`could not join: ${e.code}`, false);
      },
    });
  }

  private joinedRoom(j: Joined): void {
    this.backoff = 500;
    this.joining = false;
    let pos = j.position;
    for (const h of j.history) if (h.offset > pos.offset) pos = { epoch: pos.epoch, offset: h.offset };
    this.position = pos;
    this.on.status('connected', true);
    this.on.joined(j);
  }

  private settle(id: number | undefined, value: unknown, error?: RealtimeError): void {
    if (id === undefined) return;
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (error) p.reject(error);
    else p.resolve(value);
  }
}
