"""dlqfs against each way the real service may answer (README, "What dlqfs
assumes about the API").

Upstash's docs and clients disagree in places; the fake API offers each
reading as an option, and every test here mounts dlqfs against one of
them:

- the state top-level, only in failureCallbackInfo, or both;
- filters the server does not know (older names, ignored or refused);
- a burst 429 whose reset is in milliseconds, and the daily quota;
- a bulk resume answered 404 that acted on the ids it found, or on none;
- comma-separated ids; the other resume/restart headers;
- a walk whose requests are being retried.
"""
import errno
import json
import os
import re
import time

import pytest

import fakeapi
from conftest import TOKEN

RW = ["allow_delete", "allow_resume"]


def state_of(m):
    """A run's state as dlqfs reads it: failureFunctionState, else
    failureCallbackInfo.state."""
    s = m.get("failureFunctionState")
    if isinstance(s, str):
        return s
    info = m.get("failureCallbackInfo")
    if isinstance(info, dict) and isinstance(info.get("state"), str):
        return info["state"]
    return None


def runs(m):
    return sorted(os.listdir(m.path("runs")))


def write(path, data):
    """Writes @data in one write; returns None or the errno of the write
    or of close."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, data.encode())
    except OSError as e:
        try:
            os.close(fd)
        except OSError:
            pass  # the write said it already
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return None


def log_lines(m):
    with open(m.path(".dlqfs/actions.log")) as f:
        return [json.loads(line) for line in f]


def wait_for(pred, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


# --------------------------------------------------------------------------
# 1. the state from either field


@pytest.mark.parametrize("shape", ["top", "nested", "both"])
def test_by_state_from_either_field(fake_factory, mount_factory, shape):
    fake = fake_factory(runs=300, state_field=shape)
    msgs = fake.messages()
    if shape == "nested":
        assert not any("failureFunctionState" in m for m in msgs)
    want = {}
    for m in msgs:
        if state_of(m):
            want.setdefault(state_of(m), set()).add(m["dlqId"])
    assert want.get("CALLBACK_FAIL"), "the data has no CALLBACK_FAIL"
    m = mount_factory(fake)
    assert sorted(os.listdir(m.path("by-state"))) == sorted(want)
    for st, ids in want.items():
        assert set(os.listdir(m.path("by-state", st))) == ids, st


@pytest.mark.parametrize("shape", ["nested", "both"])
def test_state_scope_from_either_field(fake_factory, mount_factory, shape):
    fake = fake_factory(runs=300, state_field=shape)
    want = {m["dlqId"] for m in fake.messages()
            if state_of(m) == "CALLBACK_FAIL"}
    m = mount_factory(fake, options=["failure_function_state=CALLBACK_FAIL"])
    assert set(runs(m)) == want
    assert m.status()["out_of_scope_entries"] == 0


# --------------------------------------------------------------------------
# 2. a filter the server ignores never widens the tree

IP = "198.51.100.23"


@pytest.mark.parametrize("variant", [
    {"filter_names": "legacy", "unknown_params": "ignore"},
    {"ignored_params": ["callerIp"]},
], ids=["legacy-names-ignored", "callerIp-ignored"])
def test_an_ignored_filter_never_widens_the_tree(fake_factory, mount_factory,
                                                 variant):
    fake = fake_factory(runs=300, **variant)
    msgs = fake.messages()
    want = {m["dlqId"] for m in msgs if m.get("callerIP") == IP}
    assert 0 < len(want) < len(msgs)
    m = mount_factory(fake, options=["caller_ip=" + IP])
    assert set(runs(m)) == want
    st = m.status()
    assert st["runs"] == len(want)
    assert st["out_of_scope_entries"] == len(msgs) - len(want)
    assert st["ignored_filters"] == ["callerIp"]
    # every request still asked for the filter (it is the server's fault)
    lists = [e for e in fake.requests() if e["path"] == fakeapi.LIST_PATH]
    assert lists and all(("callerIp", IP) in e["query"] for e in lists)
    # said once on stderr, whatever the number of walks
    m.refresh()
    m.refresh()
    assert set(runs(m)) == want
    err = m.stderr()
    assert err.count("seems to ignore the callerIp filter") == 1, err
    assert "caller_ip" in err


def test_an_ignored_state_filter_keeps_the_scope(fake_factory, mount_factory):
    """A server of the older names ignores failureFunctionState: the
    state filter is applied to what it sends, from either field."""
    fake = fake_factory(runs=300, state_field="nested", filter_names="legacy",
                        unknown_params="ignore")
    want = {m["dlqId"] for m in fake.messages()
            if state_of(m) in ("CALLBACK_FAIL", "CALLBACK_CANCELED")}
    m = mount_factory(fake, options=["failure_function_state=CALLBACK_FAIL",
                                     "failure_function_state=CALLBACK_CANCELED",
                                     "label=payments"])
    want &= {m2["dlqId"] for m2 in fake.messages()
             if "payments" in (m2.get("labels") if "labels" in m2
                               else [m2.get("label")])}
    assert set(runs(m)) == want
    assert m.status()["ignored_filters"] == ["failureFunctionState"]


def test_a_refused_filter_fails_the_mount_with_its_name(tmp_path,
                                                        fake_factory):
    """A server that rejects the parameter it does not know (the older
    names, rejected): the mount fails with one line that names it."""
    from conftest import run_dlqfs
    fake = fake_factory(runs=20, filter_names="legacy")
    r = run_dlqfs(["-f", "-o", "url=%s,caller_ip=%s" % (fake.base_url, IP),
                   str(tmp_path)], timeout=30)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "HTTP 400" in lines[0] \
        and "callerIp" in lines[0], r.stderr


# --------------------------------------------------------------------------
# 4. the burst limit and the daily quota


def test_burst_reset_in_milliseconds_is_waited_for(fake_factory,
                                                   mount_factory):
    fake = fake_factory(runs=250)
    m = mount_factory(fake, options=["walkers=1", "retries=2"])
    fake.clear_requests()
    fake.inject("rate_limit", reset_in=1.5, reset_unit="ms", after=1)
    st = m.refresh()
    assert st["state"] == "ready" and st["last_error"] is None
    lists = [e for e in fake.requests() if e["path"] == fakeapi.LIST_PATH]
    i = [k for k, e in enumerate(lists) if e["status"] == 429][0]
    gap = lists[i + 1]["time"] - lists[i]["time"]
    # the reset is 1 to 1.5 s after the 429 (rounded up to a second in
    # ms); before, a 13-digit reset was no value and the retry came after
    # the first backoff (0.25-0.5 s)
    assert gap >= 0.9, gap


def test_daily_quota_stops_everything_until_it_resets(fake_factory,
                                                      mount_factory):
    fake = fake_factory(runs=120)
    m = mount_factory(fake, options=RW + ["walkers=1"], refresh=1)
    fake.inject("rate_limit", kind="daily", reset_in=4, limit=1000)
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    st = m.wait(lambda s: s["state"] == "stale", what="stale")
    assert "daily" in st["last_error"], st["last_error"]
    q = st["daily_quota"]
    assert q and q["reset_known"] and q["limit"] == 1000, q
    first = fake.stats()["requests"]
    # refreshes tick every second and an action is asked for: nothing is
    # sent while the quota is exhausted
    victim = runs(m)[0]
    assert write(m.path(".dlqfs/delete"), victim + "\n") == errno.EDQUOT
    line = [l for l in log_lines(m) if l.get("dlqId") == victim][-1]
    assert line["outcome"] == "error" and line["error"] == "EDQUOT"
    assert "daily request quota" in line["text"]
    time.sleep(2)
    st = m.status()
    assert st["state"] == "stale" and st["walks_failed"] >= 2
    assert fake.stats()["requests"] == first, "sent during the quota"
    assert fake.stats()["quota_refused"] == 0
    assert victim in runs(m)
    # after the reset the walk comes back by itself
    st = m.wait(lambda s: s["state"] == "ready", timeout=20, what="ready")
    assert st["daily_quota"] is None and st["last_error"] is None
    assert write(m.path(".dlqfs/delete"), victim + "\n") is None
    assert victim not in runs(m)


def test_daily_quota_without_a_reset_waits_for_a_probe(fake_factory,
                                                       mount_factory):
    fake = fake_factory(runs=50)
    m = mount_factory(fake, options=["walkers=1"], refresh=1)
    fake.inject("rate_limit", kind="daily", reset=False, reset_in=1)
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    st = m.wait(lambda s: s["state"] == "stale", what="stale")
    assert st["daily_quota"]["reset_known"] is False
    first = fake.stats()["requests"]
    time.sleep(2.5)  # the fake's quota is over; dlqfs does not know it
    assert fake.stats()["requests"] == first
    assert m.status()["state"] == "stale"
    assert sorted(runs(m)) == sorted(fake.dlq_ids())


# --------------------------------------------------------------------------
# 5, 6, 8. actions


@pytest.mark.parametrize("bulk_404", ["partial", "atomic"])
def test_bulk_404_never_acts_on_an_id_twice(fake_factory, mount_factory,
                                            bulk_404):
    """A bulk resume answered 404 may have acted on the ids it found (the
    docs do not say): none is sent again, and each is logged unknown."""
    fake = fake_factory(runs=60, bulk_404=bulk_404, resumed_leave=False)
    m = mount_factory(fake, options=RW)
    ids = runs(m)[:4]
    fake.remove(ids[3])  # gone from the server; the tree still lists it
    assert write(m.path(".dlqfs/resume"), "\n".join(ids) + "\n") \
        == errno.ENOENT
    counts = fake.acted_counts("resume")
    assert all(n == 1 for n in counts.values()), counts
    if bulk_404 == "partial":
        assert set(counts) == set(ids[:3])
    else:
        assert counts == {}
    calls = [a for a in fake.actions() if a["action"] == "resume"]
    assert len(calls) == 1 and calls[0]["bulk"] and calls[0]["status"] == 404
    lines = {l["dlqId"]: l for l in log_lines(m)}
    for i in ids:
        assert lines[i]["outcome"] == "unknown", lines[i]
        assert "not sent again" in lines[i]["text"]
    assert fake.unscoped() == 0


def test_an_unlisted_id_goes_alone(fake_factory, mount_factory):
    """An id the tree does not list is sent on its own: its 404 is
    definite, and the others' outcome stays known."""
    fake = fake_factory(runs=60, bulk_404="partial", resumed_leave=False)
    m = mount_factory(fake, options=RW)
    ids = runs(m)[:3]
    assert write(m.path(".dlqfs/resume"),
                 "\n".join(ids + ["1700000000000-9"]) + "\n") == errno.ENOENT
    calls = [a for a in fake.actions() if a["action"] == "resume"]
    assert [c["bulk"] for c in calls] == [False, True]
    assert calls[0]["dlqIds"] == ["1700000000000-9"]
    assert sorted(calls[1]["dlqIds"]) == ids
    assert fake.acted_counts("resume") == {i: 1 for i in ids}
    lines = {l["dlqId"]: l for l in log_lines(m)}
    assert lines["1700000000000-9"]["outcome"] == "error"
    assert lines["1700000000000-9"]["error"] == "ENOENT"
    assert all(lines[i]["outcome"] == "ok" for i in ids)


def test_an_id_with_a_comma_is_refused(fake_factory, mount_factory):
    """The API reads dlqIds=a,b as two ids: a line "a,b" is refused before
    anything is sent, and deletes nothing."""
    fake = fake_factory(runs=30)
    assert fake.config()["comma_lists"] is True
    m = mount_factory(fake, options=RW)
    a, b = runs(m)[:2]
    assert write(m.path(".dlqfs/delete"), "%s,%s\n" % (a, b)) == errno.EINVAL
    assert write(m.path(".dlqfs/delete"),
                 "%s\nruns/%s,%s\n" % (a, a, b)) == errno.EINVAL
    assert fake.actions() == []
    assert a in fake.dlq_ids() and b in fake.dlq_ids()
    assert a in runs(m) and b in runs(m)


def test_the_other_resume_headers(fake_factory, mount_factory):
    fake = fake_factory(runs=30)
    m = mount_factory(fake, options=RW)
    ids = runs(m)[:2]
    text = ("retry_delay=pow(2, retried) * 1000\nlabel=payments,billing\n"
            "failure_callback=https://app.example.com/api/failure\n"
            "retries=2\n" + "\n".join(ids) + "\n")
    assert write(m.path(".dlqfs/restart"), text) is None
    call = [a for a in fake.actions() if a["action"] == "restart"][-1]
    h = call["headers"]
    assert h["Upstash-Retry-Delay"] == "pow(2, retried) * 1000"
    assert h["Upstash-Label"] == "payments,billing"
    assert h["Upstash-Failure-Callback"] == \
        "https://app.example.com/api/failure"
    assert h["Upstash-Retries"] == "2"
    for bad in ("failure_callback=ftp://x\n", "label=,x\n",
                "retry_delay=\u00e9\n"):
        assert write(m.path(".dlqfs/resume"), bad + ids[0] + "\n") \
            == errno.EINVAL, bad
    assert len(fake.actions()) == 1


# --------------------------------------------------------------------------
# 9. a failing walk shows at once

TRY_RE = re.compile(r"HTTP 500 from http://127\.0\.0\.1:\d+: .+ "
                    r"\(try (\d) of 5\)\Z")


def test_status_says_retrying_while_a_request_is_retried(fake_factory,
                                                         mount_factory):
    fake = fake_factory(runs=250)
    m = mount_factory(fake, options=["walkers=1"])
    assert m.status()["retrying"] is None
    fake.inject("status", code=500, message="internal error", times=3,
                after=1)
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    seen = set()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        st = m.status()
        if st["retrying"]:
            mt = TRY_RE.match(st["retrying"])
            assert mt, st["retrying"]
            assert st["state"] == "ready" and st["walking"]
            seen.add(int(mt.group(1)))
        elif seen and not st["walking"]:
            break
        time.sleep(0.01)
    assert seen and seen <= {1, 2, 3}, seen
    st = m.status()
    assert st["state"] == "ready" and st["retrying"] is None
    assert st["last_error"] is None
