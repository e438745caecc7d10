#!/usr/bin/env python3
"""Show the module import graph of a crate and fail if it has a cycle.

    python3 tools/modcycles.py scheduler/src          # one crate
    python3 tools/modcycles.py                        # every crate of the workspace
    python3 tools/modcycles.py scheduler/src --edges  # also print every edge

A node is a module: `foo.rs` and `foo/mod.rs` are `foo`, `foo/bar.rs` is `foo::bar`.
An edge `a -> b` means code in `a` names something in `b` through a path: a `use`
tree or an inline `crate::`, `super::` or `self::` path (comments are ignored; so are
`mod` declarations, which only say where a file is). A path that names an item of a
folder's `mod.rs` points at that folder's module; one that names a submodule points at
the submodule. The crate root (`lib.rs`) is left out: it is the index (docs, `mod`
lines, re-exports, `#[macro_export]` macros), and everything below may use its macros.
A `pub use` is a module's face, not a dependency of its code, so it draws no edge: a
folder's `mod.rs` may re-export its children while they use the folder's own items.

A cycle is a strongly connected set of two or more modules. Each is printed with the
edges that close it and the script exits 1, so it can gate CI. Tested against the
layering it enforces: scheduler/src once had a cycle of ten modules; it reports it.
"""

import os
import re
import sys


def module_of(root, path):
    """The module path (tuple of names) of a source file under `root`."""
    rel = os.path.relpath(path, root)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_comments(src):
    """Source without comments and string contents (keeps line structure)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
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
                    i += 1
        elif c == '"' or (c == "r" and re.match(r'r#*"', src[i:]) and not src[i - 1].isalnum()):
            m = re.match(r'r(#*)"', src[i:])
            if m:  # raw string
                end = '"' + m.group(1)
                j = src.find(end, i + len(m.group(0)))
                i = n if j < 0 else j + len(end)
            else:
                i += 1
                while i < n and src[i] != '"':
                    i += 2 if src[i] == "\\" else 1
                i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:]):
            i += len(re.match(r"'(\\.[^']*|[^\\'])'", src[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e'] (aliases dropped)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)  # `as` aliases
    tree = re.sub(r"\s+", "", tree)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def go(prefix, s):
        i = s.find("{")
        if i < 0:
            return [prefix + s]
        head, body = s[:i], s[i + 1 : s.rfind("}")]
        res = []
        for part in split_top(body):
            res.extend(go(prefix + head, part))
        return res

    return [p for p in go("", tree) if p]


def resolve(cur, path, modules):
    """The module a path in module `cur` points at, or None if outside the crate."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = cur
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif cur + (segs[0],) in modules:  # 2018 relative path to a child module
        base = cur
    else:
        return None
    # Walk down as long as the next segment is a module.
    node = base
    for s in segs:
        if node + (s,) in modules:
            node = node + (s,)
        else:
            break
    return node


def crate_graph(root):
    files = []
    for d, _, fs in os.walk(root):
        files += [os.path.join(d, f) for f in fs if f.endswith(".rs")]
    modules = {module_of(root, f) for f in files}
    edges = {}
    for f in files:
        cur = module_of(root, f)
        src = strip_comments(open(f, encoding="utf-8").read())
        paths = []
        # A `pub use` is the module's face (a re-export), not a dependency of its code.
        for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", src):
            if not m.group(1):
                paths += expand_use(m.group(2))
        src = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", "", src)
        paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", src)
        for p in paths:
            dst = resolve(cur, p, modules)
            if dst is None or dst == () or dst == cur:
                continue
            if cur == ():
                continue
            # Naming your own submodule or your own parent folder's items is an edge
            # like any other; naming an ancestor through a child path is not.
            edges.setdefault(cur, {}).setdefault(dst, p)
    return modules, edges


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return [c for c in out if len(c) > 1]


def name(m):
    return "::".join(m) or "crate"


def check(root, show_edges):
    modules, edges = crate_graph(root)
    n_edges = sum(len(v) for v in edges.values())
    cycles = sccs(modules, edges)
    print(f"{root}: {len(modules)} modules, {n_edges} edges, {len(cycles)} cycle(s)")
    if show_edges:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"    {name(a)} -> {name(b)}    ({edges[a][b]})")
    for comp in cycles:
        members = set(comp)
        print(f"  cycle of {len(comp)}: {', '.join(sorted(name(m) for m in comp))}")
        for a in sorted(comp):
            for b in sorted(edges.get(a, {})):
                if b in members:
                    print(f"    {name(a)} -> {name(b)}    ({edges[a][b]})")
    return not cycles


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not args:
        args = sorted(
            os.path.join(here, d, "src") if d != "." else os.path.join(here, "src")
            for d in os.listdir(here) + ["."]
            if os.path.isfile(os.path.join(here, d, "Cargo.toml"))
            and os.path.isdir(os.path.join(here, d, "src"))
        )
    ok = all([check(a, show_edges) for a in args])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
