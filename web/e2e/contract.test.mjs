// Contract: every request the browser app makes is an operation of the server's OpenAPI document.
//
// The app's requests are found statically in web/src (./app-endpoints.mjs: the TypeScript compiler follows
// every `fetch` back through `Api.get/post/put/patch/delete/download`, `forms.ts`'s `put`/`send`/`downloadCsv`
// and `csvButton`, and whatever helper builds the path). The document is GET /api/v1/openapi.json of
// `target/debug/liveclass serve`, started on a free port with a temporary SQLite database. Checked:
//   - each (method, path) the app requests is in the document: a `${…}` path segment matches any `{name}`
//     there, the query string is not looked at; a failure names each missing operation with the file:line
//     that requests it and the call chain down to the `fetch`;
//   - nothing the app requests is left unresolved, except the ones listed in KNOWN_UNRESOLVED below (with
//     why); an entry there that no longer occurs fails too, so the list stays true;
//   - paths the app names outside a request (`/api/v1/tutors`, looked up in the document itself) are in the
//     document.
// No browser. Run: `bash web/e2e/run.sh`, or after a build `node --test-reporter=spec web/e2e/contract.test.mjs`.
// Environment: LIVECLASS_BIN (default target/debug/liveclass).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { WEB, startRun, startServer } from './harness.mjs';
import { appEndpoints, PARAM } from './app-endpoints.mjs';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/**
 * Requests the scan can't resolve and that are known to be fine, as `file: code` (the code as the scan
 * reports it, whitespace collapsed) → why. Empty today: every request of the app resolves.
 */
const KNOWN_UNRESOLVED = new Map([
  // ['src/pages/example.ts: someValue', 'why it is a documented endpoint'],
]);

const run = startRun('contract');
let doc = null;
let app = null;

/** The server's OpenAPI document (a server without the page, logging warnings only). */
async function openapi() {
  const { base } = await startServer(run, { webDir: false, env: { LIVECLASS_LOG_FILTER: 'warn' } });
  const res = await fetch(`${base}/api/v1/openapi.json`);
  assert.equal(res.status, 200, 'GET /api/v1/openapi.json');
  return res.json();
}

/** The document's operations: `{ method, path, re }`, `re` matching a resolved app path. */
function operations(document) {
  const out = [];
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    const re = new RegExp(
      '^' +
        path
          .split(/(\{[^}/]+\})/)
          .map((part) => (/^\{.+\}$/.test(part) ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
          .join('') +
        '$',
    );
    for (const m of METHODS) if (item[m]) out.push({ method: m.toUpperCase(), path, re });
  }
  return out;
}

const shown = (path) => path.replaceAll(PARAM, '{…}');

before(async () => {
  app = appEndpoints(WEB);
  doc = await openapi();
});

test('the scan finds the app’s requests, through its helpers', () => {
  const has = (method, path) => app.calls.some((c) => c.method === method && shown(c.path) === path);
  // One of each way out: Api's own calls, Api.get/post, forms.ts's put (send), and csvButton → downloadCsv.
  for (const [method, path] of [
    ['POST', '/api/v1/auth/login'],
    ['GET', '/api/v1/me'],
    ['GET', '/api/v1/classes/{…}/roster'],
    ['POST', '/api/v1/consent-requests/{…}/decision'],
    ['PUT', '/api/v1/tenants/{…}/booking-policy'],
    ['GET', '/api/v1/reports/revenue'],
  ])
    assert.ok(has(method, path), `the scan doesn't see ${method} ${path}; it found:\n${list(app.calls)}`);
  assert.ok(app.calls.length >= 60, `only ${app.calls.length} requests found`);
  console.log(
    `${new Set(app.calls.map((c) => `${c.method} ${c.path}`)).size} distinct requests at ${app.calls.length} places`,
  );
});

test('every request of the app is a documented operation', () => {
  const ops = operations(doc);
  const missing = app.calls.filter((c) => !ops.some((o) => o.method === c.method && o.re.test(c.path)));
  assert.deepEqual(
    missing.map((c) => `${c.method} ${shown(c.path)}`),
    [],
    `the app requests operations the OpenAPI document doesn't have:\n${list(missing)}`,
  );
  // For the reader: what the document offers that no page uses (not a failure).
  const unused = ops.filter(
    (o) => o.path.startsWith('/api/v1/') && !app.calls.some((c) => c.method === o.method && o.re.test(c.path)),
  );
  console.log(`documented, and not requested by any page (${unused.length}):`);
  for (const o of unused) console.log(`  ${o.method} ${o.path}`);
});

test('no request is left unresolved, except the known ones', () => {
  const keys = app.unresolved.map((u) => `${u.where.replace(/:\d+$/, '')}: ${u.code}`);
  const unknown = app.unresolved.filter((_, i) => !KNOWN_UNRESOLVED.has(keys[i]));
  assert.deepEqual(
    unknown.map((u) => `${u.where}: ${u.reason}: ${u.code}${u.chain.length ? ` (via ${u.chain.join(' → ')})` : ''}`),
    [],
    'requests whose method or path the scan can’t read: make them resolvable, or list them in KNOWN_UNRESOLVED with why',
  );
  const stale = [...KNOWN_UNRESOLVED.keys()].filter((k) => !keys.includes(k));
  assert.deepEqual(stale, [], 'KNOWN_UNRESOLVED lists requests that are no longer there');
});

test('paths the app names outside requests are documented', () => {
  const paths = Object.keys(doc.paths ?? {});
  const missing = app.mentions.filter((m) => !paths.includes(m.path));
  assert.deepEqual(
    missing.map((m) => `${m.where}: ${m.path}`),
    [],
    'the app names API paths the document lacks',
  );
});

function list(calls) {
  return calls.map((c) => `  ${c.method} ${shown(c.path)}  at ${c.chain.join(' → ')}`).join('\n');
}
