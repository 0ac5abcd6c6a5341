#!/usr/bin/python3
"""Write one list page of the fake API to stdout, byte for byte as
tests/fakeapi.py serves it: {"cursor":"...","messages":[...]} with the
entries of fakeapi.generate() in its compact encoding.

usage: page.py [N] [--seed S] [--large]

N entries (default 100). --large lets generate() give up to 3 entries a
~1 MB responseBody, as it does for N >= 100 in the fake API; without it
every entry is of the ordinary kind. Python 3 standard library only.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))

import fakeapi  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--large", action="store_true")
    args = ap.parse_args()

    msgs = fakeapi.generate(args.n, args.seed, large=args.large)
    # the fake's own encoding of an entry (_Record.enc), and its cursor
    encs = [fakeapi._Record(m).enc for m in msgs]
    last = msgs[-1]
    cursor = fakeapi.encode_cursor(last["createdAt"], last["dlqId"])
    out = (b'{"cursor":' + json.dumps(cursor).encode("ascii") +
           b',"messages":[' + b",".join(encs) + b"]}")
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
