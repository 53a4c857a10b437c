// What the page's two WebSocket clients share: the live room's (src/realtime.ts) and the user channel's
// (src/shell/live.ts). Both talk to /ws on this origin, keep the connection alive with application pings, and
// reconnect with jittered, doubling back-off.

/** `/ws` on this page's own origin. */
export function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/**
 * Browsers can't see WebSocket pings: every heartbeat (the `welcome`'s `heartbeat_secs`) sends an application
 * ping, and closes the socket (4000) once the server has been silent for two heartbeats and 5 s, so the
 * client reconnects. Returns the interval, for `clearInterval`.
 */
export function keepAlive(ws: () => WebSocket | null, lastFrame: () => number, heartbeatSecs: unknown): number {
  const hb = Number(heartbeatSecs) * 1000 || 25_000;
  return window.setInterval(() => {
    if (Date.now() - lastFrame() > 2 * hb + 5000) ws()?.close(4000, 'server silent');
    else ws()?.send(JSON.stringify({ type: 'ping' }));
  }, hb);
}

/** The delay before the next reconnect (the back-off with ±50% jitter) and the back-off after it (doubled, 15 s at most). */
export function nextAttempt(backoff: number): { delay: number; backoff: number } {
  return { delay: backoff * (0.5 + Math.random()), backoff: Math.min(backoff * 2, 15_000) };
}
