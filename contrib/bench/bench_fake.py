"""The fake API as the harness sees it: fakeserver.py started in a
process of its own (class Fake), driven through its admin endpoints, and
what the harness reads from its request log (requests per second, ranged
requests, the first page's createdAt spread). The fake itself is
tests/fakeapi/fakeapi.py.
"""
import collections
import http.client
import json
import os
import subprocess
import sys
import time

from bench_util import HERE, LIST_PATH, TOKEN, HarnessError, fmt_n, log


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
