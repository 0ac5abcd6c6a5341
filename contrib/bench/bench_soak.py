"""Phase soak (memory over days): at each --soak size, a fresh fake and
mount, then many full walks asked for through .dlqfs/refresh, as a daemon
that reconciles every 10 minutes does over days. RSS is read once the
replaced snapshots' grace has passed, after the first walk and after the
last: the target is RSS(end) <= 1.15 x RSS(first).

The fake answers without added latency and the daemon runs with a high
max_rps: the walks' speed is not what this phase measures, and a slow walk
would only make the phase long. Every other option is the default (so the
walker threads, the page buffers and the snapshot swaps are those of a
real mount).
"""
import time

from bench_fake import Fake
from bench_mount import Mount
from bench_util import fmt_mib, fmt_n, log

GOAL = 1.15
# the daemon keeps a replaced snapshot for 30 s after the kernel was told
# of a newer one (FS_RETIRED_GRACE): RSS is read after that, and after the
# notifier's next pass
GRACE_S = 35.0


def soak_one(ctx, runs, walks):
    fake = Fake(ctx, runs, 0)
    try:
        log("soak: %s runs, %d full walks" % (fmt_n(runs), walks))
        m = Mount(ctx, fake, options=["max_rps=10000"], name="soak")
        try:
            s = m.wait_ready()
            payload = s["payload_bytes"]
            time.sleep(GRACE_S)
            first = m.rss()[0]
            samples = []
            peak = first
            t0 = time.monotonic()
            for i in range(1, walks + 1):
                m.refresh()
                rss = m.rss()[0]
                peak = max(peak, rss)
                if i in (1, 2, 5) or i % max(1, walks // 10) == 0:
                    samples.append((i, rss))
                    log("  walk %d/%d: RSS %s" % (i, walks, fmt_mib(rss)))
            walk_s = (time.monotonic() - t0) / walks
            right_after = m.rss()[0]
            time.sleep(GRACE_S)
            end = m.rss()[0]
            end_status = m.status()
            hwm = m.rss()[1]
            log("  end: RSS %s (first %s, ratio %.2f)" % (
                fmt_mib(end), fmt_mib(first), end / float(first)))
        finally:
            m.stop()
    finally:
        fake.stop()
    return {"runs": runs, "walks": walks, "payload": payload,
            "first": first, "end": end, "right_after": right_after,
            "peak": peak, "hwm": hwm, "samples": samples, "walk_s": walk_s,
            "kept_end": end_status.get("kept_snapshots"),
            "kept_bytes_end": end_status.get("kept_snapshot_bytes")}


def phase_soak(ctx):
    points = [soak_one(ctx, runs, walks) for runs, walks in ctx.args.soak]
    for p in points:
        ratio = p["end"] / float(p["first"])
        ctx.row("6 soak: VmRSS after %d full walks of %s runs vs after the "
                "first (both %.0f s after the walk)" % (
                    p["walks"], fmt_n(p["runs"]), GRACE_S),
                fmt_mib(p["end"]), fmt_mib(p["first"]), ratio,
                "<= %.2f" % GOAL, ratio <= GOAL)
    lines = ["Fake API without added latency, `-o max_rps=10000`, "
             "default options otherwise; each walk a full one asked for "
             "through `.dlqfs/refresh`. RSS = VmRSS; *first* and *end* are "
             "read %.0f s after the first and the last walk (once the "
             "replaced snapshots' grace has passed), *right after* as the "
             "last walk is served, *peak* the most seen after any walk." % (
                 GRACE_S), "",
             "| runs | walks | s per walk | payload | RSS first | RSS right "
             "after | RSS peak | RSS end | end / first | VmHWM | kept "
             "snapshots at the end (bytes) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        kept = "-" if p["kept_end"] is None else "%d (%s)" % (
            p["kept_end"], fmt_mib(p["kept_bytes_end"] or 0, "B"))
        lines.append("| %s | %d | %.2f | %s | %s | %s | %s | %s | %.2f | %s "
                     "| %s |" % (
                         fmt_n(p["runs"]), p["walks"], p["walk_s"],
                         fmt_mib(p["payload"], "B"), fmt_mib(p["first"]),
                         fmt_mib(p["right_after"]), fmt_mib(p["peak"]),
                         fmt_mib(p["end"]), p["end"] / float(p["first"]),
                         fmt_mib(p["hwm"]), kept))
    lines += ["", "RSS after walk k (k: RSS):", ""]
    for p in points:
        lines.append("- %s runs: %s" % (fmt_n(p["runs"]), ", ".join(
            "%d: %s" % (i, fmt_mib(r)) for i, r in p["samples"])))
    ctx.section("Soak: memory over many full walks (target 6)", lines)
