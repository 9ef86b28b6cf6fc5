#!/usr/bin/env python3
"""Finds import cycles between the modules of each crate of the workspace.

A module "imports" another when its source names it: a `use` item or a path in code that
starts with `crate::`, `super::`, `self::` or the name of one of its own submodules. Each
path counts for the deepest module it reaches (`crate::files::pipe::PipeKind` names
`files::pipe`). Declaring a submodule (`mod x;`) is not an import. Inline modules
(`mod tests { ... }`) belong to the file that holds them. A cycle is a set of modules that
reach each other through such imports; the script prints each one and exits 1, or exits 0
when the graph is acyclic.

Usage: tools/modcycles.py [CRATE_DIR ...]   (default: every crates/*/ with a src/ and the
integration-test and bench roots are not modules of the library and are skipped).
"""
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(src):
    out = []
    i, n = 0, len(src)
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
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 12]) or (c == "'" and re.match(r"'\\(x..|u\{[0-9a-fA-F]+\})'", src[i:i + 12])):
            m = re.match(r"'(\\x..|\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            i += len(m.group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def crate_modules(src_dir):
    """Maps module path tuples to (file, is_dir_module) for one crate's src/."""
    mods = {}
    for root in ("lib.rs", "main.rs"):
        if os.path.exists(os.path.join(src_dir, root)):
            mods[()] = os.path.join(src_dir, root)
            break
    else:
        return mods
    todo = [()]
    while todo:
        m = todo.pop()
        path = mods[m]
        text = strip_comments_and_strings(open(path, encoding="utf-8").read())
        if m == ():
            base = src_dir
        elif os.path.basename(path) == "mod.rs":
            base = os.path.dirname(path)
        else:
            base = path[:-3]
        for attr_path, name in re.findall(r"(?:#\[path\s*=\s*\"([^\"]*)\"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text):
            cands = [os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")]
            for c in cands:
                if os.path.exists(c):
                    mods[m + (name,)] = c
                    todo.append(m + (name,))
                    break
    return mods


def use_paths(tree):
    """Expands a use tree (`a::{b, c::d as e}`) into full paths."""
    tree = re.sub(r"\s+", "", tree)
    def expand(prefix, t):
        if not t:
            return [prefix]
        if t.startswith("{"):
            parts, depth, cur = [], 0, ""
            for ch in t[1:-1]:
                if ch == "," and depth == 0:
                    parts.append(cur)
                    cur = ""
                    continue
                depth += ch == "{"
                depth -= ch == "}"
                cur += ch
            if cur:
                parts.append(cur)
            out = []
            for p in parts:
                out += expand(prefix, p)
            return out
        m = re.match(r"(" + IDENT + r"|\*)(::)?(.*)$", t)
        if not m:
            return [prefix]
        head, rest = m.group(1), m.group(3)
        rest = re.sub(r"as" + IDENT + "$", "", rest) if not m.group(2) else rest
        if head == "*":
            return [prefix]
        if m.group(2):
            return expand(prefix + [head], rest)
        return [prefix + [head]]
    return expand([], tree)


def resolve(path, here, file_mod, mods, children):
    """The deepest module a path names, from module `here` (inline modules resolve
    `super` against `here`, the file's module, handled by the caller)."""
    if not path:
        return None
    if path[0] == "crate":
        cur, rest = (), path[1:]
    elif path[0] in ("super", "self"):
        cur, rest = here, path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if not cur:
                    return None
                cur = cur[:-1]
            rest = rest[1:]
    elif path[0] in children.get(file_mod, ()):
        cur, rest = file_mod, path
    else:
        return None
    for seg in rest:
        if cur + (seg,) in mods:
            cur = cur + (seg,)
        else:
            break
    return cur


def edges_of(mod, path, mods, children):
    text = strip_comments_and_strings(open(path, encoding="utf-8").read())
    # Where inline modules begin and end: inside them `super` is the file's module.
    inline = []
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += text[i] == "{"
            depth -= text[i] == "}"
            i += 1
        inline.append((m.start(), i))

    def scope(pos):
        return mod + ("<inline>",) if any(a <= pos < b for a, b in inline) else mod

    found = set()
    for m in re.finditer(r"\buse\s+([^;]*);", text):
        here = scope(m.start())
        for p in use_paths(m.group(1)):
            r = resolve(p, here, mod, mods, children)
            if r is not None:
                found.add(r)
    for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:" + IDENT + r"::)+" + IDENT + r")", text):
        here = scope(m.start())
        r = resolve(m.group(1).split("::"), here, mod, mods, children)
        if r is not None:
            found.add(r)
    found.discard(mod)
    found.discard(())  # the crate root only declares modules
    # A reference to an ancestor through `super` inside an inline test module is the
    # file itself.
    return found


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = sys.argv[1:] or sorted(
        os.path.join(root, "crates", d) for d in os.listdir(os.path.join(root, "crates")))
    bad = 0
    for d in dirs:
        src = os.path.join(d, "src")
        if not os.path.isdir(src):
            continue
        mods = crate_modules(src)
        children = {}
        for m in mods:
            if m:
                children.setdefault(m[:-1], set()).add(m[-1])
        graph = {m: edges_of(m, f, mods, children) for m, f in mods.items()}
        name = os.path.basename(d)
        for comp in sccs(graph):
            bad += 1
            names = ["::".join(c) for c in comp]
            print(f"{name}: import cycle among {', '.join(names)}")
            for a in comp:
                for b in sorted(graph[a]):
                    if b in comp:
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}   ({os.path.relpath(mods[a], root)})")
    if bad:
        print(f"{bad} import cycle(s)")
        return 1
    print("no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
