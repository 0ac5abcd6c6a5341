"""Faults from the API, each one a test against the fake API.

For every fault of tests/fakeapi/fakeapi.py (and a revoked token, and a
server that refuses connections) this file checks what dlqfs promises in
README.md ("Semantics"):

- retryable faults (network errors, 5xx, 429) are retried with exponential
  backoff and jitter, a bounded number of times (-o retries=2: 3 attempts of
  a page per walk), a 429 no earlier than its reset time, never in a storm;
  other faults (4xx, garbage, a loop of cursors, a page over max_response)
  end the walk at once;
- a failed walk changes nothing you see: runs/ lists exactly the old runs,
  files read the old bytes, a server-side change made meanwhile is not
  half-applied; .dlqfs/status says "stale", since when, and the last error
  in words (never the token); the next good walk clears all of it and shows
  the server's changes;
- faults that do not break a walk (latency, an empty page, a duplicate,
  malformed entries) give a complete, correct snapshot;
- no FUSE request waits on any of it: while each faulted walk runs, `ls`,
  os.stat and `cat` run in a loop and every call answers within a second;
- at mount time the same faults give one "dlqfs: " line on stderr and a
  non-zero exit within a bounded time, and no mount.

The refresh matrix shares one mount (state restored between cases: faults
cleared, a good walk).  Every case adds a row to a matrix that is printed at
the end of the run and, when DLQFS_FAULT_MATRIX names a file, written there
as Markdown (it goes into the README).
"""
import calendar
import math
import os
import re
import subprocess
import time

import pytest

import fakeapi
from conftest import TOKEN, Mount, is_mounted, run_dlqfs, unmount

LIST_PATH = fakeapi.LIST_PATH
ISO_Z = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z\Z")

RUNS = 250                  # 3 pages of 100: page 2 is the middle of a walk
RETRIES = 2
MAX_TRIES = RETRIES + 1     # attempts of one page per walk
BACKOFF_MS = 500            # http.c: first backoff, doubled per retry
# walkers=1: a fault aimed at "page 2" must hit page 2 of the one cursor
# chain; test_parallel_walk_under_a_fault covers the parallel walk
OPTS = ["timeout=3", "stall_timeout=1", "connect_timeout=1",
        "retries=%d" % RETRIES, "max_response=1M", "walkers=1"]
FUSE_LIMIT_S = 1.0          # every FUSE call during a faulted walk
PACER_MS = 300              # page 1 is this slow, so FUSE calls overlap
STALL_S = 5                 # how long the fake keeps a stalled request
WALK_LIMIT_S = 30           # a faulted walk must end within this
STARTUP_LIMIT_S = 15        # a failing start-up must exit within this


# --------------------------------------------------------------------------
# the matrix


MATRIX = {"refresh": [], "startup": []}


def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_matrix():
    out = []
    if MATRIX["refresh"]:
        out.append("#### A refresh walk under each fault "
                   "(-o %s, %d runs = 3 pages)\n" % (",".join(OPTS), RUNS))
        out.append("| fault | outcome | what the user saw (state + error "
                   "text) | tries | worst FUSE call (ms) |")
        out.append("|---|---|---|---|---|")
        for r in MATRIX["refresh"]:
            out.append("| %s | %s | %s | %s | %s |" % tuple(
                _md_escape(x) for x in (r["fault"], r["outcome"], r["saw"],
                                        r["tries"], r["fuse_ms"])))
        out.append("")
    if MATRIX["startup"]:
        out.append("#### The same faults at mount time (first page)\n")
        out.append("| fault | outcome | what the user saw (stderr or "
                   "status) | tries | worst FUSE call (ms) |")
        out.append("|---|---|---|---|---|")
        for r in MATRIX["startup"]:
            out.append("| %s | %s | %s | %s | %s |" % tuple(
                _md_escape(x) for x in (r["fault"], r["outcome"], r["saw"],
                                        r["tries"], r["fuse_ms"])))
        out.append("")
    return "\n".join(out)


class _MatrixReporter:
    """Registered as a plugin by the module fixture: prints the matrix in
    pytest's terminal summary (so it shows with -q and output capture)."""

    def pytest_terminal_summary(self, terminalreporter):
        text = render_matrix()
        if not text:
            return
        terminalreporter.section("dlqfs fault matrix")
        for line in text.splitlines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def fault_matrix(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("dlqfs-fault-matrix"):
        pm.register(_MatrixReporter(), "dlqfs-fault-matrix")
    yield MATRIX
    path = os.environ.get("DLQFS_FAULT_MATRIX")
    if path and (MATRIX["refresh"] or MATRIX["startup"]):
        with open(path, "w") as f:
            f.write(render_matrix() + "\n")


# --------------------------------------------------------------------------
# helpers


def iso_seconds(s):
    m = ISO_Z.match(s)
    assert m, "not ISO 8601 with Z: %r" % s
    t = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return t + (float(m.group(7)) if m.group(7) else 0.0)


def list_requests(fake):
    return [e for e in fake.requests() if e["path"] == LIST_PATH]


def cursor_of(entry):
    return dict(entry["query"]).get("cursor")


def shown(text, fake):
    """A text as a README reader should see it: the fake's random port
    replaced by PORT."""
    if text is None:
        return None
    return text.replace("127.0.0.1:%d" % fake.port, "127.0.0.1:PORT")


def saw(s, fake):
    """The state and error as .dlqfs/status shows them."""
    if s["last_error"] is None:
        return '"%s", last_error null' % s["state"]
    return '"%s"%s: %s' % (s["state"], ", stale_since set"
                           if s["stale_since"] else "",
                           shown(s["last_error"], fake))


def tries_from_text(text):
    m = re.search(r"\(after (\d+) tries\)", text or "")
    return int(m.group(1)) if m else 1


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def new_message(fake, tag):
    """A copy of the newest entry under a new, newer dlqId (so it lands on
    page 1 of a walk)."""
    msgs = fake.messages()
    base = dict(msgs[0])
    created = max(m.get("createdAt", 0) for m in msgs
                  if isinstance(m.get("createdAt"), int)) + 1000
    base["dlqId"] = "%d-%s" % (created, tag)
    base["createdAt"] = created
    return base


def ask_refresh(m):
    """Writes .dlqfs/refresh without waiting for the walk; returns the
    refresh_requested count to wait for and the write's duration."""
    t0 = time.monotonic()
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    dt = time.monotonic() - t0
    return m.status()["refresh_requested"], dt


class Prober:
    """Runs `ls runs`, os.stat of a run file and `cat` of a run file in a
    loop while a walk is in progress, and keeps the worst time of each.
    Files rotate over the runs so that lookups and opens reach the daemon
    instead of the kernel's caches."""

    counter = 0

    def __init__(self, m, ids, expect_listing=None):
        self.m = m
        self.ids = ids
        self.expect_listing = expect_listing
        self.worst = {"ls": 0.0, "stat": 0.0, "cat": 0.0, "status": 0.0,
                      "refresh write": 0.0}
        self.rounds = 0          # full ls+stat+cat rounds during the walk

    def note(self, what, dt):
        self.worst[what] = max(self.worst[what], dt)

    def one_round(self):
        m = self.m
        i = Prober.counter
        Prober.counter += 2
        a = self.ids[i % len(self.ids)]
        b = self.ids[(i + 1) % len(self.ids)]
        r, dt = timed(subprocess.run, ["ls", m.path("runs")],
                      capture_output=True, text=True, timeout=30)
        self.note("ls", dt)
        assert r.returncode == 0, "ls runs failed during the walk: %s" \
            % r.stderr
        if self.expect_listing is not None:
            assert sorted(r.stdout.split()) == self.expect_listing, \
                "ls runs changed during a walk that must fail"
        st, dt = timed(os.stat, m.path("runs", a, "message.json"))
        self.note("stat", dt)
        assert st.st_size > 0
        r, dt = timed(subprocess.run, ["cat", m.path("runs", b,
                                                      "message.json")],
                      capture_output=True, timeout=30)
        self.note("cat", dt)
        assert r.returncode == 0 and r.stdout, \
            "cat failed during the walk: %r" % r.stderr

    def until_served(self, want, limit=WALK_LIMIT_S):
        """Probes until a walk that started after refresh request `want`
        has ended; returns the status then."""
        end = time.monotonic() + limit
        while True:
            s, dt = timed(self.m.status)
            self.note("status", dt)
            if s["refresh_served"] >= want and not s["walking"]:
                return s
            assert time.monotonic() < end, \
                "the faulted walk did not end within %ss: %s" % (limit, s)
            self.one_round()
            self.rounds += 1

    def worst_ms(self):
        return max(self.worst.values()) * 1000.0

    def check(self):
        for what, dt in self.worst.items():
            assert dt < FUSE_LIMIT_S, \
                "%s took %.3f s during a faulted walk (limit %.1f s)" \
                % (what, dt, FUSE_LIMIT_S)


# --------------------------------------------------------------------------
# the refresh matrix: cases


class Case:
    """One row of the refresh matrix.

    inject(fake): sets the fault up (the pacer on page 1 is added by the
    runner when pacer=True); clear(fake): takes it away.  expect: "stale"
    or "ready".  words: what last_error must say (each a string or a tuple
    of alternatives, case-insensitive).  tries: the attempts of the
    faulted page expected (an int, a tuple of acceptable ints, or None:
    not checked).  check(ctx): extra checks.  stall: each attempt must be
    given up after about stall_timeout of silence.
    """

    def __init__(self, cid, label, inject, expect, words=(), tries=None,
                 clear=None, pacer=True, check=None, min_gap=0.2,
                 stall=False):
        self.id = cid
        self.label = label
        self.inject = inject
        self.expect = expect
        self.words = words
        self.tries = tries
        self.clear = clear
        self.pacer = pacer
        self.check = check
        self.min_gap = min_gap
        self.stall = stall


def _inj(name, **kw):
    return lambda fake: fake.inject(name, **kw)


def _pause(fake):
    fake.pause()


def _resume(fake):
    if fake.paused:
        fake.resume()


def _revoke(fake):
    fake.configure(token="revoked-token-0b1e")


def _restore_token(fake):
    fake.configure(token=TOKEN)


def _check_429_reset(ctx):
    att = ctx["attempts"]
    assert len(att) == 2, "want one 429 and one retry, got %d" % len(att)
    t0, t1 = att[0]["time"], att[1]["time"]
    reset = math.ceil(t0 + 1)      # what the fake sent (reset_in=1)
    assert t1 >= reset - 0.002, \
        "retried %.3f s before Burst-RateLimit-Reset" % (reset - t1)
    assert t1 - t0 < 1 + 2.5, "waited %.2f s for a 1 s reset" % (t1 - t0)
    ctx["note"] = "retry %.2f s later, at the reset time" % (t1 - t0)


def _check_429_reset_ms(ctx):
    att = ctx["attempts"]
    assert len(att) == 2, "want one 429 and one retry, got %d" % len(att)
    t0, t1 = att[0]["time"], att[1]["time"]
    reset = math.ceil((t0 + 1) * 1000) / 1000.0   # what the fake sent, in ms
    assert t1 >= reset - 0.002, \
        "retried %.3f s before Burst-RateLimit-Reset (ms)" % (reset - t1)
    assert t1 - t0 < 1 + 2.5, "waited %.2f s for a 1 s reset" % (t1 - t0)
    ctx["note"] = "retry %.2f s later, at the reset time" % (t1 - t0)


def _check_daily_quota(ctx):
    s, fake = ctx["status"], ctx["fake"]
    q = s["daily_quota"]
    assert q and q["reset_known"] is True and q["limit"] == 100, q
    assert fake.stats()["quota_refused"] == 0, "sent during the quota"
    ctx["note"] = "nothing sent until the reset (daily_quota: %s)" % (
        q["exhausted_until"] and "exhausted_until set")


def _wait_quota_reset(fake):
    # dlqfs sends nothing until the reset it was told: ceil(t + 1) s, at
    # most 2 s after the 429
    time.sleep(2.5)


def _check_429_retry_after(ctx):
    att = ctx["attempts"]
    assert len(att) == 2, "want one 429 and one retry, got %d" % len(att)
    gap = att[1]["time"] - att[0]["time"]
    assert gap >= 2.0 - 0.01, "Retry-After: 2 not honoured (%.3f s)" % gap
    assert gap < 2.0 + 1.5, "waited %.2f s for Retry-After: 2" % gap
    ctx["note"] = "retry %.2f s later (Retry-After: 2)" % gap


def _check_429_every_try(ctx):
    att = ctx["attempts"]
    for a, b in zip(att, att[1:]):
        reset = math.ceil(a["time"] + 1)
        assert b["time"] >= reset - 0.002, \
            "retried %.3f s before Burst-RateLimit-Reset" % (reset - b["time"])


def _check_exactly_once(ctx):
    m, fake = ctx["m"], ctx["fake"]
    listing = os.listdir(m.path("runs"))
    assert len(listing) == len(set(listing)), "a run listed twice"
    assert sorted(listing) == sorted(fake.dlq_ids())
    assert ctx["status"]["runs"] == len(fake)


def _check_duplicate(ctx):
    _check_exactly_once(ctx)
    s = ctx["status"]
    assert s["duplicate_entries"] == 1, s
    ctx["note"] = "duplicate_entries: %d" % s["duplicate_entries"]


# The hostile entries of fakeapi._hostile_entries(): 3 have a usable
# string dlqId (they become runs, their bad fields left out); 9 are not
# objects or have no usable dlqId (skipped, counted).
HOSTILE_KEPT = ("-types", "-nulls", "-header-values")
HOSTILE_SKIPPED = 9


def _check_malformed(ctx):
    m, fake, s = ctx["m"], ctx["fake"], ctx["status"]
    listing = os.listdir(m.path("runs"))
    assert len(listing) == len(set(listing)), "a run listed twice"
    good = set(fake.dlq_ids())
    assert good <= set(listing), "valid runs missing: %s" \
        % sorted(good - set(listing))[:5]
    extra = set(listing) - good
    assert len(extra) == len(HOSTILE_KEPT) and all(
        any(x.endswith(k) for x in extra) for k in HOSTILE_KEPT), extra
    assert s["malformed_entries"] == HOSTILE_SKIPPED, s
    assert s["malformed_fields"] > 0, s
    assert s["runs"] == len(good) + len(HOSTILE_KEPT)
    ctx["note"] = "malformed_entries: %d, malformed_fields: %d" \
        % (s["malformed_entries"], s["malformed_fields"])


def _check_latency(ctx):
    # every page was slow: the walk took at least pages x latency
    assert ctx["walk_s"] >= 3 * 0.6 - 0.05, ctx["walk_s"]
    assert len(ctx["walk_requests"]) == 3, "a slow page was retried"
    _check_exactly_once(ctx)


def _check_cursor_words(ctx):
    assert len(ctx["walk_requests"]) == 2, \
        "pages 1, 2 and nothing after the repeated cursor"


def merge_resend(attempts):
    """libcurl itself sends a request again at once, on a new connection,
    when a kept-alive connection it reused closes without answering (the
    `close` fault on page 2 reuses page 1's connection).  That re-send is
    not one of dlqfs's tries: returns (attempts without it, 1) or
    (attempts, 0)."""
    if (len(attempts) >= 2 and attempts[0].get("status") is None
            and attempts[1]["time"] - attempts[0]["time"] < 0.1):
        return attempts[1:], 1
    return attempts, 0


STALL_TIMEOUT_S = 1         # -o stall_timeout= in OPTS
STALL_SLACK_S = 1.5         # curl checks the speed about once a second:
                            # a silent response is given up after 1-2 s


def stall_durations(attempts, end_time):
    """How long each attempt lasted, at least: the gap to the next one
    minus the longest backoff before that one; the last one lasted until
    the walk (or the process) ended."""
    times = [e["time"] for e in attempts]
    lasted = []
    for k in range(len(times)):
        if k + 1 < len(times):
            lasted.append(times[k + 1] - times[k]
                          - BACKOFF_MS * 2 ** k / 1000.0)
        else:
            lasted.append(end_time - times[k])
    return lasted


def check_stall_bound(attempts, end_time, what):
    """Each attempt that gets no byte for stall_timeout must end about
    stall_timeout after it went silent."""
    lasted = stall_durations(attempts, end_time)
    for k, d in enumerate(lasted):
        assert d <= STALL_TIMEOUT_S + STALL_SLACK_S, (
            "%s: attempt %d of the stalled page lasted at least %.1f s "
            "with -o stall_timeout=%d (attempts lasted %s): a response "
            "that stops sending is not given up after stall_timeout"
            % (what, k + 1, d, STALL_TIMEOUT_S,
               ", ".join("%.1f s" % x for x in lasted)))
    return lasted


def _retry_case(cid, label, fault, words, **params):
    """A persistent retryable fault on page 2: stale after MAX_TRIES."""
    return Case(cid, label, _inj(fault, times=None, after=1, **params),
                "stale", words=words, tries=MAX_TRIES,
                stall=fault.startswith("stall"))


def _transient_case(cid, label, fault, **params):
    """The same fault once: the retry absorbs it."""
    return Case(cid, label, _inj(fault, times=1, after=1, **params),
                "ready", tries=2)


CASES = [
    Case("latency", "`latency` 600 ms on every page",
         _inj("latency", ms=600, times=None), "ready", tries=1, pacer=False,
         check=_check_latency),
    _retry_case("stall", "`stall` (no byte) on page 2, every try", "stall",
                ("no data", "1 s"), seconds=STALL_S),
    _transient_case("stall-once", "`stall` on page 2, once", "stall",
                    seconds=STALL_S),
    _retry_case("stall_body", "`stall_body` (half a body, then nothing) on "
                "page 2, every try", "stall_body", ("no data", "1 s"),
                seconds=STALL_S),
    _retry_case("reset", "`reset` (RST mid-body) on page 2, every try",
                "reset", ("cut",)),
    _transient_case("reset-once", "`reset` on page 2, once", "reset"),
    _retry_case("truncate", "`truncate` (FIN mid-body) on page 2, every try",
                "truncate", ("cut short",)),
    _transient_case("truncate-once", "`truncate` on page 2, once",
                    "truncate"),
    _retry_case("close", "`close` (empty reply) on page 2, every try",
                "close", ("closed the connection",)),
    # once: libcurl's own re-send on a new connection may absorb it (1 try)
    Case("close-once", "`close` on page 2, once",
         _inj("close", times=1, after=1), "ready", tries=(1, 2)),
    Case("refused", "connection refused (`pause()`)", _pause, "stale",
         words=("connection refused",), tries=MAX_TRIES, clear=_resume,
         pacer=False),
    Case("not_json", "`not_json` (200, garbage body) on page 2",
         _inj("not_json", after=1), "stale", words=("not valid",),
         tries=1),
    _retry_case("html502", "`html` 502 (nginx page) on page 2, every try",
                "html", ("502", "bad gateway"), status=502),
    _retry_case("html504", "`html` 504 (nginx page) on page 2, every try",
                "html", ("504", "gateway time"), status=504),
    _transient_case("html502-once", "`html` 502 on page 2, once", "html",
                    status=502),
    Case("status500x2", "`status` 500 on page 2, 2 times (< %d tries)"
         % MAX_TRIES, _inj("status", code=500, times=MAX_TRIES - 1, after=1),
         "ready", tries=MAX_TRIES),
    Case("status500x3", "`status` 500 on page 2, %d times (= tries)"
         % MAX_TRIES, _inj("status", code=500, times=MAX_TRIES, after=1),
         "stale", words=("HTTP 500", "internal server error"),
         tries=MAX_TRIES),
    Case("rate_limit-reset", "`rate_limit` 429, Burst-RateLimit-Reset in "
         "1 s, on page 2, once",
         _inj("rate_limit", reset_in=1, after=1), "ready", tries=2,
         check=_check_429_reset),
    Case("rate_limit-reset-ms", "`rate_limit` 429, Burst-RateLimit-Reset "
         "in 1 s given in ms, on page 2, once",
         _inj("rate_limit", reset_in=1, reset_unit="ms", after=1), "ready",
         tries=2, check=_check_429_reset_ms),
    Case("rate_limit-retry_after", "`rate_limit` 429, Retry-After: 2, "
         "on page 2, once",
         _inj("rate_limit", reset_in=0, retry_after=2, after=1), "ready",
         tries=2, check=_check_429_retry_after),
    Case("rate_limit", "`rate_limit` 429 (reset in 1 s) on page 2, every "
         "try", _inj("rate_limit", reset_in=1, times=None, after=1), "stale",
         words=("429", "rate limit"), tries=MAX_TRIES,
         check=_check_429_every_try),
    Case("daily_quota", "`rate_limit` 429 of the daily quota (RateLimit-*, "
         "reset in 1 s) on page 2", _inj("rate_limit", kind="daily",
                                         reset_in=1, after=1), "stale",
         words=("daily request quota",), tries=1, clear=_wait_quota_reset,
         check=_check_daily_quota),
    Case("401", "token revoked (401 on page 1)", _revoke, "stale",
         words=("401",), tries=1, clear=_restore_token),
    Case("repeat_cursor", "`repeat_cursor` on page 2",
         _inj("repeat_cursor", after=1), "stale", words=("cursor",), tries=1,
         check=_check_cursor_words),
    Case("empty_page", "`empty_page` on page 2",
         _inj("empty_page", after=1), "ready", tries=1,
         check=_check_exactly_once),
    Case("duplicate", "`duplicate` on page 2 (page 1's last entry again)",
         _inj("duplicate", after=1), "ready", tries=1,
         check=_check_duplicate),
    Case("huge", "`huge` (2 MiB page, max_response=1M) on page 2",
         _inj("huge", bytes=2 * 1024 * 1024, after=1), "stale",
         words=("larger than the limit",), tries=1),
    Case("malformed_entries", "`malformed_entries` on page 2",
         _inj("malformed_entries", after=1), "ready", tries=1,
         check=_check_malformed),
]


# --------------------------------------------------------------------------
# the shared mount


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One fake API (RUNS runs, 3 pages) and one mount of it with small
    bounds, for the whole refresh matrix."""
    fake = fakeapi.FakeAPI(token=TOKEN, runs=RUNS, seed=8, large=False)
    fake.start()
    mp = str(tmp_path_factory.mktemp("faults") / "mnt")
    os.mkdir(mp)
    m = None
    try:
        m = Mount(fake, mp, options=OPTS)
        s = m.status()
        assert s["state"] == "ready" and s["runs"] == RUNS, s
        yield fake, m
    finally:
        try:
            if m is not None:
                m.stop(check=True)    # clean exit, no sanitizer report
                assert TOKEN not in m.stderr()
        finally:
            unmount(mp)
            fake.stop()


def restore(fake, m):
    """Back to a healthy API and a ready mount."""
    fake.clear_faults()
    _resume(fake)
    _restore_token(fake)
    s = m.status()
    if s["state"] != "ready" or s["walking"]:
        s = m.refresh()
    assert s["state"] == "ready", s
    return s


# --------------------------------------------------------------------------
# the refresh matrix: the test


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refresh_under_fault(shared, case):
    fake, m = shared
    st0 = restore(fake, m)
    old_ids = sorted(os.listdir(m.path("runs")))
    assert old_ids == sorted(fake.dlq_ids())

    # the server changes meanwhile: one run added (the newest: page 1, so
    # a walk that fails on page 2 has seen it) and one changed (its
    # message.json)
    added = new_message(fake, case.id.replace("_", "x"))
    changed = old_ids[len(old_ids) // 2]
    old_bytes = read_bytes(m.path("runs", changed, "message.json"))
    old_state = fake.get(changed).get("failureFunctionState")
    new_state = "CALLBACK_CANCELED" if old_state != "CALLBACK_CANCELED" \
        else "CALLBACK_FAIL"
    fake.add(added)
    fake.update(changed, failureFunctionState=new_state)

    # the fault, then a refresh that is not waited for: probe meanwhile
    fake.clear_requests()
    if case.pacer:
        fake.inject("latency", ms=PACER_MS, times=1)
    case.inject(fake)
    t_ask = time.time()
    want, dt_write = ask_refresh(m)
    prober = Prober(m, old_ids,
                    expect_listing=old_ids if case.expect == "stale"
                    else None)
    prober.note("refresh write", dt_write)
    s = prober.until_served(want)
    t_done = time.time()
    reqs = list_requests(fake)
    walk_s = iso_seconds(s["last_refresh"]) - iso_seconds(s["walk_started"])

    # the attempts of the faulted page: every request with the cursor of
    # the first request that suffered the case's fault
    attempts = []
    main = [e for e in reqs if e.get("fault") and
            not (case.pacer and e.get("fault") == "latency")]
    if main:
        c = cursor_of(main[0])
        attempts = [e for e in reqs if cursor_of(e) == c]
    elif case.id == "401":
        attempts = [e for e in reqs if cursor_of(e) is None]
    attempts, resent = merge_resend(attempts)
    if case.id == "refused":
        assert not reqs
        tries = tries_from_text(s["last_error"])
    else:
        tries = len(attempts)

    ctx = {"fake": fake, "m": m, "status": s, "attempts": attempts,
           "walk_requests": reqs, "walk_s": walk_s, "note": None}
    row = {"fault": case.label,
           "tries": "%d%s" % (tries, " (+1 re-sent by libcurl)"
                              if resent else ""),
           "fuse_ms": "%.0f" % prober.worst_ms(),
           "outcome": "%s after %.1f s" % (s["state"], walk_s),
           "saw": saw(s, fake)}
    MATRIX["refresh"].append(row)
    if case.stall and attempts:
        lasted = stall_durations(attempts, iso_seconds(s["last_refresh"]))
        row["outcome"] += "; stalled tries lasted ~%.1f-%.1f s" \
            % (min(lasted), max(lasted))
    try:
        check_refresh_case(case, ctx, st0, prober, tries, t_ask, t_done,
                           old_ids, added, changed, old_bytes, new_state)
    except AssertionError as e:
        row["outcome"] += " (TEST FAILS: %s)" % str(e).splitlines()[0][:200]
        raise
    finally:
        if ctx["note"]:
            row["saw"] += "; " + ctx["note"]


def check_refresh_case(case, ctx, st0, prober, tries, t_ask, t_done,
                       old_ids, added, changed, old_bytes, new_state):
    fake, m, s, attempts = ctx["fake"], ctx["m"], ctx["status"], \
        ctx["attempts"]

    # -- no FUSE call waited on the walk
    prober.check()
    assert prober.rounds >= 1, \
        "the walk ended before one ls/stat/cat round could run"

    # -- bounded tries, never a storm, stalls given up in time
    if case.tries is not None:
        ok = case.tries if isinstance(case.tries, tuple) else (case.tries,)
        assert tries in ok, \
            "%d attempts of the faulted page, want %s: %s" % (
                tries, case.tries, [(e.get("fault"), e["status"])
                                    for e in attempts])
    assert tries <= MAX_TRIES
    times = sorted(e["time"] for e in attempts)
    gaps = [b - a for a, b in zip(times, times[1:])]
    if gaps:
        assert min(gaps) >= case.min_gap, \
            "attempts %.3f s apart: a retry storm (gaps %s)" % (
                min(gaps), ["%.3f" % g for g in gaps])
    if case.stall:
        check_stall_bound(attempts, iso_seconds(s["last_refresh"]), case.id)
    if case.expect == "stale" and case.id not in ("401", "refused"):
        # a partial walk: page 1 was read, then the walk failed on page 2
        # (a repeated cursor is seen once page 2 has been read)
        read = 2 if case.id == "repeat_cursor" else 1
        assert s["pages"] == read and s["walk_runs"] == read * 100, \
            "the walk should have ended on page 2: %s" % s

    if case.expect == "stale":
        # -- the walk failed cleanly; status says so, since when, in words
        assert s["state"] == "stale", s
        assert s["walks_failed"] == st0["walks_failed"] + 1
        assert s["walks_ok"] == st0["walks_ok"]
        assert s["generation"] == st0["generation"]
        assert s["last_success"] == st0["last_success"]
        assert s["runs"] == len(old_ids)
        since = s["stale_since"]
        assert isinstance(since, str) and ISO_Z.match(since), since
        assert t_ask - 1.0 <= iso_seconds(since) <= t_done + 1.0, \
            "stale_since %s is not the time of this walk" % since
        err = s["last_error"]
        assert isinstance(err, str) and err.strip() and "\n" not in err, \
            "last_error must be one non-empty line: %r" % err
        assert len(err) >= 15 and re.search(r"[a-z]{3,} [a-z]{2,}", err), \
            "last_error is not in words: %r" % err
        assert TOKEN not in err
        low = err.lower()
        for w in case.words:
            alts = w if isinstance(w, tuple) else (w,)
            assert any(a.lower() in low for a in alts), \
                "last_error %r does not mention %r" % (err, w)
        if isinstance(case.tries, int) and case.tries > 1:
            assert "after %d tries" % case.tries in err, \
                "last_error does not say how often it tried: %r" % err
        with open(m.path(".dlqfs/status")) as f:
            assert TOKEN not in f.read()

        # -- the previous snapshot keeps serving, whole: the partial walk
        # (which saw the added run on page 1) was not published
        assert sorted(os.listdir(m.path("runs"))) == old_ids, \
            "runs/ changed after a failed walk"
        assert not os.path.exists(m.path("runs", added["dlqId"]))
        assert read_bytes(m.path("runs", changed, "message.json")) \
            == old_bytes, "a file changed after a failed walk"

        if case.check:
            case.check(ctx)

        # -- cleared: the next good walk clears the error
        fake.clear_faults()
        if case.clear:
            case.clear(fake)
        s2 = m.refresh()
        assert s2["state"] == "ready", s2
        assert s2["last_error"] is None and s2["stale_since"] is None, s2
        assert s2["generation"] == st0["generation"] + 1
    else:
        assert s["state"] == "ready", \
            "a walk under %s must succeed: %s" % (case.id, s)
        assert s["last_error"] is None and s["stale_since"] is None, s
        assert s["generation"] == st0["generation"] + 1
        if case.check:
            case.check(ctx)
        fake.clear_faults()

    # -- the server's changes are visible now
    listing = os.listdir(m.path("runs"))
    assert added["dlqId"] in listing
    new_bytes = read_bytes(m.path("runs", changed, "message.json"))
    assert new_bytes != old_bytes and new_state.encode() in new_bytes, \
        "the change made on the server is not visible after a good walk"
    if case.id != "malformed_entries":
        assert sorted(listing) == sorted(fake.dlq_ids())


# --------------------------------------------------------------------------
# bounded tries and backoff


def test_persistent_fault_is_retried_a_bounded_number_of_times_per_walk(
        shared):
    """A 5xx on page 2 that never goes away: each walk tries page 2
    exactly retries+1 times, spaced by the backoff windows; page 3 is
    never asked for; stale_since keeps the time of the first failure."""
    fake, m = shared
    st0 = restore(fake, m)
    try:
        sinces = []
        for walk in range(2):
            fake.clear_faults()
            fake.clear_requests()
            fake.inject("status", code=503, times=None, after=1)
            s = m.refresh(timeout=WALK_LIMIT_S)
            reqs = list_requests(fake)
            assert s["state"] == "stale", s
            assert "after %d tries" % MAX_TRIES in s["last_error"], s
            page2 = [e for e in reqs if e.get("fault") == "status"]
            assert len(page2) == MAX_TRIES, \
                "walk %d: %d attempts of page 2" % (walk, len(page2))
            assert len(reqs) == 1 + MAX_TRIES, "pages after the failed one"
            assert len({cursor_of(e) for e in page2}) == 1
            times = [e["time"] for e in page2]
            gaps = [b - a for a, b in zip(times, times[1:])]
            for k, g in enumerate(gaps):
                d = BACKOFF_MS * 2 ** k / 1000.0
                assert d / 2 - 0.02 <= g <= d + 0.4, \
                    "walk %d: gap %d is %.3f s, outside [%.2f, %.2f]" % (
                        walk, k + 1, g, d / 2, d)
            sinces.append(s["stale_since"])
            assert s["walks_failed"] == st0["walks_failed"] + walk + 1
        assert sinces[0] == sinces[1], \
            "stale_since must keep the start of the outage: %s" % sinces
    finally:
        fake.clear_faults()
    s = m.refresh()
    assert s["state"] == "ready" and s["stale_since"] is None


def test_backoff_is_exponential_with_jitter(fake_factory, mount_factory):
    """With -o retries=3 the waits before attempts 2, 3, 4 fall in
    [d/2, d] for d = 0.5, 1, 2 s: they grow (the third at least twice the
    first), and they vary between walks (jitter)."""
    fake = fake_factory(runs=150, large=False)
    m = mount_factory(fake, options=["timeout=3", "stall_timeout=1",
                                     "connect_timeout=1", "retries=3",
                                     "walkers=1"])
    normalized = []
    for walk in range(3):
        fake.clear_faults()
        fake.clear_requests()
        fake.inject("status", code=500, times=None, after=1)
        s = m.refresh(timeout=WALK_LIMIT_S)
        assert s["state"] == "stale" and "after 4 tries" in s["last_error"]
        times = [e["time"] for e in list_requests(fake)
                 if e.get("fault") == "status"]
        assert len(times) == 4, "walk %d: %d attempts" % (walk, len(times))
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert gaps[1] > gaps[0] * 0.95 and gaps[2] > gaps[1] * 0.95, gaps
        assert gaps[2] > gaps[0] * 1.8, "not exponential: %s" % gaps
        for k, g in enumerate(gaps):
            d = BACKOFF_MS * 2 ** k / 1000.0
            assert d / 2 - 0.02 <= g <= d + 0.4, (k, g, gaps)
            normalized.append(g / 2 ** k)
    spread = max(normalized) - min(normalized)
    assert spread > 0.025, \
        "no jitter: every wait is the same fraction of its window (%s)" \
        % ["%.3f" % x for x in normalized]
    fake.clear_faults()
    assert m.refresh()["state"] == "ready"


# --------------------------------------------------------------------------
# start-up


STARTUP_OPTS = ["timeout=3", "stall_timeout=1", "connect_timeout=1",
                "retries=%d" % RETRIES, "max_response=1M", "walkers=1"]

# (id, label, setup(fake), words in the stderr line)
STARTUP_FAILS = [
    ("stall", "`stall`", _inj("stall", seconds=STALL_S, times=None),
     ("no data",)),
    ("stall_body", "`stall_body`",
     _inj("stall_body", seconds=STALL_S, times=None), ("no data",)),
    ("reset", "`reset`", _inj("reset", times=None), ("cut",)),
    ("truncate", "`truncate`", _inj("truncate", times=None), ("cut short",)),
    ("close", "`close`", _inj("close", times=None),
     ("closed the connection",)),
    ("not_json", "`not_json`", _inj("not_json", times=None), ("not valid",)),
    ("html502", "`html` 502", _inj("html", status=502, times=None),
     ("502", "bad gateway")),
    ("status500", "`status` 500, every try",
     _inj("status", code=500, times=None), ("500",)),
    ("rate_limit", "`rate_limit` 429, every try",
     _inj("rate_limit", reset_in=1, times=None), ("429",)),
    ("daily_quota", "`rate_limit` 429 of the daily quota (not retried)",
     _inj("rate_limit", kind="daily", reset_in=60),
     ("429", "daily request quota", "resets at")),
    ("401", "wrong token (401)", _revoke, ("401",)),
    ("huge", "`huge` (2 MiB, max_response=1M)",
     _inj("huge", bytes=2 * 1024 * 1024, times=None),
     ("larger than the limit",)),
    ("refused", "connection refused", _pause, ("connection refused",)),
]


@pytest.mark.parametrize("cid,label,setup,words", STARTUP_FAILS,
                         ids=[c[0] for c in STARTUP_FAILS])
def test_startup_fault_fails_with_one_line(fake_factory, tmp_path, cid,
                                           label, setup, words):
    fake = fake_factory(runs=150, large=False)
    setup(fake)
    mp = str(tmp_path / "mnt")
    os.mkdir(mp)
    fake.clear_requests()
    t0 = time.monotonic()
    try:
        r = run_dlqfs(["-o", ",".join(["url=" + fake.base_url]
                                      + STARTUP_OPTS), mp],
                      timeout=STARTUP_LIMIT_S + 30)
    finally:
        elapsed = time.monotonic() - t0
        t_end = time.time()
        if is_mounted(mp):
            unmount(mp)
            pytest.fail("dlqfs left a mount behind")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    reqs = list_requests(fake)
    line = lines[0] if lines else ""
    attempts, resent = merge_resend(reqs)
    tries = tries_from_text(line) if cid == "refused" else len(attempts)
    row = {"fault": label,
           "outcome": "exit %d after %.1f s, not mounted" % (r.returncode,
                                                              elapsed),
           "saw": shown(line, fake) if len(lines) == 1 else
           "stderr: %r" % shown(r.stderr, fake),
           "tries": "%d%s" % (tries, " (+1 re-sent by libcurl)"
                              if resent else ""),
           "fuse_ms": "-"}
    if cid.startswith("stall") and attempts:
        lasted = stall_durations(attempts, t_end)
        row["outcome"] += "; stalled tries lasted ~%.1f-%.1f s" \
            % (min(lasted), max(lasted))
    MATRIX["startup"].append(row)
    try:
        assert r.returncode != 0, "exit 0; stderr:\n" + r.stderr
        assert len(lines) == 1, \
            "want exactly one stderr line, got:\n" + r.stderr
        assert line.startswith("dlqfs: ") and len(line) > 20, line
        assert TOKEN not in r.stderr and TOKEN not in r.stdout
        assert elapsed < STARTUP_LIMIT_S, "start-up took %.1f s" % elapsed
        assert not is_mounted(mp)
        assert tries <= MAX_TRIES, "%d tries at start-up" % tries
        if cid in ("401", "not_json", "huge", "daily_quota"):
            assert tries == 1, \
                "%s must not be retried (%d tries)" % (cid, tries)
        if cid == "refused":
            assert not reqs
        times = sorted(e["time"] for e in attempts)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert not gaps or min(gaps) >= 0.2, \
            "retry storm at start-up: %s" % gaps
        if cid.startswith("stall"):
            check_stall_bound(attempts, t_end, cid)
        low = line.lower()
        for w in words:
            assert w.lower() in low, "%r does not mention %r" % (line, w)
    except AssertionError as e:
        row["outcome"] += " (TEST FAILS: %s)" % str(e).splitlines()[0][:200]
        raise


def test_stall_mid_body_is_given_up_after_stall_timeout(fake_factory,
                                                        tmp_path):
    """-o stall_timeout=1 with a generous total timeout: a response that
    sends half its body and then nothing must be given up about 1 s after
    it went silent (as a response that sends nothing at all is), not when
    the total timeout ends it; and the error must tell the truth about how
    long the silence was."""
    fake = fake_factory(runs=150, large=False)
    fake.inject("stall_body", seconds=20, times=None)
    mp = str(tmp_path / "mnt")
    os.mkdir(mp)
    t0 = time.monotonic()
    r = run_dlqfs(["-o", "url=%s,stall_timeout=1,timeout=20,retries=0"
                   % fake.base_url, mp], timeout=60)
    elapsed = time.monotonic() - t0
    assert not is_mounted(mp)
    assert r.returncode != 0, r.stderr
    assert len(list_requests(fake)) == 1
    assert elapsed < STALL_TIMEOUT_S + STALL_SLACK_S, (
        "a body that stopped half-way was given up after %.1f s with -o "
        "stall_timeout=1 (stderr: %s)" % (elapsed, r.stderr.strip()))


STARTUP_OK = [
    ("latency", "`latency` 600 ms on every page",
     _inj("latency", ms=600, times=None), None),
    ("empty_page", "`empty_page` on page 1 (start-up check and first walk)",
     _inj("empty_page", times=2), None),
    ("duplicate", "`duplicate` on page 1 (start-up check and first walk)",
     _inj("duplicate", times=2), "duplicate_entries"),
    ("malformed_entries", "`malformed_entries` on page 1 (start-up check "
     "and first walk)", _inj("malformed_entries", times=2),
     "malformed_entries"),
]


@pytest.mark.parametrize("cid,label,setup,counter", STARTUP_OK,
                         ids=[c[0] for c in STARTUP_OK])
def test_startup_fault_that_does_not_break_a_walk_mounts(
        fake_factory, mount_factory, cid, label, setup, counter):
    fake = fake_factory(runs=150, large=False)
    setup(fake)
    t0 = time.monotonic()
    m = mount_factory(fake, options=STARTUP_OPTS)
    s = m.wait(lambda s: s["state"] != "walking", timeout=WALK_LIMIT_S)
    elapsed = time.monotonic() - t0
    listing = os.listdir(m.path("runs"))
    note = ""
    if counter:
        note = "; %s: %d" % (counter, s[counter])
    MATRIX["startup"].append({
        "fault": label,
        "outcome": "mounted, %s after %.1f s" % (s["state"], elapsed),
        "saw": '"%s", %d runs, last_error %s%s' % (
            s["state"], s["runs"], s["last_error"] or "null", note),
        # every request answered at the first try
        "tries": 1 + len([e for e in list_requests(fake)
                          if e["status"] != 200]),
        "fuse_ms": "-"})
    assert s["state"] == "ready" and s["last_error"] is None, s
    assert len(listing) == len(set(listing))
    good = set(fake.dlq_ids())
    assert good <= set(listing)
    if cid == "malformed_entries":
        assert s["malformed_entries"] == HOSTILE_SKIPPED, s
        assert len(listing) == len(good) + len(HOSTILE_KEPT)
    else:
        assert len(listing) == len(good) == s["runs"]
    if cid == "duplicate":
        assert s["duplicate_entries"] == 1, s


def test_parallel_walk_under_a_fault(fake_factory, mount_factory):
    """The default walk (several workers, createdAt ranges): a page that
    keeps failing in the middle of it fails the whole walk cleanly, the
    old snapshot serves, no FUSE call waits, and the next walk recovers
    with every run exactly once."""
    fake = fake_factory(runs=1200, seed=11, large=False)
    m = mount_factory(fake, options=["timeout=3", "stall_timeout=1",
                                     "connect_timeout=1", "retries=1"])
    before = sorted(os.listdir(m.path("runs")))
    assert len(before) == 1200
    some = os.path.join("runs", before[0], "message.json")
    with open(m.path(some), "rb") as f:
        old_bytes = f.read()
    fake.add({"dlqId": "9999999999999-0", "createdAt": 9999999999999})
    fake.inject("status", times=None, after=3, code=503)
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1")
    worst = 0.0
    deadline = time.monotonic() + 60
    while True:
        t0 = time.monotonic()
        listing = os.listdir(m.path("runs"))
        with open(m.path(some), "rb") as f:
            assert f.read() == old_bytes
        worst = max(worst, time.monotonic() - t0)
        st = m.status()
        if st["walks_failed"] >= 1 and not st["walking"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert worst < FUSE_LIMIT_S, worst
    assert st["state"] == "stale" and "503" in st["last_error"]
    assert sorted(listing) == before
    fake.clear_faults()
    st = m.refresh()
    assert st["state"] == "ready" and st["last_error"] is None
    now = sorted(os.listdir(m.path("runs")))
    assert now == sorted(before + ["9999999999999-0"])
    assert st["runs"] == 1201
