#!/usr/bin/env python3
"""Lists import cycles between the top-level modules of each crate (issue 15's goal).

A module `a` depends on `b` when a file under `src/a` (or `src/a.rs`) names `crate::b` or
`super::b` from a top-level file. Test modules (`#[cfg(test)] mod tests` blocks and
`tests.rs` files) are skipped: tests may reach anywhere. Prints each strongly connected
component with more than one module; exits 1 if there is any.
Usage: scripts/module-cycles.py [CRATE_DIR ...]   (default: every crates/* directory)
"""
import os, re, sys, glob

def top_module(src, path):
    rel = os.path.relpath(path, src)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith('.rs') else head

def strip_tests(text):
    # Drop `#[cfg(test)]` modules: from the attribute to the end of the file is the convention
    # here (test modules come last); good enough for a dependency check.
    i = text.find('#[cfg(test)]\nmod tests')
    text = text if i < 0 else text[:i]
    # Comments (doc links included) are not dependencies.
    return '\n'.join(l.split('//')[0] for l in text.split('\n'))

def deps_of(crate):
    src = os.path.join(crate, 'src')
    mods = {top_module(src, p) for p in glob.glob(os.path.join(src, '*.rs'))}
    mods |= {os.path.basename(d) for d in glob.glob(os.path.join(src, '*')) if os.path.isdir(d) and d.split(os.sep)[-1] != 'bin'}
    mods -= {'lib', 'main'}
    edges = {m: set() for m in mods}
    for path in glob.glob(os.path.join(src, '**', '*.rs'), recursive=True):
        if path.endswith('tests.rs') or os.sep + 'bin' + os.sep in path:
            continue
        m = top_module(src, path)
        if m not in edges:
            continue
        text = strip_tests(open(path, encoding='utf-8').read())
        # `crate::x`, and `use crate::{x, y::z}` groups.
        for hit in re.finditer(r'crate::(\{[^}]*\}|\w+)', text):
            names = re.findall(r'(?:^|[{,\s])(\w+)', hit.group(1)) if hit.group(1).startswith('{') else [hit.group(1)]
            for n in names:
                if n in edges and n != m:
                    edges[m].add(n)
        depth = len(os.path.relpath(path, src).split(os.sep))
        if depth == 1:  # a top-level file's `super::` is the crate root
            for n in re.findall(r'super::(\w+)', text):
                if n in edges and n != m:
                    edges[m].add(n)
    return edges

def sccs(edges):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]

crates = sys.argv[1:] or sorted(glob.glob('crates/*'))
bad = 0
for c in crates:
    if not os.path.isdir(os.path.join(c, 'src')):
        continue
    cycles = sccs(deps_of(c))
    for comp in cycles:
        bad += 1
        e = deps_of(c)
        arrows = ', '.join(f'{a}→{b}' for a in comp for b in sorted(e[a]) if b in comp)
        print(f'{c}: cycle among {{{", ".join(comp)}}}: {arrows}')
print(f'{bad} cycle(s)')
sys.exit(1 if bad else 0)
