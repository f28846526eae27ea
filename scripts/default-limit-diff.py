#!/usr/bin/env python3
"""Compare two `CELLS=1` outputs of the `default_limit` example seed-cell by seed-cell.

The project's acceptance rule for a change to the default limit (issue 16): the total misses
over the seeds drop, and no do-no-harm seed-cell sheds more than before. This prints the
misses before -> after, the do-no-harm seed-cells that shed more (WORSE) or less, the summed
shed of every do-no-harm seed-cell, each seed's misses where they changed, and (with -o)
every other check whose figure changed.

    SEEDS=1,2,3,4,5 CELLS=1 cargo run --release -p tailwater-sim --example default_limit \
        -- headroom > before.txt     # on main, then the same on the branch > after.txt
    scripts/default-limit-diff.py before.txt after.txt [-v] [-o]

-v also lists the seed-cells that shed less. Figures are compared as printed (two decimals).
"""
import re
import sys


def load(path):
    cells, misses, fails = {}, 0, {}
    with open(path) as f:
        for line in f:
            m = re.match(r'\s+seed (\d+): (\d+) of \d+ checks fail(?:: (.*))?', line)
            if m:
                misses += int(m.group(2))
                fails[int(m.group(1))] = m.group(3) or ''
                continue
            m = re.match(r'\s+cell (.+?)\s{2,}(.*)$', line)
            if m:
                cells[m.group(1).strip()] = [x.strip() for x in m.group(2).split('|')]
    return cells, misses, fails


def main():
    files = [a for a in sys.argv[1:] if not a.startswith('-')]
    if len(files) != 2:
        sys.exit(__doc__)
    (a, ma, fa), (b, mb, fb) = load(files[0]), load(files[1])
    worse, better, other = [], [], []
    sa = sb = 0.0
    for name, figs in a.items():
        for i, (x, y) in enumerate(zip(figs, b.get(name, []))):
            if name.startswith('no-harm'):
                x, y = float(x.rstrip('%')), float(y.rstrip('%'))
                sa, sb = sa + x, sb + y
                row = f'{name} seed {i + 1}: {x:.2f} -> {y:.2f} %'
                if y > x:
                    worse.append(row)
                elif y < x:
                    better.append(row)
            elif x != y:
                other.append(f'{name} seed {i + 1}: {x} -> {y}')
    print(f'misses {ma} -> {mb}')
    print(f'do-no-harm seed-cells worse {len(worse)}, better {len(better)}; '
          f'summed shed {sa:.2f} -> {sb:.2f} points')
    for row in worse:
        print('  WORSE', row)
    if '-v' in sys.argv:
        for row in better:
            print('  better', row)
    for seed in sorted(fb):
        if fa.get(seed) != fb[seed]:
            print(f'  seed {seed} now misses: {fb[seed]}')
    if '-o' in sys.argv:
        for row in other:
            print('  changed', row)


if __name__ == '__main__':
    main()
