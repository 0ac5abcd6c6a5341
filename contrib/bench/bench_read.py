"""Phase read (target 3): ls -l, grep, rsync -a and find -L on a fresh
mount against the same tree copied to local disk, cold and warm, and the
API requests they cause.
"""
import os
import tempfile

from bench_mount import Mount
from bench_util import (MiB, HarnessError, cell, drop_caches, fmt_n, fmt_s,
                        log, median, remove_tree, run_cmd)


READ_OPS = (
    ("ls", "ls -l runs/", "ls -l runs/ >/dev/null", 1.5, 1.5),
    ("grep", "grep -rl ECONNRESET runs/*/responseBody",
     "grep -rl ECONNRESET runs/*/responseBody | wc -l", 1.5, 1.2),
    ("rsync", "rsync -a ./ DEST/", "set -o pipefail; rsync -a ./ %(dest)s/",
     1.5, 1.5),
    ("find", "find -L . | wc -l", "set -o pipefail; find -L . | wc -l",
     1.5, 1.5),
)


def phase_read(ctx):
    a = ctx.args
    fake = ctx.fake_main(0)
    n = fake.runs
    local = os.path.join(a.local_dir or ctx.workdir, "local-tree")
    if os.path.lexists(local):
        raise HarnessError("%s exists" % local)
    os.makedirs(local)
    ctx.local_tree = local
    log("read: copying a fresh mount to local disk (cp -a)")
    m = Mount(ctx, fake)
    try:
        m.wait_ready()
        r0 = fake.stats()["requests"]
        cp_s, _ = run_cmd(ctx, "cp -a %s/. %s/" % (
            m.mountpoint, local), cwd=ctx.workdir)
        cp_reqs = fake.stats()["requests"] - r0
    finally:
        m.stop()
    nruns = len(os.listdir(os.path.join(local, "runs")))
    if nruns != n:
        raise HarnessError("the local copy has %d runs, not %d" % (nruns, n))
    _, du = run_cmd(ctx, "du -sb . | cut -f1; find . | wc -l", cwd=local)
    du_bytes, entries = [int(x) for x in du.split()]
    log("  cp -a: %.1f s, %s entries, %.0f MiB" % (cp_s, fmt_n(entries),
                                                   du_bytes / MiB))
    results = []
    total_reqs = cp_reqs
    for key, title, cmd, goal_cold, goal_warm in READ_OPS:
        log("read: %s" % title)
        m = Mount(ctx, fake)
        try:
            m.wait_ready()
            r0 = fake.stats()["requests"]
            dests = []

            def once(cwd):
                dest = None
                c = cmd
                if key == "rsync":
                    dest = tempfile.mkdtemp(prefix="rsync-",
                                            dir=ctx.rsync_base)
                    os.rmdir(dest)
                    c = cmd % {"dest": dest}
                try:
                    dt, out = run_cmd(ctx, c, cwd=cwd)
                finally:
                    if dest:
                        remove_tree(dest)
                return dt, out

            cold_m, out_m = once(m.mountpoint)
            if a.drop_caches:
                drop_caches()
            cold_l, out_l = once(local)
            if out_m != out_l:
                ctx.warn("%s: the mount says %r, the local copy %r"
                         % (title, out_m[:80], out_l[:80]))
            if a.drop_caches:
                once(m.mountpoint)
                once(local)
            warm_m, warm_l = [], []
            for i in range(a.reps):
                warm_m.append(once(m.mountpoint)[0])
                warm_l.append(once(local)[0])
            reqs = fake.stats()["requests"] - r0
            total_reqs += reqs
        finally:
            m.stop()
        r = {"key": key, "title": title, "cold_m": cold_m, "cold_l": cold_l,
             "warm_m": warm_m, "warm_l": warm_l, "reqs": reqs, "out": out_m,
             "goal_cold": goal_cold, "goal_warm": goal_warm}
        results.append(r)
        log("  cold %.3f / %.3f s, warm median %.3f / %.3f s (mount / "
            "local), %d API requests" % (cold_m, cold_l, median(warm_m),
                                         median(warm_l), reqs))
    for r in results:
        rc = r["cold_m"] / r["cold_l"]
        rw = median(r["warm_m"]) / median(r["warm_l"])
        ctx.row("3 %s, cold (first after mount)" % r["title"],
                fmt_s(r["cold_m"]), fmt_s(r["cold_l"]), rc,
                "<= %g" % r["goal_cold"], rc <= r["goal_cold"])
        ctx.row("3 %s, warm (median of %d)" % (r["title"], a.reps),
                fmt_s(median(r["warm_m"])), fmt_s(median(r["warm_l"])), rw,
                "<= %g" % r["goal_warm"], rw <= r["goal_warm"])
    ctx.row("3 API requests caused by the read commands (incl. cp -a)",
            "%d" % total_reqs, "-", None, "0", total_reqs == 0)
    lines = ["Tree: %s runs, %s entries, %.0f MiB; local copy in %s "
             "(made with cp -a from a fresh mount: %s, %d API requests). "
             "Commands run with bash in the tree's root, LC_ALL=C; rsync "
             "writes to %s (a fresh directory each time, deleted untimed)."
             % (fmt_n(n), fmt_n(entries), du_bytes / MiB, local, fmt_s(cp_s),
                cp_reqs, ctx.rsync_base),
             "Cold on the mount: the first run after a fresh mount (kernel "
             "caches empty, data in the daemon's memory). Cold on local "
             "disk: the first run of that command on the copy, which is in "
             "the page cache since cp wrote it%s." % (
                 " - here after drop_caches" if a.drop_caches else
                 " (no drop_caches: see --drop-caches)"),
             "",
             "| command | output | cold mount | cold local | warm mount "
             "(samples) | warm local (samples) | API requests |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| `%s` | %s | %s | %s | %s (%s) | %s (%s) | %d |" % (
            cell(r["title"]), r["out"] or "-", fmt_s(r["cold_m"]),
            fmt_s(r["cold_l"]), fmt_s(median(r["warm_m"])),
            ", ".join("%.3f" % x for x in r["warm_m"]),
            fmt_s(median(r["warm_l"])),
            ", ".join("%.3f" % x for x in r["warm_l"]), r["reqs"]))
    ctx.section("Read path vs local disk (target 3)", lines)
