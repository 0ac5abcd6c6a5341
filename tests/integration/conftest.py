"""Fixtures for the integration tests: a fake API on 127.0.0.1 and real
dlqfs mounts of it, always unmounted in `finally`.

    def test_x(mount):                  # default: 200 generated runs
        os.listdir(mount.path("runs"))
        mount.refresh()                 # write .dlqfs/refresh, wait for it

    def test_y(fake_factory, mount_factory):
        fake = fake_factory(runs=0)
        m = mount_factory(fake, options=["label=payments"])

The daemon runs in the foreground (-f) with its stderr in a file, which is
scanned for sanitizer reports when the mount ends.
"""
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("DLQFS_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "fakeapi"))

import fakeapi  # noqa: E402

DLQFS = os.environ.get("DLQFS_BIN",
                       os.path.join(SOURCE_ROOT, "build", "dlqfs"))
TOKEN = "test-token-7f3a9c"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "WARNING: ThreadSanitizer",
                   "ERROR: ThreadSanitizer")


# A dlqfs started by a test keeps its cache (see README, "The cache") under
# XDG_CACHE_HOME: never in the home of whoever runs the tests. Each Mount
# gets a directory of its own, so that no test serves another's cache (two
# fake APIs may get the same port in turn); processes a test starts by
# hand share this one.
_CACHE_ROOT = tempfile.mkdtemp(prefix="dlqfs-test-xdg-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_ROOT
atexit.register(shutil.rmtree, _CACHE_ROOT, True)


def sanitizer_env(env):
    env = dict(env)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.setdefault("TSAN_OPTIONS", "halt_on_error=0")
    return env


def run_dlqfs(args, token=TOKEN, url=None, env_extra=None, timeout=60):
    """Runs dlqfs to completion (for start-up failures and --help)."""
    env = sanitizer_env(os.environ)
    env.pop("QSTASH_TOKEN", None)
    env.pop("QSTASH_URL", None)
    if token is not None:
        env["QSTASH_TOKEN"] = token
    if url is not None:
        env["QSTASH_URL"] = url
    env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="xdg-cache-",
                                             dir=_CACHE_ROOT)
    if env_extra:
        env.update(env_extra)
    return subprocess.run([DLQFS] + list(args), env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def unmount(path):
    if not is_mounted(path):
        return
    r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)


class Mount:
    """A running `dlqfs -f` on a temporary directory."""

    def __init__(self, fake, mountpoint, options=(), env_extra=None,
                 token=TOKEN, refresh=3600, extra_args=(), wait_ready=True,
                 url_option=True):
        """url_option=False: no -o url= (the environment says where)."""
        self.fake = fake
        self.mountpoint = mountpoint
        self.stderr_path = mountpoint + ".stderr"
        opts = ["url=" + fake.base_url] if url_option else []
        opts += ["refresh=%d" % refresh] + list(options)
        self.args = [DLQFS, "-f", "-o", ",".join(opts)] + list(extra_args) \
            + [mountpoint]
        env = sanitizer_env(os.environ)
        env.pop("QSTASH_URL", None)
        env["QSTASH_TOKEN"] = token
        env["XDG_CACHE_HOME"] = mountpoint + ".xdg-cache"
        if env_extra:
            env.update(env_extra)
        self.env = env
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(self.args, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr)
        self.returncode = None
        try:
            self._wait_mounted()
            if wait_ready:
                self.wait(lambda s: s["state"] != "walking", what="first walk")
        except BaseException:
            self.stop(check=False)
            raise

    def _wait_mounted(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("dlqfs exited with %s before mounting:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            if is_mounted(self.mountpoint):
                try:
                    os.stat(self.path(".dlqfs/status"))
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise AssertionError("dlqfs did not mount within %ss:\n%s"
                             % (timeout, self.stderr()))

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def stderr(self):
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def status(self):
        with open(self.path(".dlqfs/status")) as f:
            return json.load(f)

    def wait(self, pred, timeout=30, what="condition"):
        end = time.monotonic() + timeout
        while True:
            s = self.status()
            if pred(s):
                return s
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for %s; status: %s"
                                     % (what, json.dumps(s)))
            time.sleep(0.02)

    def refresh(self, timeout=60):
        """Asks for a walk and waits until one that started after the
        request has finished; returns the status then."""
        with open(self.path(".dlqfs/refresh"), "w") as f:
            f.write("1\n")
        want = self.status()["refresh_requested"]
        return self.wait(lambda s: s["refresh_served"] >= want
                         and not s["walking"], timeout, "refresh")

    def sanitizer_reports(self):
        text = self.stderr()
        return [line for line in text.splitlines()
                if any(mark in line for mark in SANITIZER_MARKS)]

    def stop(self, check=True):
        """Unmounts, waits for the daemon, and (check=True) asserts a clean
        exit with no sanitizer report."""
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
                self._stderr.close()
        if check:
            reports = self.sanitizer_reports()
            assert not reports, "sanitizer reports:\n" + self.stderr()
            assert self.returncode == 0, \
                "dlqfs exited %s:\n%s" % (self.returncode, self.stderr())
        return self.returncode

    def signal(self, sig=signal.SIGTERM, timeout=30):
        self.proc.send_signal(sig)
        self.returncode = self.proc.wait(timeout=timeout)
        unmount(self.mountpoint)
        self._stderr.close()
        return self.returncode


@pytest.fixture
def fake_factory():
    fakes = []

    def make(**kw):
        kw.setdefault("token", TOKEN)
        kw.setdefault("runs", 200)
        kw.setdefault("seed", 1)
        kw.setdefault("large", False)
        f = fakeapi.FakeAPI(**kw)
        f.start()
        fakes.append(f)
        return f

    try:
        yield make
    finally:
        for f in fakes:
            f.stop()


@pytest.fixture
def fake(fake_factory):
    return fake_factory()


def vm_rss_kib(pid):
    """The resident memory of process @pid, in KiB (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def stop_all(mounts):
    """Stops every mount of @mounts, always unmounting, then fails with
    what their stops found (sanitizer reports, exit statuses)."""
    errors = []
    for m in mounts:
        try:
            m.stop(check=True)
        except AssertionError as e:
            errors.append(str(e))
        finally:
            unmount(m.mountpoint)
    assert not errors, "\n".join(errors)


@pytest.fixture
def mount_factory(tmp_path):
    mounts = []

    def make(fake, **kw):
        mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
        m = Mount(fake, mp, **kw)
        mounts.append(m)
        return m

    try:
        yield make
    finally:
        stop_all(mounts)


@pytest.fixture
def mount(fake, mount_factory):
    return mount_factory(fake)
