#!/usr/bin/env python3
"""Memory over many refreshes of an unchanged DLQ.

Starts the fake API (tests/fakeapi/fakeapi.py) with N runs, mounts dlqfs
on it with -o refresh=0.05, and samples the daemon's VmRSS
(/proc/PID/status) after walks 10, 50, 100 and 200 (through the 5 walks
from each, as RSS moves within a refresh cycle). Nothing changes on the
server, so every walk builds an identical snapshot and frees the one it
replaces: RSS must stay flat. Prints a table and the ratio
RSS(last)/RSS(first) against the target (<= 1.10); exits 1 if the target
is missed, 2 if the run itself failed.

    meson setup build && meson compile -C build     # no sanitizers
    python3 contrib/bench/memory.py [--dlqfs build/dlqfs] [--runs 1000]

Builds nothing itself. Use a build without sanitizers: ASan keeps freed
memory in quarantine and TSan has its own allocator, so their RSS says
nothing about leaks (LeakSanitizer does: see tests/integration/test_stress.py).
Standard library only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakeapi"))

import fakeapi  # noqa: E402

TOKEN = "bench-token-4b1d"
TARGET = 1.10


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def proc_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s for pid %d" % (field, pid))


def status(mp):
    with open(os.path.join(mp, ".dlqfs", "status")) as f:
        return json.load(f)


def sanitizer_of(path):
    with open(path, "rb") as f:
        data = f.read()
    for mark, name in ((b"__tsan_init", "ThreadSanitizer"),
                       (b"__asan_init", "AddressSanitizer")):
        if mark in data:
            return name
    return None


def wait_mounted(proc, mp, stderr_path, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            with open(stderr_path, errors="replace") as f:
                raise RuntimeError("dlqfs exited %s before mounting:\n%s"
                                   % (proc.returncode, f.read()))
        if is_mounted(mp):
            try:
                return status(mp)
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    raise RuntimeError("dlqfs did not mount within %d s" % timeout)


def unmount(mp):
    if is_mounted(mp):
        r = subprocess.run(["fusermount3", "-u", mp], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", mp], capture_output=True)


def fmt_kib(k):
    return "%.1f MiB" % (k / 1024.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dlqfs", default=os.path.join(ROOT, "build", "dlqfs"),
                   help="the daemon, a build without sanitizers "
                   "(default: build/dlqfs)")
    p.add_argument("--runs", type=int, default=1000,
                   help="runs in the fake DLQ (default 1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-large", action="store_true",
                   help="no ~1 MB response bodies (the fake adds 3 when "
                   "runs >= 100)")
    p.add_argument("--refresh", default="0.05",
                   help="-o refresh= seconds (default 0.05)")
    p.add_argument("--walks", default="10,50,100,200",
                   help="sample after these walks (default 10,50,100,200)")
    p.add_argument("--window", type=int, default=5,
                   help="walks to sample through at each mark (default 5)")
    p.add_argument("--stat", choices=("min", "median", "max"),
                   default="median",
                   help="which sample the ratio compares (default median)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="give up after this many seconds (default 1800)")
    a = p.parse_args(argv)
    marks = sorted({int(x) for x in a.walks.split(",")})
    if len(marks) < 2 or marks[0] < 1:
        p.error("--walks needs at least two positive numbers")
    if not os.access(a.dlqfs, os.X_OK):
        p.error("%s is not an executable: meson setup build && "
                "meson compile -C build" % a.dlqfs)
    san = sanitizer_of(a.dlqfs)
    if san:
        print("warning: %s is built with %s; its RSS is not the daemon's "
              "(use a build without sanitizers)" % (a.dlqfs, san),
              file=sys.stderr)

    fake = fakeapi.FakeAPI(token=TOKEN, runs=a.runs, seed=a.seed,
                           large=False if a.no_large else None)
    tmp = tempfile.mkdtemp(prefix="dlqfs-bench-")
    mp = os.path.join(tmp, "mnt")
    os.mkdir(mp)
    stderr_path = os.path.join(tmp, "dlqfs.stderr")
    proc = None
    rows = []
    try:
        fake.start()
        env = dict(os.environ, QSTASH_TOKEN=TOKEN)
        env.pop("QSTASH_URL", None)
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                [a.dlqfs, "-f", "-o", "url=%s,refresh=%s" % (fake.base_url,
                                                             a.refresh), mp],
                env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        wait_mounted(proc, mp, stderr_path, 60)
        t0 = time.monotonic()
        end = t0 + a.timeout
        for mark in marks:
            # RSS moves within each refresh cycle (the next snapshot is
            # built beside the served one): sample through a.window walks
            # from the mark and keep the lowest, median and highest
            samples = []
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("dlqfs exited %s" % proc.returncode)
                st = status(mp)
                if st["walks_ok"] >= mark:
                    samples.append(proc_kib(proc.pid, "VmRSS"))
                    if st["walks_ok"] >= mark + a.window:
                        break
                if time.monotonic() > end:
                    raise RuntimeError("timed out at %d walks (wanted %d)"
                                       % (st["walks_ok"], mark))
                time.sleep(0.005)
            samples.sort()
            rows.append({"mark": mark, "min": samples[0],
                         "median": samples[len(samples) // 2],
                         "max": samples[-1], "n": len(samples),
                         "hwm": proc_kib(proc.pid, "VmHWM"),
                         "payload": st["payload_bytes"], "runs": st["runs"],
                         "failed": st["walks_failed"],
                         "time": time.monotonic() - t0})
    except (RuntimeError, OSError, ValueError) as e:
        print("memory.py: %s" % e, file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            unmount(mp)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            unmount(mp)
        fake.stop()
        if proc is not None and proc.returncode not in (0, None):
            with open(stderr_path, errors="replace") as f:
                sys.stderr.write("dlqfs exited %s:\n%s" % (proc.returncode,
                                                          f.read()[-4000:]))
        if not is_mounted(mp):
            shutil.rmtree(tmp, ignore_errors=True)

    first, last = rows[0], rows[-1]
    ratio = last[a.stat] / float(first[a.stat])
    print("dlqfs %s, %d runs, refresh=%s, payload_bytes %d (%.1f MiB)"
          % (a.dlqfs, first["runs"], a.refresh, last["payload"],
             last["payload"] / 1048576.0))
    print("VmRSS sampled every 5 ms through %d walks from each mark"
          % a.window)
    print("%6s  %11s  %11s  %11s  %11s  %9s  %7s"
          % ("walks", "RSS min", "RSS median", "RSS max", "VmHWM",
             "%s/first" % a.stat, "time"))
    for r in rows:
        print("%6d  %11s  %11s  %11s  %11s  %9.3f  %6.1fs"
              % (r["mark"], fmt_kib(r["min"]), fmt_kib(r["median"]),
                 fmt_kib(r["max"]), fmt_kib(r["hwm"]),
                 r[a.stat] / float(first[a.stat]), r["time"]))
    failed = last["failed"]
    ok = ratio <= TARGET and failed == 0
    print("RSS(%d)/RSS(%d) (%s) = %.3f, target <= %.2f (flat): %s%s"
          % (last["mark"], first["mark"], a.stat, ratio, TARGET,
             "met" if ok else "MISSED",
             "" if not failed else " (%d walks failed)" % failed))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
