#!/usr/bin/env python3
"""Reads callgrind profiles (--demangle=no) and prints the functions that ran, hottest
first, one linker symbol per line: the order file for lld's --symbol-ordering-file.

Usage: hot_symbols.py PROFILE... > crates/ferrosip/hot-symbols.txt
Functions of shared libraries (libc) are listed too; the linker skips names the binary does
not define. Profiles are merged in the order given: every function of the first one comes before
those only the second one ran, and so on (give the stateless run first: it is the path
every mode shares).
"""
import re
import sys
from collections import Counter

COST_LINE = re.compile(r"^[0-9+\-*]")
COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?")


def self_costs(path):
    names = {}
    cost = Counter()

    def name_of(token):
        m = COMPRESSED.fullmatch(token)
        if not m:
            return token
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]

    current = None
    after_call = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                current = name_of(line[3:])
            elif line.startswith("cfn="):
                name_of(line[4:])
            elif line.startswith("calls="):
                # The next cost line is the call's inclusive cost, not the caller's own.
                after_call = True
            elif COST_LINE.match(line):
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if current and len(fields) >= 2:
                    cost[current] += int(fields[1])
    return cost


def main():
    seen = set()
    for path in sys.argv[1:]:
        for name, c in self_costs(path).most_common():
            # callgrind marks recursion levels and repeated names with a quote suffix.
            name = name.split("'")[0]
            if c <= 0 or name in seen or name.startswith("0x"):
                continue
            seen.add(name)
            print(name)


if __name__ == "__main__":
    main()
