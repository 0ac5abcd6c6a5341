#!/usr/bin/env python3
"""dlqfs benchmark: the issue's performance targets, each measured as a
ratio against a baseline measured in the same run.

    meson setup build-bench --buildtype=release && meson compile -C build-bench
    contrib/bench/run                 # full run, ~10 minutes on 2 cores
    contrib/bench/run --quick         # smaller sizes, ~1-2 minutes
    contrib/bench/run --only walk,read --report /tmp/bench.md

Phases (--only takes a comma-separated list of them):
  walk      full walk of --runs runs at --latency-ms per request: dlqfs
            (default walkers) vs the fastest sequential Python cursor loop
            and vs dlqfs -o walkers=1; requests made, requests/s
  refresh   requests per refresh of an unchanged DLQ vs a full walk
  read      ls -l, grep, rsync -a and find -L on the mount vs the same tree
            copied to local disk, cold and warm; API requests they cause
  memory    daemon VmRSS after walking the largest --scale size vs
            1.5 x payload_bytes + 32 MiB
  scale     walk time, ls -l runs time and RSS at each --scale size
  fuseops   FUSE requests per command on a small tree (dlqfs -d): where the
            read-path time goes
  soak      VmRSS over many full walks at each --soak size (RUNSxWALKS),
            read once the replaced snapshots' grace has passed, after the
            first walk and after the last
  cache     remount from the cache on disk vs a cold mount, to the first
            `ls runs | wc -l`, at each --cache-sizes size; the cache's size
            vs the payload

Prints progress on stderr and a Markdown report on stdout. Exit status 0
when the report was produced, whatever PASS/MISS says; 1 when the harness
itself failed (a mount, a walk, a command); 2 for bad arguments. Always
unmounts and stops the fake API. Listens on 127.0.0.1 only. Standard
library only; see contrib/bench/README.md for what each figure means.

This file holds the options, the run's context and the report; each phase
is a module of its own (bench_walk.py for walk and refresh, bench_read.py,
bench_scale.py for scale and memory, bench_fuseops.py), on top of
bench_fake.py (the fake API in its own process), bench_mount.py (a dlqfs
mount) and bench_util.py.
"""
import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench_cache import phase_cache
from bench_fake import Fake
from bench_fuseops import phase_fuseops
from bench_read import phase_read
from bench_scale import phase_scale
from bench_soak import phase_soak
from bench_util import (ROOT, T0, HarnessError, Interrupted, cell, fmt_n,
                        fmt_ratio, is_mounted, loadavg, log, remove_tree,
                        sanitizer_of, unmount)
from bench_walk import phase_walk

PHASES = ("walk", "refresh", "read", "memory", "scale", "fuseops", "soak",
          "cache")


# --------------------------------------------------------------------------
# the run


class Context:
    def __init__(self, args):
        self.args = args
        self.dlqfs = args.dlqfs
        self.workdir = None
        self.rsync_base = None
        self.mounts = []
        self.fakes = []
        self.main_fake = None
        self.rows = []       # the targets table
        self.sections = []   # (title, markdown lines)
        self.warnings = []
        self.curve = []

    def warn(self, text):
        log("WARNING: " + text)
        self.warnings.append(text)

    def row(self, target, measured, baseline, ratio, goal, ok):
        self.rows.append((target, measured, baseline, ratio, goal,
                          "-" if ok is None else ("PASS" if ok else "MISS")))

    def section(self, title, lines):
        self.sections.append((title, lines))

    def fake_main(self, latency_ms):
        """The fake with --runs runs, shared by walk, refresh and read."""
        if self.main_fake is None:
            self.main_fake = Fake(self, self.args.runs, latency_ms)
        self.main_fake.set_latency(latency_ms)
        return self.main_fake

    def stop_main_fake(self):
        if self.main_fake is not None:
            self.main_fake.stop()
            self.main_fake = None

    def cleanup(self):
        for m in self.mounts:
            try:
                m.stop()
            except Exception as e:  # noqa: BLE001 - best effort in finally
                log("cleanup: %s" % e)
            finally:
                unmount(m.mountpoint)
        for f in self.fakes:
            try:
                f.stop()
            except Exception as e:  # noqa: BLE001
                log("cleanup: %s" % e)


# --------------------------------------------------------------------------
# report


def report(ctx, started_at, load0, elapsed):
    a = ctx.args
    out = []
    out.append("# dlqfs benchmark%s" % (" (--quick)" if a.quick else ""))
    out.append("")
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                          "--dirty"], capture_output=True, text=True)
    out.append("- %s, %s, Linux %s, %d CPUs, load average %s at the start, "
               "%s at the end; %.0f s in all" % (
                   time.strftime("%Y-%m-%d %H:%M:%S %Z",
                                 time.localtime(started_at)),
                   platform.node(), platform.release(), os.cpu_count() or 0,
                   load0, loadavg(), elapsed))
    out.append("- daemon: %s (source %s)%s" % (
        os.path.relpath(ctx.dlqfs, ROOT), git.stdout.strip() or "?",
        "; **built with %s: timings and RSS are not the daemon's**"
        % ctx.sanitizer if ctx.sanitizer else ""))
    out.append("- phases: %s; --runs %s, --scale %s, --latency-ms %g, "
               "--reps %d%s" % (",".join(ctx.phases), fmt_n(a.runs),
                                ",".join(fmt_n(x) for x in a.scale),
                                a.latency_ms, a.reps,
                                ", every mount with -o " + ",".join(
                                    a.mount_options) if a.mount_options
                                else ""))
    out.append("")
    out.append("## Targets")
    out.append("")
    out.append("| target | measured | baseline | ratio | goal | result |")
    out.append("|---|---|---|---|---|---|")
    for target, measured, baseline, ratio, goal, res in ctx.rows:
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            cell(target), measured, baseline, fmt_ratio(ratio), goal,
            "**MISS**" if res == "MISS" else res))
    for title, lines in ctx.sections:
        out.append("")
        out.append("## " + title)
        out.append("")
        out.extend(lines)
    if ctx.warnings:
        out.append("")
        out.append("## Warnings")
        out.append("")
        out.extend("- " + w for w in ctx.warnings)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="dlqfs benchmark: the issue's targets as ratios "
        "against baselines measured in the same run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Phases"):__doc__.index("Prints")])
    p.add_argument("--dlqfs", default=os.path.join(ROOT, "build-bench",
                                                   "dlqfs"),
                   help="the daemon, a release build without sanitizers "
                   "(default: build-bench/dlqfs)")
    p.add_argument("--build", action="store_true",
                   help="meson setup (if needed) and compile build-bench "
                   "first")
    p.add_argument("--quick", action="store_true",
                   help="--runs 2000 --scale 500,5000: about 1-2 minutes")
    p.add_argument("--only", default=",".join(PHASES),
                   help="phases to run (default: all): " + ",".join(PHASES))
    p.add_argument("--runs", type=int, help="runs for walk, refresh and "
                   "read (default 20000; --quick 2000)")
    p.add_argument("--scale", help="runs at each point of the scale curve; "
                   "memory uses the largest (default 1000,10000,100000; "
                   "--quick 500,5000)")
    p.add_argument("--soak", help="soak sizes, RUNSxWALKS,... (default "
                   "20000x200,100000x20; --quick 2000x20)")
    p.add_argument("--latency-ms", type=float, default=20,
                   help="added to every API request in walk, refresh and "
                   "scale (default 20)")
    p.add_argument("--max-rps", type=float, default=90,
                   help="the daemon's max_rps default, for the report "
                   "(default 90)")
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions of each walk and warm command "
                   "(default 3)")
    p.add_argument("--cache-sizes", help="runs at each size of the cache "
                   "phase (default 20000,100000; --quick 2000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fuseops-runs", type=int, default=200)
    p.add_argument("--no-detie", action="store_true",
                   help="skip the walk diagnostic on data without the "
                   "createdAt tie at the head of the listing")
    p.add_argument("--workdir", help="parent of the scratch directory "
                   "(mount points, local copy; default: $TMPDIR or /tmp)")
    p.add_argument("--local-dir", help="where the local copy goes "
                   "(default: the scratch directory)")
    p.add_argument("--rsync-dest", help="where rsync writes (default: "
                   "/dev/shm if it is a writable tmpfs, else the scratch "
                   "directory)")
    p.add_argument("--drop-caches", action="store_true",
                   help="drop the page cache before each cold local-disk "
                   "run (root only; slows every process on the machine)")
    p.add_argument("--mount-options", default="",
                   help="extra -o options for every dlqfs mount, for "
                   "experiments (e.g. ro with --only read)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directory")
    p.add_argument("--report", help="also write the report to this file")
    a = p.parse_args(argv)
    a.runs = a.runs or (2000 if a.quick else 20000)
    a.scale = sorted({int(x) for x in (a.scale or (
        "500,5000" if a.quick else "1000,10000,100000")).split(",")})
    try:
        a.soak = [tuple(int(v) for v in x.split("x", 1)) for x in (
            a.soak or ("2000x20" if a.quick else "20000x200,100000x20")
        ).split(",")]
        if any(len(x) != 2 or min(x) < 1 for x in a.soak):
            raise ValueError
    except ValueError:
        p.error("--soak takes RUNSxWALKS[,RUNSxWALKS...], e.g. 20000x200")
    a.cache_sizes = sorted({int(x) for x in (a.cache_sizes or (
        "2000" if a.quick else "20000,100000")).split(",")})
    if a.runs < 100 or min(a.scale) < 1 or a.reps < 1:
        p.error("--runs must be >= 100, --scale sizes and --reps >= 1")
    phases = [x.strip() for x in a.only.split(",") if x.strip()]
    bad = [x for x in phases if x not in PHASES]
    if bad or not phases:
        p.error("--only takes %s" % ",".join(PHASES))
    a.phases = [x for x in PHASES if x in phases]
    a.mount_options = [x for x in a.mount_options.split(",") if x]
    if a.drop_caches and os.geteuid() != 0:
        p.error("--drop-caches needs root")
    return a


def main(argv=None):
    a = parse_args(argv)
    ctx = Context(a)
    ctx.phases = a.phases
    if a.build:
        bdir = os.path.dirname(a.dlqfs)
        if not os.path.exists(os.path.join(bdir, "build.ninja")):
            subprocess.run(["meson", "setup", bdir, "--buildtype=release"],
                           cwd=ROOT, stdout=sys.stderr)
        r = subprocess.run(["meson", "compile", "-C", bdir], cwd=ROOT,
                           stdout=sys.stderr)
        if r.returncode != 0:
            print("run: meson compile -C %s failed" % bdir, file=sys.stderr)
            return 1
    if not os.access(a.dlqfs, os.X_OK):
        print("run: %s is not an executable: cd %s && meson setup "
              "build-bench --buildtype=release && meson compile -C "
              "build-bench (or --build)" % (a.dlqfs, ROOT), file=sys.stderr)
        return 2
    for tool in ("fusermount3", "rsync", "bash", "cp", "find", "grep"):
        if not shutil.which(tool):
            print("run: %s is not installed" % tool, file=sys.stderr)
            return 2
    ctx.sanitizer = sanitizer_of(a.dlqfs)
    if ctx.sanitizer:
        ctx.warn("%s is built with %s: its timings and RSS say little; use "
                 "a release build (build-bench)" % (a.dlqfs, ctx.sanitizer))
    newer = [f for f in os.listdir(os.path.join(ROOT, "src"))
             if os.path.getmtime(os.path.join(ROOT, "src", f))
             > os.path.getmtime(a.dlqfs)]
    if newer:
        ctx.warn("%s is older than src/%s: rebuild (meson compile -C "
                 "build-bench, or --build)" % (a.dlqfs, ", src/".join(
                     sorted(newer))))

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started_at = time.time()
    load0 = loadavg()
    base = a.workdir or tempfile.gettempdir()
    ctx.workdir = tempfile.mkdtemp(prefix="dlqfs-bench-", dir=base)
    shm = "/dev/shm"
    if a.rsync_dest:
        ctx.rsync_base = tempfile.mkdtemp(prefix="dlqfs-bench-rsync-",
                                          dir=a.rsync_dest)
    elif os.path.isdir(shm) and os.access(shm, os.W_OK) and \
            os.statvfs(shm).f_bavail * os.statvfs(shm).f_frsize > 4 << 30:
        ctx.rsync_base = tempfile.mkdtemp(prefix="dlqfs-bench-rsync-",
                                          dir=shm)
    else:
        ctx.rsync_base = tempfile.mkdtemp(prefix="rsync-", dir=ctx.workdir)
    ctx.local_tree = None
    log("scratch directory %s; phases %s" % (ctx.workdir,
                                             ",".join(a.phases)))
    failed = None
    text = None
    try:
        ph = set(a.phases)
        if "walk" in ph or "refresh" in ph:
            phase_walk(ctx, "walk" in ph, "refresh" in ph)
        if "read" in ph:
            phase_read(ctx)
        ctx.stop_main_fake()
        if "scale" in ph or "memory" in ph:
            phase_scale(ctx, "scale" in ph, "memory" in ph)
        if "fuseops" in ph:
            phase_fuseops(ctx)
        if "soak" in ph:
            phase_soak(ctx)
        if "cache" in ph:
            phase_cache(ctx)
        text = report(ctx, started_at, load0, time.monotonic() - T0)
    except HarnessError as e:
        failed = "harness failed: %s" % e
    except (Interrupted, KeyboardInterrupt) as e:
        failed = "interrupted (%s)" % (e or "SIGINT")
    finally:
        ctx.cleanup()
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            if a.report:
                with open(a.report, "w") as f:
                    f.write(text)
        if failed:
            log(failed)
            if ctx.rows:
                sys.stdout.write(report(ctx, started_at, load0,
                                        time.monotonic() - T0))
        for m in ctx.mounts:
            if is_mounted(m.mountpoint):
                log("still mounted: %s" % m.mountpoint)
        if a.keep:
            log("kept %s" % ctx.workdir)
        else:
            if ctx.local_tree:
                log("removing the local copy")
                remove_tree(ctx.local_tree)
            remove_tree(ctx.workdir)
        remove_tree(ctx.rsync_base)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
