"""Actions: delete, resume, restart and callback through the mount
(README, "Acting on runs").

- Read-only by default: every mutating call is EROFS and nothing reaches the
  API; -o allow_delete and -o allow_resume each open their own verbs.
- rmdir runs/<id> and rm <view>/<value>/<id> delete that run (single
  endpoint); writes to .dlqfs/<verb> act on exactly the ids written, in bulk
  requests of at most 50.
- The run leaves the tree at once; the next walk after that is the truth.
- .dlqfs/actions.log holds one JSON line per id and action.
- Never an unscoped bulk call: every test ends by asserting the fake API
  received none, whatever was written.
"""
import errno
import json
import os
import subprocess
import time

import pytest

from conftest import unmount  # noqa: F401  (fixtures unmount in finally)

RW = ["allow_delete", "allow_resume"]


@pytest.fixture
def fake(fake_factory):
    f = fake_factory(runs=120)
    yield f
    assert f.unscoped() == 0, [a for a in f.actions() if a["unscoped"]]


def runs(m):
    return sorted(os.listdir(m.path("runs")))


def write(path, data, chunks=None):
    """Writes @data (str) in one write, or in @chunks pieces; returns None
    or the errno of the first failing write (or of close)."""
    data = data.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as e:
        return e.errno
    try:
        pieces = [data] if not chunks else \
            [data[i:i + chunks] for i in range(0, len(data), chunks)]
        for p in pieces:
            try:
                os.write(fd, p)
            except OSError as e:
                return e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            return e.errno
    return None


def eventually(pred, tries=100):
    for _ in range(tries):
        if pred():
            return
        time.sleep(0.01)
    assert pred()


def log_lines(m):
    with open(m.path(".dlqfs/actions.log")) as f:
        return [json.loads(line) for line in f]


def sent_ids(fake, action=None):
    return [i for a in fake.actions() if action in (None, a["action"])
            for i in a["dlqIds"]]


# --------------------------------------------------------------------------
# read-only by default

def test_read_only_by_default(fake, mount_factory):
    m = mount_factory(fake)
    r = runs(m)
    view = os.listdir(m.path("by-status"))[0]
    link = os.listdir(m.path("by-status", view))[0]
    with pytest.raises(OSError) as e:
        os.rmdir(m.path("runs", r[0]))
    assert e.value.errno == errno.EROFS
    with pytest.raises(OSError) as e:
        os.unlink(m.path("by-status", view, link))
    assert e.value.errno == errno.EROFS
    for verb in ("delete", "resume", "restart", "callback"):
        assert write(m.path(".dlqfs", verb), r[0] + "\n") == errno.EROFS
    assert fake.actions() == []
    assert runs(m) == r
    assert os.path.getsize(m.path(".dlqfs/actions.log")) == 0


def test_each_option_opens_its_own_verbs(fake, mount_factory):
    m = mount_factory(fake, options=["allow_delete"])
    r = runs(m)
    for verb in ("resume", "restart", "callback"):
        assert write(m.path(".dlqfs", verb), r[0] + "\n") == errno.EROFS
    assert fake.actions() == []
    m2 = mount_factory(fake, options=["allow_resume"])
    with pytest.raises(OSError) as e:
        os.rmdir(m2.path("runs", r[0]))
    assert e.value.errno == errno.EROFS
    assert write(m2.path(".dlqfs/delete"), r[0] + "\n") == errno.EROFS
    assert fake.actions() == []


def test_other_changes_stay_read_only(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    files = os.listdir(m.path("runs", r[0]))
    for f in (lambda: os.unlink(m.path("runs", r[0], files[0])),
              lambda: os.rmdir(m.path("by-status",
                                      os.listdir(m.path("by-status"))[0])),
              lambda: os.mkdir(m.path("runs", "new")),
              lambda: os.rename(m.path("runs", r[0]), m.path("runs", "x"))):
        with pytest.raises(OSError) as e:
            f()
        assert e.value.errno == errno.EROFS
    assert fake.actions() == []


# --------------------------------------------------------------------------
# delete

def test_rmdir_deletes_one_run_and_it_leaves_the_tree(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    victim = r[5]
    msg = fake.get(victim)
    os.rmdir(m.path("runs", victim))
    assert victim not in runs(m)
    assert not os.path.exists(m.path("runs", victim))
    assert victim not in fake.dlq_ids()
    # gone from its views at once too
    status = str(msg.get("responseStatus"))
    eventually(lambda: not os.path.isdir(m.path("by-status", status)) or
               victim not in os.listdir(m.path("by-status", status)))
    (call,) = fake.actions()
    assert (call["method"], call["bulk"], call["dlqIds"]) == \
        ("DELETE", False, [victim])
    (line,) = log_lines(m)
    assert line["verb"] == "delete" and line["dlqId"] == victim
    assert line["outcome"] == "ok" and line["status"] == 200
    # the next walk agrees
    m.refresh()
    assert victim not in runs(m)
    assert len(runs(m)) == len(r) - 1


def test_rm_of_a_view_link_deletes_exactly_the_runs_listed(fake,
                                                           mount_factory):
    m = mount_factory(fake, options=RW)
    before = set(runs(m))
    view = max(os.listdir(m.path("by-status")),
               key=lambda v: len(os.listdir(m.path("by-status", v))))
    listed = set(os.listdir(m.path("by-status", view)))
    assert len(listed) >= 2
    subprocess.run("rm %s/*" % m.path("by-status", view), shell=True,
                   check=True)
    # each rm drops its own entry at once; runs/ follows within moments
    # (an unlink holds its directory, so its reply cannot wait for the
    # notifier)
    eventually(lambda: set(runs(m)) == before - listed)
    assert set(sent_ids(fake, "delete")) == listed
    assert all(not a["bulk"] for a in fake.actions())
    try:  # the value may still be listed empty, or be gone by now
        left = os.listdir(m.path("by-status", view))
    except FileNotFoundError:
        left = []
    assert left == []


def test_rmdir_of_a_run_already_gone_is_enoent_and_it_leaves(fake,
                                                             mount_factory):
    m = mount_factory(fake, options=RW)
    victim = runs(m)[0]
    fake.remove(victim)  # deleted elsewhere since the walk
    with pytest.raises(OSError) as e:
        os.rmdir(m.path("runs", victim))
    assert e.value.errno == errno.ENOENT
    eventually(lambda: victim not in runs(m))
    (line,) = log_lines(m)
    assert line["outcome"] == "error" and line["status"] == 404


def test_bulk_delete_in_requests_of_at_most_50(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    chosen = r[:110]
    assert write(m.path(".dlqfs/delete"), "\n".join(chosen) + "\n") is None
    calls = fake.actions()
    assert [len(c["dlqIds"]) for c in calls] == [50, 50, 10]
    assert all(c["bulk"] and c["method"] == "DELETE" for c in calls)
    assert sorted(sent_ids(fake)) == sorted(chosen)
    assert runs(m) == r[110:]
    assert len(log_lines(m)) == 110
    m.refresh()
    assert runs(m) == r[110:]


def test_paths_ending_in_an_id_and_chunked_writes(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    label = sorted(os.listdir(m.path("by-label")))[0]
    listed = sorted(os.listdir(m.path("by-label", label)))
    out = subprocess.run("ls -d %s/*" % m.path("by-label", label), shell=True,
                         check=True, capture_output=True, text=True).stdout
    # small writes cut lines anywhere: acted on line by line
    assert write(m.path(".dlqfs/delete"), out, chunks=7) is None
    assert sorted(sent_ids(fake)) == listed
    assert not set(listed) & set(runs(m))


def test_a_last_line_without_newline_is_acted_on_at_close(fake,
                                                          mount_factory):
    m = mount_factory(fake, options=RW)
    victim = runs(m)[3]
    assert write(m.path(".dlqfs/delete"), victim) is None
    assert sent_ids(fake) == [victim]
    assert victim not in runs(m)


def test_unknown_id_fails_the_write_and_the_others_still_happen(
        fake, mount_factory):
    m = mount_factory(fake, options=RW)
    good = runs(m)[0]
    assert write(m.path(".dlqfs/delete"), "no-such-id\n") == errno.ENOENT
    assert write(m.path(".dlqfs/delete"),
                 "%s\nno-such-id\n" % good) == errno.ENOENT
    assert good not in fake.dlq_ids()
    assert good not in runs(m)
    outcomes = {(x["dlqId"], x["outcome"]) for x in log_lines(m)}
    assert ("no-such-id", "error") in outcomes


# --------------------------------------------------------------------------
# resume, restart, callback

def test_resume_single_with_options(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    victim = runs(m)[7]
    text = ("retries=3\ndelay=10s\nflow_control_key=k1\n"
            "flow_control_value=parallelism=3\n%s\n" % victim)
    assert write(m.path(".dlqfs/resume"), text) is None
    (call,) = fake.actions()
    assert call["action"] == "resume" and not call["bulk"]
    assert call["dlqIds"] == [victim]
    h = {k.lower(): v for k, v in call["headers"].items()}
    assert h["upstash-retries"] == "3"
    assert h["upstash-delay"] == "10s"
    assert h["upstash-flow-control-key"] == "k1"
    assert h["upstash-flow-control-value"] == "parallelism=3"
    (line,) = log_lines(m)
    assert line["verb"] == "resume" and line["outcome"] == "ok"
    assert line["workflowRunId"].startswith("wfr_")
    assert line["workflowRunId"] == call["response"]["workflowRunId"]
    assert victim not in runs(m)


def test_options_on_top_of_a_long_list_apply_to_every_id(fake,
                                                         mount_factory):
    """cat with options at the top of a list longer than one write: the
    kernel cuts it into writes anywhere, and every id gets the options."""
    m = mount_factory(fake, options=RW)
    chosen = runs(m)[:90]
    text = "retries=2\ndelay=5s\n" + "\n".join(chosen) + "\n"
    assert write(m.path(".dlqfs/resume"), text, chunks=64) is None
    calls = fake.actions()
    assert sorted(i for c in calls for i in c["dlqIds"]) == sorted(chosen)
    assert len(calls) > 1
    for c in calls:
        h = {k.lower(): v for k, v in c["headers"].items()}
        assert h.get("upstash-retries") == "2", c["dlqIds"]
        assert h.get("upstash-delay") == "5s", c["dlqIds"]


def test_restart_bulk(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    chosen = runs(m)[:60]
    assert write(m.path(".dlqfs/restart"), "\n".join(chosen) + "\n") is None
    calls = fake.actions()
    assert [(c["action"], c["bulk"], len(c["dlqIds"])) for c in calls] == \
        [("restart", True, 50), ("restart", True, 10)]
    lines = log_lines(m)
    assert len(lines) == 60
    assert all(x["outcome"] == "ok" and x["workflowRunId"].startswith("wfr_")
               for x in lines)
    assert not set(chosen) & set(runs(m))


def test_a_resumed_run_that_stays_in_the_dlq_comes_back_on_the_next_walk(
        fake, mount_factory):
    """The API does not say whether a resumed run leaves the DLQ: dlqfs
    hides it at once, and the walks after the action are the truth."""
    fake.configure(resumed_leave=False)
    m = mount_factory(fake, options=RW)
    victim = runs(m)[0]
    assert write(m.path(".dlqfs/resume"), victim + "\n") is None
    assert victim not in runs(m)
    m.refresh()  # may have listed it before the action: still hidden
    m.refresh()  # started after the action: the truth
    assert victim in runs(m)


def test_restart_single_and_resume_bulk_with_an_unknown_id(fake,
                                                          mount_factory):
    """An id the tree does not list goes to the single endpoint, first (its
    404 is definite); the listed ones go in bulk and still happen; the
    write says ENOENT. (A bulk 404 is in test_api_variants.py: nothing of
    it is sent again.)"""
    m = mount_factory(fake, options=RW)
    r = runs(m)
    assert write(m.path(".dlqfs/restart"), r[0] + "\n") is None
    (call,) = fake.actions()
    assert (call["action"], call["bulk"], call["dlqIds"]) == \
        ("restart", False, [r[0]])
    fake.clear_actions()
    ids = [r[1], "no-such-id", r[2]]
    assert write(m.path(".dlqfs/resume"), "\n".join(ids) + "\n") == \
        errno.ENOENT
    calls = [(c["bulk"], c["dlqIds"], c["status"]) for c in fake.actions()]
    assert calls == [(False, ["no-such-id"], 404), (True, [r[1], r[2]], 200)]
    assert r[1] not in runs(m) and r[2] not in runs(m)
    outcomes = [(x["dlqId"], x["outcome"]) for x in log_lines(m)][1:]
    assert outcomes == [("no-such-id", "error"), (r[1], "ok"), (r[2], "ok")]


def test_callback_only_in_callback_fail(fake, mount_factory):
    r = sorted(fake.dlq_ids())
    fake.update(r[0], failureFunctionState="CALLBACK_FAIL")
    fake.update(r[1], failureFunctionState="CALLBACK_SUCCESS")
    m = mount_factory(fake, options=RW)
    assert write(m.path(".dlqfs/callback"), r[0] + "\n") is None
    assert write(m.path(".dlqfs/callback"), r[1] + "\n") == errno.EINVAL
    calls = fake.actions()
    assert [(c["action"], c["dlqIds"], c["status"]) for c in calls] == \
        [("callback", [r[0]], 200), ("callback", [r[1]], 400)]
    lines = log_lines(m)
    assert [x["outcome"] for x in lines] == ["ok", "error"]
    assert lines[0]["workflowRunId"].startswith("wfr_")
    # a callback leaves the run in the DLQ
    assert r[0] in runs(m) and r[1] in runs(m)


def test_several_callbacks_are_one_request_each(fake, mount_factory):
    r = sorted(fake.dlq_ids())[:3]
    for i in r:
        fake.update(i, failureFunctionState="CALLBACK_FAIL")
    m = mount_factory(fake, options=RW)
    assert write(m.path(".dlqfs/callback"), "\n".join(r) + "\n") is None
    assert [c["dlqIds"] for c in fake.actions()] == [[i] for i in r]


# --------------------------------------------------------------------------
# refusals: garbage never reaches the API

GARBAGE = [
    "",
    "\n",
    "\n\n  \n",
    "*\n",
    ".\n",
    "..\n",
    "retries=3\n",                # options, no id
    "retries=x\n%(id)s\n",        # bad value
    "colour=red\n%(id)s\n",       # unknown key
    "%(id)s\nretries=3\n",        # option after an id
    "a\x01b\n",                   # control byte
    "x" * 5000 + "\n",            # line too long
]


@pytest.mark.parametrize("text", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("verb", ["delete", "resume"])
def test_garbage_is_refused_and_nothing_is_sent(fake, mount_factory, text,
                                                verb):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    text = text % {"id": r[0]}
    res = write(m.path(".dlqfs", verb), text)
    if text == "":
        assert res is None  # nothing written: nothing to do
    else:
        assert res == errno.EINVAL, res
    assert fake.actions() == []
    assert runs(m) == r


def test_options_are_refused_for_delete(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    assert write(m.path(".dlqfs/delete"),
                 "retries=3\n%s\n" % r[0]) == errno.EINVAL
    assert fake.actions() == []


def test_actions_log_is_json_lines_and_grows(fake, mount_factory):
    m = mount_factory(fake, options=RW)
    r = runs(m)
    path = m.path(".dlqfs/actions.log")
    with open(path) as follower:  # like tail -f: an open file, read on
        assert follower.read() == ""
        assert write(m.path(".dlqfs/delete"), r[0] + "\n") is None
        first = follower.read()
        assert os.stat(path).st_size == len(first.encode())
        assert write(m.path(".dlqfs/delete"), r[1] + "\n") is None
        second = follower.read()
    assert first.endswith("\n") and second.endswith("\n")
    a, b = json.loads(first), json.loads(second)
    for line, id_ in ((a, r[0]), (b, r[1])):
        assert set(line) >= {"time", "verb", "dlqId", "outcome", "status"}
        assert line["dlqId"] == id_ and line["verb"] == "delete"
        assert line["time"].endswith("Z")
