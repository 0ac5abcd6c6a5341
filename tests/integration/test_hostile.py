"""Hostile data and security, end to end.

What the API sends is untrusted: names built from labels, URLs, ids and
keys must stay valid, unique, stable and inside their directory whatever
the bytes; malformed entries must be reported and shown as far as they are
valid, never crash the walk or hide the other entries; a huge body must
work. The token must not leak anywhere we can look, token files must be
private, clear-text http only to loopback, TLS always verified, and the
mount private by default.

Every expected name is computed here, in Python, with the escaping and the
hash of include/names.h (FNV-1a 64 folded through the splitmix64
finalizer), including the salted names that keep two values apart when
one is crafted to look like the shortened name of the other.

Invalid UTF-8 cannot reach a name through JSON (jansson checks the text);
the nearest thing an API can send, a lone surrogate escape such as
"\\udc80" (what JavaScript's JSON.stringify emits for a broken string), is
covered by test_entry_refused_by_jansson_* and
test_lone_surrogate_arriving_later_*.
"""
import base64
import errno
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import fakeapi
from conftest import (DLQFS, SANITIZER_MARKS, TOKEN, Mount, is_mounted,
                      run_dlqfs, sanitizer_env, unmount, vm_rss_kib)

VIEWS = ("by-label", "by-url", "by-run", "by-state", "by-status", "by-date",
         "by-flow-control-key", "by-caller-ip")
RUN_FILES = ("message.json", "body", "header", "responseBody",
             "responseHeader", "responseStatus")
NAME_MAX = 255
KEEP = 200

# 2026-01-01T00:00:00Z
T0 = 1767225600000
DAY_MS = 86400000

NOBODY = 65534


# --------------------------------------------------------------------------
# The name contract, exactly (include/names.h, src/names.c, sort_unique()
# in src/snapshot.c)

M64 = (1 << 64) - 1
FNV_PRIME = 0x100000001B3
HASH_SEED = 0xCBF29CE484222325


def _fnv(h, data):
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & M64
    return h


def _mix(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


def hash64(data):
    return _mix(_fnv(HASH_SEED, data))


def hash64_more(h, data):
    return _mix(_fnv(h, data))


def _utf8_unit(b, i):
    """Length of the well-formed UTF-8 sequence at b[i] (RFC 3629), or 1."""
    c = b[i]
    lo, hi = 0x80, 0xBF
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 1
    if len(b) - i < n or not lo <= b[i + 1] <= hi:
        return 1
    for k in range(2, n):
        if b[i + k] & 0xC0 != 0x80:
            return 1
    return n


def raw(value):
    return value.encode("utf-8") if isinstance(value, str) else value


def escape(value, salt=0):
    """names_escape() (salt 0) / names_escape_salted(), byte for byte."""
    v = raw(value)
    assert v, "empty values have no name"
    if not salt and v in (b".", b".."):
        return b"%2E" * len(v)
    out = b""
    keep = 0
    i = 0
    while i < len(v):
        c = v[i]
        if c in (0x25, 0x2F) or c < 0x20 or c == 0x7F:
            unit, n = b"%%%02X" % c, 1
        else:
            n = 1 if c < 0x80 else _utf8_unit(v, i)
            unit = v[i:i + n]
        if len(out) + len(unit) > NAME_MAX:
            break
        out += unit
        i += n
        if len(out) <= KEEP:
            keep = len(out)
    if i < len(v) or salt:
        h = hash64(v)
        if salt:
            h = hash64_more(h, salt.to_bytes(4, sys.byteorder))
        return out[:keep] + b"~" + b"%016x" % h
    return out


def unique_names(values):
    """{raw value: name} for the distinct raw values of one directory, as
    sort_unique() makes them: sort by (name, raw bytes); the later of two
    equal names is renamed with the next salt of its value, until all
    names differ."""
    values = list(dict.fromkeys(raw(v) for v in values))
    names = {v: escape(v) for v in values}
    salts = dict.fromkeys(values, 0)
    while True:
        order = sorted(values, key=lambda v: (names[v], v))
        dups = False
        for a, b in zip(order, order[1:]):
            if names[b] == names[a]:
                salts[b] += 1
                names[b] = escape(b, salts[b])
                dups = True
        if not dups:
            return names


def test_name_model_matches_the_header():
    """The Python model against the examples of include/names.h and the
    contract examples, so a wrong model cannot hide a wrong daemon."""
    assert hash64(b"") == 0xF52A15E9A9B5E89B
    assert escape("team/payments") == b"team%2Fpayments"
    assert escape("https://a.example/wf") == b"https:%2F%2Fa.example%2Fwf"
    assert escape(".") == b"%2E" and escape("..") == b"%2E%2E"
    assert escape("b" * 252 + "%") == b"b" * 252 + b"%25"
    n = escape("x" * 300)
    assert re.match(rb"x{200}~[0-9a-f]{16}\Z", n)
    assert escape("x" * 300, 1) != n and escape("x" * 300, 1)[:201] == n[:201]


# --------------------------------------------------------------------------
# Helpers


def read(path):
    with open(path, "rb") as f:
        return f.read()


def listdir_b(path):
    return os.listdir(os.fsencode(path))


def bjoin(*parts):
    return os.path.join(*[os.fsencode(p) for p in parts])


def message_json_text(m):
    return (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _int64(v):
    """An integer the daemon reads as one (a JSON integer within 64 bits;
    beyond, jansson makes it a real)."""
    return isinstance(v, int) and not isinstance(v, bool) and \
        -2 ** 63 <= v < 2 ** 63


def utc_date(ms):
    """YYYY-MM-DD (UTC, proleptic Gregorian, any year) of ms since the
    epoch, as gmtime_r() and "%04lld-%02d-%02d" make it."""
    days = (ms // 1000) // 86400
    z = days + 719468                     # civil_from_days (H. Hinnant)
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    mo = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (mo <= 2)
    return "%04d-%02d-%02d" % (y, mo, d) if y >= 0 else \
        "-%03d-%02d-%02d" % (-y, mo, d)


def view_values(m):
    """{view: [raw values]} of one message, as the daemon reads them."""
    out = {v: [] for v in VIEWS}

    def add(view, val):
        if isinstance(val, str) and val and val not in out[view]:
            out[view].append(val)

    labels = m.get("labels")
    if isinstance(labels, list):
        for lab in labels:
            if len(out["by-label"]) == 64:   # MESSAGE_MAX_LABELS
                break
            add("by-label", lab)
    elif isinstance(labels, str):
        add("by-label", labels)
    elif labels is None:
        add("by-label", m.get("label"))
    add("by-url", m.get("workflowUrl"))
    add("by-run", m.get("workflowRunId"))
    add("by-state", m.get("failureFunctionState"))
    st = m.get("responseStatus")
    if _int64(st):
        add("by-status", str(st))
    elif isinstance(st, str):
        add("by-status", st)
    ca = m.get("createdAt")
    if isinstance(ca, float) and abs(ca) < 2.0 ** 63:
        ca = int(ca)                          # a real is truncated
    if _int64(ca):
        add("by-date", utc_date(ca))
    add("by-flow-control-key", m.get("flowControlKey"))
    add("by-caller-ip", m.get("callerIP"))
    return out


def expected_tree(msgs):
    """(run names {dlqId: name}, {view: {value name: {run names}}})."""
    runs = unique_names([m["dlqId"] for m in msgs])
    run_of = {m["dlqId"]: runs[raw(m["dlqId"])] for m in msgs}
    per_view = {v: [] for v in VIEWS}
    for m in msgs:
        for view, vals in view_values(m).items():
            per_view[view].extend(vals)
    tree = {}
    for view in VIEWS:
        names = unique_names(per_view[view])
        tree[view] = {n: set() for n in names.values()}
        for m in msgs:
            for val in view_values(m)[view]:
                tree[view][names[raw(val)]].add(run_of[m["dlqId"]])
    return run_of, tree


def check_component(name):
    assert isinstance(name, bytes)
    assert name not in (b"", b".", b".."), name
    assert b"/" not in name and b"\0" not in name, name
    assert len(name) <= NAME_MAX, (len(name), name[:80])


def walk_tree(root):
    """{relative path (bytes): lstat} of everything below root, links not
    followed; every component checked on the way."""
    root = os.fsencode(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            check_component(n)
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def assert_links_contained(mp):
    """Every symlink of the mount reads ../../runs/<its own name> and
    resolves to that directory of MOUNT/runs."""
    runs_real = os.fsencode(os.path.realpath(mp.path("runs")))
    n = 0
    for rel, st in walk_tree(mp.path()).items():
        if not stat.S_ISLNK(st.st_mode):
            continue
        parts = rel.split(b"/")
        assert len(parts) == 3 and parts[0].decode() in VIEWS, rel
        target = os.readlink(os.path.join(os.fsencode(mp.path()), rel))
        assert target == b"../../runs/" + parts[2], (rel, target)
        real = os.path.realpath(os.path.join(os.fsencode(mp.path()), rel))
        assert os.path.dirname(real) == runs_real, (rel, real)
        assert os.path.isdir(real), rel
        n += 1
    return n


def assert_errno_of(err, fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    assert ei.value.errno == err, ei.value


def assert_no_sanitizer(text):
    bad = [ln for ln in text.splitlines() if any(k in ln for k in SANITIZER_MARKS)]
    assert not bad, text


# --------------------------------------------------------------------------
# 1. Names


def _long_collider(v):
    """A value whose escaped name equals the shortened name of `v`: the
    raw form of that name (every %XX back to its byte)."""
    n = escape(v)
    assert n.endswith(b"~" + b"%016x" % hash64(raw(v)))
    return re.sub(rb"%([0-9A-F]{2})", lambda mo: bytes([int(mo.group(1), 16)]),
                  n).decode("utf-8")


# Values for every string view field (labels, workflowUrl, workflowRunId,
# failureFunctionState, flowControlKey, callerIP).
HOSTILE_VALUES = [
    "/", "//", "/etc/passwd", "../../../etc/passwd", "a/../../etc", "..",
    ".", "...", "./.", "../", "%", "%%", "%2F", "%2E", "%2E%2E", "%00",
    "\x00", "a\x00b", "\x00" * 100, "\x01\x02\x1f", "\x7f", "\t\n\r\v\f",
    " ", "  . ", "-", "--help", "~", "~0123456789abcdef", "a~0123456789abcdef",
    "*?[]{}$`'\"\\|;&<>!", "\u00e9", "\u0085\u0080\u009f", "\u00a0",
    "\u200b", "\u202eevil\u202c", "\ufeffbom", "\ufffd", "\uffff",
    "\U0010ffff", "\u2215\uff0f", "\U0001F642" * 3,
    # long ones: exactly 255, just over, escapes at the cut, UTF-8 at the
    # cut, huge
    "x" * 255, "x" * 256, "%" * 85, "%" * 86, "/" * 100, "\u00e9" * 127,
    "\u00e9" * 128, "\u65e5" * 85, "\u65e5" * 86, "a" + "\U0001F642" * 70,
    "c" * 199 + "/" * 20, "a" * 10000, "\x01" * 300,
]
# Crafted collisions after escaping: a value equal to the (unescaped)
# shortened name of another, and one equal to the salted name of that
# one, for a value without and one with escapes.
_L1 = "a" * 300
_L2 = "/" * 100
COLLIDERS = [_L1, _long_collider(_L1), _L2, _long_collider(_L2)]
COLLIDERS.append(escape(COLLIDERS[1], 1).decode("utf-8"))
COLLIDERS.append(escape(COLLIDERS[3], 1).decode("utf-8").replace(
    "%2F", "/"))
NAME_VALUES = list(dict.fromkeys(HOSTILE_VALUES + COLLIDERS))

# dlqIds: no NUL (such an entry is skipped as malformed), at most 1024 bytes
ID_VALUES = [v for v in NAME_VALUES if "\x00" not in v and len(raw(v)) <= 1024]
ID_VALUES += ["1752829295505-0/../../x", "i" * 1024]
ID_VALUES = list(dict.fromkeys(ID_VALUES))

FIELDS = (("labels", "by-label"), ("workflowUrl", "by-url"),
          ("workflowRunId", "by-run"), ("failureFunctionState", "by-state"),
          ("flowControlKey", "by-flow-control-key"),
          ("callerIP", "by-caller-ip"))


def _value_msg(i, v):
    return {"dlqId": "nv-%03d" % i, "createdAt": T0 + 1000 + i,
            "labels": [v], "workflowUrl": v, "workflowRunId": v,
            "failureFunctionState": v, "flowControlKey": v, "callerIP": v,
            "body": "value %d" % i}


def name_msgs():
    out = [_value_msg(i, v) for i, v in enumerate(NAME_VALUES)]
    for i, v in enumerate(ID_VALUES):
        out.append({"dlqId": v, "createdAt": T0 + 50000 + i, "label": "ids",
                    "body": "id %d" % i})
    return out


def _ident(v):
    r = repr(v)
    return r if len(r) <= 40 else r[:30] + "..%d" % len(raw(v))


class NamesEnv(object):
    pass


@pytest.fixture(scope="module")
def names_env(tmp_path_factory):
    fake = fakeapi.FakeAPI(token=TOKEN, runs=0).start()
    msgs = name_msgs()
    fake.add(msgs)
    base = str(tmp_path_factory.mktemp("hostile-names"))
    m = None
    try:
        m = Mount(fake, tempfile.mkdtemp(prefix="mnt", dir=base))
        env = NamesEnv()
        env.fake, env.m, env.msgs = fake, m, msgs
        env.run_of, env.tree = expected_tree(msgs)
        yield env
    finally:
        try:
            if m is not None:
                m.stop(check=True)
        finally:
            if m is not None:
                unmount(m.mountpoint)
            fake.stop()


@pytest.mark.parametrize("field,view", FIELDS, ids=[f for f, _ in FIELDS])
@pytest.mark.parametrize("index", range(len(NAME_VALUES)),
                         ids=[_ident(v) for v in NAME_VALUES])
def test_value_name_exact(names_env, field, view, index):
    env = names_env
    value = NAME_VALUES[index]
    names = unique_names(NAME_VALUES)   # the values of this view
    name = names[raw(value)]
    run = env.run_of["nv-%03d" % index]
    check_component(name)
    vdir = bjoin(env.m.path(view), name)
    assert stat.S_ISDIR(os.lstat(vdir).st_mode), (field, value, name)
    assert listdir_b(vdir) == [run], (field, value, name)
    link = os.path.join(vdir, run)
    assert os.readlink(link) == b"../../runs/" + run
    runs_real = os.fsencode(os.path.realpath(env.m.path("runs")))
    assert os.path.realpath(link) == os.path.join(runs_real, run)
    got = json.loads(read(os.path.join(link, b"message.json")))
    assert got["dlqId"] == "nv-%03d" % index
    assert got[field] == ([value] if field == "labels" else value)


@pytest.mark.parametrize("index", range(len(ID_VALUES)),
                         ids=[_ident(v) for v in ID_VALUES])
def test_dlqid_name_exact(names_env, index):
    env = names_env
    value = ID_VALUES[index]
    name = env.run_of[value]
    check_component(name)
    rdir = bjoin(env.m.path("runs"), name)
    assert stat.S_ISDIR(os.lstat(rdir).st_mode), (value, name)
    assert json.loads(read(os.path.join(rdir, b"message.json")))["dlqId"] == value
    assert read(os.path.join(rdir, b"body")) == b"id %d" % index
    link = bjoin(env.m.path("by-label"), b"ids", name)
    assert os.readlink(link) == b"../../runs/" + name
    assert os.path.realpath(link) == os.path.join(
        os.fsencode(os.path.realpath(env.m.path("runs"))), name)


def test_collisions_after_escaping_stay_apart(names_env):
    """A value crafted to be the shortened name of another (and one crafted
    to be the salted name of that): distinct directories, each with its
    own run; the original keeps the contract's name."""
    env = names_env
    names = unique_names(NAME_VALUES)
    for long_v, crafted, crafted2 in ((COLLIDERS[0], COLLIDERS[1], COLLIDERS[4]),
                                      (COLLIDERS[2], COLLIDERS[3], COLLIDERS[5])):
        assert escape(crafted) == escape(long_v)          # they do collide
        assert names[raw(long_v)] == escape(long_v)       # contract name kept
        assert names[raw(crafted)] != names[raw(long_v)]
        assert names[raw(crafted2)] not in (names[raw(long_v)],
                                            names[raw(crafted)])
        for view in ("by-label", "by-url", "by-caller-ip"):
            listing = set(listdir_b(env.m.path(view)))
            dirs = [names[raw(v)] for v in (long_v, crafted, crafted2)]
            assert set(dirs) <= listing, (view, dirs)
            runs = [listdir_b(bjoin(env.m.path(view), d)) for d in dirs]
            assert len({tuple(r) for r in runs}) == 3 and \
                all(len(r) == 1 for r in runs), runs
    # the same for dlqIds
    run_names = set(listdir_b(env.m.path("runs")))
    for v in COLLIDERS:
        assert env.run_of[v] in run_names
    assert len({env.run_of[v] for v in COLLIDERS}) == len(COLLIDERS)
    assert env.run_of[COLLIDERS[0]] == escape(COLLIDERS[0])
    assert env.run_of[COLLIDERS[2]] == escape(COLLIDERS[2])


def _tree_state(mp):
    """{relative path: (inode, kind, link target)}."""
    out = {}
    for rel, st in walk_tree(mp.path()).items():
        target = None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(os.path.join(os.fsencode(mp.path()), rel))
        out[rel] = (st.st_ino, stat.S_IFMT(st.st_mode), target)
    return out


def test_whole_tree_contained_unique_stable(names_env):
    """Walk everything: every component is a valid name, every directory
    lists exactly the expected names, every link stays in MOUNT/runs; the
    same names and inode numbers after a refresh, and after a refresh in
    which the API sends the entries in the reverse order."""
    env = names_env
    mp = env.m
    assert sorted(listdir_b(mp.path("runs"))) == \
        sorted(set(env.run_of.values()))
    assert len(listdir_b(mp.path("runs"))) == len(env.msgs)
    for view in VIEWS:
        want = env.tree[view]
        got = listdir_b(mp.path(view))
        assert len(got) == len(set(got))
        assert set(got) == set(want), (view, set(got) ^ set(want))
        for name, runs in want.items():
            assert set(listdir_b(bjoin(mp.path(view), name))) == runs, \
                (view, name)
    assert assert_links_contained(mp) == sum(
        len(r) for v in VIEWS for r in env.tree[v].values())
    before = _tree_state(mp)
    inos = [v[0] for v in before.values() if v[1] != stat.S_IFLNK]
    assert len(inos) == len(set(inos)), "inode numbers are not unique"

    mp.refresh()
    assert _tree_state(mp) == before

    # reverse the API order (createdAt), staying within the same days
    for m in env.msgs:
        if m["dlqId"].startswith("nv-"):
            new = T0 + 40000 - (m["createdAt"] - T0)
        else:
            new = T0 + 90000 - (m["createdAt"] - T0 - 50000)
        env.fake.update(m["dlqId"], createdAt=new)
    s = mp.refresh()
    assert s["state"] == "ready" and s["runs"] == len(env.msgs)
    # createdAt changed inside every message.json: those files have new
    # inode numbers (README: a changed message.json is a new inode, so an
    # open copy keeps its bytes); every other name and inode is the same
    after = _tree_state(mp)
    assert after.keys() == before.keys()
    for path, state in after.items():
        if path.endswith(b"/message.json"):
            assert state[0] != before[path][0], path
            assert state[1:] == before[path][1:], path
        else:
            assert state == before[path], path


# --------------------------------------------------------------------------
# 2. Malformed entries


def _normal_msgs():
    return fakeapi.generate(20, 11, large=False)


B64_OK = base64.b64encode(b"\x00\xffdecoded ok").decode("ascii")

HOSTILE_ENTRIES = [
    {"dlqId": "h-created-string", "createdAt": "2024", "label": "hostile-a",
     "body": "ok"},
    {"dlqId": "h-created-real", "createdAt": float(T0 + 0.5), "body": "r"},
    {"dlqId": "h-created-huge", "createdAt": 10 ** 30,
     "maxRetries": -10 ** 25, "body": "huge"},
    {"dlqId": "h-created-max", "createdAt": 2 ** 63 - 1,
     "responseStatus": 2 ** 63 - 1},
    {"dlqId": "h-created-min", "createdAt": -2 ** 63,
     "responseStatus": -2 ** 63},
    {"dlqId": "h-created-y10k", "createdAt": 253402300800000 + 1,
     "responseStatus": 10 ** 20},
    {"dlqId": "h-created-neg", "createdAt": -1, "responseStatus": 0},
    {"dlqId": "h-labels-string", "createdAt": T0 + 1, "labels": "x-lone"},
    {"dlqId": "h-labels-mixed", "createdAt": T0 + 2,
     "labels": [None, 5, "mixed-ok", "", {"a": 1}, ["x"], True]},
    {"dlqId": "h-labels-many", "createdAt": T0 + 3,
     "labels": ["many-%03d" % i for i in range(70)]},
    {"dlqId": "h-label-int", "createdAt": T0 + 4, "label": 7},
    {"dlqId": "h-header-list", "createdAt": T0 + 5, "header": ["a"],
     "responseHeader": "text/plain"},
    {"dlqId": "h-header-values", "createdAt": T0 + 6,
     "header": {"X-One": "not-a-list", "X-Two": [1, None, {}, "ok"],
                "X-Three": [], "X-Crlf\r\nInjected": ["v\r\nEvil: 1"]}},
    {"dlqId": "h-status-object", "createdAt": T0 + 7, "responseStatus": {}},
    {"dlqId": "h-status-real", "createdAt": T0 + 8, "responseStatus": 500.0},
    {"dlqId": "h-status-list", "createdAt": T0 + 9, "responseStatus": [500]},
    {"dlqId": "h-body-int", "createdAt": T0 + 10, "body": 123,
     "responseBody": ["x"]},
    {"dlqId": "h-body64-invalid", "createdAt": T0 + 11, "body": "plain",
     "bodyBase64": "!!!not base64"},
    {"dlqId": "h-rbody64-invalid", "createdAt": T0 + 12,
     "responseBody": "plain", "responseBodyBase64": "@@@"},
    {"dlqId": "h-rbody64-badpad", "createdAt": T0 + 13,
     "responseBodyBase64": "QUJD="},
    {"dlqId": "h-rbody64-short", "createdAt": T0 + 14,
     "responseBodyBase64": "Q"},
    {"dlqId": "h-body64-wrongtype", "createdAt": T0 + 15,
     "body": "plain text", "bodyBase64": 5, "responseBody": True,
     "responseBodyBase64": B64_OK},
    {"dlqId": "h-nulls", "messageId": None, "url": None, "method": None,
     "header": None, "body": None, "bodyBase64": None, "createdAt": None,
     "callerIP": None, "workflowRunId": None, "workflowUrl": None,
     "responseStatus": None, "responseHeader": None, "responseBody": None,
     "responseBodyBase64": None, "failureFunctionState": None,
     "label": None, "labels": None, "flowControlKey": None},
    {"dlqId": "h-only-id"},
    {"dlqId": "h-wrong-views", "createdAt": T0 + 16, "workflowUrl": ["u"],
     "workflowRunId": 7, "failureFunctionState": {"s": 1},
     "flowControlKey": False, "callerIP": 3.5, "body": "views"},
    {"dlqId": "h-unknown-nested", "createdAt": T0 + 17, "label": "hostile-a",
     "x-new": {"a": [1, {"b": [None, True, {"c": "d"}]}], "": "",
               "dlqId": "not-this-one"},
     "": {"empty key": 1}, "nul-value": "a\u0000b",
     "nested": [[[[[[[[[[[[[[[[[[[[{"deep": 1.5e300}]]]]]]]]]]]]]]]]]]]],
     "body": "nested ok"},
    {"dlqId": "h-body-nul", "createdAt": T0 + 18, "body": "a\u0000b\u0000",
     "responseBody": "\u0000"},
    {"dlqId": "i" * 1024, "createdAt": T0 + 19, "label": "hostile-a"},
]
# skipped as a whole (and counted in malformed_entries)
SKIPPED_ENTRIES = [
    {"dlqId": "j" * 1025, "createdAt": T0 + 20, "label": "hostile-a"},
    {"dlqId": "nul\u0000id", "createdAt": T0 + 21, "label": "hostile-a"},
]
# entries whose text is set by hand (the fake only serializes dicts)
DUP_TEXT = (b'{"dlqId":"h-dup-keys","label":"dup-first","createdAt":%d,'
            b'"label":"dup-\\u0073econd","body":"b1","body":"b2",'
            b'"responseStatus":500,"responseStatus":"503"}' % (T0 + 22))
DUP_JSON = (b'{\n  "dlqId": "h-dup-keys",\n  "label": "dup-first",\n'
            b'  "createdAt": %d,\n  "label": "dup-\\u0073econd",\n'
            b'  "body": "b1",\n  "body": "b2",\n  "responseStatus": 500,\n'
            b'  "responseStatus": "503"\n}\n' % (T0 + 22))


def _header_text(h):
    def line(s):
        return s.replace("\r", " ").replace("\n", " ")
    out = []
    for name in sorted(h, key=lambda k: k.encode("utf-8")):
        vals = h[name] if isinstance(h[name], list) else [h[name]]
        for v in vals:
            if isinstance(v, str):
                out.append("%s: %s\n" % (line(name), line(v)))
    return "".join(out).encode("utf-8")


def _b64ok(s):
    """The daemon's base64: standard or URL-safe alphabet, padding
    optional but never more than needed, CR and LF ignored; None when
    invalid."""
    text = s.replace("\r", "").replace("\n", "")
    data = text.rstrip("=")
    pad = len(text) - len(data)
    if re.search(r"[^A-Za-z0-9+/_-]", data) or len(data) % 4 == 1 or \
            pad > 2 or (pad and (len(data) + pad) % 4):
        return None
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


def _body(m, key, key64):
    b64, plain = m.get(key64), m.get(key)
    if isinstance(b64, str) and b64:
        return _b64ok(b64)               # invalid base64: no file at all
    if isinstance(plain, str):
        return plain.encode("utf-8")
    if isinstance(b64, str):
        return b""
    return None


def expected_files(m):
    files = {"message.json": message_json_text(m)}
    for f, k, k64 in (("body", "body", "bodyBase64"),
                      ("responseBody", "responseBody", "responseBodyBase64")):
        b = _body(m, k, k64)
        if b is not None:
            files[f] = b
    for f in ("header", "responseHeader"):
        if isinstance(m.get(f), dict):
            files[f] = _header_text(m[f])
    st = m.get("responseStatus")
    if _int64(st):
        files["responseStatus"] = b"%d\n" % st
    elif isinstance(st, str):
        files["responseStatus"] = st.encode() + (b"\n" if st else b"")
    return files


class EntriesEnv(object):
    pass


@pytest.fixture(scope="module")
def entries_env(tmp_path_factory):
    fake = fakeapi.FakeAPI(token=TOKEN, runs=0).start()
    normal = _normal_msgs()
    fake.add(normal)
    fake.add(json.loads(json.dumps(HOSTILE_ENTRIES + SKIPPED_ENTRIES)))
    fake.add({"dlqId": "h-dup-keys"})
    with fake._lock:
        fake._by_id["h-dup-keys"].enc = DUP_TEXT
    base = str(tmp_path_factory.mktemp("hostile-entries"))
    m = None
    try:
        m = Mount(fake, tempfile.mkdtemp(prefix="mnt", dir=base))
        env = EntriesEnv()
        env.fake, env.m, env.normal = fake, m, normal
        yield env
    finally:
        try:
            if m is not None:
                m.stop(check=True)
        finally:
            if m is not None:
                unmount(m.mountpoint)
            fake.stop()


def _assert_run(mp, m, name=None):
    name = name if name is not None else escape(m["dlqId"])
    rdir = bjoin(mp.path("runs"), name)
    want = expected_files(m)
    got = sorted(n.decode() for n in listdir_b(rdir))
    assert got == sorted(want), (m["dlqId"][:40], got, sorted(want))
    for f, content in want.items():
        assert read(os.path.join(rdir, f.encode())) == content, (m["dlqId"][:40], f)
        assert os.stat(os.path.join(rdir, f.encode())).st_size == len(content)
    # message.json is what was sent
    assert json.loads(read(os.path.join(rdir, b"message.json"))) == m
    # and the views hold it exactly where its valid values say
    for view, vals in view_values(m).items():
        for v in vals:
            assert name in listdir_b(bjoin(mp.path(view), escape(v))), \
                (m["dlqId"][:40], view, v)


def test_malformed_entries_shown_as_far_as_valid(entries_env):
    env = entries_env
    mp = env.m
    s = mp.status()
    assert s["state"] == "ready", s
    runs = set(listdir_b(mp.path("runs")))
    want = {escape(m["dlqId"]) for m in env.normal + HOSTILE_ENTRIES}
    want.add(b"h-dup-keys")
    assert runs == want, (runs ^ want)
    assert s["runs"] == len(want)
    for m in env.normal:
        _assert_run(mp, m)
    for m in HOSTILE_ENTRIES:
        _assert_run(mp, json.loads(json.dumps(m)))
    # skipped entries: counted, nowhere in the tree
    assert s["malformed_entries"] == len(SKIPPED_ENTRIES), s
    assert s["malformed_fields"] > 0, s
    hostile_a = set(listdir_b(mp.path("by-label", "hostile-a")))
    assert hostile_a == {b"h-created-string", b"h-unknown-nested",
                         escape("i" * 1024)}
    # the particular cases
    labels = set(listdir_b(mp.path("by-label")))
    assert b"x-lone" in labels and b"mixed-ok" in labels
    assert {b"many-%03d" % i for i in range(64)} <= labels
    assert not {b"many-%03d" % i for i in range(64, 70)} & labels
    for absent in (b"7", b"5", b"True"):
        assert absent not in labels
    dates = set(listdir_b(mp.path("by-date")))
    assert b"2026-01-01" in dates
    for view in ("by-url", "by-run", "by-state", "by-flow-control-key",
                 "by-caller-ip"):
        for n in listdir_b(mp.path(view)):
            assert b"h-wrong-views" not in listdir_b(bjoin(mp.path(view), n))
    assert not os.path.exists(mp.path("runs", "h-body64-invalid", "body"))
    assert not os.path.exists(mp.path("runs", "h-rbody64-invalid",
                                      "responseBody"))
    assert read(mp.path("runs", "h-body64-wrongtype", "body")) == b"plain text"
    assert read(mp.path("runs", "h-body-nul", "body")) == b"a\0b\0"
    assert read(mp.path("runs", "h-header-values", "header")) == (
        b"X-Crlf  Injected: v  Evil: 1\nX-One: not-a-list\nX-Two: ok\n")
    assert sorted(os.listdir(mp.path("runs", "h-only-id"))) == ["message.json"]
    assert sorted(os.listdir(mp.path("runs", "h-nulls"))) == ["message.json"]
    # createdAt at the ends of 64 bits: dates and times as the numbers say
    assert utc_date(-1) == "1969-12-31" and utc_date(T0) == "2026-01-01"
    for dlq_id, ms in (("h-created-max", 2 ** 63 - 1),
                       ("h-created-min", -2 ** 63),
                       ("h-created-y10k", 253402300800001),
                       ("h-created-neg", -1)):
        st = os.stat(mp.path("runs", dlq_id))
        # (before the epoch, tree.c shows the epoch itself)
        assert st.st_mtime_ns == max(ms, 0) * 1000000, (dlq_id, st.st_mtime_ns)
        assert dlq_id in os.listdir(mp.path("by-date", utc_date(ms)))
    assert "10000-01-01" in os.listdir(mp.path("by-date"))
    assert assert_links_contained(mp) > 0


def test_duplicated_keys_last_wins_message_json_as_sent(entries_env):
    mp = entries_env.m
    rdir = mp.path("runs", "h-dup-keys")
    assert read(os.path.join(rdir, "message.json")) == DUP_JSON
    assert read(os.path.join(rdir, "body")) == b"b2"
    assert read(os.path.join(rdir, "responseStatus")) == b"503\n"
    assert os.listdir(mp.path("by-label", "dup-second")) == ["h-dup-keys"]
    assert not os.path.exists(mp.path("by-label", "dup-first"))
    assert "h-dup-keys" in os.listdir(mp.path("by-status", "503"))
    assert "h-dup-keys" not in os.listdir(mp.path("by-status", "500"))


def test_hostile_non_objects_in_a_page_hide_nothing(entries_env):
    """The fake's malformed_entries page: 42, null, strings, arrays,
    entries without a usable dlqId, wrong types everywhere, around and
    among the real entries."""
    env = entries_env
    mp = env.m
    before = set(listdir_b(mp.path("runs")))
    env.fake.inject("malformed_entries")
    s = mp.refresh()
    assert s["state"] == "ready", s
    assert env.fake.faults() == []           # the fault was used by the walk
    runs = set(listdir_b(mp.path("runs")))
    tags = sorted(n for n in runs if n.startswith(b"malformed-"))
    assert len(tags) == 3 and before <= runs and len(runs) == len(before) + 3
    tag = re.match(rb"(malformed-[0-9]+)-", tags[0]).group(1).decode()
    objs = {}
    for text in fakeapi._hostile_entries(tag):
        v = json.loads(text)
        if isinstance(v, dict) and isinstance(v.get("dlqId"), str) and v["dlqId"]:
            objs[v["dlqId"]] = v
    assert set(objs) == {t.decode() for t in tags}
    for m in objs.values():
        _assert_run(mp, m)
    # 9 entries skipped by the page fault, plus our two
    assert s["malformed_entries"] == 9 + len(SKIPPED_ENTRIES), s
    assert s["malformed_fields"] > 0
    for m in env.normal:
        _assert_run(mp, m)
    s = mp.refresh()                         # and it all goes away again
    assert set(listdir_b(mp.path("runs"))) == before
    assert s["malformed_entries"] == len(SKIPPED_ENTRIES)


# One entry whose text jansson refuses while it is valid JSON to others (a
# lone surrogate escape, as JavaScript's JSON.stringify writes a broken
# string; a NUL in a member name; nesting deeper than jansson's 2048):
# the entry may be skipped or shown as far as valid, but the mount and the
# other entries of its page must not be lost to it.
REFUSED_BY_JANSSON = {
    "surrogate-in-label": {"labels": ["bad\udc80label", "good-label"]},
    "surrogate-in-body": {"body": "bad \udc80 body"},
    "surrogate-in-unknown-field": {"x-unknown": {"k": "\ud800"}},
    "nul-in-member-name": {"x-unknown": {"a\u0000b": 1}},
    "nesting-3000-deep": None,   # text set by hand below
}


def _odd_entry_mount(fake_factory, mount_factory, kind):
    fake = fake_factory(runs=0)
    normal = _normal_msgs()
    fake.add(normal)
    entry = {"dlqId": "odd-entry", "createdAt": T0, "body": "odd"}
    entry.update(REFUSED_BY_JANSSON[kind] or {})
    fake.add(entry)
    with fake._lock:
        rec = fake._by_id["odd-entry"]
        if kind == "nesting-3000-deep":
            rec.enc = (b'{"dlqId":"odd-entry","createdAt":%d,"body":"odd",'
                       b'"x-deep":%s%s}' % (T0, b"[" * 3000, b"]" * 3000))
        else:
            assert b"\\u" in rec.enc   # escaped, as JavaScript sends it
    return fake, normal, mount_factory(fake)


@pytest.mark.parametrize("kind", sorted(REFUSED_BY_JANSSON))
def test_entry_refused_by_jansson_does_not_hide_the_page(fake_factory,
                                                         mount_factory, kind):
    fake, normal, m = _odd_entry_mount(fake_factory, mount_factory, kind)
    s = m.status()
    assert s["state"] == "ready", s
    runs = set(os.listdir(m.path("runs")))
    assert {x["dlqId"] for x in normal} <= runs, \
        "entries hidden by one odd entry"
    assert "odd-entry" in runs or s["malformed_entries"] >= 1, s
    assert s["malformed_entries"] + s["malformed_fields"] > 0, s


def test_lone_surrogate_arriving_later_does_not_stall_the_mount(
        fake_factory, mount_factory):
    """Mounted fine; then an entry with a lone surrogate lands in the DLQ
    along with a normal one: the next walk must still succeed and show
    the normal one."""
    fake = fake_factory(runs=0)
    normal = _normal_msgs()
    fake.add(normal)
    m = mount_factory(fake)
    extra = dict(normal[0], dlqId="added-later", createdAt=T0 + 5)
    fake.add([extra, {"dlqId": "lone-later", "createdAt": T0 + 6,
                      "label": "x\udc80"}])
    assert b"\\udc80" in fake._by_id["lone-later"].enc
    s = m.refresh()
    assert s["state"] == "ready" and s["last_error"] is None, s
    assert "added-later" in os.listdir(m.path("runs"))


# --------------------------------------------------------------------------
# 3. A 50 MB response body


BIG = 50 * 1024 * 1024


def test_50mb_response_body(fake_factory, mount_factory):
    fake = fake_factory(runs=0)
    normal = _normal_msgs()
    fake.add(normal)
    m = mount_factory(fake, options=["max_response=200M"])
    big = base64.b64encode(os.urandom(BIG // 4 * 3)).decode("ascii")
    assert len(big) == BIG
    dec = os.urandom(5 * 1024 * 1024 + 1)
    fake.add({"dlqId": "big-1", "createdAt": T0, "label": "big",
              "responseBody": big, "body": "",
              "bodyBase64": base64.b64encode(dec).decode("ascii")})
    # the walk, watched from outside: status keeps answering
    with open(m.path(".dlqfs/refresh"), "w") as f:
        f.write("1\n")
    slowest = 0.0
    saw_walking = False
    end = time.monotonic() + 60
    while time.monotonic() < end:
        t = time.monotonic()
        s = m.status()
        os.listdir(m.path("runs"))
        slowest = max(slowest, time.monotonic() - t)
        saw_walking |= s["walking"]
        if s["generation"] >= 2 and not s["walking"]:
            break
        time.sleep(0.02)
    assert s["generation"] >= 2 and s["state"] == "ready", s
    assert slowest < 2.0, "status/ls took %.2f s during the walk" % slowest
    assert s["runs"] == 21 and s["payload_bytes"] > BIG
    # the memory next to the payload: the daemon's own VmRSS, which holds
    # the 50 MB body's entry
    vmrss = vm_rss_kib(m.proc.pid) * 1024
    rss = m.status()["rss_bytes"]
    assert rss > BIG and abs(rss - vmrss) < vmrss / 4, (rss, vmrss)
    p = m.path("runs", "big-1", "responseBody")
    assert os.stat(p).st_size == BIG
    h = hashlib.sha256()
    with open(p, "rb") as f:
        # some reads at odd offsets first
        f.seek(BIG - 3)
        assert f.read(10) == big[-3:].encode()
        f.seek(12345)
        assert f.read(7) == big[12345:12352].encode()
        f.seek(0)
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    assert h.hexdigest() == hashlib.sha256(big.encode()).hexdigest()
    assert os.stat(m.path("runs", "big-1", "body")).st_size == len(dec)
    assert hashlib.sha256(read(m.path("runs", "big-1", "body"))).digest() == \
        hashlib.sha256(dec).digest()
    assert json.loads(read(m.path("runs", "big-1", "message.json")))[
        "responseBody"] == big
    assert m.status()["state"] == "ready"
    assert sorted(os.listdir(m.path("runs"))) == \
        sorted([x["dlqId"] for x in normal] + ["big-1"])


# --------------------------------------------------------------------------
# 4. Security: the token


def new_token():
    return "h10tok-" + secrets.token_hex(20)


def assert_no_token(data, token, where):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    tok = token.encode()
    assert tok not in data, "the token appears in %s" % where
    # not even its distinctive tail
    assert tok[-16:] not in data, "part of the token appears in %s" % where


def grep_mount(mp, token):
    """Every file (and link target, and name) of the mount, searched for
    the token; returns the number of files read."""
    n = 0
    root = os.fsencode(mp.path())
    for rel, st in walk_tree(root).items():
        assert_no_token(rel, token, "a path")
        p = os.path.join(root, rel)
        if stat.S_ISLNK(st.st_mode):
            assert_no_token(os.readlink(p), token, "a link")
        elif stat.S_ISREG(st.st_mode):
            assert_no_token(read(p), token, rel.decode(errors="replace"))
            n += 1
    return n


def proc_read(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def test_token_not_in_argv_environ_tree_status_stderr_or_log(fake_factory,
                                                               mount_factory):
    tok = new_token()
    fake = fake_factory(token=tok, runs=120)
    m = mount_factory(fake, token=tok, extra_args=["-d"],
                      options=["auto_unmount", "retries=0"])
    pid = m.proc.pid
    assert_no_token(proc_read(pid, "cmdline"), tok, "/proc/PID/cmdline")
    env = proc_read(pid, "environ")
    assert_no_token(env, tok, "/proc/PID/environ")
    # every thread's view too
    for t in os.listdir("/proc/%d/task" % pid):
        assert_no_token(proc_read(pid, "task/%s/environ" % t), tok,
                        "/proc/PID/task/TID/environ")
    # a child process (auto_unmount keeps fusermount3 running) inherits
    # nothing of it
    kids = children_of(pid)
    assert kids, "auto_unmount: expected a fusermount3 child"
    for k in kids:
        cenv = proc_read(k, "environ")
        assert_no_token(cenv, tok, "a child's environment")
        assert b"QSTASH_TOKEN=" not in cenv
        assert_no_token(proc_read(k, "cmdline"), tok, "a child's cmdline")
    # the whole tree, .dlqfs/status included, after a refresh and a failure
    m.refresh()
    fake.inject("status", code=500, message="upstream said: token " + tok,
                times=None)
    s = m.refresh()
    assert s["state"] == "stale" and "upstream said" in s["last_error"], s
    fake.clear_faults()
    assert grep_mount(m, tok) > 120 * 3
    assert_no_token(read(m.path(".dlqfs/status")), tok, ".dlqfs/status")
    # the fake saw it only in the Authorization header (which its log
    # leaves out), never in a URL or another header
    reqs = fake.requests()
    assert reqs
    for r in reqs:
        assert r["auth"] == "bearer" and not r["query_token"], r
        r.pop("fault_params", None)     # what this test injected
        assert_no_token(json.dumps(r), tok, "a request (URL or header)")
    m.stop()
    assert_no_token(m.stderr(), tok, "stderr with -d -f")
    assert "unique:" in m.stderr() or "opcode" in m.stderr() \
        or "INIT" in m.stderr(), "-d printed nothing: nothing was checked"


def _scan_memory(pid, needle):
    """Offsets of `needle` in the readable memory of `pid`, with their
    mapping names and 48 bytes of context."""
    hits = []
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    try:
        for line in maps:
            parts = line.split()
            lo, hi = [int(x, 16) for x in parts[0].split("-")]
            if not parts[1].startswith("r") or hi - lo > 1 << 30:
                continue
            name = parts[5] if len(parts) > 5 else "[anon]"
            if name.startswith("/") and "w" not in parts[1]:
                continue
            try:
                data = os.pread(fd, hi - lo, lo)
            except OSError:
                continue
            for mo in re.finditer(re.escape(needle), data):
                hits.append((name, lo + mo.start(),
                             data[max(0, mo.start() - 24):mo.end() + 4]))
    finally:
        os.close(fd)
    return hits


def _token_file(tmp_path, tok, mode=0o600, name="token"):
    p = str(tmp_path / name)
    with open(p, "w") as f:
        f.write(tok + "\n")
    os.chmod(p, mode)
    return p


def _memory_mount(fake_factory, mount_factory, tmp_path, walks=3):
    """A mount reading its token from a file (QSTASH_TOKEN holds a decoy,
    so that the sanitizer runtime's private copy of the environment holds
    no real token), after `walks` walks; and the token's copies in its
    memory."""
    tok, decoy = new_token(), new_token()
    fake = fake_factory(token=tok, runs=30)
    m = mount_factory(fake, token=decoy,
                      options=["token_file=" + _token_file(tmp_path, tok)])
    for _ in range(walks - 1):
        m.refresh()
    hits = _scan_memory(m.proc.pid, tok.encode())
    assert hits, "the scan found nothing: it cannot be trusted"
    return m, tok, decoy, hits


def _bare(hits, tok):
    return [h for h in hits if b"Bearer " + tok.encode() not in h[2]]


def test_token_in_daemon_memory_only_where_needed(fake_factory, mount_factory,
                                                  tmp_path):
    """The live memory of the daemon (what a core dump would hold): the
    token is kept where the clients need it, but not in the environment
    block nor on any stack, and walks add no copies."""
    m, tok, decoy, hits = _memory_mount(fake_factory, mount_factory, tmp_path,
                                        walks=1)
    where = "\n".join("%s %#x %r" % h for h in hits)
    assert not [h for h in hits if h[0].startswith("[stack")], where
    first = len(_bare(hits, tok))
    for _ in range(3):
        m.refresh()
    hits = _scan_memory(m.proc.pid, tok.encode())
    where = "\n".join("%s %#x %r" % h for h in hits)
    assert not [h for h in hits if h[0].startswith("[stack")], where
    assert len(_bare(hits, tok)) <= first, where
    assert_no_token(proc_read(m.proc.pid, "environ"), decoy,
                    "/proc/PID/environ")
    dec = [h for h in _scan_memory(m.proc.pid, decoy.encode())
           if h[0].startswith("[stack")]
    assert not dec, "QSTASH_TOKEN left in the environment block"


def test_token_not_left_in_past_request_buffers(fake_factory, mount_factory,
                                                tmp_path):
    """dlqfs wipes its own "Authorization: Bearer <token>" line and curl
    header list after each request, but the request text libcurl builds
    from them is freed without being wiped: one more copy of the token in
    memory per request made. (Avoidable: e.g. curl_global_init_mem() with
    a free() that clears the block.)"""
    m, tok, decoy, hits = _memory_mount(fake_factory, mount_factory, tmp_path)
    headers = [h for h in hits if b"Bearer " + tok.encode() in h[2]]
    assert not headers, ("%d stale 'Authorization: Bearer <token>' copies "
                         "left in memory after 3 walks:\n%s" % (
                             len(headers),
                             "\n".join("%s %#x %r" % h for h in headers)))


def test_daemon_not_dumpable(fake_factory, tmp_path):
    """prctl(PR_SET_DUMPABLE, 0) (no core dump, no ptrace or /proc/PID/mem
    by the user's other processes). Linux shows it in the owner of the
    files under /proc/PID: the task's effective ids while it is dumpable,
    root once it is not (task_dump_owner()); the /proc/PID directory
    itself keeps the effective ids and is the control. The daemon runs
    as root (FUSE needs it here) with group nobody, to tell them apart."""
    fake = fake_factory(runs=5)
    mp = str(tmp_path / "mnt")
    os.mkdir(mp)
    errp = str(tmp_path / "stderr")
    env = sanitizer_env(os.environ)
    env["QSTASH_TOKEN"] = TOKEN
    env.pop("QSTASH_URL", None)
    err = open(errp, "w")
    p = subprocess.Popen(["setpriv", "--regid=%d" % NOBODY, "--clear-groups",
                          DLQFS, "-f", "-o", "url=%s,refresh=3600"
                          % fake.base_url, mp], env=env,
                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        end = time.monotonic() + 30
        while not is_mounted(mp) and p.poll() is None \
                and time.monotonic() < end:
            time.sleep(0.02)
        assert is_mounted(mp), open(errp).read()
        # (root of group 0 is not the mounter, root of group nobody:
        # even this mount is closed to it)
        assert_errno_of(errno.EACCES, os.listdir, os.path.join(mp, "runs"))
        assert os.stat("/proc/%d" % p.pid).st_gid == NOBODY    # control
        for f in ("environ", "mem", "status", "maps"):
            st = os.stat("/proc/%d/%s" % (p.pid, f))
            assert (st.st_uid, st.st_gid) == (0, 0), \
                "dlqfs is dumpable: /proc/PID/%s is owned by %d:%d" % (
                    f, st.st_uid, st.st_gid)
    finally:
        unmount(mp)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        unmount(mp)
        err.close()
    with open(errp) as f:
        text = f.read()
    assert_no_sanitizer(text)
    assert rc == 0, text


# -- failing start-ups


class ReflectingAPI(object):
    """A tiny server on 127.0.0.1 that answers every request with the
    bearer token it was sent, in the way `mode` says."""

    def __init__(self, mode):
        outer = self
        self.mode = mode
        self.seen = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                authz = self.headers.get("Authorization", "")
                tok = authz.partition(" ")[2]
                outer.seen.append(authz)
                code, ctype, body = {
                    "json401": (401, "application/json",
                                json.dumps({"error": "invalid token: " + tok})),
                    "json400": (400, "application/json",
                                json.dumps({"error": "bad request for " + tok})),
                    "html502": (502, "text/html",
                                "<html><head><title>502 %s</title></head>"
                                "<body>%s</body></html>" % (tok, tok)),
                    "text500": (500, "text/plain", "token=%s broke" % tok),
                    "notjson": (200, "application/json",
                                '{"messages": [%s' % tok),
                    "badpage": (200, "application/json",
                                json.dumps({"cursor": {"t": tok},
                                            "messages": []})),
                }[outer.mode]
                b = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(b)))
                self.send_header("X-Echo", tok)
                self.end_headers()
                self.wfile.write(b)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _fails_cleanly(r, tok, what):
    assert r.returncode != 0, (what, r.stdout, r.stderr)
    assert_no_token(r.stdout + r.stderr, tok, "the error of " + what)
    assert_no_sanitizer(r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dlqfs: "), (what, r.stderr)
    return lines[0]


@pytest.mark.parametrize("mode", ["json401", "json400", "html502", "text500",
                                  "notjson", "badpage"])
def test_startup_errors_never_echo_the_token(tmp_path, mode):
    tok = new_token()
    api = ReflectingAPI(mode)
    try:
        r = run_dlqfs(["-f", "-o", "url=%s,retries=0" % api.url,
                       str(tmp_path)], token=tok, timeout=30)
    finally:
        api.stop()
    assert api.seen and all(s == "Bearer " + tok for s in api.seen)
    _fails_cleanly(r, tok, mode)


def test_startup_errors_of_the_fake_never_echo_the_token(fake_factory,
                                                         tmp_path):
    tok = new_token()
    fake = fake_factory(token="another-token", runs=3)
    r = run_dlqfs(["-f", "-o", "url=%s" % fake.base_url, str(tmp_path)],
                  token=tok)
    line = _fails_cleanly(r, tok, "a refused token")
    assert "refused the token" in line
    fake.configure(token=tok)
    for code in (401, 500, 503):
        fake.inject("status", code=code, message="no such token " + tok,
                    times=None)
        r = run_dlqfs(["-f", "-o", "url=%s,retries=0" % fake.base_url,
                       str(tmp_path)], token=tok)
        _fails_cleanly(r, tok, "HTTP %d" % code)
        fake.clear_faults()
    r = run_dlqfs(["-f", "-o", "url=http://127.0.0.1:1,retries=0",
                   str(tmp_path)], token=tok)
    _fails_cleanly(r, tok, "a refused connection")
    r = run_dlqfs(["-f", "-o", "url=%s" % fake.base_url,
                   str(tmp_path / "missing")], token=tok)
    _fails_cleanly(r, tok, "a missing mount point")
    # a token that cannot go into a header is refused without being shown
    bad = tok + " \r\nX-Injected: 1"
    r = run_dlqfs(["-f", "-o", "url=%s" % fake.base_url, str(tmp_path)],
                  token=bad)
    _fails_cleanly(r, tok, "a token with blanks")
    for req in fake.requests():
        assert "X-Injected" not in req["headers"], req
    # -o token= is refused, and the error does not repeat it
    r = run_dlqfs(["-f", "-o", "token=" + tok, str(tmp_path)], token=None)
    line = _fails_cleanly(r, tok, "-o token=")
    assert "token" in line


# -- token files


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602,
                                  0o606, 0o610, 0o601, 0o700 | 0o044])
def test_token_file_readable_by_others_refused(tmp_path, fake_factory, mode):
    tok = new_token()
    fake = fake_factory(token=tok, runs=3)
    path = _token_file(tmp_path, tok, mode)
    mp = tmp_path / "mnt"
    mp.mkdir()
    r = run_dlqfs(["-f", "-o", "url=%s,token_file=%s" % (fake.base_url, path),
                   str(mp)], token=None)
    line = _fails_cleanly(r, tok, "mode %o" % mode)
    assert "group or others" in line and path in line, line
    assert not fake.requests(), "the API was called with a public token"
    assert not is_mounted(str(mp))


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_token_file_private_accepted(tmp_path, fake_factory, mount_factory,
                                     mode):
    tok = new_token()
    fake = fake_factory(token=tok, runs=3)
    path = _token_file(tmp_path, tok, mode)
    decoy = new_token()
    m = mount_factory(fake, token=decoy, options=["token_file=" + path])
    assert m.status()["state"] == "ready" and len(os.listdir(m.path("runs"))) == 3
    assert_no_token(proc_read(m.proc.pid, "environ"), decoy, "environ")
    assert_no_token(proc_read(m.proc.pid, "cmdline"), tok, "cmdline")


def test_token_file_hostile_kinds(tmp_path, fake_factory):
    tok = new_token()
    fake = fake_factory(token=tok, runs=3)
    mp = tmp_path / "mnt"
    mp.mkdir()
    good = _token_file(tmp_path, tok)
    link = str(tmp_path / "link")
    os.symlink(good, link)
    sub = tmp_path / "dir"
    sub.mkdir(mode=0o700)
    big = _token_file(tmp_path, "t" * 5000, name="big")
    multi = _token_file(tmp_path, tok + "\nsecond-line-" + tok, name="multi")
    empty = _token_file(tmp_path, "", name="empty")
    cases = [(link, ("symbolic link", "Too many levels")),
             (str(sub), ("not a regular file",)),
             (big, ("too large",)),
             (multi, ("no token",)),
             (empty, ("no token",)),
             ("/dev/null", ("not a regular file", "group or others")),
             (str(tmp_path / "absent"), ("No such file",))]
    for path, words in cases:
        t0 = time.monotonic()
        try:
            r = run_dlqfs(["-f", "-o", "url=%s,token_file=%s"
                           % (fake.base_url, path), str(mp)],
                          token=None, timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("token_file=%s: dlqfs hung at start-up" % path)
        line = _fails_cleanly(r, tok, path)
        assert any(w in line for w in words) and path in line, (path, line)
        assert time.monotonic() - t0 < 10
    assert not fake.requests()


def test_token_file_fifo_does_not_hang(tmp_path, fake_factory):
    """A FIFO (mode 0600) as token_file: open(O_RDONLY) waits for a writer
    forever; start-up must fail at once ("not a regular file"), e.g. by
    opening with O_NONBLOCK before the fstat() check."""
    fake = fake_factory(runs=3)
    mp = tmp_path / "mnt"
    mp.mkdir()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o600)
    try:
        r = run_dlqfs(["-f", "-o", "url=%s,token_file=%s"
                       % (fake.base_url, fifo), str(mp)], token=None,
                      timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("token_file=FIFO: dlqfs still blocked in open() after 5 s")
    line = _fails_cleanly(r, TOKEN, fifo)
    assert "not a regular file" in line, line


# -- clear-text http and TLS


needs_netns = pytest.mark.skipif(
    not (shutil.which("unshare") and shutil.which("ip")),
    reason="needs unshare(1) and ip(8) for a private network namespace")


def _run_isolated(args, env_extra=None, timeout=20):
    """dlqfs in a new network namespace (no interface up): whatever it
    decides, it cannot reach anything."""
    env = sanitizer_env(os.environ)
    env.pop("QSTASH_URL", None)
    env["QSTASH_TOKEN"] = TOKEN
    for k in list(env):
        if k.lower().endswith("_proxy"):
            del env[k]
    if env_extra:
        env.update(env_extra)
    return subprocess.run(["unshare", "-n", DLQFS] + list(args), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


REFUSED_URLS = [
    "http://10.1.2.3", "http://10.1.2.3:80/", "http://example.com",
    "http://127.0.0.1.example.com", "http://localhost.example.com",
    "http://127.0.0.1@example.com", "http://localhost:80@10.1.2.3",
    "http://example.com#@127.0.0.1", "http://example.com/127.0.0.1",
    "http://example.com?h=127.0.0.1", "http://[::ffff:10.1.2.3]",
    "http://[::1%25lo]", "http://0.0.0.0", "http://[::]",
    "http://128.0.0.1", "http://10.1.2.3/v2/workflows/dlq",
]
LOOPBACK_URLS = [
    "http://127.0.0.1:9", "http://127.2.3.4:9", "http://localhost:9",
    "http://LOCALHOST:9", "http://[::1]:9", "http://[::ffff:127.0.0.1]:9",
    "http://127.1:9",
]


@needs_netns
@pytest.mark.parametrize("url", REFUSED_URLS)
def test_http_to_non_loopback_refused(tmp_path, url):
    for how in ("option", "env"):
        if how == "option":
            r = _run_isolated(["-f", "-o", "url=%s,retries=0" % url,
                               str(tmp_path)])
        else:
            r = _run_isolated(["-f", "-o", "retries=0", str(tmp_path)],
                              env_extra={"QSTASH_URL": url})
        line = _fails_cleanly(r, TOKEN, url)
        assert "refusing to send the token in clear" in line, (how, url, line)


@needs_netns
@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_http_to_loopback_allowed(tmp_path, url):
    r = _run_isolated(["-f", "-o", "url=%s,retries=0,connect_timeout=2" % url,
                       str(tmp_path)])
    line = _fails_cleanly(r, TOKEN, url)
    assert "refusing" not in line and "cannot list the DLQ" in line, line


def test_https_to_plain_http_fails_fast(fake_factory, tmp_path):
    fake = fake_factory(runs=3)
    url = "https://127.0.0.1:%d" % fake.port
    t0 = time.monotonic()
    r = run_dlqfs(["-f", "-o", "url=%s" % url, str(tmp_path)], timeout=30)
    assert time.monotonic() - t0 < 15
    line = _fails_cleanly(r, TOKEN, url)
    assert re.search(r"TLS|SSL|ssl|tls", line), line
    assert not [q for q in fake.requests() if q["path"].startswith("/v2")]


def _make_cert(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")
def test_tls_verification_always_on(tmp_path):
    """A self-signed certificate (valid name, untrusted issuer) is refused:
    no request, so no token, reaches that server."""
    crt, key = _make_cert(str(tmp_path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    got = []
    stop = threading.Event()

    def serve():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except OSError:
                continue
            try:
                c.settimeout(5)
                s = ctx.wrap_socket(c, server_side=True)
                got.append(s.recv(65536))
                s.close()
            except (OSError, ssl.SSLError):
                c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        for host in ("127.0.0.1", "localhost"):
            url = "https://%s:%d" % (host, port)
            r = run_dlqfs(["-f", "-o", "url=%s,retries=0" % url,
                           str(tmp_path)], timeout=30)
            line = _fails_cleanly(r, TOKEN, url)
            assert re.search(r"certificate|TLS|SSL", line), line
    finally:
        stop.set()
        t.join(5)
        lsock.close()
    assert not [g for g in got if g], "a request went through: %r" % got


PROXY_HELPER = r"""
import json, os, socket, subprocess, sys, threading
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.1.2.3/32", "dev", "lo"], check=True)
ls = socket.socket(); ls.bind(("10.1.2.3", 3128)); ls.listen(4)
seen = []
def serve():
    while True:
        c, _ = ls.accept()
        c.settimeout(3)
        try:
            seen.append(c.recv(65536).decode("latin-1"))
            c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n"
                      b"Connection: close\r\n\r\n{}")
        except OSError:
            pass
        c.close()
threading.Thread(target=serve, daemon=True).start()
env = dict(os.environ)
for var in ("http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
    env[var] = "http://10.1.2.3:3128"
r = subprocess.run(sys.argv[1:], env=env, capture_output=True, text=True,
                   timeout=30)
print(json.dumps({"rc": r.returncode, "stderr": r.stderr, "seen": seen}))
"""


@needs_netns
def test_clear_text_token_never_sent_to_a_non_loopback_proxy(tmp_path):
    """http:// is allowed to loopback because the token then never leaves
    the machine. With http_proxy set to another host (libcurl honours it),
    the request, Authorization header included, would travel in clear to
    that proxy. Run in a private network namespace where 10.1.2.3 is a
    local listener, so nothing leaves this machine either way."""
    tok = new_token()
    env = sanitizer_env(os.environ)
    env["QSTASH_TOKEN"] = tok
    env.pop("QSTASH_URL", None)
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", PROXY_HELPER,
                        DLQFS, "-f", "-o",
                        "url=http://127.0.0.1:9,retries=0,connect_timeout=2",
                        str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rc"] != 0
    assert_no_token(out["stderr"], tok, "stderr")
    sent = "".join(out["seen"])
    assert tok not in sent, \
        "the token went in clear to the proxy 10.1.2.3:\n" + sent[:400]


# --------------------------------------------------------------------------
# 5. The mount is private by default


def _as_nobody(*cmd):
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY,
                           "--regid=%d" % NOBODY, "--clear-groups"]
                          + list(cmd), capture_output=True, text=True,
                          timeout=20)


def test_mount_private_by_default(fake_factory):
    fake = fake_factory(runs=5)
    base = tempfile.mkdtemp(prefix="h10-priv-", dir="/tmp")
    mounts = []
    try:
        os.chmod(base, 0o755)
        mp = os.path.join(base, "mnt")
        os.mkdir(mp, 0o755)
        r = _as_nobody("ls", "-a", mp)                 # the control
        assert r.returncode == 0, r.stderr
        m = Mount(fake, mp)
        mounts.append(m)
        run = os.listdir(m.path("runs"))[0]
        for cmd in (["ls", mp], ["ls", m.path("runs")],
                    ["cat", m.path(".dlqfs/status")],
                    ["cat", m.path("runs", run, "message.json")],
                    ["stat", m.path("by-label")]):
            r = _as_nobody(*cmd)
            assert r.returncode != 0 and "Permission denied" in r.stderr, \
                (cmd, r.stdout, r.stderr)
        r = _as_nobody("sh", "-c", "echo 1 > %s" % m.path(".dlqfs/refresh"))
        assert r.returncode != 0
        m.stop()
        # allow_other opens it (read-only modes apply to everyone)
        m = Mount(fake, mp, options=["allow_other"])
        mounts.append(m)
        r = _as_nobody("cat", m.path("runs", run, "message.json"))
        assert r.returncode == 0 and json.loads(r.stdout)["dlqId"] == run
        r = _as_nobody("sh", "-c", "echo 1 > %s" % m.path(".dlqfs/refresh"))
        assert r.returncode != 0
    finally:
        texts = []
        for m in mounts:
            m.stop(check=False)
            unmount(m.mountpoint)
            texts.append((m.returncode, m.stderr()))
        shutil.rmtree(base, ignore_errors=True)
    for rc, text in texts:
        assert_no_sanitizer(text)
        assert rc == 0, text
