#!/usr/bin/env python3
"""Import-cycle checker for the liveclass workspace (Python 3 standard library only).

For every crate of the workspace (each `<crate>/src` tree) it builds the module graph from the source
and reports every strongly connected component of more than one module: a cycle of imports.

Modules. A module is a file: `foo.rs` or `foo/mod.rs` is module `foo`; `lib.rs` (or `main.rs` when
there is no `lib.rs`) is the crate root, shown as `crate`. The tree is found the way rustc finds it,
by following `mod x;` declarations from the root. A binary root beside a library (`main.rs`,
`src/bin/*.rs`) is a separate target, reported as `<crate>[bin:<name>]`. Inline `mod x { ... }`
blocks belong to their file's node, but paths inside them resolve as rustc would (`super::` inside
`mod x { }` is the file's own module). `#[cfg(test)]` items (`mod tests { ... }`, `mod tests;`, test
helpers, test-only `use`s) are skipped.

Edges. A -> B when A names B: `use crate::...` (grouped `use crate::{a::X, b::{c, d}}` over many
lines too), `use super::...`, `use self::...`, `use child::...` (a module declared in A), and paths
in code (`crate::b::f(`, `super::x::Y`, or through a module brought in with `use`). A path resolves
to the longest prefix that is an existing module: `crate::bookings::lifecycle::cancel` is module
`bookings::lifecycle`, `crate::app::ClientInfo` is `app`. A `mod x;` declaration is not an edge (a
parent is not made to depend on its child by declaring it), and references of a module to itself
are ignored. A name a module binds with `use` is followed to what it names, so `crate::Money`
(re-exported by `pub use money::Money` in lib.rs) is an edge to `money`, not to the root.

The crate root. lib.rs/main.rs is each crate's facade and composition root: it declares the
modules, re-exports their public items and wires them together, and the modules use the few items
it defines. Edges to and from the root are therefore left out by default (with them, nearly every
crate would be one cycle through its root); `--with-root` counts them.

Parents. For the same reason a module is the facade of the modules it declares: `sfu/mod.rs` may
call and re-export what `sfu::engine` and `sfu::signal` define, while they use the types it holds.
Edges from a module to its own descendants are left out; everything else counts, so two siblings
(or a child and its parent's sibling) can't import each other, directly or around a longer loop.

Allowlist. `scripts/cycles-allowed.txt`: one allowed cycle per line, `<crate>: <member> <member> ...`
(members sorted, space separated; `#` starts a comment). The check fails (exit 1) when a cycle is
found that is not listed, and also when a listed cycle no longer exists, so that the list only
shrinks. Exit 2: the workspace could not be read.

Usage: check-cycles.py [--json] [--root DIR] [--allowlist FILE]
"""

import argparse
import json
import os
import re
import sys

ROOT_NAME = "crate"


# --------------------------------------------------------------------------------------------------
# Lexer: identifiers, `::` and single punctuation characters, with line numbers. Comments, strings,
# character literals and lifetimes are dropped, so nothing inside them is mistaken for a path.
# --------------------------------------------------------------------------------------------------

IDENT_START = re.compile(r"[A-Za-z_]")
IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")


def tokenize(src):
    toks = []  # (text, line)
    i, n, line = 0, len(src), 1

    def skip_string(j, raw_hashes):
        # j points just past the opening quote; returns the index past the closing quote.
        nonlocal line
        while j < n:
            c = src[j]
            if c == "\n":
                line += 1
            if raw_hashes is None:
                if c == "\\":
                    if j + 1 < n and src[j + 1] == "\n":
                        line += 1
                    j += 2
                    continue
                if c == '"':
                    return j + 1
            else:
                if c == '"' and src[j + 1 : j + 1 + raw_hashes] == "#" * raw_hashes:
                    return j + 1 + raw_hashes
            j += 1
        return j

    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        line += 1
                    i += 1
        elif c == '"':
            i = skip_string(i + 1, None)
        elif c in "brc" and re.match(r"(br|cr|r)#*\"", src[i : i + 260]):
            m = re.match(r"(br|cr|r)(#*)\"", src[i:])
            i = skip_string(i + m.end(), len(m.group(2)))
        elif c in "bc" and i + 1 < n and src[i + 1] == '"':
            i = skip_string(i + 2, None)
        elif c == "b" and i + 1 < n and src[i + 1] == "'":
            i = skip_char(src, i + 1)
        elif c == "'":
            if i + 1 < n and src[i + 1] == "\\":
                i = skip_char(src, i)
            elif i + 2 < n and src[i + 2] == "'":
                i += 3
            else:  # a lifetime or label
                i += 1
                while i < n and IDENT_CHAR.match(src[i]):
                    i += 1
        elif c == "r" and src.startswith("r#", i) and i + 2 < n and IDENT_START.match(src[i + 2]):
            j = i + 2
            while j < n and IDENT_CHAR.match(src[j]):
                j += 1
            toks.append((src[i + 2 : j], line))
            i = j
        elif IDENT_START.match(c):
            j = i
            while j < n and IDENT_CHAR.match(src[j]):
                j += 1
            toks.append((src[i:j], line))
            i = j
        elif c.isdigit():
            j = i
            while j < n and IDENT_CHAR.match(src[j]):
                j += 1
            toks.append(("0", line))
            i = j
        elif src.startswith("::", i):
            toks.append(("::", line))
            i += 2
        else:
            toks.append((c, line))
            i += 1
    return toks


def skip_char(src, i):
    """`i` is at the opening `'` of a character literal; returns the index past its closing `'`."""
    j = i + 1
    while j < len(src) and src[j] != "'":
        j += 2 if src[j] == "\\" else 1
    return j + 1


# --------------------------------------------------------------------------------------------------
# Parser: one pass over a file's tokens that finds module declarations, `use` trees and paths.
# --------------------------------------------------------------------------------------------------

KEYWORD_ROOTS = ("crate", "super", "self")
OPEN = {"(": ")", "[": "]", "{": "}"}


def is_test_cfg(attr):
    """True for `cfg(test)` and `cfg(all(test, ...))` (not `not(test)`, not `any(test, feature)`)."""
    texts = [t for t, _ in attr]
    if texts[:1] != ["cfg"] or "not" in texts or "test" not in texts:
        return False
    return texts == ["cfg", "(", "test", ")"] or texts[:4] == ["cfg", "(", "all", "("]


class FileParse:
    def __init__(self):
        self.mod_decls = []  # (scope path tuple, name, line)
        self.inline_mods = []  # scope path tuples of inline modules (relative to the file's module)
        self.uses = []  # (scope, segments tuple, line, alias or None, glob)
        self.paths = []  # (scope, segments tuple, line)
        self.test_only = False


def parse_file(src):
    toks = tokenize(src)
    out = FileParse()
    n = len(toks)
    scope_stack = [((), -1)]  # (inline path relative to the file module, brace depth it closes at)
    depth = 0
    pending_test = False
    i = 0

    def text(k):
        return toks[k][0] if k < n else ""

    def matching(k):
        """k at an opening bracket; returns the index of its matching closer."""
        d = 0
        while k < n:
            t = text(k)
            if t in OPEN:
                d += 1
            elif t in (")", "]", "}"):
                d -= 1
                if d == 0:
                    return k
            k += 1
        return n - 1

    def skip_item(k):
        """Skips one item or statement starting at k: to `;` outside brackets, or past its first `{}`."""
        while k < n:
            t = text(k)
            if t == ";":
                return k + 1
            if t == "{":
                return matching(k) + 1
            if t in ("(", "["):
                k = matching(k)
            k += 1
        return n

    def parse_use_tree(k, prefix, scope):
        """Parses a use tree at k; records each leaf; returns the index after the tree."""
        segs = list(prefix)
        line = toks[k][1] if k < n else 0
        if text(k) == "::" and not segs:  # `use ::extern_crate::...`
            segs.append("::")
            k += 1
        while True:
            t = text(k)
            if t == "{":
                close = matching(k)
                k += 1
                while k < close:
                    if text(k) == ",":
                        k += 1
                        continue
                    k = parse_use_tree(k, segs, scope)
                return close + 1
            if t == "*":
                out.uses.append((scope, tuple(segs), toks[k][1], None, True))
                return k + 1
            if t and (IDENT_START.match(t) or t == "$"):
                if t == "$":  # `$crate` in macro bodies
                    k += 1
                    t = text(k)
                segs.append(t)
                line = toks[k][1]
                k += 1
                if text(k) == "::":
                    k += 1
                    continue
                alias = None
                if text(k) == "as":
                    alias = text(k + 1)
                    k += 2
                if segs and segs[-1] == "self":  # `use a::{self, ...}`: the prefix itself
                    segs.pop()
                    if alias is None and segs:
                        alias = segs[-1]
                out.uses.append((scope, tuple(segs), line, alias, False))
                return k
            return k + 1  # malformed: move on

    while i < n:
        t, line = toks[i]
        scope = scope_stack[-1][0]
        if t == "#" and text(i + 1) in ("[", "!"):
            inner = text(i + 1) == "!"
            b = i + 2 if inner else i + 1
            close = matching(b)
            attr = toks[b + 1 : close]
            if is_test_cfg(attr):
                if inner and depth == 0 and len(scope_stack) == 1:
                    out.test_only = True
                    return out
                pending_test = not inner
            i = close + 1
            continue
        if pending_test:
            pending_test = False
            i = skip_item(i)
            continue
        if t == "pub" and text(i + 1) == "(":  # `pub(crate)`, `pub(in crate::x)`: not a reference
            i = matching(i + 1) + 1
            continue
        if t == "mod" and IDENT_START.match(text(i + 1) or "0") and text(i + 2) in (";", "{"):
            name = text(i + 1)
            if text(i + 2) == ";":
                out.mod_decls.append((scope, name, line))
                i += 3
            else:
                inner_scope = scope + (name,)
                out.inline_mods.append(inner_scope)
                depth += 1
                scope_stack.append((inner_scope, depth))
                i += 3
            continue
        if t == "use" and text(i - 1) not in ("::", "."):
            i = parse_use_tree(i + 1, [], scope)
            continue
        if t == "{":
            depth += 1
        elif t == "}":
            if scope_stack[-1][1] == depth and len(scope_stack) > 1:
                scope_stack.pop()
            depth -= 1
        elif IDENT_START.match(t) and text(i + 1) == "::" and text(i - 1) not in ("::", "."):
            # A path in code: `crate::a::f`, `super::x::Y`, `$crate::m`, or `name::...` (resolved later
            # if `name` is a module here).
            segs, k = [t], i + 1
            while text(k) == "::" and text(k + 1) and IDENT_START.match(text(k + 1)):
                segs.append(text(k + 1))
                k += 2
            out.paths.append((scope, tuple(segs), line))
            i = k
            continue
        i += 1
    return out


# --------------------------------------------------------------------------------------------------
# Crates: module trees from their roots, references resolved to modules, edges, cycles.
# --------------------------------------------------------------------------------------------------


class Target:
    """One crate target (the library, or a binary): its modules and their edges."""

    def __init__(self, name, src_dir, root_file, repo_root, with_root=False):
        self.name = name
        self.with_root = with_root
        self.src_dir = src_dir
        self.repo_root = repo_root
        self.modules = {}  # module path tuple -> file (relative to repo root); inline ones too
        self.node_of = {}  # module path tuple -> node path tuple (the file module it folds into)
        self.parses = {}  # node path tuple -> FileParse
        self.warnings = []
        self.edges = {}  # (from node, to node) -> "file:line" (first seen)
        self._load(root_file)

    def rel(self, path):
        return os.path.relpath(path, self.repo_root)

    def _load(self, root_file):
        # Breadth-first over `mod x;` declarations, as rustc does.
        queue = [((), root_file, True)]
        while queue:
            path, file, owns_dir = queue.pop(0)
            try:
                with open(file, encoding="utf-8") as f:
                    src = f.read()
            except OSError as e:
                self.warnings.append(f"cannot read {self.rel(file)}: {e}")
                continue
            parsed = parse_file(src)
            if parsed.test_only:
                continue
            self.modules[path] = self.rel(file)
            self.node_of[path] = path
            self.parses[path] = parsed
            for inline in parsed.inline_mods:
                self.modules[path + inline] = self.rel(file)
                self.node_of[path + inline] = path
            base_dir = os.path.dirname(file)
            if not owns_dir:  # foo.rs: its children live in foo/
                base_dir = os.path.join(base_dir, os.path.splitext(os.path.basename(file))[0])
            for scope, name, line in parsed.mod_decls:
                d = os.path.join(base_dir, *scope)
                flat, nested = os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")
                if os.path.isfile(flat):
                    queue.append((path + scope + (name,), flat, False))
                elif os.path.isfile(nested):
                    queue.append((path + scope + (name,), nested, True))
                else:
                    self.warnings.append(f"{self.rel(file)}:{line}: no file for `mod {name};`")

    def files(self):
        return {os.path.join(self.repo_root, f) for f in self.modules.values()}

    # A module path's children (inline or file) are those one segment longer with it as prefix.
    def is_module(self, path):
        return path in self.modules

    def resolve(self, scope, segs, depth=0):
        """The module a path names, from module `scope`: the longest existing-module prefix. A name
        that a module binds with `use` (a re-export such as `pub use money::Money`, or an import
        such as `use crate::audit`) is followed to what it names: `crate::Money` is `money`."""
        if not segs or depth > 16:
            return None
        first, rest = segs[0], list(segs[1:])
        if first == "::":
            return None
        if first == "crate":
            cur = ()
        elif first in ("super", "self"):
            cur = scope
            k = 0
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super":
                    if not cur:
                        return None
                    cur = cur[:-1]
                k += 1
            rest = list(segs[k:])
        elif self.is_module(scope + (first,)):  # uniform paths: a module declared here
            cur = scope + (first,)
        elif first in self.bindings.get(scope, {}):  # a name brought in with `use`
            return self.resolve(scope, self.bindings[scope][first] + tuple(rest), depth + 1)
        else:
            return None
        for k, s in enumerate(rest):
            if self.is_module(cur + (s,)):
                cur = cur + (s,)
                continue
            bound = self.bindings.get(cur, {}).get(s)
            if bound is not None:
                via = self.resolve(cur, bound + tuple(rest[k + 1 :]), depth + 1)
                if via is not None:
                    return via
            break
        return cur

    def build_edges(self):
        # What each module binds with `use` (the name, or its `as` alias -> the path it names).
        self.bindings = {}
        for node, parsed in self.parses.items():
            for scope, segs, _line, alias, glob in parsed.uses:
                if glob or not segs or segs[-1] in KEYWORD_ROOTS + ("::",):
                    continue
                name = alias or segs[-1]
                if name != "_":
                    self.bindings.setdefault(node + scope, {})[name] = segs
        refs = []  # (from scope, to module, file, line)
        for node, parsed in self.parses.items():
            file = self.modules[node]
            for scope, segs, line, _alias, _glob in parsed.uses:
                target = self.resolve(node + scope, segs)
                if target is not None:
                    refs.append((node, target, file, line))
            for scope, segs, line in parsed.paths:
                target = self.resolve(node + scope, segs)
                if target is not None:
                    refs.append((node, target, file, line))
        for src, dst, file, line in refs:
            a, b = self.node_of.get(src, src), self.node_of.get(dst, dst)
            if a == b or (not self.with_root and () in (a, b)):
                continue
            if b[: len(a)] == a:
                continue  # a module using what it contains (see "Parents" in the module doc)
            if (a, b) not in self.edges:
                self.edges[(a, b)] = f"{file}:{line}"

    def nodes(self):
        return sorted(self.parses)

    def cycles(self):
        """Strongly connected components of more than one module (Tarjan), each sorted."""
        graph = {v: [] for v in self.nodes()}
        for a, b in sorted(self.edges):
            graph[a].append(b)
        index, low, on_stack, stack, comps = {}, {}, set(), [], []
        counter = 0
        for root in graph:
            if root in index:
                continue
            # Iterative Tarjan: (node, iterator position) frames.
            work = [(root, 0)]
            while work:
                v, pos = work.pop()
                if pos == 0:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on_stack.add(v)
                succ = graph[v]
                recursed = False
                while pos < len(succ):
                    w = succ[pos]
                    pos += 1
                    if w not in index:
                        work.append((v, pos))
                        work.append((w, 0))
                        recursed = True
                        break
                    if w in on_stack:
                        low[v] = min(low[v], index[w])
                if recursed:
                    continue
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
        return sorted(comps)


def show(path):
    return "::".join(path) if path else ROOT_NAME


def crate_name(crate_dir):
    try:
        with open(os.path.join(crate_dir, "Cargo.toml"), encoding="utf-8") as f:
            in_package = False
            for raw in f:
                line = raw.strip()
                if line.startswith("["):
                    in_package = line == "[package]"
                elif in_package:
                    m = re.match(r'name\s*=\s*"([^"]+)"', line)
                    if m:
                        return m.group(1)
    except OSError:
        pass
    return os.path.basename(crate_dir)


def find_targets(repo_root, with_root=False):
    """Every `<crate>/src` tree: its library or main root, plus any binary roots beside a library."""
    targets = []
    for entry in sorted(os.listdir(repo_root)):
        crate_dir = os.path.join(repo_root, entry)
        src = os.path.join(crate_dir, "src")
        if entry.startswith(".") or entry in ("target", "node_modules") or not os.path.isdir(src):
            continue
        name = crate_name(crate_dir)
        lib, main = os.path.join(src, "lib.rs"), os.path.join(src, "main.rs")
        roots = []
        if os.path.isfile(lib):
            roots.append((name, lib))
            if os.path.isfile(main):
                roots.append((f"{name}[bin:main]", main))
        elif os.path.isfile(main):
            roots.append((name, main))
        bin_dir = os.path.join(src, "bin")
        if os.path.isdir(bin_dir):
            for b in sorted(os.listdir(bin_dir)):
                p = os.path.join(bin_dir, b)
                if b.endswith(".rs"):
                    roots.append((f"{name}[bin:{b[:-3]}]", p))
                elif os.path.isfile(os.path.join(p, "main.rs")):
                    roots.append((f"{name}[bin:{b}]", os.path.join(p, "main.rs")))
        crate_targets = [Target(n, src, r, repo_root, with_root) for n, r in roots]
        reached = set().union(*(t.files() for t in crate_targets)) if crate_targets else set()
        for dirpath, _dirs, files in os.walk(src):
            for f in files:
                p = os.path.join(dirpath, f)
                # `#[cfg(test)] mod tests;` files are skipped on purpose, not unreached.
                test_file = f == "tests.rs" or os.path.basename(dirpath) == "tests"
                if f.endswith(".rs") and p not in reached and crate_targets and not test_file:
                    crate_targets[0].warnings.append(
                        f"{os.path.relpath(p, repo_root)} is not reached from any crate root (not checked)"
                    )
        targets.extend(crate_targets)
    return targets


def read_allowlist(path):
    """{(crate, (members...)): line number}; raises ValueError on a malformed line."""
    allowed = {}
    if not os.path.exists(path):
        return allowed
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if ":" not in line.split()[0]:
                raise ValueError(f"{path}:{lineno}: expected `<crate>: <member> <member> ...`")
            crate, _, rest = line.partition(": ")
            if not rest:  # `crate:member` without the space after the colon
                crate, _, rest = line.partition(":")
            members = tuple(sorted(rest.split()))
            if len(members) < 2:
                raise ValueError(f"{path}:{lineno}: a cycle has at least two members")
            allowed[(crate.strip(), members)] = lineno
    return allowed


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Find import cycles between the modules of each crate.")
    ap.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ap.add_argument("--root", default=os.path.dirname(here), help="workspace root (default: this repo)")
    ap.add_argument("--allowlist", help="allowed cycles (default: <root>/scripts/cycles-allowed.txt)")
    ap.add_argument(
        "--with-root",
        action="store_true",
        help="count references to and from the crate root (lib.rs/main.rs) as edges too",
    )
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    allow_path = args.allowlist or os.path.join(root, "scripts", "cycles-allowed.txt")
    try:
        allowed = read_allowlist(allow_path)
    except ValueError as e:
        print(f"check-cycles: {e}", file=sys.stderr)
        return 2

    targets = find_targets(root, args.with_root)
    if not targets:
        print(f"check-cycles: no crate with a src/ tree under {root}", file=sys.stderr)
        return 2

    report = {"root": root, "allowlist": os.path.relpath(allow_path, root), "crates": []}
    found = set()
    unlisted = []
    for t in targets:
        t.build_edges()
        cycles = []
        for comp in t.cycles():
            members = [show(m) for m in comp]
            key = (t.name, tuple(sorted(members)))
            found.add(key)
            inside = set(comp)
            edges = [
                {"from": show(a), "to": show(b), "at": at}
                for (a, b), at in sorted(t.edges.items())
                if a in inside and b in inside
            ]
            ok = key in allowed
            if not ok:
                unlisted.append(key)
            cycles.append({"members": members, "allowed": ok, "edges": edges})
        report["crates"].append(
            {
                "crate": t.name,
                "root": t.modules.get((), ""),
                "modules": len(t.parses),
                "edges": len(t.edges),
                "cycles": cycles,
                "warnings": t.warnings,
            }
        )
    stale = sorted(k for k in allowed if k not in found)
    report["unlisted"] = [{"crate": c, "members": list(m)} for c, m in unlisted]
    report["stale"] = [{"crate": c, "members": list(m), "line": allowed[(c, m)]} for c, m in stale]
    report["ok"] = not unlisted and not stale

    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        for c in report["crates"]:
            n = len(c["cycles"])
            print(f"{c['crate']}: {c['modules']} modules, {c['edges']} edges, {n} cycle{'s' * (n != 1)}")
            for w in c["warnings"]:
                print(f"  warning: {w}")
            for cyc in c["cycles"]:
                tag = "allowed" if cyc["allowed"] else "NOT ALLOWED"
                print(f"  cycle of {len(cyc['members'])} ({tag}): {' '.join(cyc['members'])}")
                for e in cyc["edges"]:
                    print(f"    {e['from']} -> {e['to']}  ({e['at']})")
        for s in report["stale"]:
            print(
                f"allowlisted cycle no longer exists ({report['allowlist']}:{s['line']}): "
                f"{s['crate']}: {' '.join(s['members'])} -- remove that line"
            )
        if unlisted:
            print(f"\n{len(unlisted)} cycle(s) not in {report['allowlist']}; to accept one for now, add:")
            for crate, members in unlisted:
                print(f"  {crate}: {' '.join(members)}")
        print("import cycles: OK" if report["ok"] else "import cycles: FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
