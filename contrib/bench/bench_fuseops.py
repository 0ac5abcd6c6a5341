"""Phase fuseops (not a target): the FUSE requests each read command
makes, cold and warm, counted by opcode from a `dlqfs -d` mount's debug
output: where the read-path time goes.
"""
import collections
import os
import tempfile
import time

from bench_fake import Fake
from bench_mount import Mount
from bench_util import log, remove_tree, run_cmd


FUSEOPS_CMDS = (
    ("ls -l runs/", "ls -l runs/ >/dev/null"),
    ("grep -rl ECONNRESET runs/*/responseBody",
     "grep -rl ECONNRESET runs/*/responseBody >/dev/null; true"),
    ("rsync -a ./ DEST/", "rsync -a ./ %(dest)s/"),
    ("find -L .", "find -L . >/dev/null"),
)


def count_ops(text):
    c = collections.Counter()
    for line in text.splitlines():
        i = line.find("opcode: ")
        if i >= 0 and line.startswith("unique: "):
            c[line[i + 8:].split(" ", 1)[0]] += 1
    return c


def phase_fuseops(ctx):
    a = ctx.args
    fake = Fake(ctx, a.fuseops_runs, 0)
    lines = []
    try:
        for title, cmd in FUSEOPS_CMDS:
            log("fuseops: %s" % title)
            for ro in ((False, True) if title.startswith("grep") else
                       (False,)):
                m = Mount(ctx, fake, options=["ro"] if ro else [],
                          debug=True, name="dbg")
                try:
                    m.wait_ready()
                    counts = []
                    for _ in range(2):
                        dest = tempfile.mkdtemp(prefix="rsync-",
                                                dir=ctx.rsync_base)
                        os.rmdir(dest)
                        time.sleep(0.3)
                        start = os.path.getsize(m.stderr_path)
                        run_cmd(ctx, cmd % {"dest": dest}, m.mountpoint)
                        time.sleep(0.5)  # RELEASE is sent after close
                        with open(m.stderr_path, errors="replace") as f:
                            f.seek(start)
                            counts.append(count_ops(f.read()))
                        remove_tree(dest)
                finally:
                    m.stop()
                for label, c in zip(("cold", "warm"), counts):
                    lines.append("| `%s`%s | %s | %d | %s |" % (
                        title, " (-o ro)" if ro else "", label,
                        sum(c.values()), ", ".join(
                            "%s %d" % kv for kv in c.most_common())))
    finally:
        fake.stop()
    head = ["dlqfs -d on %d runs (%d files of runs/, each run in several "
            "views); cold = first run after a fresh mount, warm = the "
            "second. Requests counted from the daemon's debug output."
            % (a.fuseops_runs, a.fuseops_runs * 6), "",
            "| command | pass | FUSE requests | by opcode |",
            "|---|---|---|---|"]
    ctx.section("FUSE requests per command (where read-path time goes)",
                head + lines)
