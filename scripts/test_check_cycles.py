#!/usr/bin/env python3
"""Self-test of scripts/check-cycles.py on small synthetic crates in a temporary directory."""

import importlib.util
import io
import json
import os
import tempfile
import textwrap
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("check_cycles", os.path.join(HERE, "check-cycles.py"))
check_cycles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_cycles)


class CheckCyclesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def crate(self, name, files):
        os.makedirs(os.path.join(self.root, name), exist_ok=True)
        with open(os.path.join(self.root, name, "Cargo.toml"), "w", encoding="utf-8") as f:
            f.write(f'[package]\nname = "{name}"\n')
        for rel, text in files.items():
            path = os.path.join(self.root, name, "src", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(textwrap.dedent(text))

    def allow(self, lines):
        with open(os.path.join(self.root, "allowed.txt"), "w", encoding="utf-8") as f:
            f.write("# allowed cycles\n" + "".join(line + "\n" for line in lines))

    def run_check(self, *extra):
        out = io.StringIO()
        argv = ["--json", "--root", self.root, "--allowlist", os.path.join(self.root, "allowed.txt"), *extra]
        with redirect_stdout(out):
            code = check_cycles.main(argv)
        return code, json.loads(out.getvalue())

    def cycles(self, report, crate):
        (c,) = [c for c in report["crates"] if c["crate"] == crate]
        return [c["members"] for c in c["cycles"]]

    def test_two_cycle(self):
        self.crate(
            "two",
            {
                "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
                "a.rs": "use crate::b::Bee;\npub struct Ay;\n",
                "b.rs": "pub struct Bee;\npub fn f() -> crate::a::Ay {\n    crate::a::Ay\n}\n",
                "c.rs": "use crate::a::Ay;\n",
            },
        )
        code, report = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(self.cycles(report, "two"), [["a", "b"]])
        (cyc,) = [c for c in report["crates"] if c["crate"] == "two"][0]["cycles"]
        at = {(e["from"], e["to"]): e["at"] for e in cyc["edges"]}
        self.assertEqual(at[("a", "b")], os.path.join("two", "src", "a.rs") + ":1")
        self.assertEqual(at[("b", "a")], os.path.join("two", "src", "b.rs") + ":2")

    def test_three_cycle_through_grouped_use_and_super(self):
        self.crate(
            "three",
            {
                "lib.rs": "pub mod x;\npub mod z;\n",
                "x/mod.rs": "pub mod y;\npub mod w;\n",
                # x::y -> z through a grouped use over several lines, nested group included.
                "x/y.rs": """\
                    use crate::{
                        z::{
                            Zed,
                            deep::{self, Deeper},
                        },
                    };
                    pub struct Why;
                """,
                # x::w -> x::y through `super::`.
                "x/w.rs": "use super::y::Why;\npub struct Double;\n",
                "z/mod.rs": "pub mod deep;\npub struct Zed;\n",
                # z::deep -> x::w through an inline path in code.
                "z/deep.rs": "pub struct Deeper;\npub fn g() {\n    let _ = crate::x::w::Double;\n}\n",
            },
        )
        code, report = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(self.cycles(report, "three"), [["x::w", "x::y", "z::deep"]])

    def test_parent_mod_declarations_make_no_cycle(self):
        self.crate(
            "tree",
            {
                "lib.rs": "pub mod p;\npub mod q;\n",
                # p declares its children and uses neither; they use p's items and each other one way.
                "p/mod.rs": "pub mod kid;\nmod other;\npub struct Shared;\n",
                "p/kid.rs": "use super::Shared;\nuse super::other::Helper;\n",
                "p/other.rs": "use crate::p::Shared;\npub struct Helper;\n",
                # An inline module whose `super::` is q itself: no edge (same file), and q -> p::kid.
                "q.rs": "pub mod inner {\n    use super::f;\n}\npub fn f() {}\nuse crate::p::kid;\n",
            },
        )
        code, report = self.run_check()
        self.assertEqual(code, 0, report)
        self.assertEqual(self.cycles(report, "tree"), [])
        (tree,) = [c for c in report["crates"] if c["crate"] == "tree"]
        self.assertEqual(tree["modules"], 5)

    def test_a_parent_may_use_its_children_but_siblings_still_cycle(self):
        self.crate(
            "facade",
            {
                "lib.rs": "pub mod sfu;\n",
                # The parent calls and re-exports its children, which use the parent's types: no cycle.
                "sfu/mod.rs": "pub mod engine;\npub mod signal;\npub use signal::router;\n"
                "pub struct Joining;\npub fn start() { engine::spawn(); }\n",
                "sfu/engine.rs": "use super::Joining;\npub fn spawn() {}\n",
                # ... but two children importing each other (one through the parent's path) still is one.
                "sfu/signal.rs": "use super::{Joining, engine};\npub fn router() { engine::spawn(); }\n",
                "sfu/extra.rs": "",
            },
        )
        code, report = self.run_check()
        self.assertEqual(code, 0, report)
        self.assertEqual(self.cycles(report, "facade"), [])
        with open(os.path.join(self.root, "facade", "src", "sfu", "engine.rs"), "a", encoding="utf-8") as f:
            f.write("pub fn back() { crate::sfu::signal::router(); }\n")
        code, report = self.run_check()
        self.assertEqual(code, 1, report)
        self.assertEqual(self.cycles(report, "facade"), [["sfu::engine", "sfu::signal"]])

    def test_test_modules_comments_and_strings_are_not_edges(self):
        self.crate(
            "quiet",
            {
                "lib.rs": "pub mod a;\npub mod b;\n",
                "a.rs": "pub struct A;\nuse crate::b::B;\n",
                "b.rs": """\
                    pub struct B;
                    // use crate::a::A;
                    /* crate::a::A */
                    pub const S: &str = "crate::a::A";
                    pub const R: &str = r#"use crate::a::A;"#;
                    #[cfg(test)]
                    mod tests {
                        use crate::a::A;
                    }
                    #[cfg(test)]
                    fn helper() -> crate::a::A { crate::a::A }
                """,
            },
        )
        code, report = self.run_check()
        self.assertEqual(code, 0, report)
        self.assertEqual(self.cycles(report, "quiet"), [])

    def test_reexport_through_root_is_followed(self):
        self.crate(
            "reex",
            {
                "lib.rs": "mod money;\nmod provider;\npub use money::Money;\npub use provider::Provider;\n",
                "money.rs": "pub struct Money;\npub fn p() -> crate::Provider { todo!() }\n",
                "provider.rs": "use crate::Money;\npub struct Provider(Money);\n",
            },
        )
        _, report = self.run_check()
        self.assertEqual(self.cycles(report, "reex"), [["money", "provider"]])

    def test_allowlist_accepts_listed_and_rejects_stale(self):
        self.crate(
            "two",
            {
                "lib.rs": "pub mod a;\npub mod b;\n",
                "a.rs": "use crate::b::Bee;\npub struct Ay;\n",
                "b.rs": "use super::a::Ay;\npub struct Bee;\n",
            },
        )
        self.allow(["two: a b  # being split up"])
        code, report = self.run_check()
        self.assertEqual(code, 0, report)
        self.allow(["two: a b", "two: b c"])
        code, report = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(report["stale"], [{"crate": "two", "members": ["b", "c"], "line": 3}])


if __name__ == "__main__":
    unittest.main(verbosity=2)
