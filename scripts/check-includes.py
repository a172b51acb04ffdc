#!/usr/bin/env python3
"""check-includes — the module graph of src/ has no cycles and points down the layers.

Usage: scripts/check-includes.py [SRC_DIR]    check SRC_DIR (default: src/ of this repo)
       scripts/check-includes.py --self-test  prove the checker reports what it must
Exit status 0 when clean, 1 when anything is reported, 2 on bad usage. Python 3 stdlib
only; ctest runs both forms (CMakeLists.txt), so `make test` fails on a violation.

Modules. A module is dir/name: name.c and name.h of one directory (src/server.c and
src/main.c are the modules "server" and "main"). A header without a .c (store/store.h,
http/http.h, tus/handler_internal.h) is a module of its own that depends on nothing but
what it includes.

Groups. A module may span several files that share one internal header: the tus
handler is routing and per-method flows calling each other (a state machine cut into
files by concern: creation, PATCH body, HEAD/GET, DELETE, hook glue, background
finals, the IETF draft's request glue), so GROUPS names its files as the one module "tus/handler". Calls between the
files of a group are not edges; everything the group includes or calls is.

Edges. Module A depends on module B when
  - a .c or .h of A includes a .h of B (quoted includes, resolved like the compiler:
    next to the including file first, then from SRC_DIR; an include that resolves to
    no file under SRC_DIR is reported), or
  - A's code names a function that B's .c defines (not static, not defined by A too).
The second kind is what an include graph alone misses: store/file_walk.c calling
tusc_file_store_shard_path() from store/file.c through store/store.h, or tus/ietf.c
calling back into tus/handler.c through tus/handler_internal.h. Only functions count,
not extern variables; definitions are found by a small C reader that knows comments,
literals, preprocessor lines and braces, which is enough for this code base.

Rules.
  1. No cycles between modules (within a directory too). Each cycle is reported with
     its path and, per step, the include or definition that makes it.
  2. Layers: a module may depend only on modules of its own layer or of lower tiers
     (by include or by call). The layer is the module's directory; src/server.c and
     src/main.c are layers of their own. Tiers, low to high (one layer per tier
     unless noted):

       common   identifiers, metadata, errors, logging, base64, utf8, time, files
       sys      process privileges
       config   the configuration (flags, file, environment)
       net      listeners, transports (plain, TLS), connection limits, curl on libuv
       metrics  Prometheus counters and their exposition text (only common/ below;
                the /metrics listener is http/metrics_endpoint, callers pass their
                enums as ints, hook counters come through a callback)
       lock     per-upload locks
       store    the store interface and the file store
       http     the request/response API, HTTP/1.1, connections, the https redirect
                and the /metrics listener
       auth     htpasswd, JWT, CIDR checks
       hooks    tusd-compatible hooks and their senders (above store: they send
                the upload info)
       tus, upload (one tier, two layers that must not include each other): the tus
                protocol handler; the uploader tusc-upload (its own library on top
                of libtusc: common/, net/, ... but never tus/ or the server)
       server   wires the modules together
       main     argv

     A directory that is not in LAYERS is reported: place it in the table first.

Known violations. ALLOWED (empty now) is where a violation that cannot be removed at
once is listed, as one edge (from module, to module): the edge that closes a cycle, or
an upward one, with the cycle named and the plan to remove it. An allowed edge is left
out of both checks, so any other cycle or upward edge still fails. An entry whose edge
is gone, or is no longer against the layers nor on a cycle, is reported as stale, so
the table only ever shrinks.
"""

import bisect
import os
import re
import sys
import tempfile
import unittest

# Low to high; each tier is a tuple of layers that may not include each other.
LAYERS = (
    ("common",),
    ("sys",),
    ("config",),
    ("net",),
    ("metrics",),
    ("lock",),
    ("store",),
    ("http",),
    ("auth",),
    ("hooks",),
    ("tus", "upload"),
    ("server",),
    ("main",),
)

# Modules made of several files (see "Groups" above): module -> its files' stems.
GROUPS = {
    "tus/handler": ("tus/handler", "tus/handler_internal", "tus/req", "tus/create",
                    "tus/patch", "tus/read", "tus/delete", "tus/hookglue", "tus/finals",
                    "tus/ietf_req", "tus/reqapi"),
}
GROUP_OF = {stem: mod for mod, stems in GROUPS.items() for stem in stems}


def module_of(stem):
    """The module a file belongs to, from its path without extension."""
    return GROUP_OF.get(stem, stem)


# Known violations, each one edge (from module, to module, the cycle it closes).
ALLOWED = (
)


# ---- reading C ------------------------------------------------------------------------

def blank_c(text, strings):
    """Comments (and, when `strings`, string and character literals) replaced by
    spaces. Offsets and newlines are kept, so positions and line numbers stay right."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if j < n and text[j] == c:
                j += 1
            j = min(j, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j]) if strings else text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def blank_preprocessor(code):
    """Preprocessor lines (with their continuations) replaced by spaces."""
    lines = code.split("\n")
    cont = False
    for k, line in enumerate(lines):
        if cont or line.lstrip().startswith("#"):
            cont = line.endswith("\\")
            lines[k] = " " * len(line)
    return "\n".join(lines)


INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
IDENT_RE = re.compile(r"[A-Za-z_]\w*")
IDENT_CALL_RE = re.compile(r"(?<![\w*])([A-Za-z_]\w*)\s*\(")
NOT_FUNCTIONS = {"__attribute__", "__typeof__", "sizeof", "_Alignof", "_Static_assert",
                 "if", "while", "for", "switch", "return"}


def top_level_chunks(code):
    """Splits code (comments, literals and preprocessor lines blanked) at depth 0 into
    (head, offset, has_body): the text of one declaration or definition head, where it
    starts, and whether a {...} body followed it (a function definition, a struct or
    enum, an initializer)."""
    chunks = []
    depth = 0
    start = 0
    head = None
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                head = code[start:i]
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
            if depth == 0 and head is not None:
                chunks.append((head, start, True))
                head = None
                start = i + 1
        elif c == ";" and depth == 0:
            if head is not None:  # "struct x {...} name;" or "= {...};" ends here
                head = None
            else:
                chunks.append((code[start:i], start, False))
            start = i + 1
    return chunks


def function_name(head):
    """(name, offset in head) of the function a definition head or prototype
    declares, or None."""
    if "=" in head or re.search(r"\btypedef\b", head):
        return None
    for m in IDENT_CALL_RE.finditer(head):
        if m.group(1) not in NOT_FUNCTIONS:
            return m.group(1), m.start(1)
    return None


class Source:
    """What the checker needs from one .c or .h file.
    includes: [(line, "dir/name.h")], the quoted includes outside comments;
    defines: {name: line} of the non-static functions it defines;
    statics: names of the static functions it defines;
    uses: {name: line of the first use} of every identifier outside comments and
    literals (macro bodies included: a call hidden in a #define is a call), except
    where a prototype or definition names it: store/store.h declaring
    tusc_file_store_new does not make it depend on store/file.c."""

    def __init__(self, text):
        starts = [m.end() for m in re.finditer("\n", text)]

        def line(offset):
            return bisect.bisect_right(starts, offset) + 1

        no_comments = blank_c(text, strings=False)
        self.includes = [(line(m.start()), m.group(1)) for m in INCLUDE_RE.finditer(no_comments)]
        code = blank_c(text, strings=True)
        self.defines, self.statics = {}, set()
        named = set()  # offsets of names in prototypes and definitions
        for head, start, body in top_level_chunks(blank_preprocessor(code)):
            if body and not head.rstrip().endswith(")"):
                continue  # struct, enum, initializer
            if not body and "(" not in head:
                continue  # a variable or a type
            found = function_name(head)
            if found is None:
                continue
            name, at = found
            named.add(start + at)
            if not body:
                continue
            if re.search(r"\bstatic\b", head):
                self.statics.add(name)
            else:
                self.defines[name] = line(start + at)
        self.uses = {}
        for m in IDENT_RE.finditer(code):
            if m.start() not in named and m.group(0) not in self.uses:
                self.uses[m.group(0)] = line(m.start())


# ---- the graph ------------------------------------------------------------------------

def layer_of(module):
    """"tus/handler" -> "tus"; "server" -> "server"."""
    return module.split("/")[0]


def tier_of(layer):
    for rank, tier in enumerate(LAYERS):
        if layer in tier:
            return rank
    return None


class Graph:
    def __init__(self, src):
        self.src = src
        self.files = {}  # "dir/name.ext" -> text
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith((".c", ".h")):
                    path = os.path.relpath(os.path.join(dirpath, f), src).replace(os.sep, "/")
                    with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                        self.files[path] = fh.read()
        self.sources = {path: Source(text) for path, text in self.files.items()}
        self.problems = []
        self.edges = {module_of(path[:-2]): {} for path in self.files}  # module -> {module: [evidence]}
        self._include_edges()
        self._call_edges()

    def _add(self, a, b, evidence):
        if a != b:
            self.edges[a].setdefault(b, []).append(evidence)

    def _include_edges(self):
        for path in sorted(self.files):
            here = os.path.dirname(path)
            for line, inc in self.sources[path].includes:
                target = None
                for cand in (os.path.join(here, inc), inc):
                    cand = os.path.normpath(cand).replace(os.sep, "/")
                    if cand in self.files:
                        target = cand
                        break
                if target is None:
                    self.problems.append('%s:%d: include "%s" is not a file under %s'
                                         % (path, line, inc, self.src))
                    continue
                self._add(module_of(path[:-2]), module_of(target[:-2]),
                          "%s:%d includes %s" % (path, line, target))

    def _call_edges(self):
        defined = {}  # function -> (module, "file:line")
        own = {}      # module -> names its .c defines, static ones too
        for path in sorted(self.files):
            if path.endswith(".c"):
                src = self.sources[path]
                mod = module_of(path[:-2])
                for name, line in src.defines.items():
                    defined.setdefault(name, (mod, "%s:%d" % (path, line)))
                own.setdefault(mod, set()).update(set(src.defines) | src.statics)
        for path in sorted(self.files):
            mod = module_of(path[:-2])
            mine = own.get(mod, set())
            for name, line in sorted(self.sources[path].uses.items(), key=lambda kv: kv[1]):
                if name in defined and name not in mine and defined[name][0] != mod:
                    definer, where = defined[name]
                    self._add(mod, definer, "%s:%d uses %s, defined at %s" % (path, line, name, where))

    def find_edge(self, x, y):
        return y in self.edges.get(x, {})

    def reaches(self, a, b, skip=()):
        seen, todo = {a}, [a]
        while todo:
            v = todo.pop()
            for w in self.edges[v]:
                if (v, w) in skip or w in seen:
                    continue
                if w == b:
                    return True
                seen.add(w)
                todo.append(w)
        return False

    # -- rule 1 --

    def sccs(self, skip):
        """Tarjan's strongly connected components of more than one module."""
        index, low, stack, on_stack, out = {}, {}, [], set(), []
        counter = [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on_stack.add(v)
            for w in sorted(self.edges[v]):
                if (v, w) in skip:
                    continue
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(max(1000, 10 * len(self.edges)))
        for v in sorted(self.edges):
            if v not in index:
                visit(v)
        return out

    def cycles(self, comp, skip, limit=50):
        """The elementary cycles within one component, each from its smallest module."""
        comp_set = set(comp)
        found = []

        def walk(start, v, path, seen):
            for w in sorted(self.edges[v]):
                if len(found) >= limit or w not in comp_set or w < start or (v, w) in skip:
                    continue
                if w == start:
                    found.append(path + [start])
                elif w not in seen:
                    seen.add(w)
                    walk(start, w, path + [w], seen)
                    seen.discard(w)

        for s in comp:
            walk(s, s, [s], {s})
        return found

    def check_cycles(self, skip):
        for comp in self.sccs(skip):
            for cyc in self.cycles(comp, skip):
                lines = ["cycle: " + " -> ".join(cyc)]
                for a, b in zip(cyc, cyc[1:]):
                    lines.append("    " + self.edges[a][b][0])
                self.problems.append("\n".join(lines))

    # -- rule 2 --

    @staticmethod
    def upward(a, b):
        """Whether module a using module b goes against the layers (None: unknown)."""
        la, lb = layer_of(a), layer_of(b)
        ta, tb = tier_of(la), tier_of(lb)
        if ta is None or tb is None:
            return None
        return la != lb and tb >= ta

    def check_layers(self, skip):
        for layer in sorted({layer_of(m) for m in self.edges}):
            if tier_of(layer) is None:
                self.problems.append("layer %s/ is not in LAYERS (scripts/check-includes.py): "
                                     "give it a place in the order" % layer)
        for a in sorted(self.edges):
            for b in sorted(self.edges[a]):
                if (a, b) in skip or not self.upward(a, b):
                    continue
                how = "a higher layer" if tier_of(layer_of(b)) > tier_of(layer_of(a)) \
                    else "a layer of the same tier"
                for ev in self.edges[a][b]:
                    self.problems.append("layering: %s (%s) uses %s (%s, %s): %s"
                                         % (a, layer_of(a), b, layer_of(b), how, ev))

    def check_allowed(self, allowed):
        """Returns the allowed edges to skip; reports entries that no longer apply."""
        skip = set()
        for a, b, why in allowed:
            if not self.find_edge(a, b):
                self.problems.append("stale ALLOWED entry %s -> %s (%s): %s no longer uses %s; "
                                     "remove the entry" % (a, b, why, a, b))
            elif not self.upward(a, b) and not self.reaches(b, a):
                self.problems.append("stale ALLOWED entry %s -> %s (%s): no longer against the "
                                     "layers nor on a cycle; remove the entry" % (a, b, why))
            else:
                skip.add((a, b))
        return skip


def check(src, allowed=ALLOWED):
    """Every problem found under `src`, as printable strings ([] = clean)."""
    g = Graph(src)
    skip = g.check_allowed(allowed)
    g.check_cycles(skip)
    g.check_layers(skip)
    return g.problems


# ---- self-test: the checker must be able to fail ----------------------------------------

class SelfTest(unittest.TestCase):
    def tree(self, files):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        for path, text in files.items():
            full = os.path.join(d.name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(text)
        return d.name

    # Clean, and full of things a careless reader would take for violations.
    CLEAN = {
        "common/error.h": "int tusc_err(int x);\n",
        "common/error.c": '#include "common/error.h"\nint tusc_err(int x) { return x; }\n',
        "store/store.h": '#include "common/error.h"\n'
                         "typedef struct { int (*open)(void); } tusc_store_ops_t;\n"
                         "int tusc_store_open(void);\n",
        "store/file.c": '#include "store/store.h"\n'
                        "int tusc_store_open(void) { return tusc_err(0); }\n"
                        "static int helper(void) { return 0; }\n",
        "tus/handler.h": '#include "store/store.h"\nint tusc_handler_run(void);\n',
        "tus/handler.c": '#include "tus/handler.h"\n'
                         '/* #include "server.h" and tusc_server_main() */\n'
                         '// #include "server.h"\n'
                         'static const char *s = "/* not a comment"; static int c = \'"\';\n'
                         'static const char *t = "tusc_server_main()";\n'
                         "static int helper(void) { return tusc_store_open(); }\n"
                         "int tusc_handler_run(void) { return helper(); }\n",
        "server.h": "int tusc_server_main(void);\n",
        "server.c": '#include "server.h"\n#include "tus/handler.h"\n'
                    "int tusc_server_main(void) { return tusc_handler_run(); }\n",
    }

    def problems(self, extra, allowed=()):
        files = dict(self.CLEAN)
        files.update(extra)
        return check(self.tree(files), allowed)

    def test_clean_tree_passes(self):
        self.assertEqual(self.problems({}), [])

    def test_reports_an_include_cycle_with_its_path(self):
        problems = self.problems({
            "common/a.h": '#include "common/b.h"\n',
            "common/b.h": "\n",
            "common/b.c": '#include "common/b.h"\n#include "common/a.h"\n',
        })
        self.assertEqual(problems, ["cycle: common/a -> common/b -> common/a\n"
                                    "    common/a.h:1 includes common/b.h\n"
                                    "    common/b.c:2 includes common/a.h"])

    def test_reports_a_cycle_through_a_call(self):
        # store/store.h declares what file.c defines; file_walk.c calls it while file.c
        # includes file_walk.h: no include cycle, but a cycle all the same.
        problems = self.problems({
            "store/store.h": self.CLEAN["store/store.h"] + "int tusc_store_shard(const char *id);\n",
            "store/file.c": '#include "store/file_walk.h"\n#include "store/store.h"\n'
                            "int tusc_store_open(void) { return tusc_walk(); }\n"
                            "int\ntusc_store_shard(const char *id)\n{\n  return id[0];\n}\n",
            "store/file_walk.h": '#include "store/store.h"\nint tusc_walk(void);\n',
            "store/file_walk.c": '#include "store/file_walk.h"\n\n'
                                 'int tusc_walk(void) { return tusc_store_shard("x"); }\n',
        })
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("cycle: store/file -> store/file_walk -> store/file\n"
                      "    store/file.c:1 includes store/file_walk.h\n"
                      "    store/file_walk.c:3 uses tusc_store_shard, defined at store/file.c:5",
                      problems[0])

    def test_files_of_a_group_are_one_module(self):
        # tus/handler.c and tus/create.c call each other: one module (GROUPS), no cycle;
        # a module outside the group that calls into it and is called back still is one.
        group = {
            "tus/handler_internal.h": '#include "store/store.h"\nint tus_do_post(void);\n'
                                      "int tus_respond(void);\nint tusc_ietf_go(void);\n",
            "tus/handler.c": '#include "tus/handler_internal.h"\n'
                             "int tus_respond(void) { return tusc_store_open(); }\n"
                             "int tusc_handler_run(void) { return tus_do_post(); }\n",
            "tus/create.c": '#include "tus/handler_internal.h"\n'
                            "int tus_do_post(void) { return tus_respond(); }\n",
        }
        self.assertEqual(self.problems(group), [])
        group["tus/ietf.c"] = ('#include "tus/handler_internal.h"\n'
                               "int tusc_ietf_go(void) { return tus_respond(); }\n")
        group["tus/create.c"] = ('#include "tus/handler_internal.h"\n'
                                 "int tus_do_post(void) { return tusc_ietf_go(); }\n")
        problems = self.problems(group)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("cycle: tus/handler -> tus/ietf -> tus/handler"),
                        problems)

    def test_reports_an_upward_include(self):
        problems = self.problems({
            "store/store.h": '#include "tus/handler.h"\n' + self.CLEAN["store/store.h"],
        })
        self.assertIn("layering: store/store (store) uses tus/handler (tus, a higher layer): "
                      "store/store.h:1 includes tus/handler.h", problems)
        self.assertTrue(any(p.startswith("cycle: store/store -> tus/handler -> store/store")
                            for p in problems), problems)

    def test_reports_an_upward_call(self):
        problems = self.problems({
            "common/error.c": self.CLEAN["common/error.c"] + "int f(void) { return tusc_handler_run(); }\n",
        })
        self.assertIn("layering: common/error (common) uses tus/handler (tus, a higher layer): "
                      "common/error.c:3 uses tusc_handler_run, defined at tus/handler.c:7", problems)
        self.assertIn("cycle: common/error -> tus/handler -> store/file -> common/error\n"
                      "    common/error.c:3 uses tusc_handler_run, defined at tus/handler.c:7\n"
                      "    tus/handler.c:6 uses tusc_store_open, defined at store/file.c:2\n"
                      "    store/file.c:2 uses tusc_err, defined at common/error.c:2", problems)

    def test_a_prototype_is_not_a_use_but_a_call_is(self):
        proto = {"common/x.c": "int tusc_handler_run(void);\n"}
        self.assertEqual(self.problems(proto), [])
        proto["common/x.c"] += "int x(void) {\n  return tusc_handler_run();\n}\n"
        self.assertIn("layering: common/x (common) uses tus/handler (tus, a higher layer): "
                      "common/x.c:3 uses tusc_handler_run, defined at tus/handler.c:7",
                      self.problems(proto))

    def test_a_call_in_a_macro_is_a_call(self):
        problems = self.problems({"common/x.c": "#define RUN() \\\n  tusc_handler_run()\n"})
        self.assertIn("layering: common/x (common) uses tus/handler (tus, a higher layer): "
                      "common/x.c:2 uses tusc_handler_run, defined at tus/handler.c:7", problems)

    def test_reports_sibling_layers_and_unknown_layers(self):
        problems = self.problems({
            "upload/engine.c": '#include "tus/handler.h"\n',
            "s3/s3.c": '#include "common/error.h"\n',
        })
        self.assertEqual(sorted(problems), [
            "layer s3/ is not in LAYERS (scripts/check-includes.py): give it a place in the order",
            "layering: upload/engine (upload) uses tus/handler (tus, a layer of the same tier): "
            "upload/engine.c:1 includes tus/handler.h"])

    def test_reports_an_unresolved_include(self):
        problems = self.problems({"common/x.c": '#include "common/missing.h"\n'})
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith('common/x.c:1: include "common/missing.h" is not a file'))

    def test_resolves_includes_next_to_the_file_first(self):
        self.assertEqual(self.problems({"tus/x.c": '#include "handler.h"\n'}), [])
        problems = self.problems({"common/y.c": '#include "../tus/handler.h"\n'})
        self.assertTrue(any("common/y.c:1 includes tus/handler.h" in p for p in problems), problems)

    def test_allowed_edge_hides_only_its_own_cycle(self):
        cyc = {
            "common/a.h": '#include "common/b.h"\n',
            "common/b.h": '#include "common/a.h"\n',
        }
        allowed = (("common/b", "common/a", "a <-> b"),)
        self.assertEqual(self.problems(cyc, allowed), [])
        cyc["common/c.h"] = '#include "common/a.h"\n'
        cyc["common/a.h"] += '#include "common/c.h"\n'
        problems = self.problems(cyc, allowed)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("cycle: common/a -> common/c -> common/a"), problems)

    def test_allowed_upward_edge(self):
        extra = {"common/error.c": self.CLEAN["common/error.c"] + '#include "store/store.h"\n'}
        self.assertNotEqual(self.problems(extra), [])
        self.assertEqual(self.problems(extra, (("common/error", "store/store", "x"),)), [])

    def test_stale_allowed_entries_are_reported(self):
        problems = self.problems({}, (("http/conn", "metrics/metrics", "gone"),
                                      ("tus/handler", "store/store", "fine now")))
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(problems[0].startswith("stale ALLOWED entry http/conn -> metrics/metrics (gone)"))
        self.assertTrue(problems[1].startswith("stale ALLOWED entry tus/handler -> store/store "
                                               "(fine now): no longer against"))

    def test_the_real_tree_has_known_layers_only(self):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
        if os.path.isdir(src):
            layers = {layer_of(m) for m in Graph(src).edges}
            self.assertEqual([x for x in sorted(layers) if tier_of(x) is None], [])


def main(argv):
    if argv[1:] == ["--self-test"]:
        result = unittest.main(argv=argv[:1], module=__name__, exit=False, verbosity=1).result
        return 0 if result.wasSuccessful() else 1
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    src = argv[1] if len(argv) == 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "src")
    src = os.path.normpath(src)
    if not os.path.isdir(src):
        print("check-includes: %s is not a directory" % src, file=sys.stderr)
        return 2
    problems = check(src)
    for p in problems:
        print("check-includes: " + p)
    if problems:
        print("check-includes: %d problem(s); layers and rules: scripts/check-includes.py" % len(problems))
        return 1
    print("check-includes: %s: no cycles, no layering violations" % src)
    for x, y, why in ALLOWED:
        print("check-includes: allowed for now: %s -> %s (%s)" % (x, y, why))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
