"""Shared by every part of the benchmark harness (run.py): its constants,
progress on stderr, the harness's own errors, mount and /proc helpers, the
formatting of figures for the report, and running a command with bash.
Knows nothing of the phases; the fake API is bench_fake.py and a dlqfs
mount bench_mount.py.
"""
import calendar
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKEN = "bench-token-6e2c0f"
LIST_PATH = "/v2/workflows/dlq"
MiB = 1024 * 1024

T0 = time.monotonic()


class HarnessError(Exception):
    """The harness could not measure (not a MISS)."""


class Interrupted(Exception):
    pass


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr,
          flush=True)


# --------------------------------------------------------------------------
# small helpers


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def iso_to_epoch(s):
    """"2026-11-27T20:51:47.650Z" -> seconds since the epoch (float)."""
    if not s:
        return None
    main, _, frac = s.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            if line.split()[1] == path:
                return True
    return False


def unmount(path):
    if not is_mounted(path):
        return
    r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
    if r.returncode != 0:
        time.sleep(0.2)
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)


def proc_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise HarnessError("no %s in /proc/%d/status" % (field, pid))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def remove_tree(path):
    """rm -rf, also of trees whose directories are 0555 (cp -a of the
    mount) when not running as root."""
    if not os.path.lexists(path):
        return
    subprocess.run(["chmod", "-R", "u+w", path], capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", path],
                   capture_output=True)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


def sanitizer_of(path):
    with open(path, "rb") as f:
        data = f.read()
    for mark, name in ((b"__tsan_init", "ThreadSanitizer"),
                       (b"__asan_init", "AddressSanitizer"),
                       (b"__ubsan_handle", "UBSan")):
        if mark in data:
            return name
    return None


def fmt_s(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return "%.0f s" % x
    if x >= 10:
        return "%.1f s" % x
    if x >= 1:
        return "%.2f s" % x
    return "%.3f s" % x


def fmt_ratio(x):
    if x is None or (isinstance(x, float) and (math.isnan(x)
                                               or math.isinf(x))):
        return "-"
    return "%.2f" % x if x < 100 else "%.0f" % x


def fmt_mib(kib_or_bytes, unit="KiB"):
    b = kib_or_bytes * 1024 if unit == "KiB" else kib_or_bytes
    return "%.1f MiB" % (b / MiB)


def cell(x):
    """A Markdown table cell: a | inside it would end the cell."""
    return str(x).replace("|", "\\|")


def fmt_n(n):
    return "{:,}".format(n)


def growth_per_10x(n1, v1, n2, v2):
    """v(n2)/v(n1) scaled to one decade of n: 10 means linear."""
    if not v1 or v1 <= 0 or v2 is None or n2 <= n1:
        return float("nan")
    return (v2 / v1) ** (1.0 / math.log10(n2 / float(n1)))


# --------------------------------------------------------------------------
# running commands


def run_cmd(ctx, cmd, cwd, timeout=1800):
    """Runs `cmd` with bash in `cwd`; returns (seconds, stdout)."""
    env = dict(os.environ, LC_ALL="C")
    t0 = time.monotonic()
    try:
        r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError("%r in %s took more than %d s" % (cmd, cwd,
                                                             timeout))
    dt = time.monotonic() - t0
    if r.returncode != 0 or r.stderr.strip():
        raise HarnessError("%r in %s exited %d: %s"
                           % (cmd, cwd, r.returncode,
                              r.stderr.decode(errors="replace")[-1500:]))
    return dt, r.stdout.decode(errors="replace").strip()


def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
