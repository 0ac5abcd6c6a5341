"""The filesystem contract of DESIGN.md section 1, end to end: the tree, the
names, the file contents, times, sizes, permissions, inode numbers, and what
real tools (ls, cat, grep, find, jq, rsync, du) see through a mount.

Every expectation is computed here, in Python, from what the fake API
serves (fake.messages(), fake.get()) or from hand-built messages. (The
daemon's own output is used only to tell apart two shortened names of the
same shape, whose hashes the tests do not compute.)

Two module-wide mounts serve the read-only tests (`gen`: generated data,
`hand`: hand-built messages); the tests that change the data (update,
remove, add) get their own mount.
"""
import base64
import contextlib
import ctypes
import datetime
import errno
import filecmp
import json
import mmap
import os
import re
import stat
import subprocess
import tempfile
import time

import pytest

import fakeapi
from conftest import TOKEN, Mount, unmount

VIEWS = ("by-label", "by-url", "by-run", "by-state", "by-status", "by-date",
         "by-flow-control-key", "by-caller-ip")
RUN_FILES = ("message.json", "body", "header", "responseBody",
             "responseHeader", "responseStatus")
NAME_MAX = 255
KEEP = 200

GEN_RUNS = 150
GEN_SEED = 7

# 2026-01-01T00:00:00Z
T0 = 1767225600000


# --------------------------------------------------------------------------
# Expectations, computed from the messages


def _utf8_unit_len(b, i):
    """Length of the well-formed UTF-8 sequence at b[i], or 1."""
    c = b[i]
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
    elif 0xF0 <= c <= 0xF4:
        n = 4
    else:
        return 1
    try:
        b[i:i + n].decode("utf-8", "strict")
    except UnicodeDecodeError:
        return 1
    return n if i + n <= len(b) else 1


def escape_units(value):
    """The escaped form of `value` (str or bytes) as a list of units: a
    %XX, a whole UTF-8 sequence, or one byte."""
    b = value.encode("utf-8") if isinstance(value, str) else value
    units = []
    i = 0
    while i < len(b):
        c = b[i]
        if c in (0x25, 0x2F) or c < 0x20 or c == 0x7F:
            units.append(b"%%%02X" % c)
            i += 1
        elif c < 0x80:
            units.append(bytes([c]))
            i += 1
        else:
            n = _utf8_unit_len(b, i)
            units.append(b[i:i + n])
            i += n
    return units


def expected_name(value):
    """The file name of `value`: bytes when it is kept whole, else a
    compiled pattern (prefix + "~" + 16 lowercase hex digits)."""
    b = value.encode("utf-8") if isinstance(value, str) else value
    if b == b".":
        return b"%2E"
    if b == b"..":
        return b"%2E%2E"
    units = escape_units(b)
    full = b"".join(units)
    if len(full) <= NAME_MAX:
        return full
    prefix = b""
    for u in units:
        if len(prefix) + len(u) > KEEP:
            break
        prefix += u
    return re.compile(re.escape(prefix) + rb"~[0-9a-f]{16}\Z")


def name_matches(name, exp):
    if isinstance(exp, bytes):
        return name == exp
    return exp.match(name) is not None


def short_name(value):
    """expected_name() for a value known to be short enough."""
    n = expected_name(value)
    assert isinstance(n, bytes), "test data: %r should not be shortened" % value
    return n


def utc_date(ms):
    d = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) \
        + datetime.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%d")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def view_values(m):
    """{view: [raw values]} for one message (no empty values, no
    duplicates)."""
    out = {v: [] for v in VIEWS}

    def add(view, val):
        if isinstance(val, str) and val and val not in out[view]:
            out[view].append(val)

    if "labels" in m:
        labels = m["labels"] if isinstance(m["labels"], list) else []
    else:
        labels = [m.get("label")]
    for lab in labels:
        add("by-label", lab)
    add("by-url", m.get("workflowUrl"))
    add("by-run", m.get("workflowRunId"))
    add("by-state", m.get("failureFunctionState"))
    if _is_int(m.get("responseStatus")):
        add("by-status", str(m["responseStatus"]))
    if _is_int(m.get("createdAt")):
        add("by-date", utc_date(m["createdAt"]))
    add("by-flow-control-key", m.get("flowControlKey"))
    add("by-caller-ip", m.get("callerIP"))
    return out


def expected_views(msgs):
    """({view: {value name: {run names}}}, {run name: number of view
    entries}) for messages whose names are all short."""
    tree = {v: {} for v in VIEWS}
    nlinks = {}
    for m in msgs:
        run = short_name(m["dlqId"])
        nlinks.setdefault(run, 0)
        for view, vals in view_values(m).items():
            for val in vals:
                tree[view].setdefault(short_name(val), set()).add(run)
                nlinks[run] += 1
    return tree, nlinks


def _header_text(h):
    def line(s):
        return s.replace("\r", " ").replace("\n", " ")
    out = []
    for name in sorted(h, key=lambda k: k.encode("utf-8")):
        vals = h[name] if isinstance(h[name], list) else [h[name]]
        for v in vals:
            out.append("%s: %s\n" % (line(name), line(v)))
    return "".join(out).encode("utf-8")


def _body(m, key, key64):
    b64 = m.get(key64)
    if isinstance(b64, str) and b64:
        return base64.b64decode(b64)
    if isinstance(m.get(key), str):
        return m[key].encode("utf-8")
    return None


def message_json_text(m):
    return (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def expected_files(m):
    """{file name: bytes} of runs/<dlqId>/ for one message."""
    files = {"message.json": message_json_text(m)}
    body = _body(m, "body", "bodyBase64")
    if body is not None:
        files["body"] = body
    rbody = _body(m, "responseBody", "responseBodyBase64")
    if rbody is not None:
        files["responseBody"] = rbody
    if isinstance(m.get("header"), dict):
        files["header"] = _header_text(m["header"])
    if isinstance(m.get("responseHeader"), dict):
        files["responseHeader"] = _header_text(m["responseHeader"])
    if _is_int(m.get("responseStatus")):
        files["responseStatus"] = b"%d\n" % m["responseStatus"]
    return files


def ordered(v):
    """A JSON value with its objects as lists of pairs: == then also
    compares key order."""
    if isinstance(v, dict):
        return [(k, ordered(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [ordered(x) for x in v]
    return v


# --------------------------------------------------------------------------
# Helpers on the mount


def read(path):
    with open(path, "rb") as f:
        return f.read()


def listdir_b(path):
    return os.listdir(os.fsencode(path))


def bjoin(*parts):
    return os.path.join(*[os.fsencode(p) for p in parts])


def assert_errno(expected, fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    assert ei.value.errno in expected, \
        "%s%r: errno %s, expected one of %s" % (
            fn.__name__, args, errno.errorcode.get(ei.value.errno),
            [errno.errorcode[e] for e in expected])


def ms_ns(ms):
    return ms * 1000000


def snapshot_tree(root):
    """{relative path: (kind, content or link target)} of everything below
    `root` (bytes paths), without following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        rel = os.path.relpath(dirpath, os.fsencode(root))
        out[rel] = ("dir", None)
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            r = os.path.relpath(p, os.fsencode(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[r] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[r] = ("file", read(p))
    return out


class Env(object):
    def __init__(self, fake, mount, msgs):
        self.fake = fake
        self.m = mount
        self.msgs = msgs
        self.by_id = {x["dlqId"]: x for x in msgs}


@contextlib.contextmanager
def _module_mount(tmp_path_factory, name, fake, **kw):
    """A mount of `fake` for a whole module; stops both at the end (and
    fails the last test's teardown on a sanitizer report or a bad exit)."""
    base = str(tmp_path_factory.mktemp(name))
    m = None
    try:
        m = Mount(fake, tempfile.mkdtemp(prefix="mnt", dir=base), **kw)
        yield Env(fake, m, fake.messages())
    finally:
        try:
            if m is not None:
                m.stop(check=True)
        finally:
            if m is not None:
                unmount(m.mountpoint)
            fake.stop()


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """Generated data (150 runs, 3 of them with a ~1 MB responseBody)."""
    fake = fakeapi.FakeAPI(token=TOKEN, runs=GEN_RUNS, seed=GEN_SEED,
                           large=True).start()
    with _module_mount(tmp_path_factory, "gen", fake) as env:
        yield env


# --------------------------------------------------------------------------
# Hand-built messages


def b64(b):
    return base64.b64encode(b).decode("ascii")


EXACT_MSG = {
    "dlqId": "exact-1",
    "zeta": "first key, not sorted",
    "createdAt": T0 + 123,
    "labels": ["exact"],
    "x-unknown-field": {"nested": [1, {"a": None, "b": False}, "s"],
                        "n": -5, "t": True},
    "text": "Zoë — 日本語 ✓ 🙂",
    "quote": "a\"b\\c/d",
    "ws": "tab\there\nnl\rcr",
    "emptyObj": {},
    "emptyArr": [],
    "alpha": 0,
}

BIN_BODY = b"\x00\xff\xfe\x80binary\r\n\x1f\x8b\x08\xc3\x28"
BIN_RESPONSE = bytes(range(256)) * 3

FILE_MSGS = [
    {"dlqId": "files-plain", "createdAt": T0 + 1000, "label": "files",
     "body": "hello\nwörld {\"k\": 1}",
     "header": {"X-B": ["2", "1"], "A-Lower": ["x"], "a-lower": ["y"],
                "Set-Cookie": ["a=1; Path=/", "b=2"],
                "X-Crlf": ["v\r\nInjected: 1"], "X-Na\nme": ["z"],
                "\u00c4-Umlaut": ["\u00fc"], "Empty": [""]},
     "responseStatus": 503,
     "responseBody": "upstream ECONNRESET\n",
     "responseHeader": {"Retry-After": ["30"], "Content-Type": ["text/plain"]}},
    {"dlqId": "files-b64", "createdAt": T0 + 2000, "label": "files",
     "body": "", "bodyBase64": b64(BIN_BODY),
     "responseBody": "", "responseBodyBase64": b64(BIN_RESPONSE),
     "responseStatus": 502},
    {"dlqId": "files-b64-wins", "createdAt": T0 + 2500, "label": "files",
     "body": "the plain text loses", "bodyBase64": b64(b"decoded wins\xff"),
     "responseBody": "plain used", "responseBodyBase64": ""},
    {"dlqId": "files-empty", "createdAt": T0 + 3000, "label": "files",
     "body": "", "responseBody": "", "header": {}, "responseHeader": {}},
    {"dlqId": "files-partial", "createdAt": T0 + 4000, "label": "files",
     "responseBody": "only a response", "responseStatus": 404},
    {"dlqId": "only-id"},
]

# views: labels over label, duplicates once, empty values nowhere, dates in
# UTC (the hand mount runs with TZ=UTC+14, so a local date would differ)
VIEW_MSGS = [
    {"dlqId": "dup-labels", "createdAt": T0 - 1,
     "labels": ["dup", "dup", "other", ""], "label": "not-when-labels",
     "workflowUrl": "", "flowControlKey": "", "callerIP": "",
     "workflowRunId": "", "failureFunctionState": ""},
    {"dlqId": "labels-empty", "createdAt": T0 + 86400000 - 1, "labels": [],
     "label": "not-either", "responseStatus": 200},
    {"dlqId": "label-only", "createdAt": T0 + 86400000, "label": "solo"},
]

LONG_A = "y" * 299 + "1"
LONG_B = "y" * 299 + "2"
EXACT_255 = "b" * 252 + "%"          # 255 escaped bytes: kept whole
OVER_256 = "b" * 253 + "%"           # 256 escaped bytes: shortened
UTF8_LONG = "a" + "\u65e5" * 100     # the cut falls inside a character
PCT_LONG = "c" * 198 + "/" * 40      # the cut falls inside a %2F

NAME_VALUES = [
    "team/payments", "https://a.example/wf", "50%", "a%2Fb", "a/b", ".", "..",
    "%2E", "...", ".hidden", "ctl\x01\x1f\x7fend", "nul\x00byte", "with space",
    "tab\tand\nnewline\r", "Zo\u00eb \u65e5\u672c \U0001F642", "x" * 300,
    LONG_A, LONG_B, EXACT_255, OVER_256, UTF8_LONG, PCT_LONG,
]
# dlqIds cannot hold NUL (the daemon rejects such an entry)
ID_VALUES = [v for v in NAME_VALUES if "\x00" not in v]


def name_msgs():
    out = []
    for i, v in enumerate(NAME_VALUES):
        out.append({"dlqId": "nm-%02d" % i, "createdAt": T0 + 10000 + i,
                    "labels": [v], "workflowUrl": v, "flowControlKey": v})
    for i, v in enumerate(ID_VALUES):
        out.append({"dlqId": v, "createdAt": T0 + 20000 + i,
                    "label": "ids", "workflowRunId": "wfr_ids"})
    return out


HAND_MSGS = [EXACT_MSG] + FILE_MSGS + VIEW_MSGS + name_msgs()


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """The hand-built messages above."""
    fake = fakeapi.FakeAPI(token=TOKEN, runs=0).start()
    fake.add([json.loads(json.dumps(m)) for m in HAND_MSGS])
    with _module_mount(tmp_path_factory, "hand", fake,
                       env_extra={"TZ": "XST-14"}) as env:
        yield env


def assert_names_for(listing, values):
    """`listing` holds exactly one name per value of `values` (distinct
    values), each of the right shape: the names matching one expectation
    are as many as the values having it."""
    assert len(listing) == len(set(listing)) == len(values), (listing, values)
    groups = {}
    for v in values:
        exp = expected_name(v)
        key = exp if isinstance(exp, bytes) else exp.pattern
        groups.setdefault(key, [exp, 0])[1] += 1
    for key, (exp, count) in groups.items():
        hits = [n for n in listing if name_matches(n, exp)]
        assert len(hits) == count, (exp, hits)
    for n in listing:
        assert any(name_matches(n, e) for e, _ in groups.values()), n


# --------------------------------------------------------------------------
# 1. message.json


def test_message_json_equals_api_entry_for_every_run(gen):
    runs = gen.m.path("runs")
    names = sorted(os.listdir(runs))
    assert names == sorted(gen.by_id)
    paths = []
    for dlq_id, msg in gen.by_id.items():
        p = os.path.join(runs, dlq_id, "message.json")
        paths.append(p)
        with open(p, "rb") as f:
            data = f.read()
        parsed = json.loads(data.decode("utf-8"))
        with open(p, encoding="utf-8") as f:
            assert json.load(f) == parsed
        assert parsed == msg
        assert ordered(parsed) == ordered(msg), "key order of %s" % dlq_id
        assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
        assert data == message_json_text(msg), dlq_id
    # jq accepts every file, one by one (jq -e exits non-zero on a parse
    # error), and reads the same entries
    r = subprocess.run(["xargs", "-0", "-n1", "-P8", "jq", "-e", "."],
                       input=b"\0".join(os.fsencode(p) for p in paths),
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b'\n  "dlqId": ') == len(paths)
    r = subprocess.run(["jq", "-e", "-c", "."] + paths, capture_output=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode("utf-8").splitlines()
    assert len(lines) == len(paths)
    for line, dlq_id in zip(lines, gen.by_id):
        assert ordered(json.loads(line)) == ordered(gen.by_id[dlq_id])


def test_message_json_exact_text(hand):
    data = read(hand.m.path("runs", "exact-1", "message.json"))
    expected = (
        '{\n'
        '  "dlqId": "exact-1",\n'
        '  "zeta": "first key, not sorted",\n'
        '  "createdAt": %d,\n'
        '  "labels": [\n'
        '    "exact"\n'
        '  ],\n'
        '  "x-unknown-field": {\n'
        '    "nested": [\n'
        '      1,\n'
        '      {\n'
        '        "a": null,\n'
        '        "b": false\n'
        '      },\n'
        '      "s"\n'
        '    ],\n'
        '    "n": -5,\n'
        '    "t": true\n'
        '  },\n'
        '  "text": "Zo\u00eb \u2014 \u65e5\u672c\u8a9e \u2713 \U0001F642",\n'
        '  "quote": "a\\"b\\\\c/d",\n'
        '  "ws": "tab\\there\\nnl\\rcr",\n'
        '  "emptyObj": {},\n'
        '  "emptyArr": [],\n'
        '  "alpha": 0\n'
        '}\n' % (T0 + 123)).encode("utf-8")
    assert data == expected
    assert data == message_json_text(hand.fake.get("exact-1"))
    # non-ASCII is UTF-8, not \u escapes
    assert "日本語".encode("utf-8") in data and b"\\u" not in data
    assert json.loads(data) == EXACT_MSG
    r = subprocess.run(["jq", "-e", ".[\"x-unknown-field\"].nested[1].b == false",
                        hand.m.path("runs", "exact-1", "message.json")],
                       capture_output=True)
    assert r.returncode == 0 and r.stdout == b"true\n", r


def test_message_json_int64_not_rounded_by_a_neighbour(fake_factory,
                                                       mount_factory):
    """An integer that fits in 64 bits is shown exactly, even when another
    entry of the same page holds an integer beyond 64 bits."""
    fake = fake_factory(runs=0)
    fake.add([{"dlqId": "num-1", "createdAt": T0,
               "exactInt": 9007199254740993, "maxInt": 9223372036854775807},
              {"dlqId": "num-2", "createdAt": T0 + 1,
               "huge": 123456789012345678901234567890}])
    m = mount_factory(fake)
    got1 = read(m.path("runs", "num-1", "message.json"))
    assert b'"exactInt": 9007199254740993,' in got1
    assert ordered(json.loads(got1)) == ordered(fake.get("num-1"))
    assert got1 == message_json_text(fake.get("num-1"))


def test_message_json_numbers_text_as_sent(fake_factory, mount_factory):
    """Numbers read as the API sent them: 0.1 stays 0.1 (not
    0.10000000000000001), an integer beyond 64 bits is not rounded."""
    fake = fake_factory(runs=0)
    fake.add([{"dlqId": "num-3", "createdAt": T0, "ratio": 0.1,
               "half": 1.5, "big": 1e300}])
    fake.add([{"dlqId": "num-4", "createdAt": T0 + 1,
               "huge": 123456789012345678901234567890}])
    m = mount_factory(fake)
    got3 = read(m.path("runs", "num-3", "message.json"))
    got4 = read(m.path("runs", "num-4", "message.json"))
    assert json.loads(got3) == fake.get("num-3")   # the same doubles
    assert b'"ratio": 0.1,' in got3, got3
    assert json.loads(got4) == fake.get("num-4"), got4
    assert b'"huge": 123456789012345678901234567890\n' in got4, got4


# --------------------------------------------------------------------------
# 2. run files


def test_run_files_generated_exact(gen):
    for dlq_id, msg in gen.by_id.items():
        d = gen.m.path("runs", dlq_id)
        want = expected_files(msg)
        assert sorted(os.listdir(d)) == sorted(want), dlq_id
        for name in RUN_FILES:
            p = os.path.join(d, name)
            if name in want:
                assert read(p) == want[name], (dlq_id, name)
            else:
                assert_errno((errno.ENOENT,), open, p, "rb")
                assert_errno((errno.ENOENT,), os.stat, p)


def test_run_files_hand_built(hand):
    d = lambda *p: hand.m.path("runs", *p)  # noqa: E731
    plain = FILE_MSGS[0]
    assert sorted(os.listdir(d("files-plain"))) == sorted(RUN_FILES)
    assert read(d("files-plain", "body")) == "hello\nwörld {\"k\": 1}".encode()
    assert read(d("files-plain", "header")) == (
        "A-Lower: x\n"
        "Empty: \n"
        "Set-Cookie: a=1; Path=/\n"
        "Set-Cookie: b=2\n"
        "X-B: 2\n"
        "X-B: 1\n"
        "X-Crlf: v  Injected: 1\n"
        "X-Na me: z\n"
        "a-lower: y\n"
        "\u00c4-Umlaut: \u00fc\n").encode("utf-8")
    assert read(d("files-plain", "header")) == _header_text(plain["header"])
    assert read(d("files-plain", "responseHeader")) == \
        b"Content-Type: text/plain\nRetry-After: 30\n"
    assert read(d("files-plain", "responseStatus")) == b"503\n"
    assert read(d("files-plain", "responseBody")) == b"upstream ECONNRESET\n"

    # base64: exact bytes, not UTF-8
    assert read(d("files-b64", "body")) == BIN_BODY
    assert read(d("files-b64", "responseBody")) == BIN_RESPONSE
    assert os.stat(d("files-b64", "responseBody")).st_size == len(BIN_RESPONSE)
    assert read(d("files-b64", "responseStatus")) == b"502\n"
    assert sorted(os.listdir(d("files-b64"))) == \
        ["body", "message.json", "responseBody", "responseStatus"]
    assert read(d("files-b64-wins", "body")) == b"decoded wins\xff"
    assert read(d("files-b64-wins", "responseBody")) == b"plain used"

    # present but empty: empty files
    assert sorted(os.listdir(d("files-empty"))) == \
        ["body", "header", "message.json", "responseBody", "responseHeader"]
    for name in ("body", "header", "responseBody", "responseHeader"):
        assert read(d("files-empty", name)) == b""
        st = os.stat(d("files-empty", name))
        assert st.st_size == 0 and st.st_blocks == 0 and stat.S_ISREG(st.st_mode)

    # absent: no file
    assert sorted(os.listdir(d("files-partial"))) == \
        ["message.json", "responseBody", "responseStatus"]
    for name in ("body", "header", "responseHeader"):
        assert_errno((errno.ENOENT,), open, d("files-partial", name), "rb")
        assert_errno((errno.ENOENT,), os.stat, d("files-partial", name))
    assert read(d("files-partial", "responseStatus")) == b"404\n"

    # only a dlqId: only message.json, and in no view
    assert os.listdir(d("only-id")) == ["message.json"]
    assert read(d("only-id", "message.json")) == b'{\n  "dlqId": "only-id"\n}\n'
    for view in VIEWS:
        for value in os.listdir(hand.m.path(view)):
            assert "only-id" not in os.listdir(hand.m.path(view, value))
    for m in FILE_MSGS:
        want = expected_files(hand.fake.get(m["dlqId"]))
        assert sorted(os.listdir(d(m["dlqId"]))) == sorted(want)
        for name, content in want.items():
            assert read(d(m["dlqId"], name)) == content, (m["dlqId"], name)


# --------------------------------------------------------------------------
# 3. views


def test_views_generated(gen):
    tree, nlinks = expected_views(gen.msgs)
    root = gen.m.path()
    assert sorted(os.listdir(root)) == sorted(("runs", ".dlqfs") + VIEWS)
    runs_real = os.path.realpath(gen.m.path("runs"))
    link_nlink = {}
    for view in VIEWS:
        vdir = gen.m.path(view)
        assert set(listdir_b(vdir)) == set(tree[view]), view
        assert tree[view], "test data: %s is empty" % view
        for value, runs in tree[view].items():
            vpath = bjoin(vdir, value)
            assert stat.S_ISDIR(os.lstat(vpath).st_mode)
            assert set(listdir_b(vpath)) == runs, (view, value)
            for run in runs:
                lp = os.path.join(vpath, run)
                st = os.lstat(lp)
                assert stat.S_ISLNK(st.st_mode)
                assert os.readlink(lp) == b"../../runs/" + run
                assert os.path.realpath(lp) == os.path.join(
                    os.fsencode(runs_real), run)
                assert os.path.isdir(lp)
                assert st.st_nlink == nlinks[run], (view, value, run)
                assert st.st_size == len(os.readlink(lp))
                link_nlink.setdefault(run, set()).add(st.st_ino)
    # all the view entries of one run are one inode
    for run, inos in link_nlink.items():
        assert len(inos) == 1, run
    assert set(link_nlink) == {r for r, n in nlinks.items() if n}
    # status codes and dates as text, escaped labels
    assert os.path.isdir(gen.m.path("by-status", "500"))
    assert os.path.isdir(gen.m.path("by-label", "team%2Fpayments"))
    for d in os.listdir(gen.m.path("by-date")):
        assert re.match(r"20\d\d-[01]\d-[0-3]\d\Z", d), d

    # find -L follows the links into the run directories
    want = sum(len(expected_files(gen.by_id[os.fsdecode(run)]))
               for runs in tree["by-label"].values() for run in runs)
    r = subprocess.run(["find", "-L", gen.m.path("by-label"), "-type", "f"],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == want


def test_view_value_and_run_dir_times(gen):
    tree, _ = expected_views(gen.msgs)
    created = {short_name(k): m["createdAt"] for k, m in gen.by_id.items()}
    for view in VIEWS:
        for value, runs in tree[view].items():
            st = os.stat(bjoin(gen.m.path(view), value))
            newest = max(created[r] for r in runs)
            assert st.st_mtime_ns == ms_ns(newest), (view, value)
    for dlq_id, m in gen.by_id.items():
        st = os.stat(gen.m.path("runs", dlq_id))
        assert st.st_mtime_ns == ms_ns(m["createdAt"])
        assert st.st_ctime_ns == ms_ns(m["createdAt"])


# --------------------------------------------------------------------------
# 4. names


def _value_dirs_by_run(m, view):
    """{run name: [value names of `view` whose directory links to it]}."""
    out = {}
    for value in listdir_b(m.path(view)):
        for run in listdir_b(bjoin(m.path(view), value)):
            out.setdefault(run, []).append(value)
    return out


def test_names_escaping(hand):
    mp = hand.m
    listings = {v: listdir_b(mp.path(v)) for v in
                ("by-label", "by-url", "by-flow-control-key")}
    runs = listdir_b(mp.path("runs"))
    runs_real = os.fsencode(os.path.realpath(mp.path("runs")))
    for listing in list(listings.values()) + [runs]:
        assert len(set(listing)) == len(listing)
        for n in listing:
            assert b"/" not in n and n not in (b".", b"..") and b"\0" not in n
            assert 0 < len(n) <= NAME_MAX

    # the examples of DESIGN.md
    assert b"team%2Fpayments" in listings["by-label"]
    assert b"https:%2F%2Fa.example%2Fwf" in listings["by-url"]

    got = {}   # (view, value) -> name
    for view, listing in listings.items():
        all_names = set(listing)
        by_run = _value_dirs_by_run(mp, view)
        for i, v in enumerate(NAME_VALUES):
            run = ("nm-%02d" % i).encode()
            assert len(by_run.get(run, [])) == 1, (view, v, by_run.get(run))
            name = by_run[run][0]
            assert name_matches(name, expected_name(v)), (view, v, name)
            got[view, v] = name
            vdir = bjoin(mp.path(view), name)
            st = os.lstat(vdir)
            assert stat.S_ISDIR(st.st_mode), (view, v)
            assert st.st_ino != os.stat(mp.path(view)).st_ino
            assert st.st_ino != os.stat(mp.path()).st_ino
            assert listdir_b(vdir) == [run], (view, v)
            link = os.path.join(vdir, run)
            assert os.readlink(link) == b"../../runs/" + run
            assert os.path.realpath(link) == os.path.join(runs_real, run)
            # the raw value, when it is not itself some name here, is not
            # found (nothing reaches outside the view directory)
            raw = v.encode("utf-8")
            if raw not in all_names and "\x00" not in v \
                    and v not in (".", ".."):
                assert_errno((errno.ENOENT, errno.ENAMETOOLONG,
                              errno.ENOTDIR), os.lstat, bjoin(mp.path(view), raw))
        # one name per value
        assert len(set(got[view, v] for v in NAME_VALUES)) == len(NAME_VALUES)
    # and the same name in every view
    for v in NAME_VALUES:
        assert got["by-label", v] == got["by-url", v] == \
            got["by-flow-control-key", v], v

    # runs named after their ids, and the links of by-label/ids
    ids_dir = bjoin(mp.path("by-label"), b"ids")
    ids_links = listdir_b(ids_dir)
    run_of = {}
    for name in runs:
        with open(os.path.join(bjoin(mp.path("runs"), name), b"message.json"),
                  "rb") as f:
            run_of[json.load(f)["dlqId"]] = name
    assert len(run_of) == len(runs)
    assert sorted(ids_links) == sorted(run_of[v] for v in ID_VALUES)
    for v in ID_VALUES:
        name = run_of[v]
        assert name_matches(name, expected_name(v)), (v, name)
        assert os.readlink(os.path.join(ids_dir, name)) == b"../../runs/" + name
        assert os.path.realpath(os.path.join(ids_dir, name)) == \
            os.path.join(runs_real, name)
        raw = v.encode("utf-8")
        if raw not in set(runs) and v not in (".", ".."):
            assert_errno((errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR),
                         os.lstat, bjoin(mp.path("runs"), raw))

    # exact shapes
    lab = lambda v: got["by-label", v]  # noqa: E731
    assert lab(".") == b"%2E" and run_of["."] == b"%2E"
    assert lab("..") == b"%2E%2E" and run_of[".."] == b"%2E%2E"
    assert lab("...") == b"..." and lab(".hidden") == b".hidden"
    assert lab("50%") == b"50%25"
    assert lab("a%2Fb") == b"a%252Fb"
    assert lab("a/b") == b"a%2Fb" and run_of["a/b"] == b"a%2Fb"
    assert lab("%2E") == b"%252E" and run_of["%2E"] == b"%252E"
    assert lab("team/payments") == b"team%2Fpayments"
    assert lab("ctl\x01\x1f\x7fend") == b"ctl%01%1F%7Fend"
    assert lab("nul\x00byte") == b"nul%00byte"
    assert lab("tab\tand\nnewline\r") == b"tab%09and%0Anewline%0D"
    assert lab("with space") == b"with space"
    assert lab("Zo\u00eb \u65e5\u672c \U0001F642") == \
        "Zo\u00eb \u65e5\u672c \U0001F642".encode("utf-8")
    assert lab(EXACT_255) == b"b" * 252 + b"%25" == run_of[EXACT_255]
    assert len(lab(EXACT_255)) == 255
    assert re.match(rb"b{200}~[0-9a-f]{16}\Z", lab(OVER_256))
    assert re.match(rb"x{200}~[0-9a-f]{16}\Z", lab("x" * 300))
    assert re.match(rb"y{200}~[0-9a-f]{16}\Z", lab(LONG_A))
    assert re.match(rb"y{200}~[0-9a-f]{16}\Z", lab(LONG_B))
    assert lab(LONG_A) != lab(LONG_B)
    assert run_of[LONG_A] != run_of[LONG_B]
    assert re.match(rb"y{200}~[0-9a-f]{16}\Z", run_of[LONG_A])
    u = lab(UTF8_LONG)
    assert re.match(re.escape(b"a" + "\u65e5".encode() * 66)
                    + rb"~[0-9a-f]{16}\Z", u)
    u[:-17].decode("utf-8")  # no character split
    assert re.match(rb"c{198}~[0-9a-f]{16}\Z", lab(PCT_LONG))

    # names are stable across a refresh
    mp.refresh()
    for view, listing in listings.items():
        assert sorted(listdir_b(mp.path(view))) == sorted(listing)
        by_run = _value_dirs_by_run(mp, view)
        for i, v in enumerate(NAME_VALUES):
            assert by_run[("nm-%02d" % i).encode()] == [got[view, v]]
    assert sorted(listdir_b(mp.path("runs"))) == sorted(runs)
    assert sorted(listdir_b(ids_dir)) == sorted(ids_links)


def test_names_whole_views_of_hand_data(hand):
    """Every view of the hand-built data lists exactly the expected names."""
    for view in VIEWS:
        want = []
        for m in HAND_MSGS:
            for v in view_values(m)[view]:
                if v not in want:
                    want.append(v)
        assert_names_for(listdir_b(hand.m.path(view)), want)
    assert_names_for(listdir_b(hand.m.path("runs")),
                     [m["dlqId"] for m in HAND_MSGS])
    # the link of each run: one inode, nlink = its number of view entries
    # (runs are told apart by their message.json: two long ids share the
    # shape of their names)
    entries = {}
    for view in VIEWS:
        for run, values in _value_dirs_by_run(hand.m, view).items():
            for value in values:
                entries.setdefault(run, []).append(
                    os.path.join(bjoin(hand.m.path(view), value), run))
    for m in HAND_MSGS:
        want = sum(len(v) for v in view_values(m).values())
        name = [n for n in entries if name_matches(n, expected_name(m["dlqId"]))
                and os.readlink(entries[n][0]) == b"../../runs/" + n]
        if not want:
            assert not any(name_matches(n, expected_name(m["dlqId"]))
                           for n in entries), m["dlqId"]
            continue
        assert len(name) >= 1, m["dlqId"]
        links = [lp for n in name for lp in entries[n]
                 if json.loads(read(os.path.join(lp, b"message.json")))["dlqId"]
                 == m["dlqId"]]
        assert len(links) == want, (m["dlqId"], links)
        inos = {os.lstat(lp).st_ino for lp in links}
        assert len(inos) == 1
        for lp in links:
            assert os.lstat(lp).st_nlink == want, (m["dlqId"], lp)
    # the particular cases
    labels = listdir_b(hand.m.path("by-label"))
    assert b"dup" in labels and b"other" in labels and b"solo" in labels
    for absent in (b"not-when-labels", b"not-either", b""):
        assert absent not in labels
    assert listdir_b(hand.m.path("by-label", "dup")) == [b"dup-labels"]
    assert os.lstat(hand.m.path("by-label", "dup", "dup-labels")).st_nlink == 3
    assert sorted(os.listdir(hand.m.path("by-date", "2025-12-31"))) == \
        ["dup-labels"]
    assert "labels-empty" in os.listdir(hand.m.path("by-date", "2026-01-01"))
    assert os.listdir(hand.m.path("by-date", "2026-01-02")) == ["label-only"]
    assert os.stat(hand.m.path("by-date", "2025-12-31")).st_mtime_ns == \
        ms_ns(T0 - 1)


# --------------------------------------------------------------------------
# 5. times, sizes, modes, inodes


def test_sizes_blocks_times_modes(gen):
    uid, gid = os.getuid(), os.getgid()
    for p in [gen.m.path(), gen.m.path("runs"), gen.m.path(".dlqfs")] + \
            [gen.m.path(v) for v in VIEWS]:
        st = os.stat(p)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555, p
        assert (st.st_uid, st.st_gid) == (uid, gid)
    for view in VIEWS:
        for value in listdir_b(gen.m.path(view)):
            st = os.stat(bjoin(gen.m.path(view), value))
            assert stat.S_IMODE(st.st_mode) == 0o555 and st.st_uid == uid
    st = os.stat(gen.m.path(".dlqfs", "status"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
    assert st.st_size == len(read(gen.m.path(".dlqfs", "status")))
    for dlq_id, m in gen.by_id.items():
        d = gen.m.path("runs", dlq_id)
        st = os.stat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555
        assert (st.st_uid, st.st_gid) == (uid, gid)
        for name in os.listdir(d):
            p = os.path.join(d, name)
            st = os.stat(p)
            data = read(p)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
            assert (st.st_uid, st.st_gid) == (uid, gid)
            assert st.st_size == len(data), (dlq_id, name)
            assert st.st_blocks == (st.st_size + 511) // 512, (dlq_id, name)
            if st.st_size:
                assert st.st_blocks > 0
            assert st.st_mtime_ns == ms_ns(m["createdAt"]), (dlq_id, name)
            assert st.st_ctime_ns == ms_ns(m["createdAt"]), (dlq_id, name)
            assert st.st_mtime_ns // 1000000 == m["createdAt"]
    big = [k for k, m in gen.by_id.items()
           if len(m.get("responseBody") or "") > 900 * 1024]
    assert big, "test data: no large responseBody"
    for k in big:
        p = gen.m.path("runs", k, "responseBody")
        assert os.stat(p).st_size == len(gen.by_id[k]["responseBody"]) > 900 * 1024
        # reads at any offset, and through mmap
        want = expected_files(gen.by_id[k])["responseBody"]
        fd = os.open(p, os.O_RDONLY)
        try:
            for off in (0, 1, 4095, 4096, 131072 + 7, len(want) - 10,
                        len(want), len(want) + 100):
                assert os.pread(fd, 70000, off) == want[off:off + 70000], off
            with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mm:
                assert mm[:] == want
        finally:
            os.close(fd)
    sv = os.statvfs(gen.m.path())
    assert sv.f_blocks > 0


DIR_BLOCKS = 8  # every directory: one 4 KiB block, whatever it counts


def all_dirs(root):
    """Every directory below `root` (bytes), `root` included, without
    following the view links."""
    out = [root]
    for dirpath, dirnames, _ in os.walk(root):
        out += [os.path.join(dirpath, d) for d in dirnames
                if not os.path.islink(os.path.join(dirpath, d))]
    return out


def ls_l_sizes(path):
    """{name: st_size} as `ls -l` prints them."""
    r = subprocess.run(["ls", "-l", "--time-style=+%s", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("total ")
    out = {}
    for line in lines[1:]:
        # mode, links, owner, group, size, time, name
        f = line.split(None, 6)
        out[f[6]] = int(f[4])
    return out


def assert_dir_sizes_count_entries(root):
    dirs = all_dirs(os.fsencode(root))
    for d in dirs:
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode), d
        assert st.st_size == len(os.listdir(d)), d
        assert st.st_blocks == DIR_BLOCKS, d
    return dirs


def test_directory_size_counts_entries(gen):
    """A directory's st_size is the number of entries it lists (README
    "Sizes", as ZFS does): `ls -l by-status/` says how many runs failed
    with each status. st_blocks stays one block per directory, so du
    counts the files' bytes and 4 KiB per directory."""
    root = gen.m.path()
    dirs = assert_dir_sizes_count_entries(root)
    # root, runs/, .dlqfs/, the views, their values, the runs
    tree, _ = expected_views(gen.msgs)
    assert len(dirs) == 3 + len(VIEWS) + GEN_RUNS + \
        sum(len(values) for values in tree.values())
    assert os.stat(gen.m.path("runs")).st_size == GEN_RUNS
    assert os.stat(root).st_size == 2 + len(VIEWS)
    for view in VIEWS:
        want = {os.fsdecode(v): len(runs) for v, runs in tree[view].items()}
        assert ls_l_sizes(gen.m.path(view)) == want, view
        assert os.stat(gen.m.path(view)).st_size == len(want)
    assert len(tree["by-status"]) > 3
    for dlq_id, m in gen.by_id.items():
        assert os.stat(gen.m.path("runs", dlq_id)).st_size == \
            len(expected_files(m))

    # du: apparent sizes are the counts and the file lengths; blocks are
    # the files' and one 4 KiB block per directory
    files = [len(c) for m in gen.msgs for c in expected_files(m).values()]
    r = _sh("du -sb runs", root)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) == \
        GEN_RUNS + sum(len(expected_files(m)) for m in gen.msgs) + sum(files)
    r = _sh("du -s -B512 runs", root)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) == \
        DIR_BLOCKS * (1 + GEN_RUNS) + sum((n + 511) // 512 for n in files)


def _rsync(src, dest):
    """Regular files copied, .dlqfs/ left out (its status changes)."""
    r = subprocess.run(["rsync", "-a", "--stats", "--exclude=/.dlqfs",
                        src, dest],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return _rsync_transferred(r.stdout)


def test_directory_sizes_follow_refresh(fake_factory, mount_factory,
                                        tmp_path):
    """Counts change with the data, and the kernel is told: sizes cached
    before a refresh (attributes are kept for the refresh interval, here an
    hour) are right after it, through a path and through a directory
    held open, even when no time changes; rsync still copies only what
    changed."""
    fake = fake_factory(runs=0)

    def run(dlq_id, created, status, label, **extra):
        msg = {"dlqId": dlq_id, "createdAt": T0 + created,
               "workflowUrl": "https://w.example/wf", "labels": [label],
               "responseStatus": status, "responseBody": "boom",
               "responseHeader": {"B": ["2"]}}
        msg.update(extra)
        return {k: v for k, v in msg.items() if v is not None}

    fake.add([run("sz-a", 10000, 500, "pay"), run("sz-b", 9000, 500, "pay"),
              run("sz-c", 8000, 500, "ops", responseHeader=None),
              run("sz-d", 7000, 503, "pay")])
    m = mount_factory(fake)
    p = m.path
    dest = str(tmp_path / "copy") + "/"
    assert _rsync(p() + "/", dest) == \
        sum(len(expected_files(x)) for x in fake.messages())
    # (what rsync read, the kernel may ask for again: cache it after)
    assert ls_l_sizes(p("by-status")) == {"500": 3, "503": 1}
    assert ls_l_sizes(p("by-label")) == {"ops": 1, "pay": 3}
    assert os.stat(p("runs")).st_size == 4
    assert os.stat(p("by-status")).st_size == 2
    assert os.stat(p("runs", "sz-c")).st_size == 3
    before = os.stat(p("by-status", "500"))
    runs_before = os.stat(p("runs"))
    fd = os.open(p("by-status", "500"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.fstat(fd).st_size == 3

        # older than every run: no directory's time moves, only counts
        fake.add([run("sz-e", 5000, 500, "ops"),
                  run("sz-f", 4000, 404, "pay")])
        fake.remove("sz-d")
        fake.update("sz-c", responseHeader={"C": ["3"]})
        m.refresh()

        after = os.stat(p("by-status", "500"))
        assert after.st_size == 4
        assert (after.st_ino, after.st_mtime_ns) == \
            (before.st_ino, before.st_mtime_ns)
        assert os.fstat(fd).st_size == 4
        runs_after = os.stat(p("runs"))
        assert runs_after.st_size == 5
        assert runs_after.st_mtime_ns == runs_before.st_mtime_ns
        assert ls_l_sizes(p("by-status")) == {"404": 1, "500": 4}
        assert ls_l_sizes(p("by-label")) == {"ops": 2, "pay": 3}
        assert os.stat(p("runs", "sz-c")).st_size == 4
        assert_dir_sizes_count_entries(p())
    finally:
        os.close(fd)

    # the new runs' files, and sz-c's new responseHeader and message.json
    want = sum(len(expected_files(fake.get(k))) for k in ("sz-e", "sz-f"))
    assert _rsync(p() + "/", dest) == want + 2
    assert _rsync(p() + "/", dest) == 0


def test_inode_numbers_unique(gen):
    """No two entries share an inode number, but the view entries of one
    run (tar, rsync -H and du take equal numbers for one file)."""
    seen = {}

    def add(path):
        st = os.lstat(path)
        assert st.st_ino not in seen, (path, seen.get(st.st_ino))
        seen[st.st_ino] = path

    for p in [gen.m.path(), gen.m.path("runs"), gen.m.path(".dlqfs"),
              gen.m.path(".dlqfs", "status"), gen.m.path(".dlqfs", "refresh")]:
        add(p)
    for view in VIEWS:
        add(gen.m.path(view))
        for value in listdir_b(gen.m.path(view)):
            add(bjoin(gen.m.path(view), value))
    for k in gen.by_id:
        add(gen.m.path("runs", k))
        for f in os.listdir(gen.m.path("runs", k)):
            add(gen.m.path("runs", k, f))
    links = {}
    for view in VIEWS:
        for value in listdir_b(gen.m.path(view)):
            for run in listdir_b(bjoin(gen.m.path(view), value)):
                ino = os.lstat(bjoin(gen.m.path(view), value, run)).st_ino
                assert ino not in seen
                links.setdefault(run, set()).add(ino)
    assert all(len(v) == 1 for v in links.values())
    assert len({next(iter(v)) for v in links.values()}) == len(links)


def _inodes(m, paths):
    return {p: os.lstat(m.path(*p)).st_ino for p in paths}


def test_inodes_stable_across_refresh(fake_factory, mount_factory):
    fake = fake_factory(runs=40, seed=3, large=False)
    msgs = fake.messages()
    keep = msgs[5]
    kid = keep["dlqId"]
    label = view_values(keep)["by-label"] or None
    views = [("by-caller-ip", keep["callerIP"]), ("by-url", keep["workflowUrl"])]
    if label:
        views.append(("by-label", label[0]))
    m = mount_factory(fake)
    paths = [("runs",), ("runs", kid)] + [("runs", kid, f) for f in
                                           os.listdir(m.path("runs", kid))]
    for view, val in views:
        name = os.fsdecode(short_name(val))
        paths += [(view,), (view, name), (view, name, kid)]
    before = _inodes(m, paths)
    assert len(set(before.values())) == len(before) - len(views) + 1
    # a refresh with nothing changed
    m.refresh()
    assert _inodes(m, paths) == before
    # a refresh that adds, removes and changes other runs
    fake.remove(msgs[0]["dlqId"])
    fake.remove(msgs[-1]["dlqId"])
    fake.add({"dlqId": "0000000000001-0", "createdAt": 1, "callerIP": keep["callerIP"],
              "workflowUrl": keep["workflowUrl"], "labels": label or []})
    fake.update(msgs[6]["dlqId"], failureFunctionState="CALLBACK_CANCELED")
    m.refresh()
    assert _inodes(m, paths) == before
    # readdir's inode numbers agree with lookups
    for e in os.scandir(m.path("runs")):
        assert e.inode() == os.lstat(e.path).st_ino
    # and a second mount of the same data numbers the same paths alike
    m2 = mount_factory(fake)
    assert _inodes(m2, paths) == before


def test_failure_state_update(fake_factory, mount_factory):
    fake = fake_factory(runs=0)
    base = {"workflowUrl": "https://w.example/wf", "callerIP": "192.0.2.1",
            "body": "b", "header": {"A": ["1"]}, "responseStatus": 500,
            "responseBody": "r", "responseHeader": {"B": ["2"]}}
    msgs = []
    for i, state in enumerate(["CALLBACK_INPROGRESS", "CALLBACK_INPROGRESS",
                               None]):
        msg = dict(base, dlqId="upd-%d" % i, createdAt=T0 + 5000 * (i + 1),
                   labels=["l1", "l2"])
        if state:
            msg["failureFunctionState"] = state
        msgs.append(msg)
    fake.add(msgs)
    m = mount_factory(fake)
    rid = "upd-0"
    created = T0 + 5000
    p = lambda *x: m.path(*x)  # noqa: E731
    files = sorted(os.listdir(p("runs", rid)))
    assert files == sorted(RUN_FILES)
    # everything read and stat'ed before the change (so it is cached)
    old_json = read(p("runs", rid, "message.json"))
    for f in files:
        assert os.stat(p("runs", rid, f)).st_mtime_ns == ms_ns(created)
    assert sorted(os.listdir(p("by-state"))) == ["CALLBACK_INPROGRESS"]
    old_link = p("by-state", "CALLBACK_INPROGRESS", rid)
    # labels(2) + url + state + status + date + ip = 7
    assert os.lstat(old_link).st_nlink == 7
    assert os.lstat(p("by-label", "l1", "upd-2")).st_nlink == 6
    ino = os.stat(p("runs", rid, "message.json")).st_ino

    t_change = time.time()
    fake.update(rid, failureFunctionState="CALLBACK_SUCCESS")
    fake.update("upd-2", failureFunctionState="CALLBACK_FAIL")
    fake.update("upd-1", failureFunctionState=None)
    m.refresh()
    t_after = time.time()

    new_json = read(p("runs", rid, "message.json"))
    assert new_json != old_json
    assert new_json == message_json_text(fake.get(rid))
    assert json.loads(new_json)["failureFunctionState"] == "CALLBACK_SUCCESS"
    st = os.stat(p("runs", rid, "message.json"))
    assert st.st_size == len(new_json)
    # a changed message.json is a new inode (README), so that a reader
    # holding the old one keeps its bytes and size
    assert st.st_ino != ino
    assert t_change - 2 <= st.st_mtime <= t_after + 2, (st.st_mtime, t_change)
    assert st.st_ctime_ns == st.st_mtime_ns
    for f in files:
        if f != "message.json":
            st2 = os.stat(p("runs", rid, f))
            assert st2.st_mtime_ns == ms_ns(created), f
            assert st2.st_ctime_ns == ms_ns(created), f
    assert os.stat(p("runs", rid)).st_mtime_ns == ms_ns(created)
    # the run moved between by-state directories
    assert sorted(os.listdir(p("by-state"))) == \
        ["CALLBACK_FAIL", "CALLBACK_SUCCESS"]
    assert_errno((errno.ENOENT,), os.lstat, old_link)
    assert_errno((errno.ENOENT,), os.stat, p("by-state", "CALLBACK_INPROGRESS"))
    assert os.listdir(p("by-state", "CALLBACK_SUCCESS")) == [rid]
    assert os.listdir(p("by-state", "CALLBACK_FAIL")) == ["upd-2"]
    assert os.lstat(p("by-state", "CALLBACK_SUCCESS", rid)).st_nlink == 7
    # a state gained: one more link; a state lost: one fewer
    assert os.lstat(p("by-label", "l1", "upd-2")).st_nlink == 7
    assert os.lstat(p("by-label", "l1", "upd-1")).st_nlink == 6
    assert json.loads(read(p("runs", "upd-1", "message.json"))) == fake.get("upd-1")

    # the time of the change stays the time it was first seen
    mtime = os.stat(p("runs", rid, "message.json")).st_mtime_ns
    m.refresh()
    assert os.stat(p("runs", rid, "message.json")).st_mtime_ns == mtime
    assert read(p("runs", rid, "message.json")) == new_json


# --------------------------------------------------------------------------
# 6. real tools


def _sh(cmd, cwd, **kw):
    return subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, **kw)


def test_ls_cat_grep_du(gen):
    root = gen.m.path()
    r = _sh("ls runs | wc -l", root)
    assert r.returncode == 0 and int(r.stdout) == GEN_RUNS

    tree, _ = expected_views(gen.msgs)
    r = _sh("ls -l by-label/payments", root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("total ")
    entries = lines[1:]
    assert len(entries) == len(tree["by-label"][b"payments"])
    for line in entries:
        assert line.startswith("l")
        name, target = line.split(" -> ")
        run = name.split()[-1]
        assert target == "../../runs/" + run
        assert run.encode() in tree["by-label"][b"payments"]
    r = _sh("ls -lL by-label/payments", root)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(lines)

    # cat: text, binary and ~1 MB files
    picks = []
    for k, m in gen.by_id.items():
        if m.get("bodyBase64") and len(picks) < 2:
            picks.append((k, "body"))
    picks += [(k, "responseBody") for k, m in gen.by_id.items()
              if len(m.get("responseBody") or "") > 900 * 1024]
    picks += [(k, "header") for k in list(gen.by_id)[:2]]
    assert len(picks) >= 5
    for k, f in picks:
        r = subprocess.run(["cat", gen.m.path("runs", k, f)], capture_output=True)
        assert r.returncode == 0
        assert r.stdout == expected_files(gen.by_id[k])[f], (k, f)

    # grep over a shell glob
    want = sorted("runs/%s/responseBody" % k for k, m in gen.by_id.items()
                  if b"ECONNRESET" in (expected_files(m).get("responseBody") or b""))
    assert want and len(want) < GEN_RUNS
    r = _sh("grep -l ECONNRESET runs/*/responseBody", root)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.decode().splitlines()) == want
    r = _sh("grep -rl ECONNRESET runs --include=responseBody", root)
    assert sorted(r.stdout.decode().splitlines()) == want
    # grep -R follows the view links: each matching run once per label
    want_views = sorted(
        "by-label/%s/%s/responseBody" % (os.fsdecode(label), os.fsdecode(run))
        for label, runs in tree["by-label"].items() for run in runs
        if "runs/%s/responseBody" % os.fsdecode(run) in want)
    assert want_views
    r = _sh("grep -Rl ECONNRESET by-label --include=responseBody", root)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.decode().splitlines()) == want_views

    r = _sh("du -s runs", root)
    assert r.returncode == 0 and int(r.stdout.split()[0]) > 0
    r = _sh("du -sb runs", root)
    total = sum(len(c) for m in gen.msgs for c in expected_files(m).values())
    assert int(r.stdout.split()[0]) >= total
    assert os.statvfs(root).f_blocks > 0


def _rsync_transferred(out):
    m = re.search(r"^Number of regular files transferred: ([\d,]+)$", out,
                  re.M)
    assert m, out
    return int(m.group(1).replace(",", ""))


def test_rsync_backup(gen, tmp_path):
    dest = str(tmp_path / "copy")
    src = gen.m.path() + "/"
    nfiles = sum(len(expected_files(m)) for m in gen.msgs)
    r = subprocess.run(["rsync", "-a", "--stats", src, dest + "/"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # every run file, plus .dlqfs/status, refresh, actions.log and the
    # four (empty) action control files
    assert _rsync_transferred(r.stdout) == nfiles + 7, r.stdout
    r = subprocess.run(["rsync", "-a", "--stats", src, dest + "/"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Number of regular files transferred: 0\n" in r.stdout, r.stdout
    assert _rsync_transferred(r.stdout) == 0

    # the copy of runs/ is the mount, byte for byte, times included
    for k, m in gen.by_id.items():
        d1 = gen.m.path("runs", k)
        d2 = os.path.join(dest, "runs", k)
        names = sorted(os.listdir(d1))
        assert sorted(os.listdir(d2)) == names
        match, mismatch, errors = filecmp.cmpfiles(d1, d2, names, shallow=False)
        assert sorted(match) == names and not mismatch and not errors, k
        for n in names:
            assert os.stat(os.path.join(d2, n)).st_mtime_ns == \
                ms_ns(m["createdAt"])
            assert read(os.path.join(d2, n)) == expected_files(m)[n]
    # the views are copied as relative links, which resolve in the copy
    tree, _ = expected_views(gen.msgs)
    copy_runs = os.fsencode(os.path.realpath(os.path.join(dest, "runs")))
    for view in VIEWS:
        assert set(listdir_b(os.path.join(dest, view))) == set(tree[view])
        for value, runs in tree[view].items():
            for run in runs:
                lp = bjoin(dest, view, value, run)
                assert os.path.islink(lp)
                assert os.readlink(lp) == b"../../runs/" + run
                assert os.path.realpath(lp) == os.path.join(copy_runs, run)


def test_tar_round_trip(gen, tmp_path):
    dest = tmp_path / "untar"
    dest.mkdir()
    r = subprocess.run("tar -cf - -C '%s' runs by-label by-status | "
                       "tar -xf - -C '%s'" % (gen.m.path(), dest),
                       shell=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert b"changed as we read it" not in r.stderr, r.stderr
    for k, m in gen.by_id.items():
        want = expected_files(m)
        assert sorted(os.listdir(dest / "runs" / k)) == sorted(want)
        for n, content in want.items():
            assert read(dest / "runs" / k / n) == content, (k, n)
    tree, _ = expected_views(gen.msgs)
    for view in ("by-label", "by-status"):
        for value, runs in tree[view].items():
            for run in runs:
                lp = bjoin(str(dest), view, value, run)
                assert os.readlink(lp) == b"../../runs/" + run
                assert os.path.isdir(lp)


# --------------------------------------------------------------------------
# 7. directory reading, absent names, read-only


def test_listdir_repeatable_and_absent_names(gen):
    k = next(iter(gen.by_id))
    for p in (gen.m.path(), gen.m.path("runs"), gen.m.path("by-label"),
              gen.m.path("by-label", "payments"), gen.m.path("runs", k),
              gen.m.path(".dlqfs"), gen.m.path("by-date")):
        a = os.listdir(p)
        b = os.listdir(p)
        assert a == b and len(set(a)) == len(a) and a, p
        with os.scandir(p) as it:
            assert [e.name for e in it] == a
    absent = [("nope",), ("runs", "nope"), ("runs", k, "nope"),
              ("runs", k, "message.json", "x"), ("by-label", "nope"),
              ("by-label", "payments", "nope"), (".dlqfs", "nope"),
              ("by-status", "999"), ("runs", "nope", "body")]
    for parts in absent:
        for _ in range(2):  # the second one may come from a negative entry
            assert_errno((errno.ENOENT, errno.ENOTDIR), os.stat, gen.m.path(*parts))
    assert not os.path.exists(gen.m.path("runs", "nope"))


def test_read_only(gen):
    mp = gen.m
    k = next(iter(gen.by_id))
    before = snapshot_tree(mp.path("runs", k))
    label_before = sorted(os.listdir(mp.path("by-label")))
    ro = (errno.EROFS, errno.EACCES, errno.EPERM)
    f = mp.path("runs", k, "message.json")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC,
                  os.O_WRONLY | os.O_APPEND):
        assert_errno(ro, os.open, f, flags)
    assert_errno(ro, os.open, mp.path("runs", k, "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    assert_errno(ro + (errno.EEXIST,), os.open, f, os.O_WRONLY | os.O_CREAT, 0o644)
    assert_errno(ro, os.truncate, f, 0)
    assert_errno(ro, os.chmod, f, 0o666)
    assert_errno(ro, os.utime, f, (0, 0))
    assert_errno(ro, os.mkdir, mp.path("runs", "newdir"))
    assert_errno(ro, os.mkdir, mp.path("by-label", "newdir"))
    assert_errno(ro, os.unlink, f)
    assert_errno(ro, os.unlink, mp.path("by-label", "payments",
                                        os.listdir(mp.path("by-label", "payments"))[0]))
    assert_errno(ro, os.rmdir, mp.path("runs", k))
    assert_errno(ro + (errno.ENOTEMPTY,), os.rmdir, mp.path("by-label", "payments"))
    assert_errno(ro, os.rename, mp.path("runs", k), mp.path("runs", "renamed"))
    assert_errno(ro, os.rename, f, mp.path("runs", k, "other"))
    assert_errno(ro, os.symlink, "../../runs/" + k, mp.path("by-label", "payments", "x"))
    assert_errno(ro + (errno.EXDEV,), os.link, f, mp.path("runs", k, "hard"))
    assert_errno(ro, os.mkdir, mp.path("runs", k, "sub"))
    assert_errno(ro, os.open, mp.path(".dlqfs", "status"), os.O_WRONLY)
    assert snapshot_tree(mp.path("runs", k)) == before
    assert sorted(os.listdir(mp.path("by-label"))) == label_before
    assert sorted(os.listdir(mp.path("runs"))) == sorted(gen.by_id)
    for n in ("renamed", "newdir"):
        assert not os.path.lexists(mp.path("runs", n))


# Reading a directory a few entries at a time, with getdents64 itself, so
# that a listing can be interrupted by a refresh.
_SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}.get(os.uname().machine)
_libc = ctypes.CDLL(None, use_errno=True)


def getdents(fd, bufsize=512):
    buf = ctypes.create_string_buffer(bufsize)
    n = _libc.syscall(_SYS_GETDENTS64, fd, buf, bufsize)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    out = []
    raw = buf.raw[:n]
    pos = 0
    while pos < n:
        reclen = int.from_bytes(raw[pos + 16:pos + 18], "little")
        name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
        out.append(name)
        pos += reclen
    return out


def read_all_dents(fd, bufsize=512):
    out = []
    while True:
        chunk = getdents(fd, bufsize)
        if not chunk:
            return [n for n in out if n not in (b".", b"..")]
        out += chunk


# The kernel is told about a swap by the daemon's notifier thread, after
# .dlqfs/status already says the refresh was served (see
# test_no_stale_names_right_after_refresh). The tests below are about
# something else, so they give the notifier this long to finish first.
NOTIFIER_SETTLE_S = 1.0


def _dir_handle_fake(fake_factory):
    fake = fake_factory(runs=0)
    msgs = [{"dlqId": "run-%04d" % i, "createdAt": T0 + i, "label": "all",
             "callerIP": "192.0.2.%d" % (i % 3)} for i in range(400)]
    fake.add(msgs)
    return fake, msgs


def _thin_out(fake, msgs):
    """Removes most runs (listed or not yet listed), adds one."""
    for x in msgs:
        if x["dlqId"] != "run-0000" and int(x["dlqId"][4:]) % 4 != 1:
            fake.remove(x["dlqId"])
    fake.add({"dlqId": "run-9999", "createdAt": T0 + 9999, "label": "all"})


def test_directory_handle_survives_refresh(fake_factory, mount_factory):
    """A listing in progress when a refresh swaps the snapshot goes on with
    the snapshot it started on: complete, no duplicates."""
    assert _SYS_GETDENTS64 is not None, "unknown architecture"
    fake, msgs = _dir_handle_fake(fake_factory)
    m = mount_factory(fake)
    full = sorted(x["dlqId"].encode() for x in msgs)
    for d in ("runs", os.path.join("by-label", "all")):
        assert sorted(listdir_b(m.path(d))) == full
    fd_runs = os.open(m.path("runs"), os.O_RDONLY | os.O_DIRECTORY)
    fd_label = os.open(m.path("by-label", "all"), os.O_RDONLY | os.O_DIRECTORY)
    fd_scan = os.open(m.path("by-label"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        first_runs = getdents(fd_runs)
        first_label = getdents(fd_label)
        assert 2 < len(first_runs) < 50 and 2 < len(first_label) < 50
        _thin_out(fake, msgs)
        m.refresh()
        for fd, first in ((fd_runs, first_runs), (fd_label, first_label)):
            names = [n for n in first if n not in (b".", b"..")] + \
                read_all_dents(fd)
            # one snapshot: the one the directory was opened on
            assert len(names) == len(set(names))
            assert sorted(names) == full
        with os.scandir(fd_scan) as it:
            assert sorted(e.name for e in it) == ["all"]
    finally:
        os.close(fd_runs)
        os.close(fd_label)
        os.close(fd_scan)
    time.sleep(NOTIFIER_SETTLE_S)
    now = sorted(x.encode() for x in fake.dlq_ids())
    assert len(now) == 102
    assert sorted(listdir_b(m.path("runs"))) == now
    assert sorted(listdir_b(m.path("by-label", "all"))) == now
    assert_errno((errno.ENOENT,), os.stat, m.path("runs", "run-0002"))
    assert_errno((errno.ENOENT,), os.lstat, m.path("by-label", "all", "run-0002"))


def test_rewound_old_directory_handle_leaves_new_listing_alone(
        fake_factory, mount_factory):
    """Re-reading from offset 0 (rewinddir, seekdir(0)) a directory opened
    before a refresh gives one whole listing, and does not bring the
    removed runs back for everybody else."""
    assert _SYS_GETDENTS64 is not None, "unknown architecture"
    fake, msgs = _dir_handle_fake(fake_factory)
    m = mount_factory(fake)
    full = sorted(x["dlqId"].encode() for x in msgs)
    fd = os.open(m.path("runs"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(read_all_dents(fd)) == full
        _thin_out(fake, msgs)
        m.refresh()
        time.sleep(NOTIFIER_SETTLE_S)
        now = sorted(x.encode() for x in fake.dlq_ids())
        assert len(now) == 102
        # (nobody has listed runs/ since the refresh)
        os.lseek(fd, 0, os.SEEK_SET)
        again = read_all_dents(fd, 4096)
        assert len(again) == len(set(again))
        assert sorted(again) in (full, now)
    finally:
        os.close(fd)
    # a new listing, a lookup: the current snapshot only
    listing = sorted(listdir_b(m.path("runs")))
    try:
        os.stat(m.path("runs", "run-0002"))
        removed_dir_found = True
    except FileNotFoundError:
        removed_dir_found = False
    r = subprocess.run(["ls", m.path("runs")], capture_output=True)
    assert listing == now and not removed_dir_found, \
        "after an old handle re-read runs/ from offset 0: a new listing has " \
        "%d entries (want %d), stat of removed runs/run-0002 %s" % (
            len(listing), len(now),
            "succeeds" if removed_dir_found else "fails (right)")
    assert len(r.stdout.splitlines()) == 102


# --------------------------------------------------------------------------
# 8. removal and addition


def test_remove_and_add(fake_factory, mount_factory):
    fake = fake_factory(runs=30, seed=11, large=False)
    msgs = fake.messages()
    m = mount_factory(fake)
    gone = next(x for x in msgs if x.get("failureFunctionState")
                and x.get("flowControlKey") and view_values(x)["by-label"])
    gid = gone["dlqId"]
    vals = view_values(gone)
    # stat (and so cache) everything about it first
    paths = [("runs", gid)] + [("runs", gid, f) for f in
                               os.listdir(m.path("runs", gid))]
    for view, vs in vals.items():
        for v in vs:
            name = os.fsdecode(short_name(v))
            paths.append((view, name, gid))
            assert gid in os.listdir(m.path(view, name))
    for p in paths:
        os.lstat(m.path(*p))
    with open(m.path("runs", gid, "message.json"), "rb") as f:
        f.read()

    new = {"dlqId": "1795000000000-7", "createdAt": 1795000000000,
           "labels": ["fresh-label", "payments"], "workflowUrl": "https://n.example/x",
           "failureFunctionState": "CALLBACK_FAIL", "responseStatus": 418,
           "callerIP": "198.51.100.99", "flowControlKey": "fresh-key",
           "workflowRunId": "wfr_fresh", "body": "new body"}
    nid = new["dlqId"]
    new_paths = [("runs", nid), ("runs", nid, "body"), ("by-label", "fresh-label"),
                 ("by-label", "fresh-label", nid), ("by-status", "418", nid),
                 ("by-run", "wfr_fresh")]
    for p in new_paths:  # negative lookups, cached
        assert_errno((errno.ENOENT,), os.lstat, m.path(*p))

    fake.remove(gid)
    fake.add(new)
    m.refresh()

    assert gid not in os.listdir(m.path("runs"))
    for p in paths:
        assert_errno((errno.ENOENT,), os.lstat, m.path(*p))
    tree, nlinks = expected_views(fake.messages())
    for view in VIEWS:
        assert set(listdir_b(m.path(view))) == set(tree[view]), view
        for value in listdir_b(m.path(view)):
            names = listdir_b(bjoin(m.path(view), value))
            assert gid.encode() not in names
            assert set(names) == tree[view][value], (view, value)
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())

    for p in new_paths:
        os.lstat(m.path(*p))
    assert read(m.path("runs", nid, "body")) == b"new body"
    assert read(m.path("runs", nid, "message.json")) == message_json_text(new)
    link = m.path("by-label", "fresh-label", nid)
    assert os.readlink(link) == "../../runs/" + nid
    assert os.lstat(link).st_nlink == nlinks[nid.encode()] == 9
    for view, vs in view_values(new).items():
        for v in vs:
            assert nid in os.listdir(m.path(view, os.fsdecode(short_name(v))))

    # and back: the removed run returns
    fake.add(gone)
    m.refresh()
    assert gid in os.listdir(m.path("runs"))
    assert read(m.path("runs", gid, "message.json")) == message_json_text(gone)
    assert os.stat(m.path("runs", gid, "message.json")).st_mtime_ns == \
        ms_ns(gone["createdAt"])
    for p in paths:
        os.lstat(m.path(*p))


def test_remove_repeatedly_never_stale(fake_factory, mount_factory):
    """Right after each refresh, a removed run that was just stat'ed is
    gone, and an added one that was just looked up in vain is there."""
    fake = fake_factory(runs=0)
    fake.add([{"dlqId": "rr-%02d" % i, "createdAt": T0 + i, "label": "rr"}
              for i in range(12)])
    m = mount_factory(fake)
    for i in range(10):
        rid = "rr-%02d" % i
        nid = "nn-%02d" % i
        os.stat(m.path("runs", rid, "message.json"))
        os.lstat(m.path("by-label", "rr", rid))
        assert_errno((errno.ENOENT,), os.stat, m.path("runs", nid))
        fake.remove(rid)
        fake.add({"dlqId": nid, "createdAt": T0 + 100 + i, "label": "rr"})
        m.refresh()
        assert_errno((errno.ENOENT,), os.stat, m.path("runs", rid, "message.json"))
        assert_errno((errno.ENOENT,), os.lstat, m.path("by-label", "rr", rid))
        os.stat(m.path("runs", nid, "message.json"))
        os.lstat(m.path("by-label", "rr", nid))
    assert sorted(os.listdir(m.path("runs"))) == sorted(fake.dlq_ids())


def test_no_stale_names_right_after_refresh(fake_factory, mount_factory):
    """Once .dlqfs/status says the refresh was served, the kernel no longer
    has the removed names: a path stat'ed (cached) before is ENOENT at
    once, with a big change as with a small one."""
    fake = fake_factory(runs=0)
    n = 5000
    fake.add([{"dlqId": "big-%05d" % i, "createdAt": T0 + i,
               "labels": ["a", "b"], "callerIP": "ip%d" % (i % 4),
               "workflowRunId": "wfr_%d" % i} for i in range(n)])
    m = mount_factory(fake)
    last = "big-%05d" % (n - 1)
    cached = [("runs", last), ("by-caller-ip", "ip%d" % ((n - 1) % 4), last),
              ("by-run", "wfr_%d" % (n - 1))]
    for i in range(n):
        os.lstat(m.path("by-caller-ip", "ip%d" % (i % 4), "big-%05d" % i))
    for p in cached:
        os.lstat(m.path(*p))
    for i in range(n):
        fake.remove("big-%05d" % i)
    fake.add({"dlqId": "big-new", "createdAt": T0, "label": "a"})
    m.refresh()

    def still_there():
        out = []
        for p in cached:
            try:
                os.lstat(m.path(*p))
                out.append(p)
            except OSError as e:
                assert e.errno == errno.ENOENT
        return out

    stale = still_there()
    listing = os.listdir(m.path("runs"))
    time.sleep(NOTIFIER_SETTLE_S)
    stale_later = still_there()
    assert not stale and not stale_later, \
        "removed names still there after the refresh was served: %s " \
        "(and %s s later: %s)" % (stale, NOTIFIER_SETTLE_S, stale_later)
    assert listing == ["big-new"]
