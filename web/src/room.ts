// Inside a lesson or class meeting: media (livekit-client) next to our WebSocket room (chat, whiteboard,
// hands, presence) and, for the instructor and staff of a meeting, the roster with the attendance proposal
// and buttons to mark attendance.

import { Api, describe, type User } from './api';
import { Board } from './board';
import { $, el, setStatus, showError, userZone } from './dom';
import { Media } from './media';
import { RealtimeRoom, type Joined, type Publication } from './realtime';

export type Target =
  | { kind: 'lesson'; booking: string; room: string; title: string }
  | { kind: 'meeting'; meeting: string; classId: string; room: string; title: string; moderator: boolean };

interface MediaJoin {
  backend: string;
  url: string | null;
  token: string;
  room: string;
  seat: 'tutor' | 'student' | 'observer';
}

interface ChatLine {
  key: string;
  at: number;
  userId: string;
  name: string;
  text: string;
}

interface RosterEntry {
  student_id: string;
  display_name: string;
  balance: number;
}

interface Proposal {
  late_after_minutes: number;
  marks: { student_id: string; status: string; minutes_attended: number }[];
}

const PROPOSAL_POLL_MS = 5000;

export class LiveRoom {
  private readonly rt: RealtimeRoom;
  private readonly board: Board;
  private readonly media: Media;
  private readonly presence = new Map<string, { name: string; role: string }>();
  private readonly hands = new Map<string, string>(); // user id → name, raised hands only
  private chat: ChatLine[] = [];
  private roster: RosterEntry[] = [];
  private readonly marks = new Map<string, string>();
  private proposal = new Map<string, { status: string; minutes: number }>();
  private poll: number | undefined;
  private left = false;

  constructor(
    private readonly api: Api,
    private readonly me: User,
    private readonly target: Target,
    private readonly onLeave: () => void,
  ) {
    this.rt = new RealtimeRoom(target.room, () => api.freshToken(), {
      joined: (j) => this.joined(j),
      message: (d, offset) => this.publication(d, offset),
      restarted: (pos) => {
        // The stream began again: its board starts empty, and history before it is gone.
        this.board.restart();
        this.hands.clear();
        this.renderPeople();
        if (pos.offset > 0) this.rt.rejoin();
        else if (target.kind === 'meeting') void this.loadChat();
      },
      status: (text, ok) => setStatus('#rt-status', `room: ${text}`, ok),
      error: (e) => showError(e),
    });
    this.board = new Board($<HTMLCanvasElement>('#board'), me.id, (op) => this.rt.draw(op), showError);
    (window as unknown as { __board: Board }).__board = this.board;
    this.media = new Media($('#videos'), {
      // A room that was left may still report (its disconnect): the page belongs to the next one.
      status: (text, ok) => this.left || setStatus('#media-status', text, ok),
      error: (text) => this.left || showError(new Error(text)),
    });
  }

  start(): void {
    const t = this.target;
    $('#room-title').textContent = t.title;
    const view = $('#room-view');
    view.dataset.room = t.room;
    delete view.dataset.seat;
    delete view.dataset.backend;
    $('#lesson-state').textContent = '';
    $('#my-attendance').textContent = '';
    $('#chat').replaceChildren();
    $('#presence').replaceChildren();
    $('#leave').onclick = () => {
      this.leave();
      this.onLeave();
    };
    $('#hand').onclick = () => this.rt.hand(!this.hands.has(this.me.id)).catch(showError);
    $('#clear-board').onclick = () => this.board.clear();
    $<HTMLInputElement>('#color').oninput = (e) => (this.board.color = (e.target as HTMLInputElement).value);
    $<HTMLFormElement>('#chat-form').onsubmit = (e) => {
      e.preventDefault();
      const input = $<HTMLInputElement>('#chat-form [name=text]');
      const text = input.value.trim();
      if (!text) return;
      this.rt.chat(text).then(() => (input.value = ''), showError);
    };
    this.renderHand();

    this.rt.connect();
    void this.joinMedia();
    const moderating = t.kind === 'meeting' && t.moderator;
    $('#moderator').hidden = !moderating;
    if (moderating) {
      void this.loadRoster();
      void this.loadProposal();
      this.poll = window.setInterval(() => void this.loadProposal(), PROPOSAL_POLL_MS);
    }
  }

  leave(): void {
    this.left = true;
    clearInterval(this.poll);
    this.rt.close();
    this.media.disconnect();
    this.board.destroy();
  }

  private async joinMedia(): Promise<void> {
    const t = this.target;
    const path = t.kind === 'lesson' ? `/bookings/${t.booking}/join` : `/meetings/${t.meeting}/join`;
    let join: MediaJoin;
    try {
      join = await this.api.post<MediaJoin>(path);
    } catch (e) {
      if (this.left) return;
      setStatus('#media-status', `media: ${describe(e)}`, false);
      showError(e);
      return;
    }
    if (this.left) return;
    $('#room-view').dataset.seat = join.seat;
    $('#room-view').dataset.backend = join.backend;
    if (!join.url) {
      setStatus('#media-status', 'no media server is configured: no audio or video (chat and whiteboard work)', false);
      return;
    }
    try {
      await this.media.connect(join.url, join.token, join.seat !== 'observer');
      if (this.left) this.media.disconnect(); // left while connecting
    } catch (e) {
      if (this.left) return;
      setStatus('#media-status', `media: ${describe(e)}`, false);
      showError(new Error(`could not connect to the media server at ${join.url}: ${describe(e)}`));
    }
  }

  // --- the WebSocket room ---

  private joined(j: Joined): void {
    this.board.reset(j.board.objects, j.board.offset);
    this.presence.clear();
    for (const p of j.presence) this.presence.set(p.user_id, { name: p.name, role: p.role });
    if (!j.recovered) {
      // A fresh state: the history window (last 50 publications) and, for meetings, the stored chat.
      this.chat = [];
      this.hands.clear();
      if (this.target.kind === 'meeting') void this.loadChat();
    }
    for (const h of j.history) this.publication(h.data, h.offset);
    this.renderChat();
    this.renderPeople();
  }

  private publication(d: Publication, offset: number): void {
    switch (d.kind) {
      case 'chat': {
        const from = d.from as { id: string; name: string };
        this.addChat([
          {
            key: `${from.id}|${offset}|${d.text}`,
            at: d.at as number,
            userId: from.id,
            name: from.name,
            text: String(d.text),
          },
        ]);
        break;
      }
      case 'draw':
        this.board.apply(d.op as Parameters<Board['apply']>[0], offset);
        break;
      case 'hand': {
        const user = d.user as { id: string; name: string };
        if (d.raised) this.hands.set(user.id, user.name);
        else this.hands.delete(user.id);
        this.renderPeople();
        break;
      }
      case 'presence': {
        const user = d.user as { id: string; name: string; role: string };
        if (d.event === 'join') this.presence.set(user.id, { name: user.name, role: user.role });
        else this.presence.delete(user.id);
        this.renderPeople();
        break;
      }
      case 'attendance':
        if (this.target.kind === 'meeting' && d.meeting_id === this.target.meeting) {
          this.marks.set(String(d.student_id), String(d.status));
          if (d.student_id === this.me.id) $('#my-attendance').textContent = `Your attendance: ${d.status}`;
          this.renderPeople();
        }
        break;
      case 'lesson':
        $('#lesson-state').textContent = `Lesson ${d.state}`;
        break;
    }
  }

  // --- chat ---

  private async loadChat(): Promise<void> {
    if (this.target.kind !== 'meeting') return;
    try {
      const rows = await this.api.get<
        { offset: number; user_id: string; user_name: string; text: string; at: string }[]
      >(`/meetings/${this.target.meeting}/chat?limit=1000`);
      this.addChat(
        rows.map((r) => ({
          key: `${r.user_id}|${r.offset}|${r.text}`,
          at: Date.parse(r.at),
          userId: r.user_id,
          name: r.user_name,
          text: r.text,
        })),
      );
    } catch (e) {
      showError(e);
    }
  }

  private addChat(lines: ChatLine[]): void {
    const known = new Set(this.chat.map((c) => c.key));
    const fresh = lines.filter((l) => !known.has(l.key));
    if (!fresh.length) return;
    this.chat.push(...fresh);
    this.chat.sort((a, b) => a.at - b.at);
    this.renderChat();
  }

  private renderChat(): void {
    const list = $('#chat');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(
      ...this.chat.map((c) =>
        el(
          'li',
          {
            class: 'chat',
            'data-user': c.userId,
            title: new Date(c.at).toLocaleTimeString(undefined, { timeZone: userZone() }),
          },
          el('span', { class: 'who' }, c.name),
          c.text,
        ),
      ),
    );
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // --- people: presence, hands, roster and attendance ---

  private renderHand(): void {
    $('#hand').textContent = this.hands.has(this.me.id) ? 'Lower hand' : 'Raise hand';
  }

  private renderPeople(): void {
    this.renderHand();
    $('#presence').replaceChildren(
      ...[...this.presence].map(([id, p]) =>
        el(
          'li',
          { 'data-user': id, 'data-hand': this.hands.has(id) ? 'up' : undefined },
          `${p.name} (${p.role})`,
          this.hands.has(id) ? ' ✋' : '',
        ),
      ),
    );
    if (!$('#moderator').hidden) this.renderRoster();
  }

  private async loadRoster(): Promise<void> {
    if (this.target.kind !== 'meeting') return;
    try {
      const [roster, report] = await Promise.all([
        this.api.get<RosterEntry[]>(`/classes/${this.target.classId}/roster`),
        this.api.get<{ records: { meeting_id: string; student_id: string; status: string | null }[] }>(
          `/classes/${this.target.classId}/attendance`,
        ),
      ]);
      this.roster = roster;
      for (const r of report.records) {
        if (r.meeting_id === this.target.meeting && r.status) this.marks.set(r.student_id, r.status);
      }
      this.renderRoster();
    } catch (e) {
      showError(e);
    }
  }

  private async loadProposal(): Promise<void> {
    if (this.target.kind !== 'meeting') return;
    try {
      const p = await this.api.get<Proposal>(`/meetings/${this.target.meeting}/attendance/proposal`);
      this.proposal = new Map(p.marks.map((m) => [m.student_id, { status: m.status, minutes: m.minutes_attended }]));
      $('#proposal-note').textContent =
        `Proposed from who was in the video room (late after ${p.late_after_minutes} min); updated ${new Date().toLocaleTimeString(undefined, { timeZone: userZone() })}.`;
      this.renderRoster();
    } catch (e) {
      $('#proposal-note').textContent = `No proposal: ${describe(e)}`;
    }
  }

  private renderRoster(): void {
    const rows = this.roster.map((s) => {
      const proposed = this.proposal.get(s.student_id);
      const buttons = ['present', 'late', 'absent', 'excused'].map((status) => {
        const b = el('button', { type: 'button', 'data-status': status }, status);
        if (proposed?.status === status) b.style.fontWeight = 'bold';
        b.onclick = () => this.mark(s.student_id, status);
        return b;
      });
      return el(
        'tr',
        { 'data-student': s.student_id },
        el('td', {}, `${s.display_name} (${s.balance} credits)`),
        el('td', { class: 'here' }, this.presence.has(s.student_id) ? 'yes' : 'no'),
        el('td', { class: 'hand' }, this.hands.has(s.student_id) ? '✋' : ''),
        el('td', { class: 'proposal' }, proposed ? `${proposed.status} (${proposed.minutes} min)` : '–'),
        el('td', { class: 'marked' }, this.marks.get(s.student_id) ?? '–'),
        el('td', {}, ...buttons),
      );
    });
    $('#roster tbody').replaceChildren(...rows);
  }

  /** Marks over the WebSocket (`mark_attendance`); the room's `attendance` publication updates the table. */
  private mark(student: string, status: string): void {
    this.rt.command('mark_attendance', { student_id: student, status }).then(() => this.loadRoster(), showError);
  }
}
