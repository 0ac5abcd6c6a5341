"""Phase cache: what the cache on disk buys a remount, and what it costs.

At each --cache-sizes size, one fake API (--latency-ms per request) and
one cache directory:
- cold: a mount with an empty cache directory, timed from the start of
  the daemon to the end of the first `ls runs | wc -l` (which waits for
  the first walk);
- the cache it writes: its size on disk (st_blocks) against the payload
  the served snapshot stands for (payload_bytes: the API's bytes);
- remount: the same, a second mount on the same cache directory. Its
  `ls runs | wc -l` is answered from the cache, before its first walk
  ends; the count must be the fake's.
The ratio is remount / cold; the baseline is the cold mount of the same
run. RSS: a mount with -o no_cache, 0.5 s after its first walk (the
walk's snapshot, every text on the heap: what every mount held before the
cache), against the remount's once steady (its first walk done and the
snapshot that walk replaced released, 30 s on: the texts stay in the
mapped file until read); the remount's 0.5 s after its first `ls`, and
the cold mount's 0.5 s after writing its cache (both snapshots held while
the walk's is replaced by the file's), are in the details.
"""
import os
import tempfile
import time

from bench_fake import Fake
from bench_mount import Mount
from bench_util import (HarnessError, fmt_mib, fmt_n, fmt_ratio, fmt_s,
                        log, run_cmd)

RETIRED_GRACE_S = 30  # FS_RETIRED_GRACE: how long a replaced snapshot stays


def _first_ls(ctx, m, want):
    """Seconds from the daemon's start to the end of `ls runs | wc -l`,
    which must count `want` runs."""
    _, out = run_cmd(ctx, "ls runs | wc -l", m.mountpoint)
    t = time.monotonic() - m.t_start
    if int(out) != want:
        raise HarnessError("ls runs | wc -l said %s, the fake has %d"
                           % (out, want))
    return t


def _wait_state(m, state, timeout=3600):
    """Waits for .dlqfs/status to say `state` (the remount's first walk
    runs while the cache is served: "cached" until then)."""
    end = time.monotonic() + timeout
    while True:
        s = m.status()
        if s["state"] == state:
            return s
        if s["state"] in ("stale", "error") or time.monotonic() > end:
            raise HarnessError("the remount's walk did not end %r: %s"
                               % (state, s.get("last_error")))
        time.sleep(0.1)


def _wait_cache(m, state, timeout=600):
    end = time.monotonic() + timeout
    while True:
        s = m.status()
        if s["cache"] and s["cache"]["state"] == state:
            return s
        if time.monotonic() > end:
            raise HarnessError("the cache did not reach %r: %s"
                               % (state, s["cache"]))
        time.sleep(0.05)


def phase_cache(ctx):
    a = ctx.args
    points = []
    for n in a.cache_sizes:
        fake = Fake(ctx, n, a.latency_ms)
        cdir = tempfile.mkdtemp(prefix="cache-%d-" % n, dir=ctx.workdir)
        try:
            log("cache: %s runs, a mount without a cache (-o no_cache)"
                % fmt_n(n))
            m = Mount(ctx, fake, ["no_cache"], name="nocache")
            try:
                _first_ls(ctx, m, n)
                time.sleep(0.5)
                rss_nocache = m.rss()[0]
            finally:
                m.stop()
            log("cache: %s runs, cold mount" % fmt_n(n))
            m = Mount(ctx, fake, ["cache_dir=" + cdir], name="cold")
            try:
                cold = _first_ls(ctx, m, n)
                s = _wait_cache(m, "saved")
                time.sleep(0.5)
                rss_cold = m.rss()[0]
                payload = s["payload_bytes"]
                cache_bytes = s["cache"]["bytes"]
                path = s["cache"]["path"]
                file_size = os.path.getsize(path)
            finally:
                m.stop()
            log("cache: %s runs, remount" % fmt_n(n))
            m = Mount(ctx, fake, ["cache_dir=" + cdir], name="warm")
            try:
                warm = _first_ls(ctx, m, n)
                served_by = m.status()["state"]
                time.sleep(0.5)
                rss_first = m.rss()[0]
                # steady: the first walk done, and the snapshot it
                # replaced no longer kept for readdir offsets (30 s)
                _wait_state(m, "ready")
                time.sleep(RETIRED_GRACE_S + 3)
                rss_warm = m.rss()[0]
            finally:
                m.stop()
        finally:
            fake.stop()
        p = {"runs": n, "cold": cold, "warm": warm, "payload": payload,
             "cache": cache_bytes, "file": file_size, "unique": fake.payload,
             "rss_cold": rss_cold, "rss_warm": rss_warm,
             "rss_first": rss_first, "rss_nocache": rss_nocache,
             "served_by": served_by}
        log("  cold %.2f s, remount %.3f s (%s), cache %s for a payload "
            "of %s" % (cold, warm, served_by, fmt_mib(cache_bytes, "B"),
                       fmt_mib(payload, "B")))
        points.append(p)

    for p in points:
        ratio = p["warm"] / p["cold"]
        goal = "<= 0.1" + (" and < 1 s" if p["runs"] == 100000 else "")
        ok = ratio <= 0.1 and (p["runs"] != 100000 or p["warm"] < 1.0)
        ctx.row("C1 remount to the first `ls runs | wc -l` at %s runs "
                "(%g ms per request) vs a cold mount"
                % (fmt_n(p["runs"]), a.latency_ms),
                fmt_s(p["warm"]), fmt_s(p["cold"]), ratio, goal, ok)
    for p in points:
        ratio = p["rss_warm"] / float(p["rss_nocache"])
        ctx.row("C3 daemon VmRSS at %s runs served from the cache (remount, "
                "steady) vs served from a walk (-o no_cache: as before the "
                "cache)" % fmt_n(p["runs"]),
                fmt_mib(p["rss_warm"]), fmt_mib(p["rss_nocache"]), ratio,
                "<= 0.5", ratio <= 0.5)
    for p in points:
        ratio = p["cache"] / float(p["payload"])
        ctx.row("C2 cache size on disk at %s runs vs the payload "
                "(payload_bytes)" % fmt_n(p["runs"]),
                fmt_mib(p["cache"], "B"), fmt_mib(p["payload"], "B"), ratio,
                "<= 1.2", ratio <= 1.2)
    lines = ["Each size: a fake API with %g ms per request; the cold mount "
             "on an empty cache directory, then a remount on the cache it "
             "wrote. Times run from the start of `dlqfs -f` to the end of "
             "the first `ls runs | wc -l` (which must count every run). "
             "Cache = its size on disk (st_blocks); payload = "
             "payload_bytes of the served snapshot (the API's bytes, "
             "entries fetched twice at the walk's cuts included); unique = "
             "every entry's JSON once. RSS: no_cache = 0.5 s after the "
             "first walk of a mount with -o no_cache; cold = 0.5 s after "
             "the cache is written; remount at ls = 0.5 s after the first "
             "`ls`; remount steady = %d s after its first walk."
             % (a.latency_ms, RETIRED_GRACE_S + 3), "",
             "| runs | cold | remount | ratio | served by | cache | file | "
             "payload | unique | cache/unique | RSS no_cache | RSS cold | "
             "RSS remount at ls | RSS remount steady |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
                     "%s | %s | %s | %s |" % (
                         fmt_n(p["runs"]), fmt_s(p["cold"]),
                         fmt_s(p["warm"]), fmt_ratio(p["warm"] / p["cold"]),
                         p["served_by"], fmt_mib(p["cache"], "B"),
                         fmt_mib(p["file"], "B"), fmt_mib(p["payload"], "B"),
                         fmt_mib(p["unique"], "B"),
                         fmt_ratio(p["cache"] / float(p["unique"])),
                         fmt_mib(p["rss_nocache"]),
                         fmt_mib(p["rss_cold"]), fmt_mib(p["rss_first"]),
                         fmt_mib(p["rss_warm"])))
    ctx.section("Cache: remount and size", lines)
