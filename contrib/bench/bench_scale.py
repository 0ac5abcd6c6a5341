"""Phases scale and memory (targets 4 and 5): at each --scale size a
fresh fake and mount, the first walk, ls -l cold and warm, VmRSS; the
memory target from the largest size and the growth per 10x runs.
"""
import os
import time

from bench_fake import Fake, first_page_span
from bench_util import (MiB, fmt_mib, fmt_n, fmt_ratio, fmt_s,
                        growth_per_10x, log, median, run_cmd)
from bench_walk import first_walk


def phase_scale(ctx, want_scale, want_memory):
    a = ctx.args
    sizes = a.scale if want_scale else [max(a.scale)]
    points = []
    for n in sizes:
        fake = Fake(ctx, n, a.latency_ms)
        try:
            log("scale: %s runs" % fmt_n(n))
            span = first_page_span(fake)
            m, w = first_walk(ctx, fake, [], "%s runs" % fmt_n(n))
            try:
                time.sleep(0.5)
                rss, hwm = m.rss()
                sv = os.statvfs(m.mountpoint)
                p = {"runs": n, "walk": w["seconds"], "pages": w["pages"],
                     "requests": w["requests"], "ranged": w["ranged"],
                     "payload": w["payload"], "rss": rss, "hwm": hwm,
                     # statfs: f_blocks counts the bytes of the files
                     "files": sv.f_blocks * sv.f_frsize, "span": span,
                     "unique": fake.payload}
                if want_scale:
                    p["ls_cold"], _ = run_cmd(ctx, "ls -l runs/ >/dev/null",
                                              m.mountpoint)
                    p["ls_warm"] = median([run_cmd(
                        ctx, "ls -l runs/ >/dev/null", m.mountpoint)[0]
                        for _ in range(a.reps)])
                    p["rss_after_ls"] = m.rss()[0]
                log("  walk %.2f s, RSS %s, payload %s" % (
                    p["walk"], fmt_mib(rss), fmt_mib(p["payload"], "B")))
            finally:
                m.stop()
        finally:
            fake.stop()
        points.append(p)
    ctx.curve = points

    big = points[-1]
    limit = 1.5 * big["payload"] + 32 * MiB
    ratio = big["rss"] * 1024.0 / limit
    if want_memory:
        ctx.row("4 daemon VmRSS after walking %s runs vs 1.5 x payload + "
                "32 MiB (payload %s)" % (fmt_n(big["runs"]),
                                        fmt_mib(big["payload"], "B")),
                fmt_mib(big["rss"]), fmt_mib(limit, "B"), ratio, "<= 1.0",
                ratio <= 1.0)
    if want_scale and len(points) >= 2:
        for key, label in (("walk", "walk time"), ("ls_cold", "ls -l runs/ "
                                                   "cold"),
                           ("ls_warm", "ls -l runs/ warm"), ("rss", "RSS")):
            # the worst step: growth that turns superlinear at the large
            # end is what the target is about
            steps = [(growth_per_10x(p1["runs"], p1[key], p2["runs"],
                                     p2[key]), p1, p2)
                     for p1, p2 in zip(points, points[1:])]
            g, p1, p2 = max(steps, key=lambda x: x[0])
            v1 = p1[key] * 1024 if key == "rss" else p1[key]
            v2 = p2[key] * 1024 if key == "rss" else p2[key]
            f = (lambda v: fmt_mib(v, "B")) if key == "rss" else fmt_s
            ctx.row("5 %s growth per 10x runs, worst step %s -> %s" % (
                label, fmt_n(p1["runs"]), fmt_n(p2["runs"])),
                f(v2), f(v1), g, "<= 12 (linear: 10)", g <= 12)
    lines = ["Fake API with %g ms per request, default options; walk = the "
             "first walk after mounting, timed by .dlqfs/status; ls -l warm "
             "= median of %d; RSS = VmRSS 0.5 s after the first walk. "
             "Growth = the ratio to the previous size, per 10x runs "
             "(10 = linear)." % (a.latency_ms, a.reps), "",
             "| runs | pages | ranged req. | walk | growth | ls -l cold | "
             "growth | ls -l warm | growth | RSS | growth | VmHWM | payload "
             "| files served | RSS / (1.5 payload + 32 MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    prev = None
    for p in points:
        def g(key):
            if prev is None or key not in p:
                return "-"
            return fmt_ratio(growth_per_10x(prev["runs"], prev[key],
                                            p["runs"], p[key]))
        lim = 1.5 * p["payload"] + 32 * MiB
        lines.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | "
                     "%s | %s | %s | %s | %.2f |" % (
                         fmt_n(p["runs"]), p["pages"], p["ranged"],
                         fmt_s(p["walk"]), g("walk"),
                         fmt_s(p.get("ls_cold")), g("ls_cold"),
                         fmt_s(p.get("ls_warm")), g("ls_warm"),
                         fmt_mib(p["rss"]), g("rss"), fmt_mib(p["hwm"]),
                         fmt_mib(p["payload"], "B"),
                         fmt_mib(p["files"], "B"),
                         p["rss"] * 1024.0 / lim))
        prev = p
    ulimit = 1.5 * big["unique"] + 32 * MiB
    lines += ["", "- payload = `payload_bytes` of .dlqfs/status: the JSON "
              "of the pages, so entries fetched twice at the range cuts count "
              "twice. The JSON of every entry once is %s at %s runs; against "
              "that, the limit is %s and RSS / limit = %.2f." % (
                  fmt_mib(big["unique"], "B"), fmt_n(big["runs"]),
                  fmt_mib(ulimit, "B"), big["rss"] * 1024.0 / ulimit),
              "- files served = the bytes of every file of the tree (statfs "
              "f_blocks), which the daemon renders when a file is first "
              "read and does not keep: %.2f x the entries' JSON at %s "
              "runs." % (
                  big["files"] / float(big["unique"]), fmt_n(big["runs"]))]
    seq = [p for p in points if p["ranged"] == 0 and p["pages"] > 1]
    if seq:
        lines.append("- The walk at %s runs made no ranged request: one "
                     "cursor chain (the listing's first page spans %s ms; "
                     "see the walk section)." % (
                         ", ".join(fmt_n(p["runs"]) for p in seq),
                         ", ".join("%d" % p["span"] for p in seq)))
    ctx.section("Scale curve (targets 4 and 5)" if want_scale else
                "Memory (target 4)", lines)
