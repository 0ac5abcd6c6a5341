"""Concurrency and lifecycle under stress.

- Several reader processes run find, cat, ls -l, rewound and chunked
  directory listings and stat+read checks in a loop while the fake API's
  data changes and the daemon refreshes every 100 ms (README, Semantics:
  "Consistency", "Staleness bound", "Sizes").
- An open file keeps reading the bytes of the snapshot it was opened on.
- Signals: SIGTERM/SIGINT during a walk unmount cleanly; SIGKILL leaves a
  disconnected mount that `fusermount3 -u` recovers (README, Running it).
- 200 refreshes of an unchanged DLQ leak nothing (LeakSanitizer in the
  ASan build) and, in a build without sanitizers, keep RSS flat.

- Whichever thread takes SIGTERM/SIGINT, the daemon stops; SIGHUPs that
  keep coming while it stops are harmless.

Every count here is a fixed number of iterations, never a wall-clock
bound: the machines are shared and noisy (the only time limits are
generous ones that tell a hang from a slow stop). Run it under the
sanitizer builds, e.g.

    DLQFS_BIN=build-asan/dlqfs python3 -m pytest -q tests/integration/test_stress.py
    DLQFS_BIN=build-tsan/dlqfs python3 -m pytest -q tests/integration/test_stress.py

(ThreadSanitizer set-up: contrib/bench/README.md.)
"""
import collections
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import fakeapi
from conftest import DLQFS, Mount, is_mounted, unmount, vm_rss_kib

STATES = list(fakeapi.FAILURE_STATES)


# --------------------------------------------------------------------------
# helpers


def escape_name(value):
    """README, Names (short values only: callers skip long ones)."""
    if value in (".", ".."):
        return "%2E" * len(value)
    out = bytearray()
    for b in value.encode("utf-8"):
        if b in (0x25, 0x2F) or b < 0x20 or b == 0x7F:
            out += b"%%%02X" % b
        else:
            out.append(b)
    return out.decode("utf-8")


def run_labels(m):
    if "labels" in m:
        labels = m["labels"] if isinstance(m["labels"], list) else []
    else:
        labels = [m.get("label")]
    out = []
    for x in labels:
        if isinstance(x, str) and x and x not in out:
            out.append(x)
    return out


def sanitized_binary():
    """'asan', 'tsan' or None: which runtime the daemon carries."""
    with open(DLQFS, "rb") as f:
        data = f.read()
    if b"__tsan_init" in data:
        return "tsan"
    if b"__asan_init" in data:
        return "asan"
    return None


def big_text(n_bytes):
    lines, size, i = [], 0, 0
    while size < n_bytes:
        line = "stress line %06d: upstream timeout while streaming (ECONNRESET)\n" % i
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


# --------------------------------------------------------------------------
# 1. the stress test
#
# The worker runs in its own process (so the kernel sees independent
# readers, as with real tools) and prints one JSON object: operation
# counts, acceptable ENOENTs, and violations.

WORKER = r'''
import collections, ctypes, errno, json, os, platform, random, re, struct
import subprocess, sys, time

cfg = json.load(open(sys.argv[1]))
MP = cfg["mp"]
rng = random.Random(cfg["seed"])
MSGS = cfg["messages"]
STABLE = cfg["stable"]
STABLE_SET = set(STABLE)
VOLATILE = set(cfg["volatile"])
UNIVERSE = set(MSGS)
BY_LABEL = cfg["by_label"]        # escaped label -> stable ids under it
RUN_LABELS = cfg["run_labels"]    # id -> escaped labels
STATES = cfg["states"]
ENV = dict(os.environ, LC_ALL="C")
ID_RE = re.compile(r"\d{10,}-\d+")

ops = collections.Counter()
enoent = collections.Counter()
violations = []
nviol = [0]


def violation(op, path, what):
    nviol[0] += 1
    if len(violations) < 60:
        violations.append({"op": op, "path": path, "what": what})


def may_vanish(text):
    """ENOENT is fine for a run the mutator removes and for by-state/
    (its entries move when failureFunctionState changes)."""
    if "/by-state/" in text:
        return True
    return any(i in VOLATILE for i in ID_RE.findall(text))


def os_error(op, path, e):
    if e.errno == errno.ENOENT and may_vanish(path):
        enoent[op] += 1
    else:
        violation(op, path, "%s: %s" % (errno.errorcode.get(e.errno, e.errno),
                                        e.strerror))


def check_stderr(op, text):
    for line in text.splitlines():
        if "No such file or directory" in line and may_vanish(line):
            enoent[op] += 1
        else:
            violation(op, "", "stderr: " + line)


def check_listing(op, path, names, must):
    c = collections.Counter(names)
    dups = sorted(n for n, k in c.items() if k > 1)
    if dups:
        violation(op, path, "duplicate names %s" % dups[:5])
    missing = sorted(set(must) - set(c))
    if missing:
        violation(op, path, "%d names that exist are missing: %s"
                  % (len(missing), missing[:5]))
    unknown = sorted(set(c) - UNIVERSE)
    if unknown:
        violation(op, path, "unknown names %s" % unknown[:5])


# -- expected bytes of the run files (message.json aside) ------------------

def header_text(h):
    def line(s):
        return s.replace("\r", " ").replace("\n", " ")
    out = []
    for name in sorted(h, key=lambda k: k.encode("utf-8")):
        vals = h[name] if isinstance(h[name], list) else [h[name]]
        for v in vals:
            out.append("%s: %s\n" % (line(name), line(v)))
    return "".join(out).encode("utf-8")


def body(m, key, key64):
    import base64
    b64 = m.get(key64)
    if isinstance(b64, str) and b64:
        return base64.b64decode(b64)
    if isinstance(m.get(key), str):
        return m[key].encode("utf-8")
    return None


def expected_files(m):
    files = {"message.json": None}
    b = body(m, "body", "bodyBase64")
    if b is not None:
        files["body"] = b
    b = body(m, "responseBody", "responseBodyBase64")
    if b is not None:
        files["responseBody"] = b
    if isinstance(m.get("header"), dict):
        files["header"] = header_text(m["header"])
    if isinstance(m.get("responseHeader"), dict):
        files["responseHeader"] = header_text(m["responseHeader"])
    rs = m.get("responseStatus")
    if isinstance(rs, int) and not isinstance(rs, bool):
        files["responseStatus"] = b"%d\n" % rs
    return files


FILES = {i: expected_files(m) for i, m in MSGS.items()}


def check_message_json(i, data):
    """Some version of the entry: only failureFunctionState may differ
    from the original, and the text is exactly the pretty-printed JSON."""
    try:
        m = json.loads(data)
    except ValueError as e:
        return "not JSON (%s): a read mixing two versions?" % e
    text = (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode()
    if text != data:
        return "not the exact pretty-printed text"
    if not isinstance(m, dict) or m.get("dlqId") != i:
        return "dlqId is %r" % (m.get("dlqId") if isinstance(m, dict) else m)
    st = m.pop("failureFunctionState", None)
    base = dict(MSGS[i])
    base.pop("failureFunctionState", None)
    if m != base:
        return "fields other than failureFunctionState differ"
    if st is not None and st not in STATES:
        return "failureFunctionState %r" % st
    return None


def check_bytes(op, path, i, fname, data):
    if fname == "message.json":
        why = check_message_json(i, data)
        if why:
            violation(op, path, "message.json: " + why)
    elif data != FILES[i][fname]:
        violation(op, path, "%d bytes differ from the %d expected"
                  % (len(data), len(FILES[i][fname])))


# -- operations ------------------------------------------------------------

def read_file(op, path, i, fname, slow=False):
    """open, fstat, read to EOF (random chunk sizes; slow: a pause that
    spans refreshes after the first bytes), fstat again."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        os_error(op, path, e)
        return
    chunks = []
    step = "fstat"
    try:
        try:
            st = os.fstat(fd)
            step = "read"
            if slow:
                chunks.append(os.read(fd, 64))
                time.sleep(rng.uniform(0.15, 0.35))
            while True:
                b = os.read(fd, rng.choice((1000, 4096, 65536, 131072)))
                if not b:
                    break
                chunks.append(b)
            step = "fstat after the read"
            st2 = os.fstat(fd)
        except OSError as e:  # on an open file, nothing is acceptable
            violation(op, path, "%s on the open file (%d bytes read): %s: %s"
                      % (step, sum(map(len, chunks)),
                         errno.errorcode.get(e.errno, e.errno), e.strerror))
            return
    finally:
        os.close(fd)
    data = b"".join(chunks)
    ops[op] += 1
    if len(data) != st.st_size:
        violation(op, path, "read returned %d bytes, fstat before the read "
                  "said st_size %d" % (len(data), st.st_size))
    elif st2.st_size != st.st_size:
        violation(op, path, "fstat on the same fd changed st_size %d -> %d "
                  "(read returned %d)" % (st.st_size, st2.st_size, len(data)))
    check_bytes(op, path, i, fname, data)


def pick_run():
    if rng.random() < 0.5:
        return rng.choice(STABLE)
    return rng.choice(sorted(VOLATILE))


def file_path(i, fname):
    r = rng.random()
    if r < 0.25 and RUN_LABELS.get(i):
        return os.path.join(MP, "by-label", rng.choice(RUN_LABELS[i]), i, fname)
    if r < 0.35:
        st = MSGS[i].get("failureFunctionState") or rng.choice(STATES)
        return os.path.join(MP, "by-state", st, i, fname)
    return os.path.join(MP, "runs", i, fname)


def read_files(n):
    for k in range(n):
        i = pick_run()
        fname = rng.choice(sorted(FILES[i]))
        read_file("read", file_path(i, fname), i, fname)
    i = pick_run()
    read_file("slow_read", file_path(i, "message.json"), i, "message.json",
              slow=True)
    fname = rng.choice(sorted(FILES[i]))
    read_file("slow_read", file_path(i, fname), i, fname, slow=True)


def listdir_rewind(path, must):
    """Two listings through one directory fd, rewound to offset 0."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        os_error("listdir", path, e)
        return
    try:
        for k in range(2):
            if k:
                os.lseek(fd, 0, os.SEEK_SET)
            if rng.random() < 0.5:
                names = os.listdir(fd)
            else:
                with os.scandir(fd) as it:
                    names = [e.name for e in it]
            ops["listdir"] += 1
            check_listing("listdir", path, names, must)
    except OSError as e:
        violation("listdir", path, "on the open directory: %s: %s" % (
            errno.errorcode.get(e.errno, e.errno), e.strerror))
    finally:
        os.close(fd)


SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}.get(platform.machine())
if SYS_GETDENTS64:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long


def getdents(fd, bufsize, pause):
    """[(name, d_off)] read bufsize bytes at a time, sleeping between."""
    buf = ctypes.create_string_buffer(bufsize)
    out = []
    while True:
        n = libc.syscall(ctypes.c_long(SYS_GETDENTS64), ctypes.c_int(fd), buf,
                         ctypes.c_uint(bufsize))
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        if n == 0:
            return out
        raw, pos = buf.raw[:n], 0
        while pos < n:
            _, off, reclen, _ = struct.unpack_from("<QqHB", raw, pos)
            name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
            pos += reclen
            if name not in (b".", b".."):
                out.append((name.decode("utf-8", "surrogateescape"), off))
        if pause:
            time.sleep(pause)


def chunked_listing(path, must):
    """A listing read in small pieces with pauses (refreshes happen in the
    middle), then a seekdir to a position in it: the rest must be the same
    entries (the handle keeps its snapshot), then rewinddir."""
    if not SYS_GETDENTS64:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        os_error("chunked", path, e)
        return
    try:
        first = getdents(fd, 1024, rng.uniform(0.01, 0.04))
        ops["chunked"] += 1
        check_listing("chunked", path, [n for n, _ in first], must)
        if len(first) > 4:
            k = rng.randrange(1, len(first) - 2)
            os.lseek(fd, first[k][1], os.SEEK_SET)
            rest = getdents(fd, 1024, 0.01)
            ops["seekdir"] += 1
            want = [n for n, _ in first[k + 1:]]
            got = [n for n, _ in rest]
            if got != want:
                violation("seekdir", path, "after seekdir to entry %d of %d: "
                          "%d entries, %d expected; first difference %s"
                          % (k, len(first), len(got), len(want),
                             next(((a, b) for a, b in zip(got, want) if a != b),
                                  None)))
        os.lseek(fd, 0, os.SEEK_SET)
        again = getdents(fd, 4096, 0)
        ops["chunked"] += 1
        check_listing("chunked", path, [n for n, _ in again], must)
    except OSError as e:
        violation("chunked", path, "on the open directory: %s: %s" % (
            errno.errorcode.get(e.errno, e.errno), e.strerror))
    finally:
        os.close(fd)


def run(args):
    return subprocess.run(args, env=ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300)


def ls_l(path, must, links):
    r = run(["ls", "-l", "--color=never", path])
    ops["ls"] += 1
    err = r.stderr.decode(errors="replace")
    check_stderr("ls", err)
    if r.returncode not in (0, 1) or (r.returncode and not err):
        violation("ls", path, "ls exited %d" % r.returncode)
        return
    names = []
    for line in r.stdout.decode(errors="replace").splitlines():
        if line.startswith("total "):
            continue
        f = line.split()
        if links and line.startswith("l?????????") and f[-1] not in must:
            # listed, then gone before ls's lstat: a concurrent removal
            # (ENOENT), allowed for runs that are not stable
            ops["ls_vanished"] += 1
            continue
        if links:
            if len(f) < 3 or f[-2] != "->" or f[-1] != "../../runs/" + f[-3]:
                violation("ls", path, "bad line %r" % line)
                continue
            names.append(f[-3])
        else:
            names.append(f[-1])
    if r.returncode == 0 and not names and "/by-state/" in path:
        return  # no run in that state at the moment
    check_listing("ls", path, names, must)


def cat(i):
    names = [f for f in sorted(FILES[i]) if f != "message.json"]
    if not names:
        return
    paths = [os.path.join(MP, "runs", i, f) for f in names]
    r = run(["cat"] + paths)
    ops["cat"] += 1
    err = r.stderr.decode(errors="replace")
    check_stderr("cat", err)
    if r.returncode == 0:
        want = b"".join(FILES[i][f] for f in names)
        if r.stdout != want:
            violation("cat", paths[0], "cat printed %d bytes, %d expected"
                      % (len(r.stdout), len(want)))
    elif not err:
        violation("cat", paths[0], "cat exited %d" % r.returncode)


def find():
    r = run(["find", "-L", os.path.join(MP, "by-label"), "-type", "f"])
    ops["find"] += 1
    err = r.stderr.decode(errors="replace")
    check_stderr("find", err)
    if r.returncode and not err:
        violation("find", "", "find exited %d" % r.returncode)
    lines = r.stdout.decode("utf-8", "surrogateescape").splitlines()
    c = collections.Counter(lines)
    dups = [n for n, k in c.items() if k > 1]
    if dups:
        violation("find", "", "paths printed twice: %s" % dups[:3])
    missing = [os.path.join(MP, "by-label", lab, i, "message.json")
               for lab, ids in BY_LABEL.items() for i in ids]
    missing = [p for p in missing if p not in c]
    if missing:
        violation("find", "", "%d files that exist not found: %s"
                  % (len(missing), missing[:3]))
    ops["find_files"] += len(lines)


labels = sorted(BY_LABEL)
for it in range(cfg["iterations"]):
    listdir_rewind(os.path.join(MP, "runs"), STABLE)
    lab = rng.choice(labels)
    listdir_rewind(os.path.join(MP, "by-label", lab), BY_LABEL[lab])
    if it % 2 == 0:
        chunked_listing(os.path.join(MP, "runs"), STABLE)
    else:
        chunked_listing(os.path.join(MP, "by-label", lab), BY_LABEL[lab])
    read_files(cfg["reads"])
    if it % 2 == cfg["seed"] % 2:
        ls_l(os.path.join(MP, "runs"), STABLE, False)
    ls_l(os.path.join(MP, "by-state", rng.choice(STATES)), (), True)
    cat(pick_run())
    if it % 3 == cfg["seed"] % 3:
        find()

print(json.dumps({"ops": ops, "enoent": enoent, "nviol": nviol[0],
                  "violations": violations}))
'''

N_RUNS = 300          # served at the start
N_STABLE = 200        # never removed (their state changes)
N_POOL = 100          # extra runs the mutator adds and removes
N_WORKERS = 4
ITERATIONS = 20       # per worker
READS = 8             # stat+read checks per iteration, plus 2 slow ones
MUTATIONS_MAX = 6000  # the mutator's bound
MIN_SWAPS = 20


def stress_data():
    msgs = fakeapi.generate(N_RUNS + N_POOL, seed=11, large=False)
    # one stable run with a body larger than one FUSE read (128 KiB)
    big = msgs[0]
    big["responseBody"] = big_text(300 * 1024)
    big.pop("responseBodyBase64", None)
    return msgs


class Mutator(threading.Thread):
    """Changes the fake continuously: removes and re-adds volatile runs,
    flips failureFunctionState (which changes message.json and by-state/),
    and sends SIGHUP now and then. Bounded by MUTATIONS_MAX."""

    def __init__(self, fake, msgs, stable, volatile, daemon_pid):
        threading.Thread.__init__(self, name="mutator", daemon=True)
        self.fake = fake
        self.msgs = {m["dlqId"]: m for m in msgs}
        self.stable = list(stable)
        self.volatile = list(volatile)
        self.pid = daemon_pid
        self.halt = threading.Event()
        self.counts = collections.Counter()
        self.error = None

    def run(self):
        rng = random.Random(5)
        present = set(self.fake.dlq_ids())
        try:
            for k in range(MUTATIONS_MAX):
                if self.halt.is_set():
                    break
                r = rng.random()
                vol_in = [i for i in self.volatile if i in present]
                vol_out = [i for i in self.volatile if i not in present]
                if r < 0.45:
                    i = rng.choice(self.stable + vol_in)
                    cur = self.fake.get(i).get("failureFunctionState")
                    self.fake.update(i, failureFunctionState=rng.choice(
                        [s for s in STATES if s != cur]))
                    self.counts["update"] += 1
                elif r < 0.72 and len(vol_in) > 20:
                    i = rng.choice(vol_in)
                    self.fake.remove(i)
                    present.discard(i)
                    self.counts["remove"] += 1
                elif vol_out:
                    i = rng.choice(vol_out)
                    self.fake.add(self.msgs[i])
                    present.add(i)
                    self.counts["add"] += 1
                if k % 150 == 149:
                    os.kill(self.pid, signal.SIGHUP)
                    self.counts["sighup"] += 1
                time.sleep(0.005)
        except BaseException as e:  # reported by the test
            self.error = e


def start_worker(tmp_path, mp, seed, msgs, stable, volatile, iterations,
                 output=subprocess.PIPE):
    """Starts one WORKER process. stable: runs that always exist; volatile:
    runs that may come and go."""
    by_label, labels = collections.defaultdict(list), {}
    for msg in msgs:
        labs = [escape_name(x) for x in run_labels(msg)
                if len(x.encode()) < 100]
        labels[msg["dlqId"]] = labs
        if msg["dlqId"] in stable:
            for x in labs:
                by_label[x].append(msg["dlqId"])
    assert len(by_label) >= 3
    cfg = {"mp": mp, "seed": seed, "iterations": iterations, "reads": READS,
           "messages": {x["dlqId"]: x for x in msgs}, "stable": stable,
           "volatile": volatile, "by_label": by_label, "run_labels": labels,
           "states": STATES}
    path = str(tmp_path / ("worker%d.json" % seed))
    with open(path, "w") as f:
        json.dump(cfg, f)
    return subprocess.Popen([sys.executable, "-c", WORKER, path],
                            stdin=subprocess.DEVNULL, stdout=output,
                            stderr=output)


def test_stress_readers_during_refreshes(fake_factory, mount_factory,
                                         tmp_path):
    msgs = stress_data()
    ids = [m["dlqId"] for m in msgs]
    stable, volatile = ids[:N_STABLE], ids[N_STABLE:]
    fake = fake_factory(messages=msgs[:N_RUNS])
    m = mount_factory(fake, options=["refresh=0.1"])
    assert m.status()["refresh_seconds"] == 0.1

    st0 = m.status()
    mutator = Mutator(fake, msgs, stable, volatile, m.proc.pid)
    workers = []
    try:
        for w in range(N_WORKERS):
            workers.append(start_worker(tmp_path, m.mountpoint, w, msgs,
                                        stable, volatile, ITERATIONS))
        mutator.start()
        results = []
        for w, p in enumerate(workers):
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, "worker %d exited %s:\n%s" % (
                w, p.returncode, err.decode(errors="replace"))
            results.append(json.loads(out))
    finally:
        mutator.halt.set()
        for p in workers:
            if p.poll() is None:
                p.kill()
                p.wait()
        mutator.join(30)
    assert mutator.error is None, repr(mutator.error)
    assert m.proc.poll() is None, "dlqfs died:\n" + m.stderr()
    st1 = m.status()

    ops, enoent, viol = collections.Counter(), collections.Counter(), []
    nviol = 0
    for r in results:
        ops.update(r["ops"])
        enoent.update(r["enoent"])
        nviol += r["nviol"]
        viol += r["violations"]
    swaps = st1["generation"] - st0["generation"]
    print("\nstress: ops %s\n  acceptable ENOENT %s\n  mutations %s\n"
          "  swaps %d, walks_ok %d, walks_failed %d, refresh_served %d, "
          "lost_readdir_cookies %d"
          % (dict(ops), dict(enoent), dict(mutator.counts), swaps,
             st1["walks_ok"], st1["walks_failed"], st1["refresh_served"],
             st1["lost_readdir_cookies"]))
    kinds = collections.Counter(
        "%s: %s" % (v["op"], re.sub(r"\d+", "N", v["what"])[:70]) for v in viol)
    if nviol:
        print("%d violations; kinds (of the first %d):\n  %s\ne.g.:\n%s" % (
            nviol, len(viol), "\n  ".join(
                "%3d  %s" % (k, w) for w, k in kinds.most_common()),
            "\n".join(json.dumps(v) for v in viol[:25])))

    # enough work was done, and it straddled many swaps
    reads = N_WORKERS * ITERATIONS * READS
    assert ops["read"] + enoent["read"] == reads
    assert ops["read"] >= reads // 2
    assert ops["slow_read"] >= N_WORKERS * ITERATIONS
    assert ops["listdir"] >= N_WORKERS * ITERATIONS * 2
    assert ops["chunked"] >= N_WORKERS * ITERATIONS
    assert ops["ls"] >= N_WORKERS * ITERATIONS
    assert ops["cat"] >= N_WORKERS * ITERATIONS // 2
    assert ops["find"] >= N_WORKERS * (ITERATIONS // 3)
    assert ops["find_files"] >= ops["find"] * 500
    assert mutator.counts["add"] >= 20 and mutator.counts["remove"] >= 20
    assert mutator.counts["update"] >= 50
    assert swaps >= MIN_SWAPS, "only %d swaps" % swaps
    assert st1["walks_failed"] == 0
    # every listing went on in the listing its cookies came from
    assert st1["lost_readdir_cookies"] == 0
    assert st1["refresh_requested"] == st0["refresh_requested"] + \
        mutator.counts["sighup"]

    # after the last swap the kernel knows everything: no stale name
    st = m.refresh()
    assert st["runs"] == len(fake)
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())
    want = collections.defaultdict(set)
    for x in fake.messages():
        if x.get("failureFunctionState"):
            want[x["failureFunctionState"]].add(x["dlqId"])
    for s in STATES:
        got = set(os.listdir(m.path("by-state", s))) \
            if os.path.exists(m.path("by-state", s)) else set()
        assert got == want[s], s
        for i in sorted(want[s])[:20]:
            with open(m.path("by-state", s, i, "message.json")) as f:
                assert json.load(f)["failureFunctionState"] == s
    assert m.stop(check=True) == 0

    assert nviol == 0, "%d violations; kinds (of the first %d):\n  %s" % (
        nviol, len(viol), "\n  ".join(
            "%3d  %s" % (k, w) for w, k in kinds.most_common()))


# --------------------------------------------------------------------------
# 2. open files keep their snapshot


def test_open_file_keeps_its_bytes_after_the_run_is_removed(fake_factory,
                                                            mount_factory):
    msgs = fakeapi.generate(30, seed=3, large=False)
    victim = msgs[4]
    victim["responseBody"] = big_text(600 * 1024)  # > readahead
    victim.pop("responseBodyBase64", None)
    vid = victim["dlqId"]
    fake = fake_factory(messages=msgs)
    m = mount_factory(fake)
    run_dir = m.path("runs", vid)
    names = sorted(os.listdir(run_dir))
    assert "responseBody" in names and "message.json" in names

    before = {}
    for n in names:
        with open(os.path.join(run_dir, n), "rb") as f:
            before[n] = f.read()
    fds = {n: os.open(os.path.join(run_dir, n), os.O_RDONLY) for n in names}
    try:
        sizes = {n: os.fstat(fd).st_size for n, fd in fds.items()}
        assert sizes == {n: len(b) for n, b in before.items()}
        # read part of the big file; leave the others unread
        head = os.read(fds["responseBody"], 4096)
        assert head == before["responseBody"][:4096]

        assert fake.remove(vid)
        st = m.refresh()
        assert st["runs"] == 29
        assert vid not in os.listdir(m.path("runs"))
        with pytest.raises(FileNotFoundError):
            os.stat(run_dir)

        for n, fd in fds.items():
            chunks = [head] if n == "responseBody" else []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            assert b"".join(chunks) == before[n], n
            assert os.fstat(fd).st_size == sizes[n], n
            # pread from the start: still the old bytes
            assert os.pread(fd, 100, 0) == before[n][:100], n
    finally:
        for fd in fds.values():
            os.close(fd)
    for n in names:
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(run_dir, n))
        with pytest.raises(FileNotFoundError):
            open(os.path.join(run_dir, n), "rb")
    assert m.stop(check=True) == 0


def test_open_message_json_keeps_its_bytes_when_the_entry_changes(
        fake_factory, mount_factory):
    """README: "An open file keeps reading the bytes of the snapshot it was
    opened on" and "st_size is always the exact length of what a read
    returns". message.json is the one run file whose bytes change: a reader
    that opened the old version must keep its size and its bytes, even when
    another reader opens the new version."""
    fake = fake_factory(runs=20)
    m = mount_factory(fake)
    vid = next(i for i in fake.dlq_ids()
               if fake.get(i).get("failureFunctionState")
               not in (None, "CALLBACK_INPROGRESS"))
    path = m.path("runs", vid, "message.json")
    with open(path, "rb") as f:
        old = f.read()
    problems = []
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_size == len(old)
        head = os.read(fd, 40)
        # the longest state name: the size changes too
        fake.update(vid, failureFunctionState="CALLBACK_INPROGRESS")
        m.refresh()
        if os.fstat(fd).st_size != len(old):
            problems.append("after the swap, fstat on the old fd says %d, "
                            "its bytes are %d long"
                            % (os.fstat(fd).st_size, len(old)))
        with open(path, "rb") as f:  # a new reader sees the new version
            new = f.read()
        assert json.loads(new)["failureFunctionState"] == \
            "CALLBACK_INPROGRESS"
        assert os.stat(path).st_size == len(new) != len(old)
        rest = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            rest += b
        if head + rest != old:
            problems.append(
                "the old fd read %d bytes: %s" % (
                    len(head + rest), "the new version" if head + rest == new
                    else "neither version"))
        if os.fstat(fd).st_size != len(old):
            problems.append("after a new reader, fstat on the old fd says %d"
                            % os.fstat(fd).st_size)
    finally:
        os.close(fd)
    assert not problems, "; ".join(problems)
    assert m.stop(check=True) == 0


def test_fstat_on_an_open_file_of_a_removed_run(fake_factory, mount_factory):
    """An open file of a removed run keeps its attributes after the kernel's
    attribute timeout ran out (refresh=1: directories and message.json get
    a 1 s timeout): fstat on an open fd never fails."""
    fake = fake_factory(runs=20)
    m = mount_factory(fake, options=["refresh=1"])
    vid = fake.dlq_ids()[3]
    fds = {}
    for n in sorted(os.listdir(m.path("runs", vid))):
        fds[n] = os.open(m.path("runs", vid, n), os.O_RDONLY)
    try:
        sizes = {n: os.fstat(fd).st_size for n, fd in fds.items()}
        fake.remove(vid)
        m.wait(lambda s: s["runs"] == 19, timeout=30, what="the removal")
        time.sleep(1.5)  # past the 1 s attribute timeout
        got = {}
        for n, fd in fds.items():
            try:
                got[n] = os.fstat(fd).st_size
            except OSError as e:
                got[n] = errno.errorcode.get(e.errno, e.errno)
        assert got == sizes
        for n, fd in fds.items():
            assert len(os.pread(fd, 1 << 20, 0)) == sizes[n], n
    finally:
        for fd in fds.values():
            os.close(fd)
    assert m.stop(check=True) == 0


@pytest.mark.parametrize("swaps", [1, 8])
@pytest.mark.parametrize("options", [[], ["dir_handles"]],
                         ids=["kernel-opens-dirs", "dir_handles"])
def test_listing_in_progress_keeps_its_snapshot(fake_factory, mount_factory,
                                                options, swaps):
    """README: "A directory listing in progress keeps the listing it
    started on, so ls never sees a half-swapped directory and seekdir ...
    stay correct". Here a listing is half read when swaps add runs that
    sort first (8 swaps: more than a fixed window of recent snapshots would
    keep); then another process lists the directory (as ls, find or a file
    manager would), then the first listing goes on. With and without
    directory handles (FUSE_CAP_NO_OPENDIR_SUPPORT: no handle pins it)."""
    getdents = _getdents_or_skip()
    msgs = fakeapi.generate(50 + 5 * swaps, seed=2, large=False)
    fake = fake_factory(messages=msgs[:50])
    m = mount_factory(fake, options=options)
    runs = m.path("runs")
    before = os.listdir(runs)
    problems = []
    for other_reader in (False, True):
        fd = os.open(runs, os.O_RDONLY | os.O_DIRECTORY)
        try:
            first = getdents(fd, 512, 1)  # the first few entries
            assert 3 < len(first) < 40
            for k in range(5 * swaps):
                x = dict(msgs[50 + k])
                x["dlqId"] = "100000000%04d-%d" % (k, other_reader)
                fake.add(x)
                if k % 5 == 4:
                    m.refresh()
            if other_reader:
                assert len(os.listdir(runs)) == len(fake)
            rest = getdents(fd, 512, None)
            names = [n for n, _ in first + rest]
            dups = sorted(n for n, k in collections.Counter(names).items()
                          if k > 1)
            if dups or sorted(names) != sorted(before):
                problems.append(
                    "other_reader=%s: the listing has %d names (%d before "
                    "the swap), duplicates %s, missing %s" % (
                        other_reader, len(names), len(before), dups[:5],
                        sorted(set(before) - set(names))[:5]))
            # seekdir back into the listing: the same entries follow
            k = len(first) // 2
            os.lseek(fd, first[k][1], os.SEEK_SET)
            after = [n for n, _ in getdents(fd, 4096, None)]
            if after != names[k + 1:]:
                problems.append("other_reader=%s: after seekdir to entry "
                                "%d: %d entries, %d expected" % (
                                    other_reader, k, len(after),
                                    len(names) - k - 1))
        finally:
            os.close(fd)
        before = os.listdir(runs)
    assert not problems, "\n".join(problems)
    assert m.status()["lost_readdir_cookies"] == 0
    assert m.stop(check=True) == 0


def _getdents_or_skip():
    import ctypes
    import platform
    import struct
    nr = {"x86_64": 217, "aarch64": 61}.get(platform.machine())
    if nr is None:
        pytest.skip("getdents64 number unknown on " + platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def getdents(fd, bufsize, calls):
        """[(name, d_off)] from `calls` getdents64 calls (None: to the end)
        of bufsize bytes each."""
        buf = ctypes.create_string_buffer(bufsize)
        out = []
        while calls is None or calls > 0:
            if calls is not None:
                calls -= 1
            n = libc.syscall(ctypes.c_long(nr), ctypes.c_int(fd), buf,
                             ctypes.c_uint(bufsize))
            if n < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            if n == 0:
                break
            raw, pos = buf.raw[:n], 0
            while pos < n:
                _, off, reclen, _ = struct.unpack_from("<QqHB", raw, pos)
                name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
                pos += reclen
                if name not in (b".", b".."):
                    out.append((name.decode(), off))
        return out
    return getdents


# --------------------------------------------------------------------------
# 3. signals


STOP_LIMIT_S = 20  # generous: a stop that takes longer is a hang


def stop_by_signal(m, sig):
    """Sends sig to the daemon and waits for it to exit; returns the
    seconds it took. A daemon still running STOP_LIMIT_S later fails the
    test (and is left to the caller's cleanup)."""
    t0 = time.monotonic()
    m.proc.send_signal(sig)
    try:
        m.returncode = m.proc.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("dlqfs still running %d s after %s (mounted=%s)"
                             "\n%s" % (STOP_LIMIT_S, signal.Signals(sig).name,
                                        is_mounted(m.mountpoint), m.stderr()))
    return time.monotonic() - t0


def make_mountpoint(tmp_path, name="mnt"):
    return tempfile.mkdtemp(prefix=name, dir=str(tmp_path))


def test_sigkill_leaves_a_disconnected_mount_that_fusermount_recovers(
        fake, tmp_path):
    mp = make_mountpoint(tmp_path)
    first = second = None
    try:
        first = Mount(fake, mp)
        assert len(os.listdir(os.path.join(mp, "runs"))) == len(fake)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.returncode = first.proc.wait(timeout=30)
        first._stderr.close()
        assert first.returncode == -signal.SIGKILL

        # README: the mount point is left "disconnected"
        assert is_mounted(mp)
        with pytest.raises(OSError) as e:
            os.listdir(mp)
        assert e.value.errno == errno.ENOTCONN, e.value
        with pytest.raises(OSError) as e:
            os.stat(os.path.join(mp, "runs"))
        assert e.value.errno == errno.ENOTCONN, e.value

        # the documented recovery
        r = subprocess.run(["fusermount3", "-u", mp], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mp)
        assert os.listdir(mp) == []

        # and the next mount works (from the cache the first one wrote,
        # then from its own walk: README, "The cache")
        second = Mount(fake, mp)
        assert sorted(os.listdir(os.path.join(mp, "runs"))) == \
            sorted(fake.dlq_ids())
        second.wait(lambda s: s["state"] == "ready", what="the walk")
        assert second.stop(check=True) == 0
    finally:
        for x in (first, second):
            if x is not None and x.returncode is None:
                x.stop(check=False)
            if x is not None and not x._stderr.closed:
                x._stderr.close()
        unmount(mp)
    assert not is_mounted(mp)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_files_and_directories_are_open(fake, tmp_path, sig):
    """Files and directories still open in the mount when the signal comes
    (the kernel never sends their RELEASE): exit 0 and no sanitizer report
    (no LeakSanitizer report of the handles and the snapshots they pin)."""
    mp = make_mountpoint(tmp_path)
    m = None
    fds = []
    try:
        m = Mount(fake, mp)
        run = fake.dlq_ids()[0]
        fds.append(os.open(m.path("runs"), os.O_RDONLY | os.O_DIRECTORY))
        os.listdir(fds[-1])
        fds.append(os.open(m.path("runs", run, "message.json"), os.O_RDONLY))
        os.read(fds[-1], 10)
        fds.append(os.open(m.path(".dlqfs/status"), os.O_RDONLY))
        stop_by_signal(m, sig)
        assert not is_mounted(mp)
        assert not m.sanitizer_reports(), m.stderr()
        assert m.returncode == 0, m.stderr()
    finally:
        for fd in fds:
            os.close(fd)
        if m is not None:
            m.stop(check=False)
        unmount(mp)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_long_walk_and_a_tree_walk(fake_factory, tmp_path,
                                                   sig):
    """A refresh walk of 2000 runs at 200 ms a page is under way and find
    walks the tree: the signal unmounts, exit 0, within 10 s."""
    fake = fake_factory(runs=2000)
    mp = make_mountpoint(tmp_path)
    m = finder = None
    try:
        m = Mount(fake, mp)
        assert m.status()["runs"] == 2000
        fake.configure(latency_ms=200)
        with open(m.path(".dlqfs/refresh"), "w") as f:
            f.write("1")
        m.wait(lambda s: s["walking"], timeout=15, what="the refresh walk")
        finder = subprocess.Popen(["find", "-L", mp + "/by-label", mp + "/runs",
                                   "-type", "f"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        assert m.status()["walking"]
        elapsed = stop_by_signal(m, sig)
        assert m.returncode == 0, m.stderr()
        assert elapsed < 10, "took %.1f s to stop" % elapsed
        assert not is_mounted(mp)
        finder.wait(timeout=30)  # released, whatever it printed
        assert not m.sanitizer_reports(), m.stderr()
    finally:
        if finder is not None and finder.poll() is None:
            finder.kill()
            finder.wait()
        if m is not None:
            m.stop(check=False)
        unmount(mp)


def test_sigterm_under_load(fake_factory, tmp_path):
    """SIGTERM while readers hold files and directories open, walks run
    every 100 ms and SIGHUPs arrive: exit 0, nothing left mounted, no
    sanitizer report (ThreadSanitizer: the shutdown of the walker, the
    notifier and the FUSE threads against requests in flight)."""
    msgs = stress_data()[:N_RUNS]
    ids = [x["dlqId"] for x in msgs]
    fake = fake_factory(messages=msgs)
    mp = make_mountpoint(tmp_path)
    m = None
    workers = []
    try:
        m = Mount(fake, mp, options=["refresh=0.1"])
        for w in range(3):
            workers.append(start_worker(tmp_path, mp, w, msgs, ids[:200],
                                        ids[200:], 1000, subprocess.DEVNULL))
        g0 = m.status()["generation"]
        m.wait(lambda s: s["generation"] >= g0 + 10, timeout=120,
               what="10 swaps under load")
        assert all(p.poll() is None for p in workers), "a worker died"
        os.kill(m.proc.pid, signal.SIGHUP)
        elapsed = stop_by_signal(m, signal.SIGTERM)
        assert m.returncode == 0, m.stderr()
        assert elapsed < 10, "took %.1f s to stop" % elapsed
        assert not is_mounted(mp)
        assert not m.sanitizer_reports(), m.stderr()
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
            p.wait()
        if m is not None:
            m.stop(check=False)
        unmount(mp)


def tgkill(pid, tid, sig):
    import ctypes
    import platform
    nr = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
    if nr is None:
        pytest.skip("tgkill number unknown on " + platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(nr), ctypes.c_int(pid), ctypes.c_int(tid),
                    ctypes.c_int(sig)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def blocks(pid, tid, sig):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_taken_by_any_thread_stops_the_daemon(fake, tmp_path, sig):
    """kill(2) hands a process-directed signal to any thread that does not
    block it. Whichever thread takes SIGTERM or SIGINT, the daemon unmounts
    and exits 0. Each thread that can take it in turn, in its own mount
    (only the stopper, in sigwait(), by design)."""
    k = 0
    while True:
        mp = make_mountpoint(tmp_path, "thr%d-" % k)
        m = None
        try:
            m = Mount(fake, mp)
            os.listdir(m.path("runs"))
            tids = sorted(int(t) for t in os.listdir(
                "/proc/%d/task" % m.proc.pid) if int(t) != m.proc.pid)
            # kill(2) never picks a thread that blocks the signal (libfuse
            # blocks it in its workers)
            tids = [t for t in tids if not blocks(m.proc.pid, t, sig)]
            if k >= len(tids):
                break
            with open("/proc/%d/task/%d/wchan" % (m.proc.pid, tids[k])) as f:
                where = f.read()
            tgkill(m.proc.pid, tids[k], sig)
            try:
                m.returncode = m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    "%s taken by thread %d of %d (tid %d, waiting in %s): "
                    "still running 10 s later, mounted=%s" % (
                        signal.Signals(sig).name, k + 1, len(tids), tids[k],
                        where, is_mounted(mp)))
            assert m.returncode == 0, m.stderr()
            assert not is_mounted(mp)
            assert not m.sanitizer_reports(), m.stderr()
        finally:
            if m is not None:
                m.stop(check=False)
            unmount(mp)
        k += 1
    # Every thread blocks it (the main one, dlqfs's notifier, walker and
    # walk workers, libfuse's workers) but the one that takes it with
    # sigwait(), which unblocks it only while it waits there: no handler
    # runs in the middle of other code.
    mp = make_mountpoint(tmp_path, "blk-")
    m = Mount(fake, mp)
    try:
        os.listdir(m.path("runs"))
        tids = [int(t) for t in os.listdir("/proc/%d/task" % m.proc.pid)]
        assert len(tids) >= 3  # at least main, the notifier, the walker
        takers = [t for t in tids if not blocks(m.proc.pid, t, sig)]
        assert len(takers) == 1, takers
        with open("/proc/%d/task/%d/wchan" % (m.proc.pid, takers[0])) as f:
            assert "sigtimedwait" in f.read()
    finally:
        m.stop(check=True)
        unmount(mp)


STORM_ROUNDS = 8


def test_sighup_storm_while_stopping(fake, tmp_path):
    """SIGHUPs keep arriving while SIGTERM stops the daemon: each is a
    refresh until the walker is gone, then ignored; exit 0 and no sanitizer
    report. (The handler may run on any thread, so it must not use the
    walker while the main thread frees it.)"""
    for round_ in range(STORM_ROUNDS):
        mp = make_mountpoint(tmp_path, "hup%d-" % round_)
        m = None
        halt = threading.Event()

        def storm():
            while not halt.is_set() and m.proc.poll() is None:
                try:
                    m.proc.send_signal(signal.SIGHUP)
                except OSError:
                    return

        t = threading.Thread(target=storm, daemon=True)
        try:
            m = Mount(fake, mp, options=["refresh=0.1"])
            t.start()
            m.wait(lambda s: s["refresh_requested"] >= 20, timeout=60,
                   what="SIGHUPs counted")
            stop_by_signal(m, signal.SIGTERM)
            halt.set()
            t.join(10)
            assert m.returncode == 0, m.stderr()
            assert not is_mounted(mp)
            assert not m.sanitizer_reports(), m.stderr()
        finally:
            halt.set()
            if m is not None:
                m.stop(check=False)
            unmount(mp)


ACTION_ROUNDS = 30


def test_actions_during_refreshes_and_readers(fake_factory, mount_factory):
    """Deletes through rmdir and the control file, from several threads,
    while walks publish every 100 ms and readers list the tree: every
    delete succeeds exactly once, a deleted run never comes back once its
    call has returned, listings stay whole, no sanitizer report."""
    fake = fake_factory(runs=400)
    m = mount_factory(fake, options=["allow_delete", "refresh=0.1"])
    ids = sorted(os.listdir(m.path("runs")))
    assert len(ids) == 400
    victims = ids[:ACTION_ROUNDS * 4]
    keep = set(ids) - set(victims)
    done = set()
    done_lock = threading.Lock()
    errors = []
    halt = threading.Event()

    def deleter(k):
        try:
            for r in range(ACTION_ROUNDS):
                a, b = victims[4 * r + 2 * k], victims[4 * r + 2 * k + 1]
                os.rmdir(m.path("runs", a))
                fd = os.open(m.path(".dlqfs/delete"), os.O_WRONLY)
                try:
                    os.write(fd, (b + "\n").encode())
                finally:
                    os.close(fd)
                with done_lock:
                    done.update((a, b))
        except BaseException as e:  # reported below
            errors.append(repr(e))

    def reader():
        try:
            while not halt.is_set():
                with done_lock:
                    gone = set(done)
                names = set(os.listdir(m.path("runs")))
                # whole: every kept run, and no run deleted before the
                # listing began
                assert keep <= names, sorted(keep - names)[:5]
                assert not (gone & names), sorted(gone & names)[:5]
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=deleter, args=(k,)) for k in (0, 1)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join(300)
    halt.set()
    for t in threads[2:]:
        t.join(60)
    assert not errors, errors[:5]
    assert done == set(victims)
    st = m.refresh()
    assert st["runs"] == len(keep)
    assert set(os.listdir(m.path("runs"))) == keep
    deleted = [i for a in fake.actions() for i in a["dlqIds"]]
    assert sorted(deleted) == sorted(victims)  # each exactly once
    assert fake.unscoped() == 0
    assert m.stop(check=True) == 0


# --------------------------------------------------------------------------
# 4. memory over many refreshes

LEAK_WALKS = 200


def test_200_refreshes_of_an_unchanged_dlq_leak_nothing(fake_factory,
                                                        mount_factory):
    fake = fake_factory(runs=100)
    m = mount_factory(fake, options=["refresh=0.05"])
    ids = fake.dlq_ids()
    rss = {}

    def touch():  # handles opened and released on the way
        os.listdir(m.path("runs"))
        for i in ids[:5]:
            with open(m.path("runs", i, "message.json"), "rb") as f:
                f.read()
        with open(m.path(".dlqfs/status"), "rb") as f:
            f.read()

    for mark in (20, LEAK_WALKS):
        m.wait(lambda s: s["walks_ok"] >= mark, timeout=600,
               what="%d walks" % mark)
        touch()
        rss[mark] = vm_rss_kib(m.proc.pid)
    st = m.status()
    assert st["walks_failed"] == 0 and st["runs"] == 100
    kind = sanitized_binary()
    print("\nVmRSS after %d walks: %d KiB, after %d walks: %d KiB "
          "(ratio %.3f, %s build)" % (20, rss[20], LEAK_WALKS, rss[LEAK_WALKS],
                                      rss[LEAK_WALKS] / rss[20],
                                      kind or "plain"))
    # LeakSanitizer runs at exit in the ASan build: stop() asserts exit 0
    # and no report
    assert m.stop(check=True) == 0
    if kind is None:
        assert rss[LEAK_WALKS] <= rss[20] * 1.5 + 8 * 1024, rss
