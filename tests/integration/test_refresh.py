"""Incremental refresh and reconcile (README "Semantics"): the timer's
refreshes fetch only the window from the newest createdAt seen minus
late_window and merge it into the snapshot; a full walk (reconcile) runs
every `reconcile` seconds, and whenever a refresh is asked for
(.dlqfs/refresh, SIGHUP). The fake API records every request."""
import os
import signal
import time

from conftest import vm_rss_kib

LIST = "/v2/workflows/dlq"
HOUR_MS = 3600 * 1000


def list_requests(fake):
    return [e for e in fake.requests() if e["path"] == LIST]


def from_date(e):
    for k, v in e["query"]:
        if k == "fromDate":
            return int(v)
    return None


def newest(fake):
    return max(m["createdAt"] for m in fake.messages())


def oldest_id(fake):
    return min(fake.messages(), key=lambda m: m["createdAt"])["dlqId"]


def clone(fake, template_id, dlq_id, created_at):
    m = fake.get(template_id)
    m["dlqId"] = dlq_id
    m["createdAt"] = created_at
    return m


def timer_walks(m, n, timeout=30):
    """Waits for `n` more incremental walks than now; returns the status."""
    base = m.status()["walks_incremental"]
    return m.wait(lambda s: s["walks_incremental"] >= base + n
                  and not s["walking"], timeout, "%d timer walks" % n)


def runs(m):
    return set(os.listdir(m.path("runs")))


def test_status_says_what_kind_of_walk(fake_factory, mount_factory):
    fake = fake_factory(runs=50)
    m = mount_factory(fake, refresh=1)
    st = m.status()
    assert st["walk_kind"] == "full"
    assert st["incremental_from"] is None
    assert st["last_full_walk"] == st["last_success"]
    assert st["reconcile_seconds"] == 10  # 10 x refresh by default
    assert st["late_window_seconds"] == 3600
    assert st["walks_full"] == 1 and st["walks_incremental"] == 0
    st = timer_walks(m, 1)
    assert st["walk_kind"] == "incremental"
    assert st["incremental_from"] is not None
    # the last full walk stays the first one
    assert st["last_full_walk"] < st["last_success"]
    assert st["walks_full"] == 1


def test_unchanged_refresh_costs_few_requests(fake_factory, mount_factory):
    fake = fake_factory(runs=2000)  # 20 pages for a full walk
    m = mount_factory(fake, refresh=1, options=["reconcile=3600"])
    full = m.status()["pages"]
    assert full >= 20
    fake.clear_requests()
    st = timer_walks(m, 3)
    reqs = list_requests(fake)
    walks = st["walks_incremental"]
    assert st["runs"] == 2000
    # an hour of a 7-day DLQ of 2,000 entries: one page per refresh
    assert len(reqs) <= 2 * walks, reqs
    assert len(reqs) * 10 <= full * walks
    want = newest(fake) - HOUR_MS
    assert all(from_date(e) == want for e in reqs), \
        [from_date(e) for e in reqs]
    assert st["walks_full"] == 1


def test_new_entries_and_late_landers(fake_factory, mount_factory):
    fake = fake_factory(runs=100)
    m = mount_factory(fake, refresh=1, options=["reconcile=3600"])
    top = newest(fake)
    tpl = fake.dlq_ids()[0]
    fake.add(clone(fake, tpl, "%d-7" % (top + 5000), top + 5000))
    # landed late: created before the newest seen, inside the window
    fake.add(clone(fake, tpl, "%d-7" % (top - 600000), top - 600000))
    # landed very late: created before the window
    late = top - 5 * HOUR_MS
    fake.add(clone(fake, tpl, "%d-7" % late, late))
    timer_walks(m, 2)
    names = runs(m)
    assert "%d-7" % (top + 5000) in names, "a new entry appears"
    assert "%d-7" % (top - 600000) in names, \
        "a late lander inside the window appears"
    assert "%d-7" % late not in names, \
        "one older than the window waits for a full walk"
    st = m.refresh()  # asked for: a full walk
    assert st["walk_kind"] == "full"
    assert "%d-7" % late in runs(m)
    assert st["runs"] == 103


def test_deletion_and_state_change_wait_for_a_reconcile(fake_factory,
                                                        mount_factory):
    fake = fake_factory(runs=100)
    m = mount_factory(fake, refresh=1, options=["reconcile=4"])
    gone = oldest_id(fake)
    changed = sorted(fake.messages(), key=lambda x: x["createdAt"])[1]
    fake.remove(gone)
    fake.update(changed["dlqId"], failureFunctionState="CALLBACK_SUCCESS")
    t0 = time.monotonic()
    st = timer_walks(m, 1)
    if st["walks_full"] == 1:  # no reconcile yet: both still as they were
        assert gone in runs(m)
    first_full = m.status()["walks_full"]
    st = m.wait(lambda s: s["walks_full"] > first_full and not s["walking"],
                timeout=20, what="the reconcile")
    assert time.monotonic() - t0 < 4 + 1 + 5
    assert st["walk_kind"] == "full"
    assert st["last_full_walk"] == st["last_success"]
    assert gone not in runs(m), "a deletion shows after the reconcile"
    assert st["runs"] == 99
    state = m.path("by-state", "CALLBACK_SUCCESS", changed["dlqId"])
    assert os.path.islink(state), "a state change shows after the reconcile"


def test_asked_for_refresh_is_full(fake_factory, mount_factory):
    fake = fake_factory(runs=300)
    m = mount_factory(fake, options=["reconcile=3600"])  # refresh=3600
    gone = oldest_id(fake)
    fake.remove(gone)
    fake.clear_requests()
    st = m.refresh()
    assert st["walk_kind"] == "full" and st["walks_full"] == 2
    assert gone not in runs(m)
    assert any(from_date(e) is None for e in list_requests(fake))
    fake.remove(oldest_id(fake))
    m.proc.send_signal(signal.SIGHUP)
    st = m.wait(lambda s: s["walks_full"] == 3 and not s["walking"],
                what="the SIGHUP walk")
    assert st["runs"] == 298
    assert st["walks_incremental"] == 0


def test_reconcile_zero_makes_every_walk_full(fake_factory, mount_factory):
    fake = fake_factory(runs=30)
    m = mount_factory(fake, refresh=1, options=["reconcile=0"])
    fake.remove(oldest_id(fake))
    st = m.wait(lambda s: s["walks_full"] >= 3, what="three walks")
    assert st["walks_incremental"] == 0
    m.wait(lambda s: s["runs"] == 29, what="the deletion")


def test_future_entry_does_not_stop_new_ones(fake_factory, mount_factory):
    """An entry dated in the future must not push the window past the
    entries that come after it: the window starts at most at now."""
    fake = fake_factory(runs=20)
    tpl = fake.dlq_ids()[0]
    future = int(time.time() * 1000) + 365 * 24 * HOUR_MS
    fake.add(clone(fake, tpl, "%d-9" % future, future))
    m = mount_factory(fake, refresh=1, options=["reconcile=3600"])
    now = int(time.time() * 1000)
    fake.add(clone(fake, tpl, "%d-9" % now, now))
    timer_walks(m, 2)
    assert "%d-9" % now in runs(m)


def test_a_run_an_action_removed_stays_out_of_incremental_walks(
        fake_factory, mount_factory):
    """Incremental walks merge into the snapshot served, so an old run
    deleted through the mount does not come back from the copy the walker
    kept; a resumed run that stays in the DLQ comes back with the next full
    walk (or, inside the window, the next refresh)."""
    fake = fake_factory(runs=100)
    fake.configure(resumed_leave=False)
    m = mount_factory(fake, refresh=1,
                      options=["reconcile=3600", "allow_delete",
                               "allow_resume"])
    by_age = sorted(fake.messages(), key=lambda x: x["createdAt"])
    deleted, resumed = by_age[0]["dlqId"], by_age[1]["dlqId"]
    os.rmdir(m.path("runs", deleted))
    with open(m.path(".dlqfs/resume"), "w") as f:
        f.write(resumed + "\n")
    assert deleted not in runs(m) and resumed not in runs(m)
    timer_walks(m, 3)
    names = runs(m)
    assert deleted not in names, "a deleted run came back"
    assert resumed not in names, "older than the window: hidden until " \
        "a full walk"
    st = m.refresh()  # a full walk: the truth
    assert st["walk_kind"] == "full"
    names = runs(m)
    assert resumed in names and deleted not in names


def test_kept_snapshots_cost_what_status_says(fake_factory, mount_factory):
    """A full walk that replaces a large entry keeps the snapshot it
    replaced for a while (README "Consistency"): .dlqfs/status counts it
    and the bytes it alone holds, and the daemon's resident memory falls
    by about that much once it goes."""
    big = 24 * 1024 * 1024
    fake = fake_factory(runs=20)
    template = fake.messages()[0]["dlqId"]
    m1 = clone(fake, template, "big-1", newest(fake) + 1)
    m1["responseBody"] = "a" * big
    fake.add(m1)
    # ASan's quarantine would keep the freed bytes mapped: off for this
    # daemon, so that its VmRSS shows what it frees
    m = mount_factory(fake, options=["max_response=100M"], env_extra={
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:"
                        "quarantine_size_mb=0"})
    # big-1 goes, big-2 comes: the replaced snapshot alone holds big-1
    m2 = dict(m1, dlqId="big-2", responseBody="b" * big)
    fake.remove("big-1")
    fake.add(m2)
    st = m.refresh()
    assert os.listdir(m.path("runs")).count("big-2") == 1
    assert st["kept_snapshots"] >= 1, st
    kept = st["kept_snapshot_bytes"]
    before = vm_rss_kib(m.proc.pid) * 1024
    assert big <= kept <= before, (kept, before)
    # it goes after the grace (30 s after the kernel was told)
    st = m.wait(lambda s: s["kept_snapshots"] == 0, 90, "the grace")
    assert st["kept_snapshot_bytes"] == 0
    after = vm_rss_kib(m.proc.pid) * 1024
    assert before - after >= kept // 2, (before, after, kept)
    assert abs(st["rss_bytes"] - after) < after / 4, (st["rss_bytes"], after)


def test_a_directory_listed_after_it_went_ends_without_a_lost_cookie(
        fake_factory, mount_factory):
    """A directory that the kernel still holds (an open fd) after a walk
    took it out lists "." and ".." and ends; reading on from there is not a
    listing that lost its snapshot (README "Consistency")."""
    fake = fake_factory(runs=20)
    m = mount_factory(fake)
    gone = sorted(runs(m))[0]
    fd = os.open(m.path("runs", gone), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fake.remove(gone)
        st = m.refresh()
        assert gone not in runs(m)
        # several getdents: ".", "..", then from offset 2, nothing
        assert os.listdir(fd) == []
        assert m.status()["lost_readdir_cookies"] == 0, m.status()
    finally:
        os.close(fd)
    assert st["runs"] == 19
