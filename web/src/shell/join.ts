// Join buttons for lessons and class meetings, enabled only inside the room's window (the tenant's
// `join_lead_minutes` before the start to `auto_end_grace_minutes` after the end, as the server enforces),
// and the room routes they open: `/room/meeting/<id>?class=<class id>` and `/room/lesson/<booking id>`.

import type { User } from '../api';
import { clockTime, el } from '../dom';
import type { PageContext } from '../pages/types';
import { bookingPolicy, type BookingPolicy, type Upcoming } from './model';

/** The room's window for a lesson or meeting from `starts` to `ends`. */
export function roomWindow(p: BookingPolicy, starts: string, ends: string): { opens: number; closes: number } {
  return {
    opens: Date.parse(starts) - p.join_lead_minutes * 60_000,
    closes: Date.parse(ends) + p.auto_end_grace_minutes * 60_000,
  };
}

/** Whether this person may enter this item at all (whatever the time). */
function mayEnter(me: User, item: Upcoming, p: BookingPolicy): boolean {
  if (item.kind === 'lesson') return ['confirmed', 'in_progress'].includes(item.status);
  if (me.role === 'parent') return p.parents_observe;
  return item.status === 'active' || me.role === 'admin' || me.role === 'staff';
}

/** The route of an item's room. */
export function roomPath(item: Upcoming): string {
  return item.kind === 'lesson' ? `/room/lesson/${item.id}` : `/room/meeting/${item.id}?class=${item.cls?.id ?? ''}`;
}

const live = new Set<() => void>();
window.setInterval(() => {
  for (const refresh of live) refresh();
}, 20_000);

/**
 * A Join button (`data-meeting` or `data-booking` = the id) that opens the live room, enabled inside the room's
 * window; outside it, disabled with the opening time next to it (in `zone`: the page's, by default the
 * reader's). It re-checks the clock on its own.
 */
export function joinButton(ctx: PageContext, item: Upcoming, zone?: string): HTMLElement {
  const attr = item.kind === 'lesson' ? 'data-booking' : 'data-meeting';
  const b = el('button', { type: 'button', class: 'join primary', [attr]: item.id }, 'Join');
  b.setAttribute('aria-label', `Join ${item.title}`);
  const note = el('span', { class: 'join-note muted' });
  const wrap = el('span', { class: 'join-wrap' }, b, note);
  b.onclick = () => ctx.navigate(roomPath(item));
  let policy: BookingPolicy | null = null;
  const created = Date.now();
  const refresh = () => {
    if (!wrap.isConnected && Date.now() - created > 5000) {
      live.delete(refresh); // its page is gone
      return;
    }
    if (!policy) return;
    const { opens, closes } = roomWindow(policy, item.starts_at, item.ends_at);
    const now = Date.now();
    const allowed = mayEnter(ctx.me, item, policy);
    const open = allowed && now >= opens && now <= closes;
    b.disabled = !open;
    wrap.hidden = !allowed;
    note.textContent = !allowed
      ? ''
      : now < opens
        ? `opens at ${clockTime(new Date(opens).toISOString(), zone)}`
        : now > closes
          ? 'closed'
          : '';
  };
  b.disabled = true;
  bookingPolicy(ctx.api, ctx.me).then(
    (p) => {
      policy = p;
      refresh();
    },
    () => {
      // Without the policy, let the server decide (it answers outside_lesson_window).
      b.disabled = !(item.kind === 'meeting' || ['confirmed', 'in_progress'].includes(item.status));
    },
  );
  live.add(refresh);
  return wrap;
}
