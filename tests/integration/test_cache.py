"""The cache on disk (README, "The cache"): a remount serves what was last
seen at once and then refreshes; an unreachable API mounts from it,
stale; a revoked token never serves it; a cache that is corrupt, cut
short, of another version or torn by a kill -9 is set aside or left
whole, never served broken; a full disk is said and changes nothing
served; the files are private (0700/0600) and one cache never serves
another token or scope.
"""
import json
import os
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import TOKEN, Mount, is_mounted, run_dlqfs, stop_all, unmount


def cache_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".cache"))


def ls_runs(m):
    return sorted(os.listdir(m.path("runs")))


def mount_with(fake, tmp_path, cache_dir, **kw):
    mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
    opts = ["cache_dir=" + str(cache_dir)] + list(kw.pop("options", ()))
    return Mount(fake, mp, options=opts, **kw)


@pytest.fixture
def mounts():
    made = []
    try:
        yield made
    finally:
        stop_all(made)


def first_mount(fake, tmp_path, cache_dir, mounts, **kw):
    """Mounts, waits for the first walk and its cache, unmounts: the
    cache then holds the fake's runs."""
    m = mount_with(fake, tmp_path, cache_dir, **kw)
    mounts.append(m)
    s = m.wait(lambda s: s["cache"] and s["cache"]["state"] == "saved",
               what="the cache written")
    assert s["state"] == "ready"
    runs = ls_runs(m)
    m.stop()
    return runs, s


def test_remount_serves_at_once_then_refreshes(fake_factory, tmp_path,
                                               mounts):
    fake = fake_factory(runs=300)
    cache = tmp_path / "cache"
    before, s = first_mount(fake, tmp_path, cache, mounts)
    assert len(before) == 300
    c = s["cache"]
    assert c["path"].startswith(str(cache) + "/")
    assert c["bytes"] > 0 and c["taken"] and c["age_seconds"] >= 0
    assert c["error"] is None
    # new runs, and an API so slow that the refresh is still running while
    # the tree is read
    newest = max(x["createdAt"] for x in fake.messages())
    added = [dict(fake.messages()[0], dlqId="cache-new-%d" % i,
                  createdAt=newest + 1000 + i) for i in range(5)]
    fake.add(added)
    fake.configure(latency_ms=1500)

    m = mount_with(fake, tmp_path, cache, wait_ready=False)
    mounts.append(m)
    s = m.status()
    assert s["state"] == "cached", s
    assert s["runs"] == 300
    assert s["cache"]["state"] == "loaded"
    assert s["cache"]["taken"] == c["taken"]
    assert ls_runs(m) == before, "the cache is served at once"
    one = before[0]
    m0_stat = os.stat(m.path("runs", one, "message.json"))
    assert m.status()["state"] == "cached", "still walking: served from cache"

    s = m.wait(lambda s: s["state"] == "ready", what="the refresh")
    # the refresh went on from the cache: an incremental walk
    assert s["walk_kind"] == "incremental", s
    assert s["runs"] == 305
    assert ls_runs(m) == sorted(before + [a["dlqId"] for a in added])
    st = os.stat(m.path("runs", one, "message.json"))
    assert (st.st_ino, st.st_mtime_ns) == (m0_stat.st_ino,
                                           m0_stat.st_mtime_ns)
    s = m.wait(lambda s: s["cache"]["state"] == "saved",
               what="the refreshed cache written")
    assert s["cache"]["taken"] > c["taken"]


def test_remount_keeps_inodes_and_times(fake_factory, tmp_path, mounts):
    fake = fake_factory(runs=50)
    cache = tmp_path / "cache"
    m = mount_with(fake, tmp_path, cache)
    mounts.append(m)
    m.wait(lambda s: s["cache"]["state"] == "saved", what="cache")
    # a state change: message.json takes the time it was first seen so
    one = ls_runs(m)[3]
    fake.update(one, failureFunctionState="CALLBACK_FAIL")
    m.refresh()
    m.wait(lambda s: s["cache"]["state"] == "saved", what="cache")
    paths = [os.path.join("runs", r, f) for r in ls_runs(m)[:10]
             for f in ("message.json", "body", "responseStatus")
             if os.path.exists(m.path("runs", r, f))]
    paths += [os.path.join("by-state", v) for v in os.listdir(
        m.path("by-state"))]
    was = {p: os.lstat(m.path(p)) for p in paths}
    content = {p: open(m.path(p), "rb").read() for p in paths
               if p.startswith("runs")}
    m.stop()
    fake.configure(latency_ms=1000)
    m = mount_with(fake, tmp_path, cache, wait_ready=False)
    mounts.append(m)
    assert m.status()["state"] == "cached"
    for p, st in was.items():
        now = os.lstat(m.path(p))
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == \
            (st.st_ino, st.st_mtime_ns, st.st_size), p
    for p, data in content.items():
        with open(m.path(p), "rb") as f:
            assert f.read() == data, p


def mapped_caches(m):
    with open("/proc/%d/maps" % m.proc.pid) as f:
        return {line.split(None, 5)[5].strip() for line in f
                if line.rstrip().endswith(".cache")}


def test_texts_are_served_from_the_mapped_file(fake_factory, tmp_path,
                                               mounts):
    """A mount from the cache keeps the entries' texts in the file,
    mapped, not on the heap, and serves the same bytes as the walk did."""
    fake = fake_factory(runs=120)
    cache = tmp_path / "cache"
    m = mount_with(fake, tmp_path, cache)
    mounts.append(m)
    s = m.wait(lambda s: s["cache"]["state"] == "saved", what="cache")
    want = {r: open(m.path("runs", r, "message.json"), "rb").read()
            for r in ls_runs(m)}
    assert s["cache"]["path"] not in mapped_caches(m)
    m.stop()
    fake.configure(latency_ms=1000)
    m = mount_with(fake, tmp_path, cache, wait_ready=False)
    mounts.append(m)
    assert m.status()["state"] == "cached"
    assert s["cache"]["path"] in mapped_caches(m)
    assert {r: open(m.path("runs", r, "message.json"), "rb").read()
            for r in ls_runs(m)} == want
    m.wait(lambda s: s["state"] == "ready", what="the refresh")
    assert s["cache"]["path"] in mapped_caches(m), \
        "a refresh that changed nothing keeps the mapped texts"


def test_files_are_private(fake, tmp_path, mounts):
    cache = tmp_path / "a" / "b" / "dlqfs"
    first_mount(fake, tmp_path, cache, mounts)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    files = os.listdir(cache)
    assert files and all(f.endswith(".cache") for f in files), files
    for f in files:
        assert stat.S_IMODE(os.stat(cache / f).st_mode) == 0o600


def test_a_directory_others_can_open_keeps_no_cache(fake, tmp_path, mounts):
    cache = tmp_path / "open"
    cache.mkdir()
    os.chmod(cache, 0o755)
    m = mount_with(fake, tmp_path, cache)
    mounts.append(m)
    assert m.status()["state"] == "ready"
    assert m.status()["cache"] is None
    assert "chmod 700" in m.stderr()
    assert os.listdir(cache) == []


def test_no_cache_keeps_nothing(fake, tmp_path, mounts):
    cache = tmp_path / "cache"
    m = mount_with(fake, tmp_path, cache, options=["no_cache"])
    mounts.append(m)
    m.refresh()
    assert m.status()["cache"] is None
    assert not cache.exists()
    # nor under XDG_CACHE_HOME (where it would go by default)
    assert not os.path.exists(m.env["XDG_CACHE_HOME"])


def test_default_directory_is_xdg_cache_home(fake, tmp_path, mounts):
    mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
    xdg = tmp_path / "xdg"
    m = Mount(fake, mp, env_extra={"XDG_CACHE_HOME": str(xdg)})
    mounts.append(m)
    s = m.wait(lambda s: s["cache"]["state"] == "saved", what="cache")
    assert os.path.dirname(s["cache"]["path"]) == str(xdg / "dlqfs")


def test_home_cache_without_xdg(fake, tmp_path):
    """Without XDG_CACHE_HOME the cache goes in $HOME/.cache/dlqfs."""
    home = tmp_path / "home"
    home.mkdir()
    mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
    r = run_dlqfs(["-o", "url=" + fake.base_url + ",refresh=3600", mp],
                  env_extra={"HOME": str(home), "XDG_CACHE_HOME": ""})
    try:
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(os.path.join(mp, ".dlqfs", "status")) as f:
                s = json.load(f)
            if s["cache"] and s["cache"]["state"] == "saved":
                break
            time.sleep(0.05)
        assert s["cache"]["path"].startswith(str(home / ".cache" / "dlqfs")
                                             + "/"), s["cache"]
        assert stat.S_IMODE(os.stat(home / ".cache" / "dlqfs").st_mode) \
            == 0o700
    finally:
        unmount(mp)


def test_token_and_scope_isolation(fake, tmp_path, mounts):
    cache = tmp_path / "cache"
    first_mount(fake, tmp_path, cache, mounts)
    assert len(cache_files(cache)) == 1
    # a scope: its own cache, not served from the unscoped one
    m = mount_with(fake, tmp_path, cache, options=["label=payments"])
    mounts.append(m)
    s = m.status()
    assert s["state"] == "ready" and s["walks_full"] == 1
    assert m.wait(lambda s: s["cache"]["state"] == "saved",
                  what="cache")["cache"]["state"] == "saved"
    m.stop()
    assert len(cache_files(cache)) == 2
    # another token (the account's tokens rotated): its own cache too
    fake.configure(token="another-token-41c")
    m = mount_with(fake, tmp_path, cache, token="another-token-41c")
    mounts.append(m)
    s = m.status()
    assert s["state"] == "ready" and s["walks_full"] == 1, s
    m.wait(lambda s: s["cache"]["state"] == "saved", what="cache")
    m.stop()
    names = cache_files(cache)
    assert len(names) == 3
    for name in names:
        with open(cache / name, "rb") as f:
            data = f.read()
        for tok in (TOKEN, "another-token-41c"):
            assert tok.encode() not in data and tok not in name


def test_offline_mount_serves_the_cache(fake, tmp_path, mounts):
    cache = tmp_path / "cache"
    before, _ = first_mount(fake, tmp_path, cache, mounts)
    fake.pause()
    try:
        m = mount_with(fake, tmp_path, cache, options=["retries=0"],
                       wait_ready=False)
        mounts.append(m)
        s = m.status()
        assert s["state"] == "stale", s
        # said at mount, then by each walk that fails in the background
        assert "connection refused" in s["last_error"]
        assert s["stale_since"]
        assert ls_runs(m) == before
        err = m.stderr()
        assert "serving the cache taken at" in err and "(stale)" in err
    finally:
        fake.resume()
    s = m.refresh()
    assert s["state"] == "ready" and s["last_error"] is None
    assert ls_runs(m) == before


def test_offline_without_cache_still_fails(fake, tmp_path):
    mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
    url = fake.base_url
    fake.pause()
    try:
        r = run_dlqfs(["-f", "-o", "url=%s,retries=0,cache_dir=%s"
                       % (url, tmp_path / "empty"), mp])
    finally:
        fake.resume()
    assert r.returncode != 0
    assert "cannot list the DLQ" in r.stderr
    assert not is_mounted(mp)


def test_revoked_token_never_serves_its_cache(fake, tmp_path, mounts):
    cache = tmp_path / "cache"
    first_mount(fake, tmp_path, cache, mounts)
    fake.configure(token="rotated-token")  # ours is now refused: 401
    mp = tempfile.mkdtemp(prefix="mnt", dir=str(tmp_path))
    r = run_dlqfs(["-f", "-o", "url=%s,cache_dir=%s" % (fake.base_url, cache),
                   mp])
    assert r.returncode != 0
    assert "refused the token" in r.stderr
    assert not is_mounted(mp)


@pytest.mark.parametrize("damage", ["flip", "truncate", "version", "empty",
                                    "garbage"])
def test_unusable_cache_is_set_aside(fake, tmp_path, mounts, damage):
    cache = tmp_path / "cache"
    before, _ = first_mount(fake, tmp_path, cache, mounts)
    (name,) = cache_files(cache)
    path = cache / name
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[:len(data) - 777]
    elif damage == "version":
        data[8] = 0x7f
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a cache at all\n" * 100)
    with open(path, "wb") as f:
        f.write(data)
    m = mount_with(fake, tmp_path, cache)
    mounts.append(m)
    s = m.status()
    assert s["state"] == "ready", s   # a full walk, from the start
    assert s["walks_full"] == 1
    assert ls_runs(m) == before
    err = m.stderr()
    assert err.count("is unusable") == 1, err
    assert os.path.exists(str(path) + ".bad")
    m.wait(lambda s: s["cache"]["state"] == "saved", what="a new cache")


def test_kill_during_cache_write_leaves_the_previous(fake_factory, tmp_path,
                                                     mounts):
    """kill -9 while the cache is being written: the cache it replaces
    stays whole, and the next mount serves it."""
    fake = fake_factory(runs=3000, large=True)
    cache = tmp_path / "cache"
    before, _ = first_mount(fake, tmp_path, cache, mounts)
    caught = False
    for attempt in range(40):
        m = mount_with(fake, tmp_path, cache, options=["reconcile=0"],
                       wait_ready=False)
        mounts.append(m)
        m.wait(lambda s: s["state"] == "ready", what="the walk")
        # the next walk is full (reconcile=0), then a cache write: catch
        # its temporary file and kill the daemon then
        with open(m.path(".dlqfs/refresh"), "w") as f:
            f.write("1\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not caught:
            if any(".tmp." in f for f in os.listdir(cache)):
                m.proc.send_signal(signal.SIGKILL)
                caught = True
        m.proc.wait()
        unmount(m.mountpoint)
        m.returncode = 0
        m._stderr.close()
        if caught:
            break
    assert caught, "never caught a cache write in progress"
    assert any(".tmp." in f for f in os.listdir(cache)), \
        "the killed writer left its temporary file"
    m = mount_with(fake, tmp_path, cache, wait_ready=False)
    mounts.append(m)
    s = m.status()
    assert s["state"] in ("cached", "ready"), s
    assert s["cache"]["state"] in ("loaded", "saved")
    assert "unusable" not in m.stderr()
    assert ls_runs(m) == before
    m.refresh()
    m.wait(lambda s: s["cache"]["state"] == "saved", what="a new cache")
    # the dead writer's temporary file is gone with the next write
    assert not any(".tmp." in f for f in os.listdir(cache))


def test_full_disk_warns_and_keeps_serving(fake_factory, tmp_path, mounts):
    fake = fake_factory(runs=2000)
    cache = tmp_path / "tiny"
    cache.mkdir(mode=0o700)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700",
                        "tmpfs", str(cache)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs (root is needed): " + r.stderr)
    try:
        m = mount_with(fake, tmp_path, cache)
        mounts.append(m)
        s = m.wait(lambda s: s["cache"]["state"] == "error",
                   what="the failed write")
        assert s["state"] == "ready" and s["runs"] == 2000
        assert "No space left on device" in s["cache"]["error"]
        assert len(ls_runs(m)) == 2000
        s = m.refresh()
        assert s["state"] == "ready" and s["last_error"] is None
        # the walker saves after it publishes: once it has stopped, no
        # write is in flight
        m.stop()
        err = m.stderr()
        assert err.count("cannot write the cache") == 1, err
        assert os.listdir(cache) == [], "no partial file left behind"
    finally:
        subprocess.run(["umount", "-l", str(cache)], capture_output=True)
