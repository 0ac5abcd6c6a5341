"""Phases walk and refresh (targets 1 and 2): the sequential Python
baseline, dlqfs walks with walkers=1 and with the defaults, the API's
requests per second, the diagnostic on data without the 1-ms tie, and the
timer refreshes of an unchanged DLQ over one reconcile cycle.
"""
import http.client
import json
import time
import urllib.parse

from bench_fake import Fake, first_page_span, ranged_count, request_rates
from bench_mount import Mount, walk_seconds
from bench_util import (LIST_PATH, MiB, TOKEN, HarnessError, fmt_n, fmt_s,
                        iso_to_epoch, log, median)


# --------------------------------------------------------------------------
# the sequential baseline


def python_walk(fake, count=100):
    """The fastest honest sequential client: one keep-alive connection,
    count=100, follow the cursor, json.loads each page. Returns (seconds,
    runs, pages)."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=120)
    headers = {"Authorization": "Bearer " + TOKEN,
               "Accept": "application/json"}
    cursor = None
    runs = pages = 0
    t0 = time.monotonic()
    try:
        while True:
            path = "%s?count=%d" % (LIST_PATH, count)
            if cursor:
                path += "&cursor=" + urllib.parse.quote(cursor, safe="")
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise HarnessError("baseline: HTTP %d: %s" % (r.status,
                                                             body[:200]))
            page = json.loads(body)
            runs += len(page["messages"])
            pages += 1
            cursor = page.get("cursor")
            if not cursor:
                break
        dt = time.monotonic() - t0
    finally:
        conn.close()
    if runs != fake.runs:
        raise HarnessError("baseline walked %d runs, the fake has %d"
                           % (runs, fake.runs))
    return dt, runs, pages


# --------------------------------------------------------------------------
# the phases


def measure_refreshes(ctx, m, fake, reps, label):
    """`reps` refreshes of mount `m`; one dict per walk."""
    out = []
    for i in range(reps):
        fake.clear()
        s, wall = m.refresh()
        reqs = fake.requests()
        st = fake.stats()
        fixed, sliding, _ = request_rates(reqs)
        w = {"seconds": walk_seconds(s), "wall": wall,
             "requests": st["list_requests"], "pages": s["pages"],
             "ranged": ranged_count(reqs), "rps_fixed": fixed,
             "rps_sliding": sliding}
        last = max((e["time"] for e in reqs), default=None)
        done = iso_to_epoch(s["last_success"])
        w["tail"] = done - last if last and done else float("nan")
        out.append(w)
        log("  %s refresh %d: %.2f s (status), %.2f s (wall), %d requests "
            "(%d ranged), max %d req/s" % (label, i + 1, w["seconds"], wall,
                                           w["requests"], w["ranged"],
                                           fixed))
    return out


def first_walk(ctx, fake, options, label):
    """Mounts with `options` and measures the first walk. Returns (mount,
    dict)."""
    fake.clear()
    m = Mount(ctx, fake, options=options)
    s = m.wait_ready()
    reqs = fake.requests()
    started = iso_to_epoch(s["walk_started"])
    walk_reqs = [e for e in reqs if e["time"] >= started - 0.002]
    fixed, sliding, n = request_rates(walk_reqs)
    w = {"seconds": walk_seconds(s), "mount_to_ready": m.t_ready - m.t_start,
         "requests": n, "startup_requests": len(reqs) - n,
         "pages": s["pages"], "ranged": ranged_count(walk_reqs),
         "rps_fixed": fixed, "rps_sliding": sliding,
         "payload": s["payload_bytes"]}
    log("  %s first walk: %.2f s (status), %.2f s mount to ready, %d "
        "requests (+%d at start-up), %d ranged" % (
            label, w["seconds"], w["mount_to_ready"], n,
            w["startup_requests"], w["ranged"]))
    return m, w


def walk_table(rows):
    lines = ["| walk | best | median | samples | requests | ranged | "
             "max req/s (1-s windows / sliding) |",
             "|---|---|---|---|---|---|---|"]
    for label, ws in rows:
        if not ws:
            continue
        secs = [w["seconds"] for w in ws]
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt_s(min(secs)), fmt_s(median(secs)),
            ", ".join("%.2f" % x for x in secs),
            "/".join(sorted(set(str(w.get("requests", "-")) for w in ws))),
            "/".join(sorted(set(str(w.get("ranged", "-")) for w in ws))),
            "%s / %s" % (max(w.get("rps_fixed", 0) for w in ws),
                         max(w.get("rps_sliding", 0) for w in ws))
            if "rps_fixed" in ws[0] else "-"))
    return lines


def phase_walk(ctx, want_walk, want_refresh):
    a = ctx.args
    reps = a.reps
    fake = ctx.fake_main(a.latency_ms)
    n = fake.runs
    pages_min = (n + 99) // 100
    span = first_page_span(fake)
    lines = []
    py = w1 = None
    rps_seen = []

    if want_walk:
        log("walk: sequential Python baseline x%d" % reps)
        py = []
        for i in range(reps):
            fake.clear()
            dt, runs, pages = python_walk(fake)
            py.append({"seconds": dt, "requests": fake.stats()[
                "list_requests"], "ranged": 0})
            log("  python %d: %.2f s, %d pages" % (i + 1, dt, pages))
        log("walk: dlqfs -o walkers=1")
        m, first1 = first_walk(ctx, fake, ["walkers=1"], "walkers=1")
        try:
            w1 = measure_refreshes(ctx, m, fake, reps, "walkers=1")
        finally:
            m.stop()

    log("walk: dlqfs, default walkers and max_rps")
    m, firstd = first_walk(ctx, fake, [], "default")
    try:
        wd = measure_refreshes(ctx, m, fake, reps, "default")
    finally:
        m.stop()
    rps_seen += [(w["rps_fixed"], w["rps_sliding"], "default")
                 for w in wd + [firstd]]

    if want_walk:
        best_py = min(w["seconds"] for w in py)
        best_1 = min(w["seconds"] for w in w1)
        best_d = min(w["seconds"] for w in wd)
        cap_floor = pages_min / a.max_rps
        ctx.row("1a walk %s runs, %g ms/request: dlqfs (default walkers) "
                "vs sequential Python loop" % (fmt_n(n), a.latency_ms),
                fmt_s(best_d), fmt_s(best_py), best_d / best_py,
                "<= 0.35", best_d / best_py <= 0.35)
        ctx.row("1b same, vs dlqfs -o walkers=1", fmt_s(best_d),
                fmt_s(best_1), best_d / best_1, "<= 0.35",
                best_d / best_1 <= 0.35)
        ctx.row("1c baseline check: dlqfs -o walkers=1 vs Python loop",
                fmt_s(best_1), fmt_s(best_py), best_1 / best_py,
                "~1 (comparable)", None)
        lines += ["Fake API: %s runs (%.1f MiB of JSON), %g ms added to "
                  "every request; best of %d for every walk. dlqfs times are "
                  "refreshes timed by .dlqfs/status (walk_started -> "
                  "last_success), so mount and start-up are excluded."
                  % (fmt_n(n), firstd["payload"] / MiB, a.latency_ms, reps),
                  ""]
        lines += walk_table([("Python sequential loop", py),
                             ("dlqfs walkers=1 (refresh)", w1),
                             ("dlqfs default (refresh)", wd),
                             ("dlqfs walkers=1 (first walk)", [first1]),
                             ("dlqfs default (first walk)", [firstd])])
        lines += ["",
                  "- At max_rps=%g a walk of %d pages cannot take less than "
                  "%.2f s = %.2f x the Python baseline: the 0.35 target "
                  "needs a sequential page time of at least %.1f ms "
                  "(measured: %.1f ms)." % (
                      a.max_rps, pages_min, cap_floor, cap_floor / best_py,
                      1000.0 / (0.35 * a.max_rps),
                      1000.0 * best_py / pages_min),
                  "- Per page, beyond the %g ms of latency: Python loop "
                  "%.1f ms, dlqfs walkers=1 %.1f ms (dlqfs parses and "
                  "renders a page before it asks for the next one)." % (
                      a.latency_ms,
                      1000.0 * best_py / pages_min - a.latency_ms,
                      1000.0 * best_1 / w1[0]["requests"] - a.latency_ms),
                  "- Time after the last page (parse + snapshot build), "
                  "default refreshes: median %.2f s." % median(
                      [w["tail"] for w in wd])]
        detie = False
        if firstd["ranged"] == 0 and all(w["ranged"] == 0 for w in wd):
            lines.append(
                "- **The default walk never cut the scope into createdAt "
                "ranges** (0 requests with fromDate/toDate): it walked one "
                "cursor chain, like walkers=1. The walker cuts only on a "
                "range's first page, from that page's createdAt spread; "
                "here the first page spans %d ms (the generator clamps "
                "createdAt to now - 1 ms, so at %s runs more than 100 "
                "entries share that millisecond): it cannot cut, and "
                "never tries again." % (span, fmt_n(n)))
            detie = not a.no_detie
    if want_refresh:
        full = firstd["requests"]
        cyc = timer_refreshes(ctx, fake)
        inc = median(cyc["per_inc"])
        k = cyc["factor"]
        avg = (full + (k - 1) * inc) / k
        lines.append("- Refresh of an unchanged DLQ: an incremental (timer) "
                     "refresh costs %g request(s) (fromDate = newest "
                     "createdAt - late_window), a full walk %d (the minimum "
                     "is %d pages). With the defaults (refresh=60, "
                     "reconcile=%d x refresh) a reconcile cycle is %d "
                     "incremental refreshes and 1 full walk: (%d + %d x %g) "
                     "/ %d = %.1f requests per refresh on average."
                     % (inc, full, pages_min, k, k - 1, full, k - 1, inc, k,
                        avg))
        lines.append("- Observed, with time compressed (dlqfs -o "
                     "refresh=%g,reconcile=%g; the reconcile is due %g s "
                     "after the last full walk started, and walks take "
                     "time, so fewer refreshes fit in a cycle than at the "
                     "defaults): %d incremental walks and %d full walk of "
                     "%d requests, %.1f requests per refresh. A refresh "
                     "asked for (.dlqfs/refresh, SIGHUP) is full: %s "
                     "requests (the default refreshes above)."
                     % (cyc["refresh"], cyc["reconcile"], cyc["reconcile"],
                        cyc["incremental"], cyc["full"],
                        cyc["full_requests"], cyc["average"],
                        "/".join(sorted(set(
                            str(w["requests"]) for w in wd)))))
    if want_walk and detie:
        rps_seen += walk_detie(ctx, lines)
    fixed = max(x[0] for x in rps_seen)
    sliding = max(x[1] for x in rps_seen)
    ctx.row("1d API requests/s at most during dlqfs walks (unix-second "
            "windows; sliding 1-s: %d)" % sliding, "%d" % fixed,
            "max_rps %g" % a.max_rps, None, "<= %g" % a.max_rps,
            fixed <= a.max_rps)
    if want_refresh:
        ctx.row("2 requests per refresh of an unchanged DLQ on average "
                "(default refresh/reconcile: 1 full walk in %d) vs a full "
                "walk (%s runs)" % (k, fmt_n(n)), "%.1f" % avg, "%d" % full,
                avg / full, "far fewer (<= 0.10)", avg / full <= 0.10)
        ctx.row("2a requests per incremental (timer) refresh of an "
                "unchanged DLQ vs a full walk", "%g" % inc, "%d" % full,
                inc / full, "<= 0.10", inc / full <= 0.10)
    ctx.section("Walk (targets 1 and 2)", lines)


def timer_refreshes(ctx, fake, refresh_s=1.0, factor=10):
    """One reconcile cycle of timer refreshes of an unchanged DLQ: mounts
    with refresh=`refresh_s` and reconcile=`factor` x that (dlqfs's default
    ratio), and counts the list requests from the end of the first (full)
    walk to the end of the next full walk."""
    log("refresh: timer refreshes over one reconcile cycle (refresh=%g, "
        "reconcile=%g)" % (refresh_s, refresh_s * factor))
    m = Mount(ctx, fake, options=["refresh=%g" % refresh_s,
                                  "reconcile=%g" % (refresh_s * factor)])
    try:
        m.wait_ready()
        fake.clear()
        s0 = m.status()
        if s0["walks_full"] != 1 or s0["walks_incremental"] != 0:
            raise HarnessError("a timer walk began before the count: %s"
                               % json.dumps(s0))
        froms = set()
        end = time.monotonic() + max(120.0, 4 * refresh_s * factor)
        while True:
            s = m.status()
            if s["walk_kind"] == "incremental" and s["incremental_from"]:
                froms.add(int(round(iso_to_epoch(s["incremental_from"])
                                    * 1000)))
            if s["walks_full"] > s0["walks_full"] and not s["walking"]:
                break
            if time.monotonic() > end:
                raise HarnessError("no reconcile within %.0f s: %s"
                                   % (end, json.dumps(s)))
            time.sleep(0.01)
        reqs = [e for e in fake.requests() if e["path"] == LIST_PATH]
    finally:
        m.stop()
    if s["walks_failed"] != s0["walks_failed"]:
        raise HarnessError("a timer walk failed: %s" % s.get("last_error"))
    if s["runs"] != fake.runs:
        raise HarnessError("after the timer walks dlqfs shows %d runs, the "
                           "fake has %d" % (s["runs"], fake.runs))
    n_inc = s["walks_incremental"] - s0["walks_incremental"]
    n_full = s["walks_full"] - s0["walks_full"]

    def from_date(e):
        return next((int(v) for k, v in e["query"] if k == "fromDate"), None)

    inc_reqs = [e for e in reqs if from_date(e) in froms
                and not any(k == "toDate" for k, _ in e["query"])]
    per_inc = [len(inc_reqs) / float(n_inc)] if n_inc else [float("nan")]
    out = {"refresh": refresh_s, "reconcile": refresh_s * factor,
           "factor": factor, "incremental": n_inc, "full": n_full,
           "full_requests": len(reqs) - len(inc_reqs),
           "per_inc": [round(x, 1) for x in per_inc],
           "average": len(reqs) / float(n_inc + n_full)}
    log("  %d incremental walks (%s requests each), %d full (%d requests): "
        "%.1f requests per refresh" % (n_inc, per_inc[0], n_full,
                                       out["full_requests"], out["average"]))
    return out


def walk_detie(ctx, lines):
    """Diagnostic: the same walk on data whose head is not one
    millisecond, so the walker does cut ranges."""
    a = ctx.args
    reps = a.reps
    fake = Fake(ctx, a.runs, a.latency_ms, detie=True)
    rps = []
    try:
        log("walk diagnostic: data without the 1-ms tie")
        py = []
        for i in range(reps):
            dt, _, _ = python_walk(fake)
            py.append({"seconds": dt})
        m, first = first_walk(ctx, fake, [], "default, no tie")
        try:
            wd = measure_refreshes(ctx, m, fake, reps, "default, no tie")
        finally:
            m.stop()
        m, firstu = first_walk(ctx, fake, ["max_rps=10000"],
                               "max_rps=10000, no tie")
        try:
            wu = measure_refreshes(ctx, m, fake, reps,
                                   "max_rps=10000, no tie")
        finally:
            m.stop()
        rps += [(w["rps_fixed"], w["rps_sliding"], "no tie")
                for w in wd + [first]]
        best_py = min(w["seconds"] for w in py)
        best_d = min(w["seconds"] for w in wd)
        best_u = min(w["seconds"] for w in wu)
        ctx.row("1a' (diagnostic) as 1a, data whose first page is not one "
                "millisecond", fmt_s(best_d), fmt_s(best_py),
                best_d / best_py, "<= 0.35", best_d / best_py <= 0.35)
        ctx.row("1a'' (diagnostic) as 1a', -o max_rps=10000 (no cap)",
                fmt_s(best_u), fmt_s(best_py), best_u / best_py, "<= 0.35",
                best_u / best_py <= 0.35)
        lines += ["", "Diagnostic: the same %s runs with the createdAt ties "
                  "of 10+ entries spread over 3 hours (fakeserver.py "
                  "--detie), so the first page spans time:" % fmt_n(a.runs),
                  ""]
        lines += walk_table([("Python sequential loop", py),
                             ("dlqfs default (refresh)", wd),
                             ("dlqfs default (first walk)", [first]),
                             ("dlqfs max_rps=10000 (refresh)", wu)])
        nreq = median([w["requests"] for w in wd])
        pages = (a.runs + 99) // 100
        lines += ["", "- Cut into ranges, a walk made %g requests for %d "
                  "pages of data (+%.0f%% at the cuts); at max_rps=%g that "
                  "alone takes %.2f s = %.2f x the Python baseline." % (
                      nreq, pages, 100.0 * (nreq - pages) / pages,
                      a.max_rps, nreq / a.max_rps,
                      nreq / a.max_rps / best_py)]
    finally:
        fake.stop()
    return rps
