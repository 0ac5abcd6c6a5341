"""A dlqfs mount for the harness: `dlqfs -f` on a scratch directory,
its first walk and refreshes awaited through .dlqfs/status, its RSS, an
unmount that always happens; and a walk's duration as the status tells
it.
"""
import json
import os
import subprocess
import tempfile
import time

from bench_util import (TOKEN, HarnessError, is_mounted, iso_to_epoch,
                        proc_kib, unmount)


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
        # a cache of its own: every mount of the harness is cold unless it
        # names a cache_dir (bench_cache.py)
        env["XDG_CACHE_HOME"] = self.mountpoint + ".xdg-cache"
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
