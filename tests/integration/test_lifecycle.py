"""Lifecycle of a dlqfs mount: start-up checks, token hygiene, the list
requests it sends, scope options, refreshes (file, SIGHUP, timer), API
failures, first-walk gating, signals, mount.fuse3 / mount(8), privacy.

Every test talks to the fake API in tests/fakeapi/fakeapi.py on loopback;
every mount is unmounted in `finally` (fixtures, or explicit try/finally for
the daemonized mounts).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import fakeapi
from conftest import (DLQFS, SANITIZER_MARKS, TOKEN, Mount, is_mounted,
                      run_dlqfs, sanitizer_env, unmount)

LIST_PATH = fakeapi.LIST_PATH
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")
STARTUP_LIMIT_S = 30


# --------------------------------------------------------------------------
# helpers


def closed_loopback_port():
    """A loopback TCP port with nothing listening on it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def timed_run(args, **kw):
    """Runs a dlqfs that is expected to fail before mounting. One that
    mounts after all (a regression) is unmounted here, whether it exited
    or was killed at the timeout, so that no test leaves a mount behind."""
    kw.setdefault("timeout", STARTUP_LIMIT_S)
    t0 = time.monotonic()
    mp = args[-1] if args else None
    try:
        r = run_dlqfs(args, **kw)
    finally:
        if mp and not mp.startswith("-") and is_mounted(mp):
            unmount(mp)
            pytest.fail("dlqfs mounted %s where it should have failed" % mp)
    return r, time.monotonic() - t0


def sanitizer_lines(text):
    return [l for l in text.splitlines()
            if any(mark in l for mark in SANITIZER_MARKS)]


def assert_startup_failure(r, elapsed, mountpoint, *words):
    """Non-zero exit, exactly one non-empty stderr line "dlqfs: ..." that
    contains every one of `words` (any of the alternatives when a word is
    a tuple), within the time bound, and no mount left."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0, "exit 0; stderr:\n" + r.stderr
    assert len(lines) == 1, "want exactly one stderr line, got:\n" + r.stderr
    line = lines[0]
    assert line.startswith("dlqfs: "), line
    assert len(line) > len("dlqfs: ") + 10, line
    low = line.lower()
    for w in words:
        alts = w if isinstance(w, tuple) else (w,)
        assert any(a.lower() in low for a in alts), \
            "%r does not mention %r" % (line, w)
    assert TOKEN not in r.stderr and TOKEN not in r.stdout
    assert elapsed < STARTUP_LIMIT_S
    if mountpoint is not None:
        assert not is_mounted(mountpoint)
    return line


def list_requests(fake):
    return [e for e in fake.requests() if e["path"] == LIST_PATH]


def filter_pairs(entry):
    """Query pairs of a list request other than count and cursor."""
    return sorted((k, v) for k, v in entry["query"]
                  if k not in ("count", "cursor"))


def run_labels(msg):
    """The fake's (and the API's) label semantics: `labels` when present,
    else `label`."""
    if "labels" in msg:
        labs = msg["labels"] if isinstance(msg["labels"], list) else []
    else:
        labs = [msg.get("label")]
    return {x for x in labs if isinstance(x, str)}


def wait_for(pred, timeout, what, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def timed(fn, *a):
    t0 = time.monotonic()
    v = fn(*a)
    return v, time.monotonic() - t0


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def mount_options(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields
    return None


def new_message(fake, template_id, dlq_id, created_at):
    m = fake.get(template_id)
    m["dlqId"] = dlq_id
    m["createdAt"] = created_at
    return m


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            # a zombie has exited
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------
# 1. start-up failures


def test_fails_without_token(tmp_path, fake):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url, mp], token=None)
    assert_startup_failure(r, t, mp, "token", ("QSTASH_TOKEN", "token_file"))
    assert list_requests(fake) == []


def test_fails_without_token_when_env_empty(tmp_path, fake):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url, mp], token="")
    assert_startup_failure(r, t, mp, "token")


def test_fails_with_wrong_token(tmp_path, fake):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url, mp],
                     token="wrong-token-0000")
    assert_startup_failure(r, t, mp, "token", ("401", "refused",
                                                "unauthorized"))
    assert "wrong-token-0000" not in r.stderr
    reqs = list_requests(fake)
    assert reqs and all(e["status"] == 401 for e in reqs)
    # a 401 is not worth retrying
    assert len(reqs) == 1


def test_fails_with_unreachable_url(tmp_path):
    mp = str(tmp_path)
    port = closed_loopback_port()
    url = "http://127.0.0.1:%d" % port
    r, t = timed_run(["-f", "-o", "url=" + url, mp])
    assert_startup_failure(r, t, mp, str(port),
                           ("refused", "connect", "unreachable"))


def test_fails_with_unreachable_url_from_environment(tmp_path):
    mp = str(tmp_path)
    port = closed_loopback_port()
    r, t = timed_run(["-f", mp], url="http://127.0.0.1:%d" % port)
    assert_startup_failure(r, t, mp, str(port))


def test_fails_when_mountpoint_missing(tmp_path, fake):
    mp = str(tmp_path / "does-not-exist")
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url, mp])
    assert_startup_failure(r, t, None, mp, ("not exist", "no such"))
    assert not os.path.exists(mp)


def test_fails_when_mountpoint_is_a_file(tmp_path, fake):
    mp = str(tmp_path / "plain-file")
    with open(mp, "w") as f:
        f.write("x")
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url, mp])
    assert_startup_failure(r, t, mp, mp, "not a directory")
    with open(mp) as f:
        assert f.read() == "x"


def test_fails_without_mountpoint(fake):
    r, t = timed_run(["-f", "-o", "url=" + fake.base_url])
    assert_startup_failure(r, t, None, "mount point")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_token_file_readable_by_others_is_refused(tmp_path, fake, mode):
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    os.chmod(str(tf), mode)
    mp = str(tmp_path / "mp")
    os.mkdir(mp)
    r, t = timed_run(["-f", "-o", "url=%s,token_file=%s" % (fake.base_url, tf),
                      mp], token=None)
    line = assert_startup_failure(r, t, mp, str(tf),
                                  ("chmod", "permission", "mode"))
    assert "%04o" % mode in line or "%o" % mode in line
    assert list_requests(fake) == []


def test_token_file_0600_mounts(tmp_path, fake, mount_factory):
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    os.chmod(str(tf), 0o600)
    # The environment holds a wrong token: the file must win.
    m = mount_factory(fake, options=["token_file=%s" % tf],
                      token="env-token-that-is-wrong")
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())
    assert m.status()["state"] == "ready"
    with open("/proc/%d/cmdline" % m.proc.pid, "rb") as f:
        assert TOKEN.encode() not in f.read()
    reqs = list_requests(fake)
    assert reqs and all(e["auth"] == "bearer" for e in reqs)


def test_token_file_missing_or_empty(tmp_path, fake):
    mp = str(tmp_path / "mp")
    os.mkdir(mp)
    missing = str(tmp_path / "nope")
    r, t = timed_run(["-f", "-o", "url=%s,token_file=%s"
                      % (fake.base_url, missing), mp], token=None)
    assert_startup_failure(r, t, mp, missing)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    os.chmod(str(empty), 0o600)
    r, t = timed_run(["-f", "-o", "url=%s,token_file=%s"
                      % (fake.base_url, empty), mp], token=None)
    assert_startup_failure(r, t, mp, str(empty), "token")


def test_token_option_is_refused(tmp_path, fake):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=%s,token=%s" % (fake.base_url, TOKEN),
                      mp])
    line = assert_startup_failure(r, t, mp, "token=",
                                  ("refused", "not allowed"))
    assert TOKEN not in line
    assert list_requests(fake) == []


def test_plain_http_to_remote_host_is_refused(tmp_path):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=http://example.com", mp])
    assert_startup_failure(r, t, mp, "http://example.com",
                           ("allow_insecure_http", "https"))
    # the URL from the environment is checked the same way
    r, t = timed_run(["-f", mp], url="http://example.com/")
    assert_startup_failure(r, t, mp, "allow_insecure_http")


@pytest.mark.parametrize("opt", ["from=yesterday", "to=12abc",
                                 "workflow_created_at=1.5", "from="])
def test_non_numeric_scope_value_is_refused(tmp_path, fake, opt):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=%s,%s" % (fake.base_url, opt), mp])
    assert_startup_failure(r, t, mp, opt.split("=")[0])
    assert list_requests(fake) == []


@pytest.mark.parametrize("opts", [
    "from=1,from=2", "to=5,to=5", "workflow_run_id=wfr_a,workflow_run_id=wfr_b",
    "workflow_created_at=1,workflow_created_at=2"])
def test_repeated_single_valued_scope_option_is_refused(tmp_path, fake, opts):
    """from, to, workflow_run_id and workflow_created_at take one value
    (the API reads one): a second is a mistake to say at once, not an OR
    the API may read its own way."""
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=%s,%s" % (fake.base_url, opts), mp])
    opt = opts.split("=")[0]
    assert_startup_failure(r, t, mp, opt + "= given twice")
    assert list_requests(fake) == []


@pytest.mark.parametrize("value", ["a\\,b", "https://x.example/wf?a=1\\,2"])
def test_scope_value_with_a_comma_is_refused(tmp_path, fake, value):
    """The API reads a comma in a list filter as a separator of several
    values: such a value cannot be sent as one, so it is refused."""
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=%s" % fake.base_url,
                      "-o", "workflow_url=" + value, mp])
    assert_startup_failure(r, t, mp, "separator")
    assert list_requests(fake) == []


def test_unknown_option_is_rejected(tmp_path, fake):
    mp = str(tmp_path)
    r, t = timed_run(["-f", "-o", "url=%s,bogus_opt=1" % fake.base_url, mp])
    assert r.returncode != 0
    assert "bogus_opt" in r.stderr
    assert t < STARTUP_LIMIT_S
    assert not is_mounted(mp)


def test_unknown_option_is_rejected_before_contacting_the_api(tmp_path):
    """An unknown option is a user error to be reported as such: it must
    not be hidden behind (or wait for) the API check."""
    mp = str(tmp_path)
    port = closed_loopback_port()
    r, t = timed_run(["-f", "-o", "url=http://127.0.0.1:%d,bogus_opt=1"
                      % port, mp])
    assert r.returncode != 0
    assert not is_mounted(mp)
    assert "bogus_opt" in r.stderr, \
        "the unknown option is not named; stderr:\n" + r.stderr


def test_unknown_option_exit_is_sanitizer_clean(tmp_path, fake):
    mp = str(tmp_path)
    r, _ = timed_run(["-f", "-o", "url=%s,bogus_opt=1" % fake.base_url, mp])
    assert r.returncode != 0
    assert not sanitizer_lines(r.stderr), r.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    r, _ = timed_run([flag], token=None)
    assert not sanitizer_lines(r.stderr), r.stderr
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower()
    for opt in ("token_file", "url=", "refresh=", "label=", "from=", "to="):
        assert opt in r.stdout, opt


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    r, _ = timed_run([flag], token=None)
    assert not sanitizer_lines(r.stderr), r.stderr
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("dlqfs ")
    assert len(r.stdout.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# 2. token hygiene


def test_token_never_leaves_the_daemon(fake, mount_factory):
    m = mount_factory(fake, extra_args=["-d"])
    pid = m.proc.pid
    # produce some debug output: lookups, reads, a refresh
    runs = sorted(os.listdir(m.path("runs")))
    for rid in runs[:5]:
        read_bytes(m.path("runs", rid, "message.json"))
        read_bytes(m.path("runs", rid, "header"))
    os.listdir(m.path("by-label"))
    m.refresh()
    os.kill(pid, signal.SIGHUP)
    m.wait(lambda s: s["walks_ok"] >= 3 and not s["walking"], what="walk")

    tok = TOKEN.encode()
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert tok not in f.read()
    with open("/proc/%d/environ" % pid, "rb") as f:
        assert tok not in f.read()
    status_text = read_bytes(m.path(".dlqfs/status"))
    assert tok not in status_text
    assert b"qstash_token" not in status_text.lower()
    err = m.stderr()
    assert "unique:" in err or "opcode" in err.lower(), \
        "-d gave no debug output?\n" + err[:2000]
    assert TOKEN not in err

    reqs = fake.requests()
    assert len(reqs) >= 4
    for e in reqs:
        assert e["auth"] == "bearer", e
        assert e["auth_ok"], e
        assert not e["query_token"], e
        assert "qstash_token" not in e["raw_query"].lower(), e
        assert TOKEN not in e["raw_query"], e
        assert all(TOKEN not in v for v in e["headers"].values()), e


def test_region_selects_its_url_and_token(fake, mount_factory):
    """QSTASH_REGION=US_EAST_1 reads US_EAST_1_QSTASH_URL and
    US_EAST_1_QSTASH_TOKEN, as the Upstash SDKs do (qstash-js
    multi-region/); the plain ones are wrong here, and not used. The region
    may be written as the SDKs accept it (us-east-1)."""
    closed = "http://127.0.0.1:%d" % closed_loopback_port()
    for region in ("US_EAST_1", "us-east-1"):
        fake.clear_requests()
        m = mount_factory(fake, url_option=False, token="plain-token-wrong",
                          env_extra={"QSTASH_REGION": region,
                                     "QSTASH_URL": closed,
                                     "US_EAST_1_QSTASH_URL": fake.base_url,
                                     "US_EAST_1_QSTASH_TOKEN": TOKEN})
        st = m.status()
        assert st["state"] == "ready" and st["api_url"] == fake.base_url
        assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())
        assert all(e["auth_ok"] for e in fake.requests())
        # neither token stays in the daemon's environment
        with open("/proc/%d/environ" % m.proc.pid, "rb") as f:
            env = f.read()
        assert TOKEN.encode() not in env and b"plain-token-wrong" not in env
        m.stop()


def test_region_without_its_variables_falls_back_and_says_so(fake,
                                                             mount_factory):
    m = mount_factory(fake, env_extra={"QSTASH_REGION": "EU_CENTRAL_1"})
    assert m.status()["state"] == "ready"
    err = m.stderr()
    assert "EU_CENTRAL_1_QSTASH_URL" in err and "using QSTASH_URL" in err


@pytest.mark.parametrize("region", ["AP_SOUTH_1", "EU", "us_east_2"])
def test_unknown_region_is_refused(tmp_path, fake, region):
    mp = str(tmp_path)
    r, t = timed_run(["-f", mp], url=fake.base_url,
                     env_extra={"QSTASH_REGION": region})
    assert_startup_failure(r, t, mp, "QSTASH_REGION", region,
                           "EU_CENTRAL_1", "US_EAST_1")
    assert fake.requests() == []


def test_help_documents_the_region_variables():
    r = run_dlqfs(["--help"])
    assert r.returncode == 0
    for var in ("QSTASH_REGION", "EU_CENTRAL_1", "US_EAST_1",
                "<REGION>_QSTASH_URL", "<REGION>_QSTASH_TOKEN"):
        assert var in r.stdout, var


def test_token_not_in_environ_when_from_token_file(tmp_path, fake,
                                                  mount_factory):
    tf = tmp_path / "tok"
    tf.write_text(TOKEN)
    os.chmod(str(tf), 0o400)
    m = mount_factory(fake, options=["token_file=%s" % tf], token="")
    with open("/proc/%d/environ" % m.proc.pid, "rb") as f:
        assert TOKEN.encode() not in f.read()
    with open("/proc/%d/cmdline" % m.proc.pid, "rb") as f:
        assert TOKEN.encode() not in f.read()
    assert TOKEN.encode() not in read_bytes(m.path(".dlqfs/status"))


# --------------------------------------------------------------------------
# 3. list requests: count, cursor, end of walk


def test_every_list_request_has_count_100_and_cursor_round_trips(
        fake_factory, mount_factory):
    fake = fake_factory(runs=250, end_cursor="empty")
    # the cursor protocol, one chain: the parallel walk is tested below
    m = mount_factory(fake, options=["walkers=1"])
    ids = fake.dlq_ids()
    assert sorted(os.listdir(m.path("runs"))) == sorted(ids)
    st = m.status()
    assert st["runs"] == 250
    assert st["pages"] == 3

    reqs = list_requests(fake)
    for e in reqs:
        assert e["method"] == "GET"
        assert e["status"] == 200, e
        counts = [v for k, v in e["query"] if k == "count"]
        assert counts == ["100"], e
        assert len([k for k, _ in e["query"] if k == "cursor"]) <= 1

    # the pre-mount check (first page) + the walk (3 pages)
    assert len(reqs) == 4, [e["raw_query"] for e in reqs]
    walk = reqs[1:]
    cursors = [dict(e["query"]).get("cursor", "") for e in walk]
    # the fake's cursor after page k is the position of its last entry
    keys = sorted(((fake.get(i)["createdAt"], i) for i in ids), reverse=True)
    expected = ["", fakeapi.encode_cursor(*keys[99]),
                fakeapi.encode_cursor(*keys[199])]
    assert cursors == expected
    # the cursor starts with "+/+/" and ends with "==": sent encoded
    for e in walk[1:]:
        raw = dict(p.split("=", 1) for p in e["raw_query"].split("&"))
        assert raw["cursor"].startswith("%2B%2F%2B%2F"), e["raw_query"]
        assert raw["cursor"].endswith("%3D%3D"), e["raw_query"]
        assert "+" not in raw["cursor"] and "/" not in raw["cursor"]


@pytest.mark.parametrize("mode", ["empty", "null", "absent"])
@pytest.mark.parametrize("exact_end", [True, False])
def test_every_end_cursor_form_ends_the_walk(fake_factory, mount_factory,
                                             mode, exact_end):
    fake = fake_factory(runs=200, end_cursor=mode, exact_end=exact_end)
    m = mount_factory(fake, options=["walkers=1"])
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())
    st = m.status()
    assert st["state"] == "ready" and st["runs"] == 200
    # exact_end=False: a full page carries a cursor, the end is an empty page
    assert st["pages"] == (2 if exact_end else 3)
    # and it really stopped: no request after the end, on a refresh too
    n = len(list_requests(fake))
    st = m.refresh()
    assert st["runs"] == 200 and st["state"] == "ready"
    assert len(list_requests(fake)) == n + st["pages"]


def test_rotating_end_cursor_forms_over_refreshes(fake_factory,
                                                  mount_factory):
    fake = fake_factory(runs=130, end_cursor="rotate")
    m = mount_factory(fake)
    for _ in range(3):
        st = m.refresh()
        assert st["state"] == "ready" and st["runs"] == 130
    assert st["walks_failed"] == 0


def test_cursor_with_unicode_dlq_id_round_trips(fake_factory, mount_factory):
    """A cursor's payload holds the dlqId; with non-ASCII, '&' and '='
    in ids the walk still completes (cursor percent-encoded)."""
    msgs = fakeapi.generate(230, 5, large=False)
    for i, msg in enumerate(msgs):
        if i % 3 == 0:
            msg["dlqId"] = "%s-é&x=%d+/" % (msg["dlqId"], i)
    fake = fake_factory(messages=msgs)
    m = mount_factory(fake, options=["walkers=1"])
    st = m.status()
    assert st["state"] == "ready" and st["runs"] == 230
    assert st["pages"] == 3
    assert all(e["status"] == 200 for e in list_requests(fake))


# --------------------------------------------------------------------------
# 4. scope options


def _scope_cases(msgs):
    """(id, options, expected filter pairs, predicate) built from the data."""
    by_url = {}
    for m in msgs:
        by_url.setdefault(m.get("workflowUrl"), []).append(m)
    pay = "https://app.example.com/api/workflows/payments"
    rep = "https://jobs.example.org/workflow/reports-nightly?region=eu"
    ordered = sorted(msgs, key=lambda m: (m["createdAt"], m["dlqId"]))
    lo = ordered[40]["createdAt"]
    hi = ordered[120]["createdAt"]
    run_a = ordered[10]["workflowRunId"]
    wca = ordered[77]["workflowCreatedAt"]
    return [
        ("one-label", ["label=team/payments"], [("label", "team/payments")],
         lambda m: "team/payments" in run_labels(m)),
        ("two-labels-or", ["label=billing", "label=équipe"],
         [("label", "billing"), ("label", "équipe")],
         lambda m: bool(run_labels(m) & {"billing", "équipe"})),
        ("url-and-label", ["workflow_url=" + pay, "label=priority:high"],
         [("label", "priority:high"), ("workflowUrl", pay)],
         lambda m: m.get("workflowUrl") == pay
         and "priority:high" in run_labels(m)),
        ("url-with-query", ["workflow_url=" + rep], [("workflowUrl", rep)],
         lambda m: m.get("workflowUrl") == rep),
        ("from-to-inclusive", ["from=%d" % lo, "to=%d" % hi],
         [("fromDate", str(lo)), ("toDate", str(hi))],
         lambda m: lo <= m["createdAt"] <= hi),
        ("from-only", ["from=%d" % hi], [("fromDate", str(hi))],
         lambda m: m["createdAt"] >= hi),
        ("run-id", ["workflow_run_id=" + run_a],
         [("workflowRunId", run_a)],
         lambda m: m.get("workflowRunId") == run_a),
        ("created-at", ["workflow_created_at=%d" % wca],
         [("workflowCreatedAt", str(wca))],
         lambda m: m.get("workflowCreatedAt") == wca),
        ("state", ["failure_function_state=CALLBACK_FAIL"],
         [("failureFunctionState", "CALLBACK_FAIL")],
         lambda m: m.get("failureFunctionState") == "CALLBACK_FAIL"),
        ("caller-ip-v6", ["caller_ip=2001:db8::5", "caller_ip=192.0.2.44"],
         [("callerIp", "192.0.2.44"), ("callerIp", "2001:db8::5")],
         lambda m: m.get("callerIP") in ("2001:db8::5", "192.0.2.44")),
        ("flow-control-key", ["flow_control_key=stripe/webhooks"],
         [("flowControlKey", "stripe/webhooks")],
         lambda m: m.get("flowControlKey") == "stripe/webhooks"),
    ]


SCOPE_IDS = [c[0] for c in _scope_cases(fakeapi.generate(300, 3,
                                                         large=False))]


@pytest.mark.parametrize("case", SCOPE_IDS)
def test_scope_option(fake_factory, mount_factory, case):
    fake = fake_factory(runs=300, seed=3)
    msgs = fake.messages()
    _, options, pairs, pred = [c for c in _scope_cases(msgs)
                               if c[0] == case][0]
    expected = {m["dlqId"] for m in msgs if pred(m)}
    assert 0 < len(expected) < len(msgs), "case selects nothing/everything"
    if case == "from-to-inclusive":
        ordered = sorted(msgs, key=lambda m: (m["createdAt"], m["dlqId"]))
        assert ordered[40]["dlqId"] in expected
        assert ordered[120]["dlqId"] in expected

    m = mount_factory(fake, options=options + ["walkers=1"])
    assert set(os.listdir(m.path("runs"))) == expected
    st = m.status()
    assert st["runs"] == len(expected) and st["state"] == "ready"
    scope = {}
    for k, v in pairs:
        scope.setdefault(k, []).append(v)
    assert {k: sorted(v) for k, v in st["scope"].items()} == \
        {k: sorted(v) for k, v in scope.items()}

    reqs = list_requests(fake)
    assert reqs
    for e in reqs:
        assert e["status"] == 200, e
        assert filter_pairs(e) == sorted(pairs), e["raw_query"]
        assert [v for k, v in e["query"] if k == "count"] == ["100"]


def test_status_is_valid_json_whatever_a_scope_value_holds(fake_factory,
                                                          mount_factory):
    """A scope value is bytes from the command line: .dlqfs/status stays
    UTF-8 JSON (U+FFFD for what is not UTF-8, \\u00XX for control bytes)."""
    fake = fake_factory(runs=20)
    # \udcXX: the bytes 0xXX on the command line (surrogateescape)
    m = mount_factory(fake, options=["label=caf\udce9\udcff",
                                     "label=tab\tquote\"",
                                     "label=équipe"])
    with open(m.path(".dlqfs/status"), "rb") as f:
        raw = f.read()
    st = json.loads(raw.decode("utf-8"))  # strict: raises if not UTF-8
    assert st["scope"]["label"] == ["caf\ufffd\ufffd", "tab\tquote\"",
                                    "équipe"]
    assert st["state"] == "ready"


def test_scope_spanning_several_pages_keeps_filters_on_every_page(
        fake_factory, mount_factory):
    fake = fake_factory(runs=600, seed=4)
    msgs = fake.messages()
    expected = {m["dlqId"] for m in msgs
                if run_labels(m) & {"billing", "payments"}}
    assert len(expected) > 200
    m = mount_factory(fake, options=["label=billing", "label=payments",
                                     "walkers=1"])
    assert set(os.listdir(m.path("runs"))) == expected
    walk = list_requests(fake)[1:]
    assert len(walk) >= 3
    for e in walk:
        assert filter_pairs(e) == [("label", "billing"),
                                   ("label", "payments")]


def test_parallel_walk_keeps_the_scope(fake_factory, mount_factory):
    """The default walk cuts the scope into createdAt ranges walked side by
    side: it must still return exactly the scoped runs, every request must
    keep the user's filters, and no range may leave the user's dates."""
    fake = fake_factory(runs=1500, seed=8)
    msgs = fake.messages()
    created = sorted(m["createdAt"] for m in msgs)
    lo = created[100]
    expected = {m["dlqId"] for m in msgs if m["createdAt"] >= lo
                and run_labels(m) & {"billing", "payments"}}
    assert len(expected) > 300
    m = mount_factory(fake, options=["label=billing", "label=payments",
                                     "from=%d" % lo])
    assert set(os.listdir(m.path("runs"))) == expected
    st = m.status()
    assert st["runs"] == len(expected) and st["duplicate_entries"] >= 0
    walk = list_requests(fake)[1:]
    ranged = 0
    for e in walk:
        q = e["query"]
        assert [v for k, v in q if k == "label"] == ["billing", "payments"]
        froms = [int(v) for k, v in q if k == "fromDate"]
        assert len(froms) == 1 and froms[0] >= lo, e["raw_query"]
        tos = [int(v) for k, v in q if k == "toDate"]
        assert len(tos) <= 1
        ranged += bool(tos) or froms[0] > lo
    assert ranged > 0, "the walk was not cut into ranges"


# --------------------------------------------------------------------------
# 5. refresh


def test_refresh_via_file_sees_add_remove_update(fake_factory,
                                                 mount_factory):
    fake = fake_factory(runs=60)
    m = mount_factory(fake)
    ids = fake.dlq_ids()
    st0 = m.status()
    assert st0["state"] == "ready" and st0["generation"] >= 1
    assert st0["walks_ok"] == 1 and st0["walks_failed"] == 0
    assert st0["refresh_requested"] == 0 and st0["refresh_served"] == 0
    for k in ("last_refresh", "last_success"):
        assert ISO_Z.match(st0[k]), st0[k]
    assert st0["stale_since"] is None and st0["last_error"] is None

    gone, changed = ids[5], ids[10]
    old_state = fake.get(changed).get("failureFunctionState")
    new_state = "CALLBACK_CANCELED" if old_state != "CALLBACK_CANCELED" \
        else "CALLBACK_SUCCESS"
    before_json = json.loads(read_bytes(m.path("runs", changed,
                                               "message.json")))
    os.listdir(m.path("runs", gone))  # in the kernel's caches now

    added = new_message(fake, ids[0], "1795132799999-7",
                        fake.get(ids[0])["createdAt"] + 1)
    fake.add(added)
    fake.remove(gone)
    fake.update(changed, failureFunctionState=new_state)

    # no refresh yet: the snapshot has not moved
    assert sorted(os.listdir(m.path("runs"))) == sorted(ids)
    assert m.status()["generation"] == st0["generation"]

    st1 = m.refresh()
    assert st1["state"] == "ready"
    assert st1["refresh_requested"] == 1
    assert st1["refresh_served"] >= 1
    assert st1["generation"] == st0["generation"] + 1
    assert st1["walks_ok"] == 2 and st1["walks_failed"] == 0
    assert st1["runs"] == 60
    assert st1["last_success"] >= st0["last_success"]
    assert st1["last_success"] == st1["last_refresh"]

    listing = set(os.listdir(m.path("runs")))
    assert listing == set(fake.dlq_ids())
    assert added["dlqId"] in listing and gone not in listing
    assert not os.path.exists(m.path("runs", gone))
    assert not os.path.exists(m.path("runs", gone, "message.json"))
    got = json.loads(read_bytes(m.path("runs", added["dlqId"],
                                       "message.json")))
    assert got == added
    after_json = json.loads(read_bytes(m.path("runs", changed,
                                              "message.json")))
    assert after_json["failureFunctionState"] == new_state
    assert before_json.get("failureFunctionState") == old_state
    assert os.path.lexists(m.path("by-state", new_state, changed))
    if old_state:
        assert not os.path.lexists(m.path("by-state", old_state, changed))


def test_each_good_walk_increases_generation(mount):
    st = mount.status()
    for i in range(1, 4):
        nxt = mount.refresh()
        assert nxt["generation"] == st["generation"] + 1
        assert nxt["walks_ok"] == st["walks_ok"] + 1
        assert nxt["refresh_requested"] == st["refresh_requested"] + 1
        assert nxt["refresh_served"] == nxt["refresh_requested"]
        assert nxt["last_refresh"] >= st["last_refresh"]
        st = nxt


def test_refresh_asked_during_a_walk_gets_a_walk_of_its_own(fake_factory,
                                                           mount_factory):
    fake = fake_factory(runs=300, latency_ms=150)
    m = mount_factory(fake)
    st0 = m.status()
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1")
    m.wait(lambda s: s["walking"], timeout=5, what="walk 1")
    added = new_message(fake, fake.dlq_ids()[0], "1795132799996-2",
                        1795132799996)
    fake.add(added)  # walk 1 may or may not see it; walk 2 must
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("2")
    st = m.wait(lambda s: s["refresh_served"] >= 2 and not s["walking"],
                timeout=20, what="both requests served")
    assert st["refresh_requested"] == 2
    # walk 1 began before request 2 and cannot serve it: two more walks
    assert st["walks_ok"] == st0["walks_ok"] + 2
    assert st["generation"] == st0["generation"] + 2
    assert added["dlqId"] in os.listdir(m.path("runs"))


def test_refresh_via_sighup(fake_factory, mount_factory):
    fake = fake_factory(runs=40)
    m = mount_factory(fake)
    st0 = m.status()
    added = new_message(fake, fake.dlq_ids()[0], "1795132799998-3",
                        1795132799998)
    fake.add(added)
    fake.remove(fake.dlq_ids()[-1])
    os.kill(m.proc.pid, signal.SIGHUP)
    st1 = m.wait(lambda s: s["refresh_requested"] == 1
                 and s["refresh_served"] >= 1 and not s["walking"]
                 and s["generation"] > st0["generation"], timeout=15,
                 what="SIGHUP walk")
    assert st1["generation"] == st0["generation"] + 1
    assert st1["walks_ok"] == st0["walks_ok"] + 1
    assert st1["state"] == "ready"
    assert set(os.listdir(m.path("runs"))) == set(fake.dlq_ids())
    # several signals, each answered; the daemon keeps running
    for _ in range(3):
        os.kill(m.proc.pid, signal.SIGHUP)
        time.sleep(0.05)
    m.wait(lambda s: s["refresh_requested"] == 4
           and s["refresh_served"] == 4 and not s["walking"], timeout=15,
           what="SIGHUP walks")
    assert m.proc.poll() is None
    assert is_mounted(m.mountpoint)


def test_periodic_refresh_without_asking(fake_factory, mount_factory):
    fake = fake_factory(runs=30)
    m = mount_factory(fake, refresh=1)
    st0 = m.status()
    assert st0["refresh_seconds"] == 1
    added = new_message(fake, fake.dlq_ids()[0], "1795132799997-1",
                        1795132799997)
    fake.add(added)
    wait_for(lambda: added["dlqId"] in os.listdir(m.path("runs")), 10,
             "the timer walk to show the added run")
    st1 = m.status()
    assert st1["generation"] > st0["generation"]
    assert st1["walks_ok"] > st0["walks_ok"]
    assert st1["refresh_requested"] == 0
    assert st1["runs"] == 31
    # and it keeps going
    g = st1["generation"]
    m.wait(lambda s: s["generation"] >= g + 2, timeout=10,
           what="two more timer walks")


# --------------------------------------------------------------------------
# 6. API down during a refresh


def test_api_down_serves_last_snapshot_then_recovers(fake_factory,
                                                     mount_factory):
    fake = fake_factory(runs=60)
    msgs = fake.messages()
    m = mount_factory(fake)
    ids = sorted(fake.dlq_ids())
    contents = {i: read_bytes(m.path("runs", i, "message.json"))
                for i in ids[:10]}
    st0 = m.status()
    port = fake.port

    fake.stop()
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    want = m.status()["refresh_requested"]

    # while the failing walk retries, the tree answers at once
    checks = 0
    while True:
        s, dt = timed(m.status)
        assert dt < 1.0
        listing, dt = timed(os.listdir, m.path("runs"))
        assert dt < 1.0, "listing took %.2fs during the failing walk" % dt
        assert sorted(listing) == ids
        data, dt = timed(read_bytes, m.path("runs", ids[checks % 10],
                                            "message.json"))
        assert dt < 1.0
        assert data == contents[ids[checks % 10]]
        checks += 1
        if s["refresh_served"] >= want and not s["walking"]:
            break
        assert checks < 2000, "the failing walk never finished"
        time.sleep(0.1)

    st1 = m.status()
    assert st1["state"] == "stale"
    assert isinstance(st1["last_error"], str) and len(st1["last_error"]) > 5
    assert TOKEN not in st1["last_error"]
    assert st1["stale_since"] is not None and ISO_Z.match(st1["stale_since"])
    assert st1["stale_since"] >= st0["last_success"]
    assert st1["walks_failed"] == st0["walks_failed"] + 1
    assert st1["walks_ok"] == st0["walks_ok"]
    assert st1["generation"] == st0["generation"]
    assert st1["last_success"] == st0["last_success"]
    assert st1["runs"] == 60
    for i in ids[:10]:
        (data, dt) = timed(read_bytes, m.path("runs", i, "message.json"))
        assert dt < 1.0 and data == contents[i]
    (listing, dt) = timed(os.listdir, m.path("runs"))
    assert dt < 1.0 and sorted(listing) == ids
    # views still answer
    assert os.listdir(m.path("by-date"))

    fake2 = fakeapi.FakeAPI(token=TOKEN, port=port, messages=msgs)
    fake2.start()
    try:
        st2 = m.refresh()
        assert st2["state"] == "ready"
        assert st2["last_error"] is None
        assert st2["stale_since"] is None
        assert st2["generation"] == st0["generation"] + 1
        assert st2["walks_ok"] == st0["walks_ok"] + 1
        assert st2["last_success"] > st0["last_success"]
        assert sorted(os.listdir(m.path("runs"))) == ids
        assert list_requests(fake2)
    finally:
        fake2.stop()


def test_failed_refresh_with_401_keeps_snapshot(fake_factory, mount_factory):
    """A token revoked after mounting: the walk fails fast, the snapshot
    stays."""
    fake = fake_factory(runs=40)
    m = mount_factory(fake)
    st0 = m.status()
    fake.configure(token="rotated-token")
    st1 = m.refresh(timeout=20)
    assert st1["state"] == "stale"
    assert st1["last_error"] and "rotated-token" not in st1["last_error"]
    assert st1["runs"] == 40 and st1["generation"] == st0["generation"]
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())
    fake.configure(token=TOKEN)
    st2 = m.refresh()
    assert st2["state"] == "ready" and st2["last_error"] is None


# --------------------------------------------------------------------------
# 7. first walk gating


def test_first_walk_gates_runs_but_not_status(fake_factory, mount_factory):
    fake = fake_factory(runs=600, latency_ms=200)
    # one cursor chain, so that the walk takes a while (6 x 200 ms)
    m = mount_factory(fake, wait_ready=False, options=["walkers=1"])
    st, dt = timed(m.status)
    assert dt < 1.0
    assert st["state"] == "walking", st
    assert st["walking"] is True
    assert st["runs"] == 0 and st["generation"] == 0

    # more waiting readers than libfuse's default 10 worker threads
    procs = [subprocess.Popen(["sh", "-c", "ls runs | wc -l"],
                              cwd=m.mountpoint, stdout=subprocess.PIPE,
                              text=True) for _ in range(12)]
    try:
        seen_walking = False
        while any(p.poll() is None for p in procs):
            s, dt = timed(m.status)
            assert dt < 1.0, "status blocked %.2fs behind the first walk" % dt
            if s["state"] == "walking":
                seen_walking = True
                assert s["pages"] <= 6
            time.sleep(0.05)
        outs = [p.communicate(timeout=30)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert seen_walking
    assert outs == ["600"] * 12
    st = m.status()
    assert st["state"] == "ready" and st["runs"] == 600 and st["pages"] == 6


def test_single_threaded_first_walk_does_not_block_status(fake_factory,
                                                         mount_factory):
    """With -s there is one FUSE thread: a request waiting for the first
    walk must not hold it."""
    fake = fake_factory(runs=600, latency_ms=200)
    m = mount_factory(fake, wait_ready=False, extra_args=["-s"])
    p = subprocess.Popen(["sh", "-c", "ls runs | wc -l"], cwd=m.mountpoint,
                         stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        while p.poll() is None:
            s, dt = timed(m.status)
            assert dt < 1.0, "status blocked %.2fs with -s" % dt
            time.sleep(0.05)
        out = p.communicate(timeout=30)[0].strip()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == "600"


def test_first_walk_gates_lookups_too(fake_factory, mount_factory):
    fake = fake_factory(runs=400, latency_ms=200)
    rid = fake.dlq_ids()[-1]  # on the last page
    m = mount_factory(fake, wait_ready=False)
    assert m.status()["state"] == "walking"
    data = read_bytes(m.path("runs", rid, "message.json"))
    assert json.loads(data)["dlqId"] == rid
    assert m.status()["state"] == "ready"


def test_first_walk_failure_answers_waiting_requests(fake_factory,
                                                     mount_factory):
    """If the first walk fails, readers waiting for it get an error instead
    of hanging, and the status says why."""
    fake = fake_factory(runs=600, latency_ms=300)
    m = mount_factory(fake, wait_ready=False)
    fake.configure(token="revoked")
    p = subprocess.Popen(["ls", "runs"], cwd=m.mountpoint,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0
    st = m.status()
    assert st["state"] == "error", st
    assert st["last_error"]
    # status still answers and a later good walk serves the tree
    fake.configure(token=TOKEN)
    st = m.refresh()
    assert st["state"] == "ready" and st["runs"] == 600
    assert len(os.listdir(m.path("runs"))) == 600


# --------------------------------------------------------------------------
# 8. signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(fake, mount_factory, sig):
    m = mount_factory(fake)
    os.listdir(m.path("runs"))
    t0 = time.monotonic()
    rc = m.signal(sig, timeout=15)
    assert rc == 0, m.stderr()
    assert time.monotonic() - t0 < 10
    assert not is_mounted(m.mountpoint)
    assert not sanitizer_lines(m.stderr()), m.stderr()


def test_sigterm_during_first_walk(fake_factory, mount_factory):
    fake = fake_factory(runs=1000, latency_ms=500)
    m = mount_factory(fake, wait_ready=False)
    assert m.status()["state"] == "walking"
    waiter = subprocess.Popen(["ls", "runs"], cwd=m.mountpoint,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        assert waiter.poll() is None  # waiting for the first walk
        t0 = time.monotonic()
        rc = m.signal(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - t0
        assert rc == 0, m.stderr()
        assert elapsed < 4, "took %.1fs to stop" % elapsed
        assert not is_mounted(m.mountpoint)
        waiter.wait(timeout=10)  # released, whatever the answer
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert not sanitizer_lines(m.stderr()), m.stderr()


def test_unmount_during_refresh_walk(fake_factory, mount_factory):
    fake = fake_factory(runs=500, latency_ms=300)
    m = mount_factory(fake)
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("x")
    m.wait(lambda s: s["walking"], timeout=5, what="the refresh walk")
    t0 = time.monotonic()
    assert m.stop() == 0
    assert time.monotonic() - t0 < 4
    assert not is_mounted(m.mountpoint)


# --------------------------------------------------------------------------
# 9. mount.fuse3 and mount(8)


@pytest.fixture
def helper_env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.realpath(DLQFS), str(bindir / "dlqfs"))
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    os.chmod(str(tf), 0o600)
    asan_dir = tmp_path / "asan"
    asan_dir.mkdir()
    env = sanitizer_env(os.environ)
    env.pop("QSTASH_TOKEN", None)
    env.pop("QSTASH_URL", None)
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:log_path=" + \
        str(asan_dir / "asan")
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:log_path=" + \
        str(asan_dir / "ubsan")
    mp = tmp_path / "mnt"
    mp.mkdir()
    return {"bindir": str(bindir), "token_file": str(tf), "env": env,
            "mp": str(mp), "asan_dir": str(asan_dir)}


def daemon_pids(mountpoint):
    out = subprocess.run(["pgrep", "-f", "dlqfs.* %s( |$)" % re.escape(
        mountpoint)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def check_helper_mount(cmd, h, fake):
    mp = h["mp"]
    pids = []
    try:
        r = subprocess.run(cmd, env=h["env"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        assert is_mounted(mp)
        fields = mount_options(mp)
        assert fields[0] == "dlqfs"
        assert fields[2] == "fuse.dlqfs", fields
        assert "default_permissions" in fields[3].split(",")
        assert sorted(os.listdir(os.path.join(mp, "runs"))) == \
            sorted(fake.dlq_ids())
        with open(os.path.join(mp, ".dlqfs/status")) as f:
            st = json.load(f)
        assert st["state"] == "ready" and st["refresh_seconds"] == 3600
        pids = daemon_pids(mp)
        assert len(pids) == 1, pids
        with open("/proc/%d/cmdline" % pids[0], "rb") as f:
            assert TOKEN.encode() not in f.read()
        with open("/proc/%d/environ" % pids[0], "rb") as f:
            assert TOKEN.encode() not in f.read()
        assert all(e["auth"] == "bearer" for e in fake.requests())

        r = subprocess.run(["fusermount3", "-u", mp], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mp)
        wait_for(lambda: not pid_alive(pids[0]), 10, "the daemon to exit")
    finally:
        unmount(mp)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    reports = []
    for name in os.listdir(h["asan_dir"]):
        with open(os.path.join(h["asan_dir"], name), errors="replace") as f:
            reports.extend(sanitizer_lines(f.read()))
    assert not reports, reports


def test_mount_fuse3_helper(fake, helper_env):
    """What `mount -t fuse.dlqfs dlqfs MP -o ...` (or an fstab line) runs:
    mount.fuse3 finds `dlqfs` on PATH and runs it without -f."""
    h = helper_env
    cmd = ["mount.fuse3", "dlqfs", h["mp"], "-t", "fuse.dlqfs", "-o",
           "rw,url=%s,token_file=%s,refresh=3600" % (fake.base_url,
                                                     h["token_file"])]
    check_helper_mount(cmd, h, fake)


def test_mount_8_with_fuse_type(fake, helper_env):
    """Through mount(8) itself. mount(8) drops PATH from the helper's
    environment, so the program is named in the source (`PROG#SOURCE`),
    which mount.fuse3 runs the same way as for `-t fuse.dlqfs`."""
    h = helper_env
    prog = os.path.join(h["bindir"], "dlqfs")
    cmd = ["mount", "-t", "fuse", prog + "#dlqfs", h["mp"], "-o",
           "url=%s,token_file=%s,refresh=3600" % (fake.base_url,
                                                  h["token_file"])]
    check_helper_mount(cmd, h, fake)


def test_mount_8_failure_leaves_no_mount(helper_env):
    h = helper_env
    prog = os.path.join(h["bindir"], "dlqfs")
    port = closed_loopback_port()
    r = subprocess.run(["mount", "-t", "fuse", prog + "#dlqfs", h["mp"],
                        "-o", "url=http://127.0.0.1:%d,token_file=%s"
                        % (port, h["token_file"])],
                       env=h["env"], capture_output=True, text=True,
                       timeout=STARTUP_LIMIT_S)
    try:
        assert r.returncode != 0
        assert "dlqfs: " in r.stderr and str(port) in r.stderr
        assert not is_mounted(h["mp"])
        assert daemon_pids(h["mp"]) == []
    finally:
        unmount(h["mp"])


# --------------------------------------------------------------------------
# 10. privacy


def test_mount_is_private_by_default(mount):
    fields = mount_options(mount.mountpoint)
    assert fields is not None
    assert fields[2] == "fuse.dlqfs"
    opts = fields[3].split(",")
    assert "allow_other" not in opts
    assert "default_permissions" in opts
    st = os.stat(mount.mountpoint)
    assert st.st_mode & 0o7777 == 0o555
    assert st.st_uid == os.getuid()


def test_standard_fuse_options_pass_through(fake, mount_factory):
    m = mount_factory(fake, options=["ro", "allow_other"])
    opts = mount_options(m.mountpoint)[3].split(",")
    assert "ro" in opts and "allow_other" in opts
    assert "default_permissions" in opts
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())


def test_other_users_cannot_read_the_mount(fake):
    base = tempfile.mkdtemp(prefix="dlqfs-priv-")
    os.chmod(base, 0o755)
    mp = os.path.join(base, "mnt")
    os.mkdir(mp)
    os.chmod(mp, 0o755)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    m = None
    try:
        # control: the same user can list the unmounted directory
        r = subprocess.run(nobody + ["ls", mp], capture_output=True)
        assert r.returncode == 0, r.stderr
        m = Mount(fake, mp)
        assert os.listdir(os.path.join(mp, "runs"))
        r = subprocess.run(nobody + ["ls", os.path.join(mp, "runs")],
                           capture_output=True, text=True)
        assert r.returncode != 0
        assert "denied" in r.stderr.lower()
        r = subprocess.run(nobody + ["cat", os.path.join(mp, ".dlqfs",
                                                         "status")],
                           capture_output=True, text=True)
        assert r.returncode != 0
        m.stop(check=False)
        assert m.returncode == 0, m.stderr()
        assert not m.sanitizer_reports(), m.stderr()
    finally:
        if m is not None:
            m.stop(check=False)
        unmount(mp)
        shutil.rmtree(base, ignore_errors=True)
