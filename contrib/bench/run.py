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

Prints progress on stderr and a Markdown report on stdout. Exit status 0
when the report was produced, whatever PASS/MISS says; 1 when the harness
itself failed (a mount, a walk, a command); 2 for bad arguments. Always
unmounts and stops the fake API. Listens on 127.0.0.1 only. Standard
library only; see contrib/bench/README.md for what each figure means.
"""
import argparse
import calendar
import collections
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKEN = "bench-token-6e2c0f"
LIST_PATH = "/v2/workflows/dlq"
MiB = 1024 * 1024
PHASES = ("walk", "refresh", "read", "memory", "scale", "fuseops")

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
# the fake API, in a process of its own (contrib/bench/fakeserver.py)


class Fake:
    def __init__(self, ctx, runs, latency_ms, detie=False):
        self.runs = runs
        self.latency_ms = latency_ms
        self.detie = detie
        tag = "fake-%d%s-%d" % (runs, "-detie" if detie else "",
                                len(ctx.fakes))
        self.port_file = os.path.join(ctx.workdir, tag + ".port")
        self.err_path = os.path.join(ctx.workdir, tag + ".log")
        args = [sys.executable, os.path.join(HERE, "fakeserver.py"),
                "--runs", str(runs), "--seed", str(ctx.args.seed),
                "--latency-ms", str(latency_ms), "--token", TOKEN,
                "--port-file", self.port_file]
        if detie:
            args.append("--detie")
        self._err = open(self.err_path, "w")
        log("fake API: generating %s runs%s" % (fmt_n(runs),
                                                 " (ties spread)" if detie
                                                 else ""))
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=self._err, stderr=self._err)
        ctx.fakes.append(self)
        end = time.monotonic() + 600
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise HarnessError("fake API exited %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > end:
                raise HarnessError("fake API did not start in 600 s")
            time.sleep(0.05)
        with open(self.port_file) as f:
            port, build_s, payload = f.read().split()
        self.port = int(port)
        self.build_s = float(build_s)
        self.payload = int(payload)  # every entry's JSON, once
        self.base_url = "http://127.0.0.1:%d" % self.port
        log("fake API on %s (%.1f s to build)" % (self.base_url,
                                                   self.build_s))

    def log_tail(self):
        self._err.flush()
        with open(self.err_path, errors="replace") as f:
            return f.read()[-3000:]

    def admin(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            if r.status != 200:
                raise HarnessError("fake API %s %s: HTTP %d %s"
                                   % (method, path, r.status, raw[:200]))
            return json.loads(raw)
        except (OSError, http.client.HTTPException) as e:
            raise HarnessError("fake API %s %s: %s" % (method, path, e))
        finally:
            conn.close()

    def stats(self):
        return self.admin("GET", "/_admin/stats")

    def requests(self):
        return self.admin("GET", "/_admin/requests")

    def clear(self):
        self.admin("POST", "/_admin/clear-requests")

    def set_latency(self, ms):
        if ms != self.latency_ms:
            self.admin("POST", "/_admin/config", {"latency_ms": ms})
            self.latency_ms = ms

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def request_rates(reqs, since=None):
    """(max requests in one unix-second window, max in any sliding 1-s
    window, n) over list requests, optionally only those at or after
    `since` (epoch s)."""
    ts = sorted(e["time"] for e in reqs if e["path"] == LIST_PATH
                and (since is None or e["time"] >= since))
    if not ts:
        return 0, 0, 0
    fixed = max(collections.Counter(int(t) for t in ts).values())
    sliding, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 1.0:
            j += 1
        sliding = max(sliding, i - j + 1)
    return fixed, sliding, len(ts)


def ranged_count(reqs):
    return sum(1 for e in reqs if e["path"] == LIST_PATH and any(
        k in ("fromDate", "toDate") for k, _ in e["query"]))


# --------------------------------------------------------------------------
# the sequential baseline


def python_walk(fake, count=100):
    """The fastest honest sequential client: one keep-alive connection,
    count=100, follow the cursor, json.loads each page. Returns (seconds,
    runs, pages)."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=120)
    headers = {"Authorization": "Bearer " + TOKEN,
               "Accept": "application/json"}
    cursor = None
    runs = pages = 0
    t0 = time.monotonic()
    try:
        while True:
            path = "%s?count=%d" % (LIST_PATH, count)
            if cursor:
                path += "&cursor=" + urllib.parse.quote(cursor, safe="")
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise HarnessError("baseline: HTTP %d: %s" % (r.status,
                                                             body[:200]))
            page = json.loads(body)
            runs += len(page["messages"])
            pages += 1
            cursor = page.get("cursor")
            if not cursor:
                break
        dt = time.monotonic() - t0
    finally:
        conn.close()
    if runs != fake.runs:
        raise HarnessError("baseline walked %d runs, the fake has %d"
                           % (runs, fake.runs))
    return dt, runs, pages


def first_page_span(fake):
    """The createdAt spread of the listing's first page, in ms: the walker
    cuts the scope into ranges from it (0: it cannot cut)."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=120)
    try:
        conn.request("GET", LIST_PATH + "?count=100",
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200:
        raise HarnessError("first page: HTTP %d" % r.status)
    created = [m.get("createdAt") for m in json.loads(body)["messages"]]
    created = [c for c in created if isinstance(c, int)]
    return max(created) - min(created) if created else 0


# --------------------------------------------------------------------------
# a dlqfs mount


class Mount:
    def __init__(self, ctx, fake, options=(), debug=False, name="mnt"):
        self.ctx = ctx
        self.fake = fake
        self.mountpoint = tempfile.mkdtemp(prefix=name + "-",
                                           dir=ctx.workdir)
        self.stderr_path = self.mountpoint + ".stderr"
        opts = ["url=" + fake.base_url, "refresh=3600"] + list(options) \
            + ctx.args.mount_options
        self.args = [ctx.dlqfs, "-f"] + (["-d"] if debug else []) \
            + ["-o", ",".join(opts), self.mountpoint]
        env = dict(os.environ, QSTASH_TOKEN=TOKEN)
        env.pop("QSTASH_URL", None)
        self._err = open(self.stderr_path, "w")
        self.returncode = None
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.args, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err)
        ctx.mounts.append(self)
        self._wait_mounted()

    def _wait_mounted(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise HarnessError("dlqfs exited %s before mounting:\n%s"
                                   % (self.proc.returncode,
                                      self.stderr()[-3000:]))
            if is_mounted(self.mountpoint):
                try:
                    self.status()
                    return
                except (OSError, ValueError):
                    pass
            time.sleep(0.02)
        raise HarnessError("dlqfs did not mount within %d s" % timeout)

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def status(self):
        with open(self.path(".dlqfs", "status")) as f:
            return json.load(f)

    def _timeout(self):
        pages = self.fake.runs / 100.0 + 10
        return max(120.0, pages * (self.fake.latency_ms / 1000.0 + 0.25))

    def wait_ready(self):
        """Waits for the first walk; returns its status."""
        end = time.monotonic() + self._timeout()
        while True:
            if self.proc.poll() is not None:
                raise HarnessError("dlqfs exited %s during the first walk:\n"
                                   "%s" % (self.proc.returncode,
                                           self.stderr()[-3000:]))
            s = self.status()
            if s["state"] != "walking":
                break
            if time.monotonic() > end:
                raise HarnessError("first walk not done in %.0f s: %s"
                                   % (self._timeout(), json.dumps(s)))
            time.sleep(0.02)
        self.t_ready = time.monotonic()
        if s["state"] != "ready":
            raise HarnessError("first walk failed: %s" % s.get("last_error"))
        if s["runs"] != self.fake.runs:
            raise HarnessError("dlqfs shows %d runs, the fake has %d"
                               % (s["runs"], self.fake.runs))
        return s

    def refresh(self):
        """Asks for a walk and waits for one that started after the
        request. Returns (status after, wall seconds from the request)."""
        before = self.status()
        done_before = before["walks_ok"] + before["walks_failed"]
        t0 = time.monotonic()
        with open(self.path(".dlqfs", "refresh"), "w") as f:
            f.write("1\n")
        want = before["refresh_requested"] + 1
        end = t0 + self._timeout()
        while True:
            s = self.status()
            if (s["refresh_served"] >= want and not s["walking"]
                    and s["walks_ok"] + s["walks_failed"] > done_before):
                break
            if self.proc.poll() is not None:
                raise HarnessError("dlqfs exited %s during a refresh"
                                   % self.proc.returncode)
            if time.monotonic() > end:
                raise HarnessError("refresh not done in %.0f s: %s"
                                   % (self._timeout(), json.dumps(s)))
            time.sleep(0.01)
        wall = time.monotonic() - t0
        if s["walks_failed"] != before["walks_failed"]:
            raise HarnessError("a refresh failed: %s" % s.get("last_error"))
        if s["runs"] != self.fake.runs:
            raise HarnessError("after a refresh dlqfs shows %d runs, the "
                               "fake has %d" % (s["runs"], self.fake.runs))
        return s, wall

    def rss(self):
        return (proc_kib(self.proc.pid, "VmRSS"),
                proc_kib(self.proc.pid, "VmHWM"))

    def stop(self):
        if self.returncode is None:
            try:
                unmount(self.mountpoint)
                try:
                    self.returncode = self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.returncode = self.proc.wait()
            finally:
                unmount(self.mountpoint)
                self._err.close()
            if self.returncode != 0:
                self.ctx.warn("dlqfs (%s) exited %s: %s"
                              % (" ".join(self.args[-3:-1]), self.returncode,
                                 self.stderr()[-500:].strip()))
            try:
                os.rmdir(self.mountpoint)
            except OSError:
                pass
        return self.returncode


def walk_seconds(s):
    """The last walk's duration from .dlqfs/status (ms resolution)."""
    a, b = iso_to_epoch(s["walk_started"]), iso_to_epoch(s["last_success"])
    if a is None or b is None or b < a:
        raise HarnessError("status has no walk timing: %s" % json.dumps(s))
    return b - a


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


# ---- phase: walk and refresh -------------------------------------------


def measure_refreshes(ctx, m, fake, reps, label):
    """`reps` refreshes of mount `m`; one dict per walk."""
    out = []
    for i in range(reps):
        fake.clear()
        s, wall = m.refresh()
        reqs = fake.requests()
        st = fake.stats()
        fixed, sliding, _ = request_rates(reqs)
        w = {"seconds": walk_seconds(s), "wall": wall,
             "requests": st["list_requests"], "pages": s["pages"],
             "ranged": ranged_count(reqs), "rps_fixed": fixed,
             "rps_sliding": sliding}
        last = max((e["time"] for e in reqs), default=None)
        done = iso_to_epoch(s["last_success"])
        w["tail"] = done - last if last and done else float("nan")
        out.append(w)
        log("  %s refresh %d: %.2f s (status), %.2f s (wall), %d requests "
            "(%d ranged), max %d req/s" % (label, i + 1, w["seconds"], wall,
                                           w["requests"], w["ranged"],
                                           fixed))
    return out


def first_walk(ctx, fake, options, label):
    """Mounts with `options` and measures the first walk. Returns (mount,
    dict)."""
    fake.clear()
    m = Mount(ctx, fake, options=options)
    s = m.wait_ready()
    reqs = fake.requests()
    started = iso_to_epoch(s["walk_started"])
    walk_reqs = [e for e in reqs if e["time"] >= started - 0.002]
    fixed, sliding, n = request_rates(walk_reqs)
    w = {"seconds": walk_seconds(s), "mount_to_ready": m.t_ready - m.t_start,
         "requests": n, "startup_requests": len(reqs) - n,
         "pages": s["pages"], "ranged": ranged_count(walk_reqs),
         "rps_fixed": fixed, "rps_sliding": sliding,
         "payload": s["payload_bytes"]}
    log("  %s first walk: %.2f s (status), %.2f s mount to ready, %d "
        "requests (+%d at start-up), %d ranged" % (
            label, w["seconds"], w["mount_to_ready"], n,
            w["startup_requests"], w["ranged"]))
    return m, w


def walk_table(rows):
    lines = ["| walk | best | median | samples | requests | ranged | "
             "max req/s (1-s windows / sliding) |",
             "|---|---|---|---|---|---|---|"]
    for label, ws in rows:
        if not ws:
            continue
        secs = [w["seconds"] for w in ws]
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt_s(min(secs)), fmt_s(median(secs)),
            ", ".join("%.2f" % x for x in secs),
            "/".join(sorted(set(str(w.get("requests", "-")) for w in ws))),
            "/".join(sorted(set(str(w.get("ranged", "-")) for w in ws))),
            "%s / %s" % (max(w.get("rps_fixed", 0) for w in ws),
                         max(w.get("rps_sliding", 0) for w in ws))
            if "rps_fixed" in ws[0] else "-"))
    return lines


def phase_walk(ctx, want_walk, want_refresh):
    a = ctx.args
    reps = a.reps
    fake = ctx.fake_main(a.latency_ms)
    n = fake.runs
    pages_min = (n + 99) // 100
    span = first_page_span(fake)
    lines = []
    py = w1 = None
    rps_seen = []

    if want_walk:
        log("walk: sequential Python baseline x%d" % reps)
        py = []
        for i in range(reps):
            fake.clear()
            dt, runs, pages = python_walk(fake)
            py.append({"seconds": dt, "requests": fake.stats()[
                "list_requests"], "ranged": 0})
            log("  python %d: %.2f s, %d pages" % (i + 1, dt, pages))
        log("walk: dlqfs -o walkers=1")
        m, first1 = first_walk(ctx, fake, ["walkers=1"], "walkers=1")
        try:
            w1 = measure_refreshes(ctx, m, fake, reps, "walkers=1")
        finally:
            m.stop()

    log("walk: dlqfs, default walkers and max_rps")
    m, firstd = first_walk(ctx, fake, [], "default")
    try:
        wd = measure_refreshes(ctx, m, fake, reps, "default")
    finally:
        m.stop()
    rps_seen += [(w["rps_fixed"], w["rps_sliding"], "default")
                 for w in wd + [firstd]]

    if want_walk:
        best_py = min(w["seconds"] for w in py)
        best_1 = min(w["seconds"] for w in w1)
        best_d = min(w["seconds"] for w in wd)
        cap_floor = pages_min / a.max_rps
        ctx.row("1a walk %s runs, %g ms/request: dlqfs (default walkers) "
                "vs sequential Python loop" % (fmt_n(n), a.latency_ms),
                fmt_s(best_d), fmt_s(best_py), best_d / best_py,
                "<= 0.35", best_d / best_py <= 0.35)
        ctx.row("1b same, vs dlqfs -o walkers=1", fmt_s(best_d),
                fmt_s(best_1), best_d / best_1, "<= 0.35",
                best_d / best_1 <= 0.35)
        ctx.row("1c baseline check: dlqfs -o walkers=1 vs Python loop",
                fmt_s(best_1), fmt_s(best_py), best_1 / best_py,
                "~1 (comparable)", None)
        lines += ["Fake API: %s runs (%.1f MiB of JSON), %g ms added to "
                  "every request; best of %d for every walk. dlqfs times are "
                  "refreshes timed by .dlqfs/status (walk_started -> "
                  "last_success), so mount and start-up are excluded."
                  % (fmt_n(n), firstd["payload"] / MiB, a.latency_ms, reps),
                  ""]
        lines += walk_table([("Python sequential loop", py),
                             ("dlqfs walkers=1 (refresh)", w1),
                             ("dlqfs default (refresh)", wd),
                             ("dlqfs walkers=1 (first walk)", [first1]),
                             ("dlqfs default (first walk)", [firstd])])
        lines += ["",
                  "- At max_rps=%g a walk of %d pages cannot take less than "
                  "%.2f s = %.2f x the Python baseline: the 0.35 target "
                  "needs a sequential page time of at least %.1f ms "
                  "(measured: %.1f ms)." % (
                      a.max_rps, pages_min, cap_floor, cap_floor / best_py,
                      1000.0 / (0.35 * a.max_rps),
                      1000.0 * best_py / pages_min),
                  "- Per page, beyond the %g ms of latency: Python loop "
                  "%.1f ms, dlqfs walkers=1 %.1f ms (dlqfs parses and "
                  "renders a page before it asks for the next one)." % (
                      a.latency_ms,
                      1000.0 * best_py / pages_min - a.latency_ms,
                      1000.0 * best_1 / w1[0]["requests"] - a.latency_ms),
                  "- Time after the last page (parse + snapshot build), "
                  "default refreshes: median %.2f s." % median(
                      [w["tail"] for w in wd])]
        detie = False
        if firstd["ranged"] == 0 and all(w["ranged"] == 0 for w in wd):
            lines.append(
                "- **The default walk never cut the scope into createdAt "
                "ranges** (0 requests with fromDate/toDate): it walked one "
                "cursor chain, like walkers=1. The walker cuts only on a "
                "range's first page, from that page's createdAt spread; "
                "here the first page spans %d ms (the generator clamps "
                "createdAt to now - 1 ms, so at %s runs more than 100 "
                "entries share that millisecond): it cannot cut, and "
                "never tries again." % (span, fmt_n(n)))
            detie = not a.no_detie
    if want_refresh:
        full = firstd["requests"]
        cyc = timer_refreshes(ctx, fake)
        inc = median(cyc["per_inc"])
        k = cyc["factor"]
        avg = (full + (k - 1) * inc) / k
        lines.append("- Refresh of an unchanged DLQ: an incremental (timer) "
                     "refresh costs %g request(s) (fromDate = newest "
                     "createdAt - late_window), a full walk %d (the minimum "
                     "is %d pages). With the defaults (refresh=60, "
                     "reconcile=%d x refresh) a reconcile cycle is %d "
                     "incremental refreshes and 1 full walk: (%d + %d x %g) "
                     "/ %d = %.1f requests per refresh on average."
                     % (inc, full, pages_min, k, k - 1, full, k - 1, inc, k,
                        avg))
        lines.append("- Observed, with time compressed (dlqfs -o "
                     "refresh=%g,reconcile=%g; the reconcile is due %g s "
                     "after the last full walk started, and walks take "
                     "time, so fewer refreshes fit in a cycle than at the "
                     "defaults): %d incremental walks and %d full walk of "
                     "%d requests, %.1f requests per refresh. A refresh "
                     "asked for (.dlqfs/refresh, SIGHUP) is full: %s "
                     "requests (the default refreshes above)."
                     % (cyc["refresh"], cyc["reconcile"], cyc["reconcile"],
                        cyc["incremental"], cyc["full"],
                        cyc["full_requests"], cyc["average"],
                        "/".join(sorted(set(
                            str(w["requests"]) for w in wd)))))
    if want_walk and detie:
        rps_seen += walk_detie(ctx, lines)
    fixed = max(x[0] for x in rps_seen)
    sliding = max(x[1] for x in rps_seen)
    ctx.row("1d API requests/s at most during dlqfs walks (unix-second "
            "windows; sliding 1-s: %d)" % sliding, "%d" % fixed,
            "max_rps %g" % a.max_rps, None, "<= %g" % a.max_rps,
            fixed <= a.max_rps)
    if want_refresh:
        ctx.row("2 requests per refresh of an unchanged DLQ on average "
                "(default refresh/reconcile: 1 full walk in %d) vs a full "
                "walk (%s runs)" % (k, fmt_n(n)), "%.1f" % avg, "%d" % full,
                avg / full, "far fewer (<= 0.10)", avg / full <= 0.10)
        ctx.row("2a requests per incremental (timer) refresh of an "
                "unchanged DLQ vs a full walk", "%g" % inc, "%d" % full,
                inc / full, "<= 0.10", inc / full <= 0.10)
    ctx.section("Walk (targets 1 and 2)", lines)


def timer_refreshes(ctx, fake, refresh_s=1.0, factor=10):
    """One reconcile cycle of timer refreshes of an unchanged DLQ: mounts
    with refresh=`refresh_s` and reconcile=`factor` x that (dlqfs's default
    ratio), and counts the list requests from the end of the first (full)
    walk to the end of the next full walk."""
    log("refresh: timer refreshes over one reconcile cycle (refresh=%g, "
        "reconcile=%g)" % (refresh_s, refresh_s * factor))
    m = Mount(ctx, fake, options=["refresh=%g" % refresh_s,
                                  "reconcile=%g" % (refresh_s * factor)])
    try:
        m.wait_ready()
        fake.clear()
        s0 = m.status()
        if s0["walks_full"] != 1 or s0["walks_incremental"] != 0:
            raise HarnessError("a timer walk began before the count: %s"
                               % json.dumps(s0))
        froms = set()
        end = time.monotonic() + max(120.0, 4 * refresh_s * factor)
        while True:
            s = m.status()
            if s["walk_kind"] == "incremental" and s["incremental_from"]:
                froms.add(int(round(iso_to_epoch(s["incremental_from"])
                                    * 1000)))
            if s["walks_full"] > s0["walks_full"] and not s["walking"]:
                break
            if time.monotonic() > end:
                raise HarnessError("no reconcile within %.0f s: %s"
                                   % (end, json.dumps(s)))
            time.sleep(0.01)
        reqs = [e for e in fake.requests() if e["path"] == LIST_PATH]
    finally:
        m.stop()
    if s["walks_failed"] != s0["walks_failed"]:
        raise HarnessError("a timer walk failed: %s" % s.get("last_error"))
    if s["runs"] != fake.runs:
        raise HarnessError("after the timer walks dlqfs shows %d runs, the "
                           "fake has %d" % (s["runs"], fake.runs))
    n_inc = s["walks_incremental"] - s0["walks_incremental"]
    n_full = s["walks_full"] - s0["walks_full"]

    def from_date(e):
        return next((int(v) for k, v in e["query"] if k == "fromDate"), None)

    inc_reqs = [e for e in reqs if from_date(e) in froms
                and not any(k == "toDate" for k, _ in e["query"])]
    per_inc = [len(inc_reqs) / float(n_inc)] if n_inc else [float("nan")]
    out = {"refresh": refresh_s, "reconcile": refresh_s * factor,
           "factor": factor, "incremental": n_inc, "full": n_full,
           "full_requests": len(reqs) - len(inc_reqs),
           "per_inc": [round(x, 1) for x in per_inc],
           "average": len(reqs) / float(n_inc + n_full)}
    log("  %d incremental walks (%s requests each), %d full (%d requests): "
        "%.1f requests per refresh" % (n_inc, per_inc[0], n_full,
                                       out["full_requests"], out["average"]))
    return out


def walk_detie(ctx, lines):
    """Diagnostic: the same walk on data whose head is not one
    millisecond, so the walker does cut ranges."""
    a = ctx.args
    reps = a.reps
    fake = Fake(ctx, a.runs, a.latency_ms, detie=True)
    rps = []
    try:
        log("walk diagnostic: data without the 1-ms tie")
        py = []
        for i in range(reps):
            dt, _, _ = python_walk(fake)
            py.append({"seconds": dt})
        m, first = first_walk(ctx, fake, [], "default, no tie")
        try:
            wd = measure_refreshes(ctx, m, fake, reps, "default, no tie")
        finally:
            m.stop()
        m, firstu = first_walk(ctx, fake, ["max_rps=10000"],
                               "max_rps=10000, no tie")
        try:
            wu = measure_refreshes(ctx, m, fake, reps,
                                   "max_rps=10000, no tie")
        finally:
            m.stop()
        rps += [(w["rps_fixed"], w["rps_sliding"], "no tie")
                for w in wd + [first]]
        best_py = min(w["seconds"] for w in py)
        best_d = min(w["seconds"] for w in wd)
        best_u = min(w["seconds"] for w in wu)
        ctx.row("1a' (diagnostic) as 1a, data whose first page is not one "
                "millisecond", fmt_s(best_d), fmt_s(best_py),
                best_d / best_py, "<= 0.35", best_d / best_py <= 0.35)
        ctx.row("1a'' (diagnostic) as 1a', -o max_rps=10000 (no cap)",
                fmt_s(best_u), fmt_s(best_py), best_u / best_py, "<= 0.35",
                best_u / best_py <= 0.35)
        lines += ["", "Diagnostic: the same %s runs with the createdAt ties "
                  "of 10+ entries spread over 3 hours (fakeserver.py "
                  "--detie), so the first page spans time:" % fmt_n(a.runs),
                  ""]
        lines += walk_table([("Python sequential loop", py),
                             ("dlqfs default (refresh)", wd),
                             ("dlqfs default (first walk)", [first]),
                             ("dlqfs max_rps=10000 (refresh)", wu)])
        nreq = median([w["requests"] for w in wd])
        pages = (a.runs + 99) // 100
        lines += ["", "- Cut into ranges, a walk made %g requests for %d "
                  "pages of data (+%.0f%% at the cuts); at max_rps=%g that "
                  "alone takes %.2f s = %.2f x the Python baseline." % (
                      nreq, pages, 100.0 * (nreq - pages) / pages,
                      a.max_rps, nreq / a.max_rps,
                      nreq / a.max_rps / best_py)]
    finally:
        fake.stop()
    return rps


# ---- phase: read path ------------------------------------------------------

READ_OPS = (
    ("ls", "ls -l runs/", "ls -l runs/ >/dev/null", 1.5, 1.5),
    ("grep", "grep -rl ECONNRESET runs/*/responseBody",
     "grep -rl ECONNRESET runs/*/responseBody | wc -l", 1.5, 1.2),
    ("rsync", "rsync -a ./ DEST/", "set -o pipefail; rsync -a ./ %(dest)s/",
     1.5, 1.5),
    ("find", "find -L . | wc -l", "set -o pipefail; find -L . | wc -l",
     1.5, 1.5),
)


def phase_read(ctx):
    a = ctx.args
    fake = ctx.fake_main(0)
    n = fake.runs
    local = os.path.join(a.local_dir or ctx.workdir, "local-tree")
    if os.path.lexists(local):
        raise HarnessError("%s exists" % local)
    os.makedirs(local)
    ctx.local_tree = local
    log("read: copying a fresh mount to local disk (cp -a)")
    m = Mount(ctx, fake)
    try:
        m.wait_ready()
        r0 = fake.stats()["requests"]
        cp_s, _ = run_cmd(ctx, "cp -a %s/. %s/" % (
            m.mountpoint, local), cwd=ctx.workdir)
        cp_reqs = fake.stats()["requests"] - r0
    finally:
        m.stop()
    nruns = len(os.listdir(os.path.join(local, "runs")))
    if nruns != n:
        raise HarnessError("the local copy has %d runs, not %d" % (nruns, n))
    _, du = run_cmd(ctx, "du -sb . | cut -f1; find . | wc -l", cwd=local)
    du_bytes, entries = [int(x) for x in du.split()]
    log("  cp -a: %.1f s, %s entries, %.0f MiB" % (cp_s, fmt_n(entries),
                                                   du_bytes / MiB))
    results = []
    total_reqs = cp_reqs
    for key, title, cmd, goal_cold, goal_warm in READ_OPS:
        log("read: %s" % title)
        m = Mount(ctx, fake)
        try:
            m.wait_ready()
            r0 = fake.stats()["requests"]
            dests = []

            def once(cwd):
                dest = None
                c = cmd
                if key == "rsync":
                    dest = tempfile.mkdtemp(prefix="rsync-",
                                            dir=ctx.rsync_base)
                    os.rmdir(dest)
                    c = cmd % {"dest": dest}
                try:
                    dt, out = run_cmd(ctx, c, cwd=cwd)
                finally:
                    if dest:
                        remove_tree(dest)
                return dt, out

            cold_m, out_m = once(m.mountpoint)
            if a.drop_caches:
                drop_caches()
            cold_l, out_l = once(local)
            if out_m != out_l:
                ctx.warn("%s: the mount says %r, the local copy %r"
                         % (title, out_m[:80], out_l[:80]))
            if a.drop_caches:
                once(m.mountpoint)
                once(local)
            warm_m, warm_l = [], []
            for i in range(a.reps):
                warm_m.append(once(m.mountpoint)[0])
                warm_l.append(once(local)[0])
            reqs = fake.stats()["requests"] - r0
            total_reqs += reqs
        finally:
            m.stop()
        r = {"key": key, "title": title, "cold_m": cold_m, "cold_l": cold_l,
             "warm_m": warm_m, "warm_l": warm_l, "reqs": reqs, "out": out_m,
             "goal_cold": goal_cold, "goal_warm": goal_warm}
        results.append(r)
        log("  cold %.3f / %.3f s, warm median %.3f / %.3f s (mount / "
            "local), %d API requests" % (cold_m, cold_l, median(warm_m),
                                         median(warm_l), reqs))
    for r in results:
        rc = r["cold_m"] / r["cold_l"]
        rw = median(r["warm_m"]) / median(r["warm_l"])
        ctx.row("3 %s, cold (first after mount)" % r["title"],
                fmt_s(r["cold_m"]), fmt_s(r["cold_l"]), rc,
                "<= %g" % r["goal_cold"], rc <= r["goal_cold"])
        ctx.row("3 %s, warm (median of %d)" % (r["title"], a.reps),
                fmt_s(median(r["warm_m"])), fmt_s(median(r["warm_l"])), rw,
                "<= %g" % r["goal_warm"], rw <= r["goal_warm"])
    ctx.row("3 API requests caused by the read commands (incl. cp -a)",
            "%d" % total_reqs, "-", None, "0", total_reqs == 0)
    lines = ["Tree: %s runs, %s entries, %.0f MiB; local copy in %s "
             "(made with cp -a from a fresh mount: %s, %d API requests). "
             "Commands run with bash in the tree's root, LC_ALL=C; rsync "
             "writes to %s (a fresh directory each time, deleted untimed)."
             % (fmt_n(n), fmt_n(entries), du_bytes / MiB, local, fmt_s(cp_s),
                cp_reqs, ctx.rsync_base),
             "Cold on the mount: the first run after a fresh mount (kernel "
             "caches empty, data in the daemon's memory). Cold on local "
             "disk: the first run of that command on the copy, which is in "
             "the page cache since cp wrote it%s." % (
                 " - here after drop_caches" if a.drop_caches else
                 " (no drop_caches: see --drop-caches)"),
             "",
             "| command | output | cold mount | cold local | warm mount "
             "(samples) | warm local (samples) | API requests |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| `%s` | %s | %s | %s | %s (%s) | %s (%s) | %d |" % (
            cell(r["title"]), r["out"] or "-", fmt_s(r["cold_m"]),
            fmt_s(r["cold_l"]), fmt_s(median(r["warm_m"])),
            ", ".join("%.3f" % x for x in r["warm_m"]),
            fmt_s(median(r["warm_l"])),
            ", ".join("%.3f" % x for x in r["warm_l"]), r["reqs"]))
    ctx.section("Read path vs local disk (target 3)", lines)


# ---- phase: scale and memory -----------------------------------------------


def phase_scale(ctx, want_scale, want_memory):
    a = ctx.args
    sizes = a.scale if want_scale else [max(a.scale)]
    points = []
    for n in sizes:
        fake = Fake(ctx, n, a.latency_ms)
        try:
            log("scale: %s runs" % fmt_n(n))
            span = first_page_span(fake)
            m, w = first_walk(ctx, fake, [], "%s runs" % fmt_n(n))
            try:
                time.sleep(0.5)
                rss, hwm = m.rss()
                sv = os.statvfs(m.mountpoint)
                p = {"runs": n, "walk": w["seconds"], "pages": w["pages"],
                     "requests": w["requests"], "ranged": w["ranged"],
                     "payload": w["payload"], "rss": rss, "hwm": hwm,
                     # statfs: f_blocks counts the bytes of the files
                     "files": sv.f_blocks * sv.f_frsize, "span": span,
                     "unique": fake.payload}
                if want_scale:
                    p["ls_cold"], _ = run_cmd(ctx, "ls -l runs/ >/dev/null",
                                              m.mountpoint)
                    p["ls_warm"] = median([run_cmd(
                        ctx, "ls -l runs/ >/dev/null", m.mountpoint)[0]
                        for _ in range(a.reps)])
                    p["rss_after_ls"] = m.rss()[0]
                log("  walk %.2f s, RSS %s, payload %s" % (
                    p["walk"], fmt_mib(rss), fmt_mib(p["payload"], "B")))
            finally:
                m.stop()
        finally:
            fake.stop()
        points.append(p)
    ctx.curve = points

    big = points[-1]
    limit = 1.5 * big["payload"] + 32 * MiB
    ratio = big["rss"] * 1024.0 / limit
    if want_memory:
        ctx.row("4 daemon VmRSS after walking %s runs vs 1.5 x payload + "
                "32 MiB (payload %s)" % (fmt_n(big["runs"]),
                                        fmt_mib(big["payload"], "B")),
                fmt_mib(big["rss"]), fmt_mib(limit, "B"), ratio, "<= 1.0",
                ratio <= 1.0)
    if want_scale and len(points) >= 2:
        for key, label in (("walk", "walk time"), ("ls_cold", "ls -l runs/ "
                                                   "cold"),
                           ("ls_warm", "ls -l runs/ warm"), ("rss", "RSS")):
            # the worst step: growth that turns superlinear at the large
            # end is what the target is about
            steps = [(growth_per_10x(p1["runs"], p1[key], p2["runs"],
                                     p2[key]), p1, p2)
                     for p1, p2 in zip(points, points[1:])]
            g, p1, p2 = max(steps, key=lambda x: x[0])
            v1 = p1[key] * 1024 if key == "rss" else p1[key]
            v2 = p2[key] * 1024 if key == "rss" else p2[key]
            f = (lambda v: fmt_mib(v, "B")) if key == "rss" else fmt_s
            ctx.row("5 %s growth per 10x runs, worst step %s -> %s" % (
                label, fmt_n(p1["runs"]), fmt_n(p2["runs"])),
                f(v2), f(v1), g, "<= 12 (linear: 10)", g <= 12)
    lines = ["Fake API with %g ms per request, default options; walk = the "
             "first walk after mounting, timed by .dlqfs/status; ls -l warm "
             "= median of %d; RSS = VmRSS 0.5 s after the first walk. "
             "Growth = the ratio to the previous size, per 10x runs "
             "(10 = linear)." % (a.latency_ms, a.reps), "",
             "| runs | pages | ranged req. | walk | growth | ls -l cold | "
             "growth | ls -l warm | growth | RSS | growth | VmHWM | payload "
             "| files served | RSS / (1.5 payload + 32 MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    prev = None
    for p in points:
        def g(key):
            if prev is None or key not in p:
                return "-"
            return fmt_ratio(growth_per_10x(prev["runs"], prev[key],
                                            p["runs"], p[key]))
        lim = 1.5 * p["payload"] + 32 * MiB
        lines.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | "
                     "%s | %s | %s | %s | %.2f |" % (
                         fmt_n(p["runs"]), p["pages"], p["ranged"],
                         fmt_s(p["walk"]), g("walk"),
                         fmt_s(p.get("ls_cold")), g("ls_cold"),
                         fmt_s(p.get("ls_warm")), g("ls_warm"),
                         fmt_mib(p["rss"]), g("rss"), fmt_mib(p["hwm"]),
                         fmt_mib(p["payload"], "B"),
                         fmt_mib(p["files"], "B"),
                         p["rss"] * 1024.0 / lim))
        prev = p
    ulimit = 1.5 * big["unique"] + 32 * MiB
    lines += ["", "- payload = `payload_bytes` of .dlqfs/status: the JSON "
              "of the pages, so entries fetched twice at the range cuts count "
              "twice. The JSON of every entry once is %s at %s runs; against "
              "that, the limit is %s and RSS / limit = %.2f." % (
                  fmt_mib(big["unique"], "B"), fmt_n(big["runs"]),
                  fmt_mib(ulimit, "B"), big["rss"] * 1024.0 / ulimit),
              "- files served = the bytes of every file of the tree (statfs "
              "f_blocks), which the daemon renders when a file is first "
              "read and does not keep: %.2f x the entries' JSON at %s "
              "runs." % (
                  big["files"] / float(big["unique"]), fmt_n(big["runs"]))]
    seq = [p for p in points if p["ranged"] == 0 and p["pages"] > 1]
    if seq:
        lines.append("- The walk at %s runs made no ranged request: one "
                     "cursor chain (the listing's first page spans %s ms; "
                     "see the walk section)." % (
                         ", ".join(fmt_n(p["runs"]) for p in seq),
                         ", ".join("%d" % p["span"] for p in seq)))
    ctx.section("Scale curve (targets 4 and 5)" if want_scale else
                "Memory (target 4)", lines)


# ---- phase: FUSE requests per command ---------------------------------------

FUSEOPS_CMDS = (
    ("ls -l runs/", "ls -l runs/ >/dev/null"),
    ("grep -rl ECONNRESET runs/*/responseBody",
     "grep -rl ECONNRESET runs/*/responseBody >/dev/null; true"),
    ("rsync -a ./ DEST/", "rsync -a ./ %(dest)s/"),
    ("find -L .", "find -L . >/dev/null"),
)


def count_ops(text):
    c = collections.Counter()
    for line in text.splitlines():
        i = line.find("opcode: ")
        if i >= 0 and line.startswith("unique: "):
            c[line[i + 8:].split(" ", 1)[0]] += 1
    return c


def phase_fuseops(ctx):
    a = ctx.args
    fake = Fake(ctx, a.fuseops_runs, 0)
    lines = []
    try:
        for title, cmd in FUSEOPS_CMDS:
            log("fuseops: %s" % title)
            for ro in ((False, True) if title.startswith("grep") else
                       (False,)):
                m = Mount(ctx, fake, options=["ro"] if ro else [],
                          debug=True, name="dbg")
                try:
                    m.wait_ready()
                    counts = []
                    for _ in range(2):
                        dest = tempfile.mkdtemp(prefix="rsync-",
                                                dir=ctx.rsync_base)
                        os.rmdir(dest)
                        time.sleep(0.3)
                        start = os.path.getsize(m.stderr_path)
                        run_cmd(ctx, cmd % {"dest": dest}, m.mountpoint)
                        time.sleep(0.5)  # RELEASE is sent after close
                        with open(m.stderr_path, errors="replace") as f:
                            f.seek(start)
                            counts.append(count_ops(f.read()))
                        remove_tree(dest)
                finally:
                    m.stop()
                for label, c in zip(("cold", "warm"), counts):
                    lines.append("| `%s`%s | %s | %d | %s |" % (
                        title, " (-o ro)" if ro else "", label,
                        sum(c.values()), ", ".join(
                            "%s %d" % kv for kv in c.most_common())))
    finally:
        fake.stop()
    head = ["dlqfs -d on %d runs (%d files of runs/, each run in several "
            "views); cold = first run after a fresh mount, warm = the "
            "second. Requests counted from the daemon's debug output."
            % (a.fuseops_runs, a.fuseops_runs * 6), "",
            "| command | pass | FUSE requests | by opcode |",
            "|---|---|---|---|"]
    ctx.section("FUSE requests per command (where read-path time goes)",
                head + lines)


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
    p.add_argument("--latency-ms", type=float, default=20,
                   help="added to every API request in walk, refresh and "
                   "scale (default 20)")
    p.add_argument("--max-rps", type=float, default=90,
                   help="the daemon's max_rps default, for the report "
                   "(default 90)")
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions of each walk and warm command "
                   "(default 3)")
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
