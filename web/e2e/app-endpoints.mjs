// Which API endpoints the browser app calls, found statically in web/src with the TypeScript compiler (the
// project's own `typescript` package: its parser and type checker).
//
// Every request leaves the app through the global `fetch` (the `Api` class wraps it; `forms.ts` calls it for
// PUT and CSV downloads). So the roots are the `fetch(url, init)` calls, and the method and URL are worked out
// backwards from there, through every layer of helpers:
//   - a value that is a parameter of the function the call is in is taken from each call site of that
//     function, one call chain at a time, so that a method and a path that travel together stay together
//     (`Api.get(path)` → `Api.call('GET', path)` → `Api.fetch(method, path)` → `fetch(this.base + path,
//     { method })`); a call of a function-typed parameter (`path()`, a thunk) runs the function passed there;
//   - a call of one of the app's own functions (`qs(…)`) is followed into its return expressions;
//   - a `const` is followed to its initializer; a value whose TypeScript type is a string literal, or a union
//     of them, stands for each of them (`/classes/${id}/${action}` with `action: 'activate' | 'cancel'`);
//   - `?` and what follows is the query string, not looked at; a `${…}` there is not evaluated;
//   - any other `${x}` (or `'…/' + x`) that stands as a whole path segment (after a `/`, before `/`, `?`, `.`
//     or the end) is a path parameter: it matches any `{name}` in the OpenAPI document. A value that is
//     neither resolvable nor a whole segment (a part of the path built elsewhere and passed in) can't be
//     read statically: it is reported as unresolved, with where it is, never guessed.
// A function of the app that is used as a value (passed around, not called) where one of these chains needs
// its call sites is reported unresolved too. Other ways out of the page (XMLHttpRequest, EventSource,
// navigator.sendBeacon) are reported unresolved so that they can't slip past; WebSockets (`/ws`, the realtime
// protocol, not the REST API) are not followed. Finally, string literals that mention `/api/v1/…` without
// being part of a request (the student page looks `/api/v1/tutors` up in the OpenAPI document) are listed
// as mentions.
//
// `node web/e2e/app-endpoints.mjs` prints what it finds.

import ts from 'typescript';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A path parameter in a resolved path: matches any `{name}` segment of the OpenAPI document. */
export const PARAM = '\u0000';
const MAX_ALTERNATIVES = 256;
const MAX_CHAIN = 16;

class Unresolved extends Error {
  constructor(node, reason) {
    super(reason);
    this.node = node;
  }
}

/** Thrown when a value is a parameter of `fn` and no call of `fn` is chosen yet: the caller forks per call site. */
class Fork extends Error {
  constructor(fn) {
    super('fork');
    this.fn = fn;
  }
}

/**
 * The app's requests: `{ calls: [{ method, path, where, chain }], unresolved: [{ where, code, reason }],
 * mentions: [{ path, where }] }`. `path` is the full URL path (`/api/v1/…`) without the query, path
 * parameters as PARAM; `where` is `file:line` (relative to `webDir`) of the app's own call (the outermost
 * call site of the chain), `chain` every call site from there to the `fetch`.
 */
export function appEndpoints(webDir) {
  const configPath = join(webDir, 'tsconfig.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(
    configPath,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  );
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const checker = program.getTypeChecker();
  const srcDir = resolve(webDir, 'src');
  const sources = program.getSourceFiles().filter((f) => resolve(f.fileName).startsWith(srcDir + '/'));
  const isOurs = (node) => sources.includes(node.getSourceFile());
  const where = (node) => {
    const sf = node.getSourceFile();
    const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
    return `${relative(webDir, sf.fileName)}:${line + 1}`;
  };
  const code = (node) => node.getText().replace(/\s+/g, ' ');

  // --- symbols and references ---

  const symbolOf = (node) => {
    let s = checker.getSymbolAtLocation(node);
    if (s && s.flags & ts.SymbolFlags.Alias) s = checker.getAliasedSymbol(s);
    return s;
  };
  /** Every identifier in the app, by the symbol it names. */
  const references = new Map();
  for (const sf of sources) {
    const visit = (n) => {
      if (ts.isIdentifier(n)) {
        const s = symbolOf(n);
        if (s) (references.get(s) ?? references.set(s, []).get(s)).push(n);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  const isLib = (symbol) =>
    (symbol?.declarations ?? []).some((d) => program.isSourceFileDefaultLibrary(d.getSourceFile()));

  /** The symbol by which `fn` (a function-like node) is called, or null for an anonymous inline function. */
  function calleeSymbol(fn) {
    if (ts.isConstructorDeclaration(fn)) return symbolOf(fn.parent.name);
    if ((ts.isFunctionDeclaration(fn) || ts.isMethodDeclaration(fn)) && fn.name) return symbolOf(fn.name);
    const p = fn.parent;
    if (
      (ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) &&
      p.initializer === fn
    )
      return symbolOf(p.name);
    return null;
  }

  const sitesCache = new Map();
  /** The calls of `fn` (`new` for a constructor), leaving out the ones inside `fn` itself (recursion). */
  function callSites(fn) {
    if (sitesCache.has(fn)) return sitesCache.get(fn);
    const symbol = calleeSymbol(fn);
    if (!symbol) throw new Unresolved(fn, 'a parameter of an inline function: its calls can’t be followed');
    const sites = [];
    const escapes = [];
    for (const id of references.get(symbol) ?? []) {
      const parent = id.parent;
      if (parent === fn || (parent.name === id && (parent.initializer === fn || ts.isClassDeclaration(parent))))
        continue; // the declaration
      if (ts.isImportSpecifier(parent) || ts.isExportSpecifier(parent) || ts.isImportClause(parent)) continue;
      const callee = ts.isPropertyAccessExpression(parent) && parent.name === id ? parent : id;
      const call = callee.parent;
      const isCall = ts.isConstructorDeclaration(fn)
        ? ts.isNewExpression(call) && call.expression === callee
        : ts.isCallExpression(call) && call.expression === callee;
      if (isCall) {
        if (!isInside(call, fn)) sites.push(call);
      } else if (!ts.isConstructorDeclaration(fn) && !isTypePosition(id)) {
        escapes.push(new Unresolved(id, `${id.text} is used as a value here, so its calls can’t be followed`));
      }
    }
    sitesCache.set(fn, { sites, escapes });
    return { sites, escapes };
  }
  const isInside = (node, ancestor) => {
    for (let n = node; n; n = n.parent) if (n === ancestor) return true;
    return false;
  };
  const isTypePosition = (id) => {
    for (let n = id.parent; n; n = n.parent) {
      if (ts.isTypeNode(n)) return true;
      if (ts.isExpression(n) || ts.isStatement(n)) return false;
    }
    return false;
  };

  // --- values: alternatives, each a list of parts {lit} | {param} | {query} ---

  const lit = (s) => [[{ lit: String(s) }]];
  const inQuery = (alt) => alt.some((p) => p.query || (p.lit !== undefined && /[?#]/.test(p.lit)));
  const cross = (as, bs, node) => {
    const out = [];
    for (const a of as) for (const b of bs) out.push([...a, ...b]);
    if (out.length > MAX_ALTERNATIVES) throw new Unresolved(node, 'too many alternatives');
    return out;
  };

  /** The string literal values of `node`'s type (a literal or a union of literals), else null. */
  function literalsOf(node) {
    const type = checker.getTypeAtLocation(node);
    const members = type.isUnion() ? type.types : [type];
    if (!members.every((t) => t.isStringLiteral() || t.isNumberLiteral())) return null;
    return members.map((t) => [{ lit: String(t.value) }]);
  }
  const isNumber = (node) => !!(checker.getTypeAtLocation(node).flags & ts.TypeFlags.NumberLike);

  /** Binds the chain: which call site of each function was chosen (a function appears at most once). */
  const bound = (chain, fn) => chain.find(([f]) => f === fn)?.[1];

  /** The value of the argument passed for parameter `param` in the chosen call of its function. */
  function argument(param, chain, opts) {
    const fn = param.parent;
    const site = bound(chain, fn);
    if (!site) {
      if (opts.segment) return literalsOf(param.name) ?? [[{ param: true }]];
      throw new Fork(fn);
    }
    if (!ts.isIdentifier(param.name)) throw new Unresolved(param, 'a destructured parameter');
    const i = fn.parameters.indexOf(param);
    if (param.dotDotDotToken) throw new Unresolved(param, 'a rest parameter');
    const args = site.arguments ?? [];
    if (args.slice(0, i + 1).some(ts.isSpreadElement)) throw new Unresolved(site, 'a spread argument');
    const arg = args[i] ?? param.initializer;
    if (!arg) return lit('');
    return { expr: arg };
  }

  /** The return expressions of a function-like node (not those of functions nested in it). */
  function returnsOf(fn) {
    if (!fn.body) throw new Unresolved(fn, 'a function without a body');
    if (!ts.isBlock(fn.body)) return [fn.body];
    const out = [];
    const visit = (n) => {
      if (ts.isFunctionLike(n)) return;
      if (ts.isReturnStatement(n) && n.expression) out.push(n.expression);
      ts.forEachChild(n, visit);
    };
    ts.forEachChild(fn.body, visit);
    if (!out.length) throw new Unresolved(fn, 'a function that returns nothing');
    return out;
  }

  /** The value of calling `fn` at `call`: the union of its return expressions, with its parameters bound. */
  function callValue(fn, call, chain, opts) {
    if (bound(chain, fn)) throw new Unresolved(call, 'a recursive call');
    if (chain.length >= MAX_CHAIN) throw new Unresolved(call, 'a call chain too long to follow');
    const inner = [...chain, [fn, call]];
    return returnsOf(fn).flatMap((r) => value(r, inner, opts));
  }

  /** The function-like node an expression names (a function passed as an argument, a const arrow, …), or null. */
  function functionNode(expr, chain) {
    expr = skipWrappers(expr);
    if (ts.isArrowFunction(expr) || ts.isFunctionExpression(expr)) return { fn: expr, chain };
    const symbol = ts.isIdentifier(expr) || ts.isPropertyAccessExpression(expr) ? symbolOf(expr) : null;
    const decl = symbol?.valueDeclaration;
    if (!decl || !isOurs(decl)) return null;
    if (ts.isFunctionDeclaration(decl) || ts.isMethodDeclaration(decl)) return { fn: decl, chain };
    if (ts.isVariableDeclaration(decl) && decl.initializer && ts.getCombinedNodeFlags(decl) & ts.NodeFlags.Const)
      return functionNode(decl.initializer, chain);
    if (ts.isParameter(decl)) {
      const arg = argument(decl, chain, {});
      return arg.expr ? functionNode(arg.expr, chain) : null;
    }
    return null;
  }

  const skipWrappers = (e) => {
    while (
      ts.isParenthesizedExpression(e) ||
      ts.isAsExpression(e) ||
      ts.isNonNullExpression(e) ||
      ts.isTypeAssertionExpression(e) ||
      ts.isSatisfiesExpression(e) ||
      ts.isAwaitExpression(e)
    )
      e = e.expression;
    return e;
  };

  /** Literal nodes that are part of a request (the rest that mention /api/v1 are listed as mentions). */
  const consumed = new Set();

  /**
   * The alternatives `expr` may evaluate to. `opts.segment`: the value stands as a whole path segment, so
   * what can't be resolved is a path parameter (else it is an error).
   */
  function value(expr, chain, opts = {}) {
    const e = skipWrappers(expr);
    if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) {
      consumed.add(e);
      return lit(e.text);
    }
    if (ts.isNumericLiteral(e)) return lit(e.text);
    if (ts.isTemplateExpression(e)) {
      consumed.add(e);
      const pieces = [{ lit: e.head.text }];
      for (const span of e.templateSpans) pieces.push({ expr: span.expression }, { lit: span.literal.text });
      return concat(pieces, chain, e);
    }
    if (ts.isBinaryExpression(e)) {
      const op = e.operatorToken.kind;
      if (op === ts.SyntaxKind.PlusToken) return concat(flattenPlus(e), chain, e);
      if (op === ts.SyntaxKind.QuestionQuestionToken || op === ts.SyntaxKind.BarBarToken)
        return [...value(e.left, chain, opts), ...value(e.right, chain, opts)];
    }
    if (ts.isConditionalExpression(e)) return [...value(e.whenTrue, chain, opts), ...value(e.whenFalse, chain, opts)];

    if (ts.isIdentifier(e) || ts.isPropertyAccessExpression(e)) {
      const shorthand = ts.isShorthandPropertyAssignment(e.parent) && e.parent.name === e;
      const decl = (shorthand ? checker.getShorthandAssignmentValueSymbol(e.parent) : symbolOf(e))?.valueDeclaration;
      // A parameter (or a constructor's parameter property, `this.base`): from the chosen call.
      if (decl && ts.isParameter(decl) && isOurs(decl)) {
        const arg = argument(decl, chain, opts);
        return arg.expr ? value(arg.expr, chain, opts) : arg;
      }
      const literals = literalsOf(e);
      if (literals) return literals;
      if (
        decl &&
        isOurs(decl) &&
        (ts.isVariableDeclaration(decl) || ts.isPropertyDeclaration(decl)) &&
        decl.initializer &&
        (ts.getCombinedNodeFlags(decl) & ts.NodeFlags.Const ||
          (ts.isPropertyDeclaration(decl) && decl.modifiers?.some((m) => m.kind === ts.SyntaxKind.ReadonlyKeyword)))
      )
        return value(decl.initializer, chain, opts);
    } else if (ts.isCallExpression(e)) {
      const target = functionNode(e.expression, chain);
      if (target) return callValue(target.fn, e, chain, opts);
      const literals = literalsOf(e);
      if (literals) return literals;
    } else {
      const literals = literalsOf(e);
      if (literals) return literals;
    }
    if (opts.segment || isNumber(e)) return [[{ param: true }]];
    throw new Unresolved(e, 'part of a path that can’t be read statically');
  }

  const flattenPlus = (e) => {
    const out = [];
    const visit = (n) => {
      n = skipWrappers(n);
      if (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken) {
        visit(n.left);
        visit(n.right);
      } else if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) {
        consumed.add(n);
        out.push({ lit: n.text });
      } else out.push({ expr: n });
    };
    visit(e);
    return out;
  };

  /** Concatenates literal and expression pieces; an expression after a `?` is not evaluated (query). */
  function concat(pieces, chain, node) {
    let alts = [[]];
    pieces.forEach((piece, i) => {
      if (piece.lit !== undefined) {
        alts = alts.map((a) => [...a, { lit: piece.lit }]);
        return;
      }
      const before = pieces[i - 1]?.lit ?? '';
      const after = pieces[i + 1]?.lit;
      const segment = before.endsWith('/') && (after === undefined || after === '' || /^[/?#.]/.test(after));
      const done = alts.filter(inQuery);
      const open = alts.filter((a) => !inQuery(a));
      alts = [...done, ...(open.length ? cross(open, value(piece.expr, chain, { segment }), node) : [])];
    });
    return alts;
  }

  /** `/api/v1/x/\0/y` from an alternative: parameters as PARAM, the query cut off. */
  const pathOf = (alt) => {
    let s = '';
    for (const p of alt) {
      if (p.query) break;
      s += p.param ? PARAM : p.lit;
    }
    return s.replace(/[?#].*$/s, '');
  };

  // --- the roots: fetch(url, init) ---

  const calls = [];
  const unresolved = [];
  const seenUnresolved = new Set();
  const fail = (err, fallback, chain) => {
    const node = err instanceof Unresolved && err.node ? err.node : fallback;
    const key = `${where(node)} ${err.message}`;
    if (seenUnresolved.has(key)) return;
    seenUnresolved.add(key);
    unresolved.push({
      where: where(node),
      code: code(node).slice(0, 160),
      reason: err.message,
      chain: chain
        .filter(([, site]) => !ts.isNewExpression(site))
        .map(([, site]) => where(site))
        .reverse(),
    });
  };

  function methodOf(init, chain) {
    if (!init) return lit('GET');
    const obj = skipWrappers(init);
    if (!ts.isObjectLiteralExpression(obj))
      throw new Unresolved(init, 'a fetch whose options aren’t an object literal');
    const prop = obj.properties.find((p) => p.name && ts.isIdentifier(p.name) && p.name.text === 'method');
    if (!prop) return lit('GET');
    if (ts.isShorthandPropertyAssignment(prop)) return value(prop.name, chain);
    if (ts.isPropertyAssignment(prop)) return value(prop.initializer, chain);
    throw new Unresolved(prop, 'a fetch method that isn’t a plain property');
  }

  function follow(root, chain) {
    try {
      const urls = value(root.arguments[0], chain);
      const methods = methodOf(root.arguments[1], chain);
      const sites = chain.map(([, site]) => site).filter((site) => !ts.isNewExpression(site));
      const outer = sites.length ? sites[sites.length - 1] : root;
      for (const m of methods)
        for (const u of urls)
          calls.push({
            method: pathOf(m).toUpperCase(),
            path: pathOf(u),
            where: where(outer),
            chain: [
              ...chain
                .filter(([, site]) => !ts.isNewExpression(site))
                .map(([, site]) => where(site))
                .reverse(),
              where(root),
            ],
          });
    } catch (err) {
      if (err instanceof Fork) {
        let found;
        try {
          found = callSites(err.fn);
        } catch (e) {
          if (!(e instanceof Unresolved)) throw e;
          return fail(e, root, chain);
        }
        // A function used as a value: its other calls are still followed.
        for (const e of found.escapes) fail(e, root, chain);
        for (const site of found.sites) follow(root, [...chain, [err.fn, site]]);
      } else if (err instanceof Unresolved) fail(err, root, chain);
      else throw err;
    }
  }

  for (const sf of sources) {
    const visit = (n) => {
      if (ts.isCallExpression(n) || ts.isNewExpression(n)) {
        const callee = ts.isPropertyAccessExpression(n.expression) ? n.expression.name : n.expression;
        const s = ts.isIdentifier(callee) ? symbolOf(callee) : null;
        if (s && isLib(s)) {
          if (ts.isCallExpression(n) && s.name === 'fetch') follow(n, []);
          else if (['XMLHttpRequest', 'EventSource', 'sendBeacon'].includes(s.name))
            fail(new Unresolved(n, `${s.name}: a request this scan doesn’t follow`), n, []);
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }

  // --- mentions of /api/v1 outside requests ---

  const mentions = [];
  for (const sf of sources) {
    const visit = (n) => {
      if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) && !consumed.has(n)) {
        const m = /\/api\/v1\/[^\s'"`?#]*/.exec(n.text);
        if (m) mentions.push({ path: m[0], where: where(n) });
      } else if (ts.isTemplateExpression(n) && !consumed.has(n) && /\/api\/v1/.test(n.getText())) {
        unresolved.push({
          where: where(n),
          code: code(n).slice(0, 160),
          reason: 'a template naming /api/v1 that is no request',
          chain: [],
        });
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }

  const key = (c) => `${c.method} ${c.path} ${c.where}`;
  const unique = [...new Map(calls.map((c) => [key(c), c])).values()];
  unique.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  return { calls: unique, unresolved, mentions };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const web = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const { calls, unresolved, mentions } = appEndpoints(web);
  for (const c of calls)
    console.log(`${c.method.padEnd(6)} ${c.path.replaceAll(PARAM, '{…}').padEnd(60)} ${c.chain.join(' → ')}`);
  for (const m of mentions) console.log(`mention ${m.path} ${m.where}`);
  for (const u of unresolved) console.log(`UNRESOLVED ${u.where}: ${u.reason}: ${u.code} (via ${u.chain.join(' → ')})`);
}
