#!/usr/bin/env python3
"""The fake DLQ API (tests/fakeapi/fakeapi.py) in a process of its own,
for the benchmark: so the harness's own Python (the sequential baseline
client, timers, polling) never competes with the server for one
interpreter lock.

    python3 contrib/bench/fakeserver.py --runs 100000 --port-file F \
        [--seed 1] [--latency-ms 20] [--token T] [--base 20000] [--detie]

Serves on 127.0.0.1 until stdin reaches EOF or SIGTERM/SIGINT. Writes
"PORT BUILD_SECONDS PAYLOAD_BYTES" to the port file once it listens
(PAYLOAD_BYTES: the JSON of every entry, once). The harness
drives it through the fake's admin endpoints (/_admin/stats, /_admin/requests,
/_admin/clear-requests, /_admin/config). Data: generate(min(runs, base),
seed, large=False); beyond `base` runs, copies of those entries moved 7 days
further into the past per copy (new createdAt, dlqId, workflowRunId,
workflowCreatedAt, messageId), which is much faster than generating 100,000
entries one by one and keeps the payload per run the same. --detie spreads
the createdAt ties of 10+ entries (see detie()). Standard library only.
"""
import argparse
import collections
import os
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakeapi"))

import fakeapi  # noqa: E402

WEEK_MS = 7 * fakeapi.DAY_MS


def detie(msgs, seed, min_group=10, spread_ms=3 * 3600 * 1000):
    """Spreads every group of at least `min_group` entries that share one
    createdAt uniformly over the `spread_ms` before it (new dlqIds). The
    generator clamps createdAt to now - 1 ms, so about 1 entry in 110 lands
    on that one millisecond: at 20,000 runs the first page of the listing
    is a single millisecond, which the walker cannot cut into ranges."""
    import random
    rng = random.Random(seed)
    groups = collections.Counter(m["createdAt"] for m in msgs)
    used = set(m["dlqId"] for m in msgs)
    moved = 0
    for m in msgs:
        if groups[m["createdAt"]] < min_group:
            continue
        while True:
            created = m["createdAt"] - rng.randint(1, spread_ms)
            dlq_id = "%d-0" % created
            if dlq_id not in used and created not in groups:
                break
        used.add(dlq_id)
        m["createdAt"] = created
        m["dlqId"] = dlq_id
        moved += 1
    return moved


def build(runs, seed, base, spread_ties=False):
    """`runs` messages: `base` generated ones, then shifted copies."""
    first = fakeapi.generate(min(runs, base), seed, large=False)
    if spread_ties:
        detie(first, seed)
    out = list(first)
    k = 1
    while len(out) < runs:
        shift = k * WEEK_MS
        for m in first:
            if len(out) >= runs:
                break
            c = dict(m)  # the fake encodes at once and keeps no dicts
            created = m["createdAt"] - shift
            c["createdAt"] = created
            c["dlqId"] = "%d-%s" % (created, m["dlqId"].split("-", 1)[1])
            c["messageId"] = "%s~%d" % (m["messageId"], k)
            if "workflowRunId" in m:
                c["workflowRunId"] = "%s%d" % (m["workflowRunId"], k)
            if isinstance(m.get("workflowCreatedAt"), int):
                c["workflowCreatedAt"] = m["workflowCreatedAt"] - shift
            out.append(c)
        k += 1
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--base", type=int, default=20000,
                   help="generate at most this many; copy the rest")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--token", default="bench-token")
    p.add_argument("--port-file", required=True)
    p.add_argument("--detie", action="store_true",
                   help="spread createdAt ties of 10+ entries over 3 hours")
    a = p.parse_args(argv)

    t0 = time.monotonic()
    msgs = build(a.runs, a.seed, max(1, a.base), a.detie)
    fake = fakeapi.FakeAPI(token=a.token, messages=msgs,
                           latency_ms=a.latency_ms, host="127.0.0.1")
    del msgs
    if len(fake) != a.runs:
        print("fakeserver: %d messages, wanted %d (duplicate dlqIds)"
              % (len(fake), a.runs), file=sys.stderr)
        return 2
    # the JSON bytes of every entry as the fake serves them (each once):
    # what payload_bytes would be for a walk without duplicates
    payload = sum(len(r.enc) for r in getattr(fake, "_by_id", {}).values())
    fake.start()
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %.3f %d\n" % (fake.port, time.monotonic() - t0, payload))
    os.replace(tmp, a.port_file)
    try:
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
