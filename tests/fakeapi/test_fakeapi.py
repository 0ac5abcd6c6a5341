"""Tests of the fake Upstash Workflow DLQ API (tests/fakeapi/fakeapi.py)
itself.

Run: /usr/bin/python3 -m pytest -q tests/fakeapi/test_fakeapi.py
Standard library only (urllib, http.client, subprocess).
"""

import base64
import collections
import gc
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import fakeapi  # noqa: E402
from fakeapi import FakeAPI, generate  # noqa: E402

FAKEAPI_PY = os.path.join(HERE, "fakeapi.py")
TOKEN = "test-token"
LIST = "/v2/workflows/dlq"


# --------------------------------------------------------------------------
# helpers


def request(api, method, path, params=(), token=TOKEN, body=None,
            headers=None, raw_query=None):
    """Returns (status, headers, body bytes).  params: list of pairs,
    percent-encoded (quote_via=quote, so '+' '/' '=' are escaped)."""
    url = api.base_url + path
    if raw_query is not None:
        url += "?" + raw_query
    elif params:
        url += "?" + urllib.parse.urlencode(list(params), quote_via=urllib.parse.quote)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def get_json(api, path, params=(), **kw):
    status, headers, body = request(api, "GET", path, params, **kw)
    return status, json.loads(body)


def admin(api, method, path, body=None):
    status, _, raw = request(api, method, "/_admin" + path, token=None, body=body)
    return status, json.loads(raw)


def walk(api, params=(), count=None, between=None):
    """Walks every page.  Returns (pages, messages); each page is the
    decoded response.  between(page_index, page) runs after each page."""
    pages, msgs = [], []
    cursor = None
    while True:
        p = list(params)
        if count is not None:
            p.append(("count", str(count)))
        if cursor:
            p.append(("cursor", cursor))
        status, d = get_json(api, LIST, p)
        assert status == 200, d
        pages.append(d)
        msgs.extend(d["messages"])
        cursor = d.get("cursor")
        if between is not None:
            between(len(pages) - 1, d)
        if not cursor:
            return pages, msgs
        assert len(pages) < 100000, "walk does not end"


def ids(msgs):
    return [m["dlqId"] for m in msgs]


def api_order(msgs):
    return sorted(msgs, key=lambda m: (m.get("createdAt", 0), m["dlqId"]), reverse=True)


def labels_of(m):
    if "labels" in m:
        return m["labels"]
    return [m["label"]] if "label" in m else []


@pytest.fixture
def fake_api():
    api = FakeAPI(token=TOKEN, runs=200, seed=1, large=False).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def shared_api():
    """Read-only fake for the filter tests (500 runs, seed 42)."""
    api = FakeAPI(token=TOKEN, runs=500, seed=42, large=False).start()
    yield api
    api.stop()


# --------------------------------------------------------------------------
# auth


def test_auth_missing_token_is_401(fake_api):
    status, headers, body = request(fake_api, "GET", LIST, token=None)
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert isinstance(json.loads(body)["error"], str)


def test_auth_wrong_token_is_401(fake_api):
    assert request(fake_api, "GET", LIST, token="nope")[0] == 401
    assert request(fake_api, "GET", LIST, token=None,
                   headers={"Authorization": "Basic dGVzdC10b2tlbg=="})[0] == 401
    assert request(fake_api, "GET", LIST + "/" + fake_api.dlq_ids()[0], token="nope")[0] == 401


def test_auth_bearer_ok_and_logged(fake_api):
    fake_api.clear_requests()
    assert request(fake_api, "GET", LIST, [("count", "1")])[0] == 200
    (e,) = fake_api.requests()
    assert e["auth_ok"] and e["auth"] == "bearer" and not e["query_token"]
    assert e["method"] == "GET" and e["path"] == LIST
    assert e["query"] == [("count", "1")] and e["status"] == 200
    assert "Authorization" not in e["headers"]


def test_auth_query_token_accepted_but_logged(fake_api):
    fake_api.clear_requests()
    st, _, _ = request(fake_api, "GET", LIST, [("qstash_token", TOKEN), ("count", "1")], token=None)
    assert st == 200
    st, _, _ = request(fake_api, "GET", LIST, [("qstash_token", "bad")], token=None)
    assert st == 401
    log = fake_api.requests()
    assert [e["query_token"] for e in log] == [True, True]
    assert [e["auth"] for e in log] == ["query", None]
    assert [e["auth_ok"] for e in log] == [True, False]


def test_token_none_accepts_anything():
    with FakeAPI(token=None, runs=3, seed=1) as api:
        assert request(api, "GET", LIST, token=None)[0] == 200


# --------------------------------------------------------------------------
# parameter validation


@pytest.mark.parametrize("param", ["foo", "responseStatus", "Count", "dlqIds", "source"])
def test_unknown_parameter_is_400(fake_api, param):
    status, d = get_json(fake_api, LIST, [(param, "1")])
    assert status == 400
    assert d == {"error": "unknown parameter: %s" % param}


@pytest.mark.parametrize("value", ["0", "101", "abc", "", "-1", "1.5", " 5", "1e2", "+5"])
def test_bad_count_is_400(fake_api, value):
    status, d = get_json(fake_api, LIST, [("count", value)])
    assert status == 400 and "error" in d


def test_count_bounds_and_default(fake_api):
    assert len(get_json(fake_api, LIST, [("count", "1")])[1]["messages"]) == 1
    assert len(get_json(fake_api, LIST, [("count", "100")])[1]["messages"]) == 100
    assert len(get_json(fake_api, LIST)[1]["messages"]) == 100
    assert len(get_json(fake_api, LIST, [("count", "37")])[1]["messages"]) == 37


@pytest.mark.parametrize("param", ["fromDate", "toDate", "workflowCreatedAt"])
@pytest.mark.parametrize("value", ["abc", "1.5", "", "12x"])
def test_non_integer_dates_are_400(fake_api, param, value):
    assert get_json(fake_api, LIST, [(param, value)])[0] == 400


def test_repeated_single_value_parameter_is_400(fake_api):
    assert get_json(fake_api, LIST, [("count", "5"), ("count", "6")])[0] == 400


def test_non_get_on_list_is_rejected(fake_api):
    assert request(fake_api, "POST", LIST, body={})[0] == 405


def test_unknown_path_is_404(fake_api):
    status, _, body = request(fake_api, "GET", "/v2/nothing")
    assert status == 404 and "error" in json.loads(body)


# --------------------------------------------------------------------------
# cursor


def test_cursor_needs_percent_encoding(fake_api):
    _, d = get_json(fake_api, LIST, [("count", "5")])
    cur = d["cursor"]
    assert cur and isinstance(cur, str)
    assert "+" in cur and "/" in cur and "=" in cur
    assert urllib.parse.quote(cur, safe="") != cur
    base64.b64decode(cur, validate=True)  # standard base64


def test_every_cursor_of_a_walk_needs_encoding(fake_api):
    pages, _ = walk(fake_api, count=9)
    curs = [p["cursor"] for p in pages[:-1]]
    assert len(curs) == 22
    assert all(c.startswith("+/") for c in curs)


def test_unencoded_cursor_is_400(fake_api):
    _, d = get_json(fake_api, LIST, [("count", "5")])
    status, _, _ = request(fake_api, "GET", LIST, raw_query="count=5&cursor=" + d["cursor"])
    assert status == 400


@pytest.mark.parametrize("cursor", [
    "garbage", "%%%", "abc=", base64.b64encode(b"[1,\"x\"]").decode(),
    base64.b64encode(b"\xfb\xff\xbf[1,\"x\"]    ").decode(),
])
def test_invalid_cursor_is_400(fake_api, cursor):
    status, d = get_json(fake_api, LIST, [("cursor", cursor)])
    assert status == 400 and "cursor" in d["error"]


def test_tampered_cursor_is_400(fake_api):
    _, d = get_json(fake_api, LIST, [("count", "5")])
    raw = bytearray(base64.b64decode(d["cursor"]))
    raw[5] ^= 1
    assert get_json(fake_api, LIST, [("cursor", base64.b64encode(bytes(raw)).decode())])[0] == 400


def test_empty_cursor_means_first_page(fake_api):
    a = get_json(fake_api, LIST, [("count", "3")])[1]
    b = get_json(fake_api, LIST, [("count", "3"), ("cursor", "")])[1]
    assert ids(a["messages"]) == ids(b["messages"])


def test_cursor_round_trip():
    for created, dlq in [(0, "a"), (1795132800000, "1795132800000-0"),
                         (-5, "x/+= é"), (2 ** 62, "")]:
        c = fakeapi.encode_cursor(created, dlq)
        assert fakeapi.decode_cursor(c) == (created, dlq)
        assert c.startswith("+/+/") and c.endswith("==")


# --------------------------------------------------------------------------
# walking


def test_full_walk_returns_every_entry_once_newest_first(fake_api):
    fake_api.clear_requests()
    pages, msgs = walk(fake_api, count=7)
    expected = fake_api.messages()
    assert len(expected) == 200
    assert ids(msgs) == ids(expected)
    assert len(set(ids(msgs))) == 200
    assert msgs == expected
    keys = [(m["createdAt"], m["dlqId"]) for m in msgs]
    assert keys == sorted(keys, reverse=True)
    assert len(pages) == 29 and all(len(p["messages"]) == 7 for p in pages[:-1])
    # every cursor went out percent-encoded
    log = fake_api.requests()
    assert len(log) == len(pages)
    for entry, page in zip(log[1:], pages):
        assert ("cursor", page["cursor"]) in entry["query"]
        assert "cursor=" + urllib.parse.quote(page["cursor"], safe="") in entry["raw_query"]
        assert "%2B" in entry["raw_query"]


def test_walk_default_count(fake_api):
    pages, msgs = walk(fake_api)
    assert [len(p["messages"]) for p in pages] == [100, 100]
    assert len(set(ids(msgs))) == 200


def test_walk_with_ties_on_created_at():
    msgs = [{"dlqId": "%d-%d" % (1000 + i // 4, i % 4), "createdAt": 1000 + i // 4}
            for i in range(40)]
    with FakeAPI(messages=msgs) as api:
        for count in (1, 3, 4, 5, 100):
            _, got = walk(api, count=count)
            assert ids(got) == ids(api_order(msgs))


def test_walk_with_changes_between_pages_neither_repeats_nor_skips():
    rng = random.Random(7)
    with FakeAPI(token=TOKEN, runs=300, seed=3, large=False) as api:
        initial = api.messages()
        removed, added_behind, added_ahead = set(), set(), set()
        seen = []
        state = {"n": 0}

        def between(i, page):
            seen.extend(ids(page["messages"]))
            if not page.get("cursor"):
                return
            last = page["messages"][-1]
            seen_set = set(seen)
            remaining = [d for d in api.dlq_ids() if d not in seen_set]
            # remove two entries not seen yet and one already seen
            for d in rng.sample(remaining, min(2, len(remaining))):
                assert api.remove(d)
                removed.add(d)
            done = [d for d in seen if d not in removed]
            d = rng.choice(done)
            api.remove(d)
            removed.add(d)
            # remove the entry the cursor points at: the walk must go on
            if i % 5 == 0 and last["dlqId"] not in removed:
                api.remove(last["dlqId"])
                removed.add(last["dlqId"])
            state["n"] += 1
            n = state["n"]
            # behind the cursor: older, or same createdAt and smaller dlqId
            # ("!" sorts before digits, "~" after them)
            behind = [
                {"dlqId": "zz-old-%d" % n, "createdAt": last["createdAt"] - 1 - n},
                {"dlqId": "!%d" % n, "createdAt": last["createdAt"]},
            ]
            ahead = [
                {"dlqId": "zz-new-%d" % n, "createdAt": last["createdAt"] + 1},
                {"dlqId": "~%d" % n, "createdAt": last["createdAt"]},
            ]
            api.add(behind)
            api.add(ahead)
            added_behind.update(m["dlqId"] for m in behind)
            added_ahead.update(m["dlqId"] for m in ahead)

        _, msgs = walk(api, count=10, between=between)
        got = ids(msgs)
        assert len(got) == len(set(got)), "an entry was returned twice"
        survivors = set(ids(initial)) - removed
        assert survivors <= set(got), "a survivor was skipped"
        assert added_behind - removed <= set(got)
        assert not (added_ahead & set(got))
        # nothing removed before it was reached shows up
        keys = [(m["createdAt"], m["dlqId"]) for m in msgs]
        assert keys == sorted(keys, reverse=True)
        assert state["n"] > 20


def test_cursor_stays_valid_after_its_entry_is_removed(fake_api):
    _, d = get_json(fake_api, LIST, [("count", "10")])
    last = d["messages"][-1]["dlqId"]
    expected_next = fake_api.dlq_ids()[10:20]
    fake_api.remove(last)
    _, d2 = get_json(fake_api, LIST, [("count", "10"), ("cursor", d["cursor"])])
    assert ids(d2["messages"]) == expected_next


def test_cursor_works_across_fake_instances():
    """The cursor is a position, not an index into one server's state."""
    with FakeAPI(runs=50, seed=5, large=False) as a, FakeAPI(runs=50, seed=5, large=False) as b:
        _, d = get_json(a, LIST, [("count", "20")])
        _, d2 = get_json(b, LIST, [("count", "20"), ("cursor", d["cursor"])])
        assert ids(d2["messages"]) == b.dlq_ids()[20:40]


# --------------------------------------------------------------------------
# end of walk


@pytest.mark.parametrize("mode,check", [
    ("empty", lambda d: "cursor" in d and d["cursor"] == ""),
    ("null", lambda d: "cursor" in d and d["cursor"] is None),
    ("absent", lambda d: "cursor" not in d),
])
def test_end_cursor_modes(mode, check):
    with FakeAPI(runs=12, seed=2, end_cursor=mode) as api:
        for _ in range(2):
            pages, msgs = walk(api, count=5)
            assert len(pages) == 3 and len(msgs) == 12
            assert check(pages[-1])
            assert all(p["cursor"] for p in pages[:-1])
        # an empty result also ends with that cursor
        _, d = get_json(api, LIST, [("label", "no-such-label")])
        assert d["messages"] == [] and check(d)


def test_end_cursor_rotate_cycles():
    with FakeAPI(runs=12, seed=2) as api:  # rotate is the default
        seen = []
        for _ in range(6):
            pages, _ = walk(api, count=5)
            last = pages[-1]
            seen.append("absent" if "cursor" not in last else
                        "null" if last["cursor"] is None else
                        "empty" if last["cursor"] == "" else "other")
        assert seen == ["empty", "null", "absent"] * 2
        api.reset(12, 2)  # reset restarts the rotation
        assert get_json(api, LIST)[1]["cursor"] == ""


def test_exact_end_false_gives_a_final_empty_page():
    with FakeAPI(runs=10, seed=2, end_cursor="empty", exact_end=False) as api:
        pages, msgs = walk(api, count=5)
        assert [len(p["messages"]) for p in pages] == [5, 5, 0]
        assert len(set(ids(msgs))) == 10
    with FakeAPI(runs=10, seed=2, end_cursor="empty") as api:
        pages, _ = walk(api, count=5)
        assert [len(p["messages"]) for p in pages] == [5, 5]


# --------------------------------------------------------------------------
# filters


def check_filter(api, params, pred, min_expected=1):
    expected = [m for m in api.messages() if pred(m)]
    assert len(expected) >= min_expected, "filter test needs matching data"
    _, got = walk(api, params, count=7)
    assert ids(got) == ids(expected)
    return expected


def test_filter_workflow_url(shared_api):
    u = "https://app.example.com/api/workflows/payments"
    check_filter(shared_api, [("workflowUrl", u)], lambda m: m.get("workflowUrl") == u, 50)


def test_filter_workflow_url_with_query_string(shared_api):
    u = "https://jobs.example.org/workflow/reports-nightly?region=eu"
    check_filter(shared_api, [("workflowUrl", u)], lambda m: m.get("workflowUrl") == u, 5)


def test_filter_workflow_url_or(shared_api):
    us = ["https://app.example.com/api/workflows/onboarding", "http://localhost:3000/api/workflow"]
    exp = check_filter(shared_api, [("workflowUrl", u) for u in us],
                       lambda m: m.get("workflowUrl") in us, 20)
    assert {m["workflowUrl"] for m in exp} == set(us)


def test_filter_workflow_run_id_shared_and_or(shared_api):
    counts = collections.Counter(m["workflowRunId"] for m in shared_api.messages())
    shared = [r for r, n in counts.most_common() if n > 1][:2]
    assert len(shared) == 2
    exp = check_filter(shared_api, [("workflowRunId", shared[0])],
                       lambda m: m["workflowRunId"] == shared[0], 2)
    assert len(exp) == counts[shared[0]]
    check_filter(shared_api, [("workflowRunId", r) for r in shared],
                 lambda m: m["workflowRunId"] in shared, 4)


def test_filter_label_includes_deprecated_label(shared_api):
    exp = check_filter(shared_api, [("label", "payments")],
                       lambda m: "payments" in labels_of(m), 30)
    assert any("labels" not in m and m.get("label") == "payments" for m in exp)
    assert any("labels" in m and "label" not in m for m in exp)
    assert any("labels" in m and m["labels"][0] != "payments" for m in exp)


def test_filter_label_ignores_deprecated_label_when_labels_present():
    msgs = [{"dlqId": "a", "createdAt": 3, "labels": ["x"], "label": "y"},
            {"dlqId": "b", "createdAt": 2, "label": "y"},
            {"dlqId": "c", "createdAt": 1, "labels": [], "label": "y"}]
    with FakeAPI(messages=msgs) as api:
        assert ids(walk(api, [("label", "y")])[1]) == ["b"]
        assert ids(walk(api, [("label", "x")])[1]) == ["a"]


def test_filter_label_with_slash_and_or(shared_api):
    check_filter(shared_api, [("label", "team/payments")],
                 lambda m: "team/payments" in labels_of(m), 5)
    want = {"emails", "onboarding"}
    check_filter(shared_api, [("label", "emails"), ("label", "onboarding")],
                 lambda m: bool(want & set(labels_of(m))), 20)


def test_filter_unknown_label_is_empty(shared_api):
    _, d = get_json(shared_api, LIST, [("label", "nope")])
    assert d["messages"] == [] and not d.get("cursor")


def test_filter_failure_function_state(shared_api):
    check_filter(shared_api, [("failureFunctionState", "CALLBACK_FAIL")],
                 lambda m: m.get("failureFunctionState") == "CALLBACK_FAIL", 20)
    two = ["CALLBACK_INPROGRESS", "CALLBACK_CANCELED"]
    check_filter(shared_api, [("failureFunctionState", s) for s in two],
                 lambda m: m.get("failureFunctionState") in two, 20)


def test_filter_caller_ip_matches_callerIP_field(shared_api):
    check_filter(shared_api, [("callerIp", "2001:db8::5")],
                 lambda m: m.get("callerIP") == "2001:db8::5", 10)
    ips = ["203.0.113.7", "192.0.2.44"]
    check_filter(shared_api, [("callerIp", ip) for ip in ips],
                 lambda m: m.get("callerIP") in ips, 50)
    # the parameter is spelled callerIp, not callerIP
    assert get_json(shared_api, LIST, [("callerIP", "192.0.2.44")])[0] == 400


def test_filter_flow_control_key(shared_api):
    check_filter(shared_api, [("flowControlKey", "stripe/webhooks")],
                 lambda m: m.get("flowControlKey") == "stripe/webhooks", 3)
    keys = ["tenant:acme", "payments-api"]
    check_filter(shared_api, [("flowControlKey", k) for k in keys],
                 lambda m: m.get("flowControlKey") in keys, 10)


def test_filter_dates_inclusive(shared_api):
    msgs = shared_api.messages()
    hi = msgs[50]["createdAt"]
    lo = msgs[250]["createdAt"]
    exp = check_filter(shared_api, [("fromDate", str(lo)), ("toDate", str(hi))],
                       lambda m: lo <= m["createdAt"] <= hi, 200)
    assert exp[0]["createdAt"] == hi and exp[-1]["createdAt"] == lo
    check_filter(shared_api, [("fromDate", str(lo))], lambda m: m["createdAt"] >= lo, 250)
    check_filter(shared_api, [("toDate", str(hi))], lambda m: m["createdAt"] <= hi, 450)
    exp = check_filter(shared_api, [("fromDate", str(hi)), ("toDate", str(hi))],
                       lambda m: m["createdAt"] == hi, 1)
    _, d = get_json(shared_api, LIST, [("fromDate", str(hi + 1)), ("toDate", str(hi))])
    assert d["messages"] == []


def test_filter_workflow_created_at_exact(shared_api):
    m0 = shared_api.messages()[17]
    exp = check_filter(shared_api, [("workflowCreatedAt", str(m0["workflowCreatedAt"]))],
                       lambda m: m.get("workflowCreatedAt") == m0["workflowCreatedAt"], 1)
    assert m0["dlqId"] in ids(exp)
    _, d = get_json(shared_api, LIST, [("workflowCreatedAt", str(m0["workflowCreatedAt"] + 1))])
    assert m0["dlqId"] not in ids(d["messages"])


def test_filters_and_across_or_within(shared_api):
    urls = ["https://app.example.com/api/workflows/payments",
            "https://app.example.com/api/workflows/billing/invoice"]
    labels = ["payments", "billing"]
    states = ["CALLBACK_SUCCESS", "CALLBACK_FAIL"]
    params = ([("workflowUrl", u) for u in urls] + [("label", l) for l in labels]
              + [("failureFunctionState", s) for s in states])
    exp = check_filter(
        shared_api, params,
        lambda m: (m.get("workflowUrl") in urls and bool(set(labels) & set(labels_of(m)))
                   and m.get("failureFunctionState") in states), 10)
    # AND really narrows
    assert len(exp) < len([m for m in shared_api.messages() if m.get("workflowUrl") in urls])
    msgs = shared_api.messages()
    hi = msgs[100]["createdAt"]
    check_filter(shared_api, [("label", "payments"), ("callerIp", "203.0.113.7"),
                              ("toDate", str(hi))],
                 lambda m: ("payments" in labels_of(m) and m.get("callerIP") == "203.0.113.7"
                            and m["createdAt"] <= hi), 5)


@pytest.mark.parametrize("param,values", [
    ("label", ["emails", "onboarding"]),
    ("failureFunctionState", ["CALLBACK_INPROGRESS", "CALLBACK_CANCELED"]),
    ("callerIp", ["203.0.113.7", "192.0.2.44"]),
    ("flowControlKey", ["tenant:acme", "payments-api"]),
    ("workflowUrl", ["https://app.example.com/api/workflows/onboarding",
                     "http://localhost:3000/api/workflow"]),
])
def test_comma_lists_one_value_names_several(shared_api, param, values):
    assert shared_api.config()["comma_lists"] is True      # the default
    repeated = ids(walk(shared_api, [(param, v) for v in values], count=30)[1])
    singles = [ids(walk(shared_api, [(param, v)], count=30)[1]) for v in values]
    assert all(singles) and set(repeated) == set().union(*singles)
    assert all(len(repeated) > len(x) for x in singles)
    for q in ([(param, ",".join(values))],
              [(param, "," + values[0] + ",,"), (param, values[1] + ",")],
              [(param, ",".join(values)), (param, values[0])]):
        assert ids(walk(shared_api, q, count=30)[1]) == repeated, q
    # the log keeps the query as sent
    shared_api.clear_requests()
    get_json(shared_api, LIST, [(param, ",".join(values))])
    assert shared_api.requests()[-1]["query"] == [(param, ",".join(values))]
    # sent with a bare comma (not %2C) too
    st, _, body = request(shared_api, "GET", LIST,
                          raw_query="%s=%s&count=100" % (param, ",".join(
                              urllib.parse.quote(v, safe="") for v in values)))
    assert st == 200 and ids(json.loads(body)["messages"]) == repeated[:100]


def test_comma_lists_an_empty_list_is_no_filter(shared_api):
    everything = ids(walk(shared_api, count=100)[1])
    for q in ([("label", "")], [("label", ",")], [("failureFunctionState", ",,")],
              [("callerIp", ""), ("flowControlKey", ",")]):
        assert ids(walk(shared_api, q, count=100)[1]) == everything, q
    # with another value it is no different from that value alone
    assert ids(walk(shared_api, [("label", ""), ("label", "emails")])[1]) == \
        ids(walk(shared_api, [("label", "emails")])[1])


def test_comma_lists_off_keeps_commas_in_values():
    msgs = [{"dlqId": "ab", "createdAt": 5, "labels": ["a,b"], "workflowRunId": "r1,r2"},
            {"dlqId": "a", "createdAt": 4, "labels": ["a"], "workflowRunId": "r1"},
            {"dlqId": "b", "createdAt": 3, "label": "b", "workflowRunId": "r2"},
            {"dlqId": "empty", "createdAt": 2, "labels": [""]},
            {"dlqId": "none", "createdAt": 1}]
    with FakeAPI(token=TOKEN, messages=msgs) as api:
        assert ids(walk(api, [("label", "a,b")])[1]) == ["a", "b"]
        assert ids(walk(api, [("label", "")])[1]) == ids(msgs)
        # workflowRunId is not an array parameter: never split
        assert ids(walk(api, [("workflowRunId", "r1,r2")])[1]) == ["ab"]
        st, cfg = admin(api, "POST", "/config", {"comma_lists": False})
        assert st == 200 and cfg["comma_lists"] is False
        assert ids(walk(api, [("label", "a,b")])[1]) == ["ab"]
        assert ids(walk(api, [("label", "a,b"), ("label", "b")])[1]) == ["ab", "b"]
        assert ids(walk(api, [("label", "")])[1]) == ["empty"]
        assert ids(walk(api, [("workflowRunId", "r1,r2")])[1]) == ["ab"]
        assert admin(api, "POST", "/config", {"comma_lists": "no"})[0] == 400
    with FakeAPI(token=TOKEN, messages=msgs, comma_lists=False) as api:
        assert ids(walk(api, [("label", "a,b")])[1]) == ["ab"]
    with pytest.raises(ValueError):
        FakeAPI(comma_lists=1)


def test_unknown_params_ignore(fake_api):
    everything = ids(walk(fake_api, count=100)[1])
    assert fake_api.config()["unknown_params"] == "reject"
    st, cfg = admin(fake_api, "POST", "/config", {"unknown_params": "ignore"})
    assert st == 200 and cfg["unknown_params"] == "ignore"
    fake_api.clear_requests()
    q = [("trimBody", "0"), ("responseStatus", "500"), ("dlqIds", "x"),
         ("source", "workflow"), ("callerIP", "2001:db8::5"), ("trimBody", "1")]
    assert ids(walk(fake_api, q, count=100)[1]) == everything
    (e, e2) = fake_api.requests()
    assert e["query"] == q + [("count", "100")]            # logged as sent
    assert e["not_applied"] == ["trimBody", "responseStatus", "dlqIds", "source", "callerIP"]
    # known parameters are still applied and checked
    lab = ids(walk(fake_api, [("label", "emails")])[1])
    assert lab and ids(walk(fake_api, [("label", "emails"), ("foo", "")])[1]) == lab
    assert "not_applied" not in fake_api.requests()[-2]
    assert get_json(fake_api, LIST, [("count", "0"), ("foo", "1")])[0] == 400
    assert admin(fake_api, "POST", "/config", {"unknown_params": "reject"})[0] == 200
    assert get_json(fake_api, LIST, [("trimBody", "0")]) == \
        (400, {"error": "unknown parameter: trimBody"})
    assert admin(fake_api, "POST", "/config", {"unknown_params": "warn"})[0] == 400
    with FakeAPI(token=TOKEN, runs=5, seed=1, unknown_params="ignore") as api:
        assert get_json(api, LIST, [("foo", "1")])[0] == 200


@pytest.mark.parametrize("unknown", ["reject", "ignore"])
def test_filter_names_legacy(shared_api, unknown):
    msgs = shared_api.messages()
    fails = [m["dlqId"] for m in msgs if m.get("failureFunctionState") == "CALLBACK_FAIL"]
    v6 = [m["dlqId"] for m in msgs if m.get("callerIP") == "2001:db8::5"]
    two = [m["dlqId"] for m in msgs if m.get("callerIP") in ("2001:db8::5", "192.0.2.44")]
    assert fails and v6 and len(two) > len(v6)
    with FakeAPI(token=TOKEN, runs=500, seed=42, large=False, filter_names="legacy",
                 unknown_params=unknown) as api:
        assert api.config()["filter_names"] == "legacy"
        assert ids(walk(api, [("failureCallbackState", "CALLBACK_FAIL")], count=50)[1]) == fails
        assert ids(walk(api, [("callerIP", "2001:db8::5")], count=50)[1]) == v6
        assert ids(walk(api, [("callerIP", "2001:db8::5,192.0.2.44")])[1]) == two
        assert ids(walk(api, [("callerIP", "2001:db8::5"), ("callerIP", "192.0.2.44")])[1]) == two
        # the current names are unknown to this server
        for name, value in (("failureFunctionState", "CALLBACK_FAIL"),
                            ("callerIp", "2001:db8::5")):
            if unknown == "reject":
                assert get_json(api, LIST, [(name, value)]) == \
                    (400, {"error": "unknown parameter: %s" % name})
            else:
                assert ids(walk(api, [(name, value)], count=100)[1]) == ids(msgs)
                assert api.requests()[-1]["not_applied"] == [name]
                assert api.requests()[-1]["query"][0] == (name, value)
    # and the other way round on a current server
    assert get_json(shared_api, LIST, [("failureCallbackState", "CALLBACK_FAIL")])[0] == 400


def test_filter_names_by_config_and_bad_values(fake_api):
    fails = ids(walk(fake_api, [("failureFunctionState", "CALLBACK_FAIL")])[1])
    st, cfg = admin(fake_api, "POST", "/config", {"filter_names": "legacy"})
    assert st == 200 and cfg["filter_names"] == "legacy"
    assert ids(walk(fake_api, [("failureCallbackState", "CALLBACK_FAIL")])[1]) == fails
    assert get_json(fake_api, LIST, [("failureFunctionState", "CALLBACK_FAIL")])[0] == 400
    fake_api.configure(filter_names="current")
    assert ids(walk(fake_api, [("failureFunctionState", "CALLBACK_FAIL")])[1]) == fails
    assert admin(fake_api, "POST", "/config", {"filter_names": "old"})[0] == 400
    with pytest.raises(ValueError):
        FakeAPI(filter_names="Legacy")


def test_ignored_params(fake_api):
    everything = ids(walk(fake_api, count=100)[1])
    v6 = ids(walk(fake_api, [("callerIp", "2001:db8::5")])[1])
    assert v6 and len(v6) < len(everything)
    st, cfg = admin(fake_api, "POST", "/config", {"ignored_params": ["callerIp", "trimBody"]})
    assert st == 200 and cfg["ignored_params"] == ["callerIp", "trimBody"]
    assert cfg["unknown_params"] == "reject"
    fake_api.clear_requests()
    assert ids(walk(fake_api, [("callerIp", "2001:db8::5"), ("trimBody", "0")],
                    count=100)[1]) == everything
    assert fake_api.requests()[0]["not_applied"] == ["callerIp", "trimBody"]
    # the other filters still apply, other unknown names are still refused
    lab = ids(walk(fake_api, [("label", "emails")])[1])
    assert ids(walk(fake_api, [("label", "emails"), ("callerIp", "2001:db8::5")])[1]) == lab
    assert get_json(fake_api, LIST, [("foo", "1")])[0] == 400
    # whatever filter_names says
    fake_api.configure(filter_names="legacy", ignored_params=["callerIP"])
    assert ids(walk(fake_api, [("callerIP", "2001:db8::5")], count=100)[1]) == everything
    assert get_json(fake_api, LIST, [("callerIp", "2001:db8::5")])[0] == 400
    fake_api.configure(filter_names="current", ignored_params=[])
    assert ids(walk(fake_api, [("callerIp", "2001:db8::5")])[1]) == v6
    for bad in ("callerIp", [1], [""], None, {"callerIp": 1}):
        assert admin(fake_api, "POST", "/config", {"ignored_params": bad})[0] == 400
    with FakeAPI(token=TOKEN, runs=20, seed=1, ignored_params=("label",)) as api:
        assert len(walk(api, [("label", "nope")])[1]) == 20


def test_filter_with_cursor_from_unfiltered_walk(shared_api):
    """A cursor is a position: filters may change between pages."""
    _, d = get_json(shared_api, LIST, [("count", "100")])
    pos = (d["messages"][-1]["createdAt"], d["messages"][-1]["dlqId"])
    _, d2 = get_json(shared_api, LIST, [("cursor", d["cursor"]), ("label", "emails")])
    exp = [m for m in shared_api.messages()
           if (m["createdAt"], m["dlqId"]) < pos and "emails" in labels_of(m)]
    assert ids(d2["messages"]) == ids(exp[:100])


# --------------------------------------------------------------------------
# single entry


def test_get_one(fake_api):
    msgs = fake_api.messages()
    for m in msgs[:5] + msgs[-3:]:
        status, got = get_json(fake_api, LIST + "/" + urllib.parse.quote(m["dlqId"], safe=""))
        assert status == 200 and got == m


def test_get_one_percent_decoded_and_404(fake_api):
    fake_api.add({"dlqId": "odd/id +%", "createdAt": 5, "body": "x"})
    status, got = get_json(fake_api, LIST + "/" + urllib.parse.quote("odd/id +%", safe=""))
    assert status == 200 and got["body"] == "x"
    status, d = get_json(fake_api, LIST + "/1700000000000-0")
    assert status == 404 and isinstance(d["error"], str)
    fake_api.remove("odd/id +%")
    assert get_json(fake_api, LIST + "/" + urllib.parse.quote("odd/id +%", safe=""))[0] == 404


# --------------------------------------------------------------------------
# HTTP details


def test_keep_alive_and_content_length(fake_api):
    conn = http.client.HTTPConnection("127.0.0.1", fake_api.port, timeout=10)
    try:
        socks = []
        for token in ("bad", TOKEN, TOKEN):
            conn.request("GET", LIST + "?count=3", headers={"Authorization": "Bearer " + token})
            r = conn.getresponse()
            body = r.read()
            assert r.version == 11
            assert int(r.getheader("Content-Length")) == len(body)
            assert r.getheader("Content-Type") == "application/json"
            assert r.getheader("Connection") is None
            json.loads(body)
            socks.append(conn.sock)
        assert socks[0] is not None and socks[0] is socks[1] is socks[2]
    finally:
        conn.close()


def test_connection_close_is_honoured(fake_api):
    conn = http.client.HTTPConnection("127.0.0.1", fake_api.port, timeout=10)
    conn.request("GET", LIST, headers={"Authorization": "Bearer " + TOKEN, "Connection": "close"})
    r = conn.getresponse()
    assert r.getheader("Connection") == "close"
    r.read()
    conn.close()


def test_stop_closes_open_connections():
    api = FakeAPI(runs=3, seed=1).start()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request("GET", LIST, headers={"Authorization": "Bearer " + TOKEN})
    conn.getresponse().read()
    api.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", LIST, headers={"Authorization": "Bearer " + TOKEN})
        conn.getresponse().read()
    conn.close()


def test_latency():
    with FakeAPI(runs=3, seed=1, latency_ms=300) as api:
        t = time.monotonic()
        assert request(api, "GET", LIST)[0] == 200
        assert time.monotonic() - t >= 0.3
        t = time.monotonic()
        admin(api, "GET", "/stats")  # the admin channel is not slowed
        assert time.monotonic() - t < 0.25


def test_loopback_only():
    with pytest.raises(ValueError):
        FakeAPI(host="0.0.0.0")
    with pytest.raises(ValueError):
        FakeAPI(host="192.0.2.1")


# --------------------------------------------------------------------------
# admin endpoints and direct methods


def test_admin_add_one_and_list(fake_api):
    st, d = admin(fake_api, "POST", "/messages",
                  {"dlqId": "9999999999999-0", "createdAt": 9999999999999, "body": "hi"})
    assert st == 200 and d["added"] == 1 and d["replaced"] == 0 and d["messages"] == 201
    _, page = get_json(fake_api, LIST, [("count", "1")])
    assert page["messages"][0]["dlqId"] == "9999999999999-0"
    # replace by dlqId
    st, d = admin(fake_api, "POST", "/messages",
                  [{"dlqId": "9999999999999-0", "createdAt": 1, "body": "again"},
                   {"dlqId": "new-1", "createdAt": 2}])
    assert d == {"added": 1, "replaced": 1, "messages": 202}
    assert fake_api.get("9999999999999-0") == {"dlqId": "9999999999999-0", "createdAt": 1,
                                               "body": "again"}
    assert fake_api.dlq_ids()[-2:] == ["new-1", "9999999999999-0"]
    st, lst = admin(fake_api, "GET", "/messages")
    assert ids(lst) == fake_api.dlq_ids()


def test_admin_add_rejects_bad_input(fake_api):
    assert admin(fake_api, "POST", "/messages", {"createdAt": 1})[0] == 400
    assert admin(fake_api, "POST", "/messages", [{"dlqId": "ok"}, {"dlqId": 5}])[0] == 400
    assert admin(fake_api, "POST", "/messages", "nope")[0] == 400
    st, _, _ = request(fake_api, "POST", "/_admin/messages", token=None, body=b"{not json")
    assert st == 400
    assert len(fake_api) == 200  # nothing half-added


def test_admin_delete(fake_api):
    victim = fake_api.dlq_ids()[3]
    st, d = admin(fake_api, "DELETE", "/messages/" + urllib.parse.quote(victim, safe=""))
    assert st == 200
    assert victim not in fake_api.dlq_ids() and len(fake_api) == 199
    assert admin(fake_api, "DELETE", "/messages/" + victim)[0] == 404
    fake_api.add({"dlqId": "a/b c", "createdAt": 1})
    assert admin(fake_api, "DELETE", "/messages/a%2Fb%20c")[0] == 200
    assert fake_api.get("a/b c") is None


def test_admin_patch(fake_api):
    m = fake_api.messages()[10]
    target = urllib.parse.quote(m["dlqId"], safe="")
    st, d = admin(fake_api, "PATCH", "/messages/" + target,
                  {"failureFunctionState": "CALLBACK_CANCELED", "responseStatus": None,
                   "x-new": {"a": [1]}})
    assert st == 200
    assert d["failureFunctionState"] == "CALLBACK_CANCELED"
    assert "responseStatus" not in d and d["x-new"] == {"a": [1]}
    got = get_json(fake_api, LIST + "/" + target)[1]
    assert got == d
    # the filters see the change
    _, page = get_json(fake_api, LIST, [("failureFunctionState", "CALLBACK_CANCELED"),
                                        ("workflowRunId", m["workflowRunId"])])
    assert m["dlqId"] in ids(page["messages"])
    # moving createdAt moves the entry in the order
    admin(fake_api, "PATCH", "/messages/" + target, {"createdAt": 1})
    assert fake_api.dlq_ids()[-1] == m["dlqId"]
    assert admin(fake_api, "PATCH", "/messages/nope", {"a": 1})[0] == 404
    assert admin(fake_api, "PATCH", "/messages/" + target, {"dlqId": "other"})[0] == 400
    assert admin(fake_api, "PATCH", "/messages/" + target, [1])[0] == 400


def test_admin_reset_stats_requests(fake_api):
    st, d = admin(fake_api, "POST", "/reset", {"runs": 30, "seed": 9})
    assert st == 200 and d["messages"] == 30
    assert fake_api.dlq_ids() == ids(api_order(generate(30, 9)))
    assert admin(fake_api, "POST", "/clear-requests")[0] == 200
    assert admin(fake_api, "GET", "/stats")[1] == {"messages": 30, "requests": 0,
                                                   "list_requests": 0, "quota_refused": 0,
                                                   "quota_until": None}
    walk(fake_api, count=10)
    get_json(fake_api, LIST + "/" + fake_api.dlq_ids()[0])
    request(fake_api, "GET", LIST, token=None)
    st, d = admin(fake_api, "GET", "/stats")
    assert d == {"messages": 30, "requests": 5, "list_requests": 4, "quota_refused": 0,
                 "quota_until": None}
    st, log = admin(fake_api, "GET", "/requests")
    assert [e["status"] for e in log] == [200, 200, 200, 200, 401]
    assert all(e["query_token"] is False for e in log)
    assert log[1]["query"][0][0] == "count" and log[1]["query"][1][0] == "cursor"
    admin(fake_api, "POST", "/clear-requests")
    assert admin(fake_api, "GET", "/requests")[1] == []
    assert admin(fake_api, "GET", "/nothing")[0] == 404


def test_admin_config(fake_api):
    st, d = admin(fake_api, "POST", "/config", {"token": "other", "end_cursor": "null"})
    assert st == 200 and d["token"] == "other"
    assert request(fake_api, "GET", LIST)[0] == 401
    status, page = get_json(fake_api, LIST, [("label", "none")], token="other")
    assert status == 200 and page["cursor"] is None
    assert admin(fake_api, "POST", "/config", {"end_cursor": "bogus"})[0] == 400
    assert admin(fake_api, "POST", "/config", {"nope": 1})[0] == 400


def test_direct_methods(fake_api):
    assert len(fake_api.messages()) == 200
    added, replaced = fake_api.add([{"dlqId": "d1", "createdAt": 5}, {"dlqId": "d2", "createdAt": 6}])
    assert (added, replaced) == (2, 0)
    m = {"dlqId": "d3", "createdAt": 7, "labels": ["q"]}
    fake_api.add(m)
    m["labels"].append("mutated later")  # the fake keeps its own copy
    assert fake_api.get("d3")["labels"] == ["q"]
    assert fake_api.update("d3", label="L", labels=None) == {"dlqId": "d3", "createdAt": 7,
                                                            "label": "L"}
    assert ids(walk(fake_api, [("label", "L")])[1]) == ["d3"]
    assert fake_api.patch("d3", {"x-future-field": 1})["x-future-field"] == 1
    with pytest.raises(KeyError):
        fake_api.update("nope", a=1)
    assert fake_api.remove("d1") and not fake_api.remove("d1")
    assert fake_api.dlq_ids()[-2:] == ["d3", "d2"]
    fake_api.reset(runs=10, seed=4)
    assert len(fake_api.messages()) == 10 and fake_api.get("d2") is None
    fake_api.clear_requests()
    assert fake_api.requests() == [] and fake_api.stats()["requests"] == 0


def test_request_log_is_capped():
    with FakeAPI(runs=1, seed=1) as api:
        api._log.extend({"method": "GET", "path": "/", "raw_query": "", "query": [],
                         "auth_ok": True, "auth": None, "query_token": False,
                         "headers": {}, "time": 0, "status": 200} for _ in range(10005))
        assert len(api.requests()) == fakeapi.LOG_LIMIT


# --------------------------------------------------------------------------
# generator


def test_generator_deterministic():
    a = generate(300, 11)
    assert a == generate(300, 11)
    assert a != generate(300, 12)
    b = generate(300, 11, now_ms=fakeapi.REFERENCE_NOW_MS + 1000)
    assert [m["createdAt"] + 1000 for m in a] == [m["createdAt"] for m in b]
    assert generate(0, 1) == []


def test_generator_shapes():
    now = fakeapi.REFERENCE_NOW_MS
    msgs = generate(1000, 42)
    ids_ = ids(msgs)
    assert len(set(ids_)) == 1000
    for m in msgs:
        assert re.fullmatch(r"\d{13}-\d+", m["dlqId"])
        assert m["dlqId"].split("-")[0] == str(m["createdAt"])
        assert now - 7 * fakeapi.DAY_MS <= m["createdAt"] < now
        assert re.fullmatch(r"wfr_[A-Za-z0-9]{21}", m["workflowRunId"])
        assert m["workflowCreatedAt"] <= m["createdAt"]
        assert m["messageId"].startswith("msg_")
        assert m["url"].startswith(m["workflowUrl"].split("?")[0])
        assert m["method"] in ("POST", "GET", "PUT")
        for h in ("header", "responseHeader"):
            if h in m:
                assert all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                           for v in m[h].values())
        if m.get("bodyBase64"):
            assert m["body"] == ""
            raw = base64.b64decode(m["bodyBase64"], validate=True)
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        if m.get("responseBodyBase64"):
            assert m["responseBody"] == ""
            raw = base64.b64decode(m["responseBodyBase64"], validate=True)
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        if "failureFunctionState" in m:
            assert m["failureFunctionState"] in fakeapi.FAILURE_STATES
            assert m["failureCallback"].startswith("http")
        if "label" in m and "labels" in m:
            assert m["label"] == m["labels"][0]
        assert len(m.get("labels", [])) <= 3
    assert len({m["workflowUrl"] for m in msgs}) == 6


def test_generator_variety():
    msgs = generate(1000, 42)
    n = len(msgs)

    def frac(pred):
        return sum(1 for m in msgs if pred(m)) / n

    assert 0.06 <= frac(lambda m: m.get("bodyBase64")) <= 0.14
    assert 0.02 <= frac(lambda m: m.get("responseBodyBase64")) <= 0.08
    assert 0.50 <= frac(lambda m: "failureFunctionState" in m) <= 0.70
    assert 0.20 <= frac(lambda m: "flowControlKey" in m) <= 0.40
    assert frac(lambda m: "label" in m and "labels" not in m) > 0.05      # label only
    assert frac(lambda m: "label" in m and "labels" in m) > 0.05          # both
    assert frac(lambda m: "labels" in m and "label" not in m) > 0.2       # labels only
    assert frac(lambda m: "label" not in m and "labels" not in m) > 0.1   # neither
    assert any(m.get("labels") == [] for m in msgs)
    assert frac(lambda m: "responseStatus" not in m) > 0
    assert frac(lambda m: "header" not in m) > 0
    assert frac(lambda m: "responseHeader" not in m) > 0
    assert frac(lambda m: "retryDelayExpression" in m) > 0
    assert not any("retryDelay" in m for m in msgs)
    assert frac(lambda m: "x-future-field" in m) > 0
    assert frac(lambda m: "failureCallbackInfo" in m) > 0
    assert frac(lambda m: m.get("bodyBase64") == "" and m["body"]) > 0
    assert {m["responseStatus"] for m in msgs if "responseStatus" in m} == \
        {500, 502, 503, 504, 404, 429, 400, 401}
    statuses = collections.Counter(m.get("responseStatus") for m in msgs)
    assert statuses[500] > statuses[401]
    assert {m["failureFunctionState"] for m in msgs if "failureFunctionState" in m} == \
        set(fakeapi.FAILURE_STATES)
    bodies = " ".join(m["responseBody"] for m in msgs)
    for needle in ("ECONNRESET", "ETIMEDOUT", "upstream request timeout",
                   "<html", '{"error"', "502 Bad Gateway"):
        assert needle in bodies, needle
    labels = collections.Counter(l for m in msgs for l in labels_of(m))
    for l in ("payments", "billing", "emails", "team/payments", "onboarding"):
        assert labels[l] > 0, l
    runs = collections.Counter(m["workflowRunId"] for m in msgs)
    assert sum(1 for c in runs.values() if c > 1) >= 20      # shared run ids
    created = collections.Counter(m["createdAt"] for m in msgs)
    assert any(c > 1 for c in created.values())               # ties on createdAt
    assert len({m["callerIP"] for m in msgs}) >= 3
    assert any(v.startswith("REDACTED:") for m in msgs
               for vs in m.get("header", {}).values() for v in vs)
    assert any(len(vs) > 1 for m in msgs for vs in m.get("header", {}).values())


# sha256 of json.dumps(generate(n, seed), sort_keys=True) as generated before
# retryDelay was renamed retryDelayExpression (the name put back): the demo's
# README figures depend on the default data, so no option may draw an extra
# random number or change what an entry gets.
PINNED_DATA = {
    (500, 42): "17dbdb12889a5e1dee8043451a9abcad4496d14095d7665000156b928340c26e",
    (200, 1): "4471bcc247ef9ae1c584d54ce43329eb9d2e890ddee4c75b65000b88a79ec13b",
}


def data_digest(msgs, rename_back=True):
    msgs = [dict(m) for m in msgs]
    if rename_back:
        for m in msgs:
            if "retryDelayExpression" in m:
                m["retryDelay"] = m.pop("retryDelayExpression")
    return hashlib.sha256(json.dumps(msgs, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("n,seed", sorted(PINNED_DATA))
def test_generator_default_data_is_pinned(n, seed):
    msgs = generate(n, seed)
    assert sum(1 for m in msgs if "retryDelayExpression" in m) > 0
    assert data_digest(msgs) == PINNED_DATA[(n, seed)]


def test_generator_state_field_shapes():
    top = generate(1000, 42)
    nested = generate(1000, 42, state_field="nested")
    both = generate(1000, 42, state_field="both")
    assert generate(1000, 42, state_field="top") == top
    assert generate(1000, 42, state_field="nested") == nested
    assert len(top) == len(nested) == len(both) == 1000
    n_cb = n_info = 0
    for t, n, b in zip(top, nested, both):
        if "failureCallback" not in t:
            assert n == t and b == t
            assert "failureFunctionState" not in t and "failureCallbackInfo" not in t
            continue
        n_cb += 1
        state = t["failureFunctionState"]
        assert "failureFunctionState" not in n
        assert n["failureCallbackInfo"]["state"] == state
        assert b["failureFunctionState"] == state
        assert b["failureCallbackInfo"] == n["failureCallbackInfo"]
        if "failureCallbackInfo" in t:
            # the callback's response is kept as "top" has it
            n_info += 1
            assert n["failureCallbackInfo"] == t["failureCallbackInfo"]
            assert set(t["failureCallbackInfo"]) == {"state", "responseStatus",
                                                     "responseBody", "responseHeaders"}
            assert state in ("CALLBACK_SUCCESS", "CALLBACK_FAIL")
        else:
            assert n["failureCallbackInfo"] == {"state": state}
        # nothing else differs, and failureCallbackInfo follows failureCallback
        rest = {k: v for k, v in n.items() if k != "failureCallbackInfo"}
        assert rest == {k: v for k, v in t.items()
                        if k not in ("failureCallbackInfo", "failureFunctionState")}
        keys = list(n)
        assert keys[keys.index("failureCallback") + 1] == "failureCallbackInfo"
    assert n_cb > 500 and 0 < n_info < n_cb
    assert {m["failureCallbackInfo"]["state"] for m in nested
            if "failureCallbackInfo" in m} == set(fakeapi.FAILURE_STATES)
    # the default shape is the pinned data: no random draw moved
    assert data_digest(generate(500, 42, state_field="top")) == PINNED_DATA[(500, 42)]
    with pytest.raises(ValueError):
        generate(3, 1, state_field="deep")


@pytest.mark.parametrize("shape", ["top", "nested", "both"])
def test_state_field_fake_filters_on_the_state(shape):
    with FakeAPI(token=TOKEN, runs=300, seed=7, large=False, state_field=shape) as api:
        assert api.config()["state_field"] == shape
        msgs = api.messages()
        assert ids(msgs) == ids(api_order(generate(300, 7)))
        if shape == "nested":
            assert not any("failureFunctionState" in m for m in msgs)
        for state in fakeapi.FAILURE_STATES:
            if shape == "nested":
                exp = [m for m in msgs if m.get("failureCallbackInfo", {}).get("state") == state]
            else:
                exp = [m for m in msgs if m.get("failureFunctionState") == state]
            assert exp, state
            _, got = walk(api, [("failureFunctionState", state)], count=50)
            assert ids(got) == ids(exp)


def test_state_field_nested_filter_matches_the_top_shape():
    with FakeAPI(token=TOKEN, runs=300, seed=7, large=False) as top, \
            FakeAPI(token=TOKEN, runs=300, seed=7, large=False, state_field="nested") as nested:
        for states in (["CALLBACK_FAIL"], ["CALLBACK_SUCCESS", "CALLBACK_CANCELED"]):
            q = [("failureFunctionState", st) for st in states]
            a, b = ids(walk(top, q)[1]), ids(walk(nested, q)[1])
            assert a and a == b
        got = walk(nested, [("failureFunctionState", "CALLBACK_INPROGRESS")])[1]
        assert got and all(m["failureCallbackInfo"]["state"] == "CALLBACK_INPROGRESS"
                           and "failureFunctionState" not in m for m in got)


def test_state_field_config_applies_at_the_next_reset(fake_api):
    before = fake_api.messages()
    st, cfg = admin(fake_api, "POST", "/config", {"state_field": "nested"})
    assert st == 200 and cfg["state_field"] == "nested"
    assert fake_api.messages() == before          # the current data is kept
    assert admin(fake_api, "POST", "/reset", {"runs": 200, "seed": 1, "large": False})[0] == 200
    after = fake_api.messages()
    assert ids(after) == ids(before)
    assert not any("failureFunctionState" in m for m in after)
    assert after == api_order(generate(200, 1, large=False, state_field="nested"))
    fake_api.configure(state_field="both")
    fake_api.reset(runs=200, seed=1, large=False)
    assert fake_api.messages() == api_order(generate(200, 1, large=False, state_field="both"))
    for bad in ("deep", None, 1):
        assert admin(fake_api, "POST", "/config", {"state_field": bad})[0] == 400
        with pytest.raises(ValueError):
            fake_api.configure(state_field=bad)
    with pytest.raises(ValueError):
        FakeAPI(state_field="Top")
    # a bad option changes nothing, not even the good ones next to it
    assert admin(fake_api, "POST", "/config", {"latency_ms": 5, "state_field": "x"})[0] == 400
    assert fake_api.config()["latency_ms"] == 0 and fake_api.config()["state_field"] == "both"


def test_state_of_added_messages_is_top_else_nested():
    msgs = [
        {"dlqId": "top", "createdAt": 6, "failureFunctionState": "CALLBACK_FAIL"},
        {"dlqId": "nested", "createdAt": 5,
         "failureCallbackInfo": {"state": "CALLBACK_FAIL", "responseStatus": 500}},
        {"dlqId": "both-differ", "createdAt": 4, "failureFunctionState": "CALLBACK_SUCCESS",
         "failureCallbackInfo": {"state": "CALLBACK_FAIL"}},
        {"dlqId": "top-not-a-string", "createdAt": 3, "failureFunctionState": 3,
         "failureCallbackInfo": {"state": "CALLBACK_FAIL"}},
        {"dlqId": "info-not-an-object", "createdAt": 2, "failureCallbackInfo": "CALLBACK_FAIL"},
        {"dlqId": "none", "createdAt": 1},
    ]
    with FakeAPI(token=TOKEN, messages=msgs, state_field="nested") as api:
        assert api.messages() == msgs[::1]           # stored as given
        fails = ids(walk(api, [("failureFunctionState", "CALLBACK_FAIL")])[1])
        assert fails == ["top", "nested", "top-not-a-string"]
        assert ids(walk(api, [("failureFunctionState", "CALLBACK_SUCCESS")])[1]) == \
            ["both-differ"]
        api.add({"dlqId": "added", "createdAt": 7,
                 "failureCallbackInfo": {"state": "CALLBACK_FAIL"}})
        assert "failureFunctionState" not in api.get("added")
        api.update("nested", failureCallbackInfo={"state": "CALLBACK_CANCELED"})
        assert ids(walk(api, [("failureFunctionState", "CALLBACK_FAIL")])[1]) == \
            ["added", "top", "top-not-a-string"]


def test_generator_small_sets_have_shared_runs_and_label_only():
    msgs = generate(200, 1)
    runs = collections.Counter(m["workflowRunId"] for m in msgs)
    assert any(c > 1 for c in runs.values())
    assert any("label" in m and "labels" not in m for m in msgs)
    assert any(m.get("bodyBase64") for m in msgs)


def test_generator_large_bodies():
    def large(msgs):
        return [m for m in msgs if len(m.get("responseBody", "")) >= 900 * 1024]

    big = large(generate(200, 1))
    assert 1 <= len(big) <= 3
    assert all(len(m["responseBody"]) < 2 * 1024 * 1024 for m in big)
    assert len(large(generate(2000, 3))) <= 3
    assert large(generate(99, 1)) == []
    assert large(generate(200, 1, large=False)) == []
    assert len(large(generate(20, 1, large=True))) >= 1


# --------------------------------------------------------------------------
# speed


def test_walk_100k_entries_is_fast():
    base = generate(20000, 1, large=False)
    msgs = []
    for k in range(5):
        for m in base:
            m2 = dict(m)
            m2["createdAt"] = m["createdAt"] - k * 7 * fakeapi.DAY_MS
            m2["dlqId"] = "%s-%d" % (m["dlqId"], k)
            msgs.append(m2)
    del base
    t0 = time.monotonic()
    api = FakeAPI(messages=msgs).start()
    del msgs
    load = time.monotonic() - t0
    try:
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            seen = set()
            cursor, pages = None, 0
            while True:
                q = "?count=100"
                if cursor:
                    q += "&cursor=" + urllib.parse.quote(cursor, safe="")
                conn.request("GET", LIST + q, headers={"Authorization": "Bearer " + TOKEN})
                r = conn.getresponse()
                body = r.read()
                assert r.status == 200
                d = json.loads(body)
                seen.update(m["dlqId"] for m in d["messages"])
                pages += 1
                cursor = d.get("cursor")
                if not cursor:
                    break
            conn.close()
            full = time.monotonic() - t0
            assert len(seen) == 100000 and pages == 1000
            # a sparse filter over 100k entries
            t0 = time.monotonic()
            _, got = walk(api, [("callerIp", "2001:db8::5"), ("label", "emails")])
            sparse = time.monotonic() - t0
            assert got
        finally:
            if gc_was:
                gc.enable()
    finally:
        api.stop()
    print("load %.1fs, walk %.1fs, sparse filter walk %.2fs" % (load, full, sparse))
    assert load < 30 and full < 60 and sparse < 10


# --------------------------------------------------------------------------
# command line


def interpreters():
    found = [sys.executable]
    other = shutil.which("python3")
    if other and os.path.realpath(other) != os.path.realpath(sys.executable):
        found.append(other)
    return found


def start_cli(python, *args, tmp_path):
    port_file = str(tmp_path / "port")
    proc = subprocess.Popen([python, FAKEAPI_PY, "--port", "0", "--port-file", port_file] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.fullmatch(r"fakeapi listening on http://127\.0\.0\.1:(\d+)\n", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    with open(port_file) as f:
        assert f.read().strip() == m.group(1)
    return proc, int(m.group(1))


class _Addr(object):
    def __init__(self, port):
        self.port = port
        self.base_url = "http://127.0.0.1:%d" % port


@pytest.mark.parametrize("python", interpreters())
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_runs_and_stops_cleanly(python, sig, tmp_path):
    proc, port = start_cli(python, "--runs", "25", "--seed", "3", "--token", "t0k",
                           tmp_path=tmp_path)
    try:
        addr = _Addr(port)
        status, d = get_json(addr, LIST, token="t0k")
        assert status == 200 and len(d["messages"]) == 25
        assert ids(d["messages"]) == ids(api_order(generate(25, 3)))
        assert request(addr, "GET", LIST)[0] == 401
    finally:
        proc.send_signal(sig)
        rc = proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0


def test_cli_demo(tmp_path):
    proc, port = start_cli(sys.executable, "--demo", "--end-cursor", "null",
                           "--latency-ms", "1", tmp_path=tmp_path)
    try:
        addr = _Addr(port)
        assert admin(addr, "GET", "/stats")[1]["messages"] == 500
        _, d = get_json(addr, LIST, [("label", "nope")], token="demo-token")
        assert d["cursor"] is None
        st, one = get_json(addr, LIST + "/" + ids(api_order(generate(500, 42)))[0],
                           token="demo-token")
        assert st == 200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_cli_state_field(tmp_path):
    proc, port = start_cli(sys.executable, "--runs", "40", "--seed", "2",
                           "--state-field", "nested", tmp_path=tmp_path)
    try:
        addr = _Addr(port)
        assert admin(addr, "POST", "/config", {})[1]["state_field"] == "nested"
        _, d = get_json(addr, LIST)
        assert d["messages"] == api_order(generate(40, 2, state_field="nested"))
        assert any("failureCallbackInfo" in m for m in d["messages"])
        assert not any("failureFunctionState" in m for m in d["messages"])
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()
    r = subprocess.run([sys.executable, FAKEAPI_PY, "--port", "0", "--state-field", "deep"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode != 0 and "state-field" in r.stderr


def test_cli_variant_options(tmp_path):
    proc, port = start_cli(sys.executable, "--runs", "5", "--no-comma-lists",
                           "--unknown-params", "ignore", "--filter-names", "legacy",
                           "--ignore-param", "label", "--ignore-param", "callerIP",
                           "--bulk-404", "partial",
                           "--fault", "rate_limit:kind=daily,reset=false,reset_unit=ms,on=action",
                           tmp_path=tmp_path)
    try:
        addr = _Addr(port)
        cfg = admin(addr, "POST", "/config", {})[1]
        assert cfg["comma_lists"] is False and cfg["unknown_params"] == "ignore"
        assert cfg["filter_names"] == "legacy"
        assert cfg["ignored_params"] == ["callerIP", "label"]
        assert cfg["bulk_404"] == "partial"
        (f,) = admin(addr, "GET", "/faults")[1]
        assert (f["fault"], f["on"], f["kind"], f["reset"], f["reset_unit"]) == \
            ("rate_limit", "action", "daily", False, "ms")
        _, d = get_json(addr, LIST, [("label", "nope"), ("foo", "1")])
        assert len(d["messages"]) == 5
        _, d = get_json(addr, LIST, [("failureCallbackState", "nope")])
        assert d["messages"] == []
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com", "::"])
def test_cli_refuses_non_loopback(host):
    r = subprocess.run([sys.executable, FAKEAPI_PY, "--host", host, "--port", "0"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stdout == ""
    assert "loopback" in r.stderr


# --------------------------------------------------------------------------
# fault injection


@pytest.fixture
def small_api():
    api = FakeAPI(token=TOKEN, runs=40, seed=5, large=False).start()
    yield api
    api.stop()


def raw_open(api, query="count=5", token=TOKEN, timeout=5.0, extra=b""):
    """A new socket that has sent one GET of the list."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=timeout)
    s.sendall(("GET %s?%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
               % (LIST, query, token)).encode() + extra + b"\r\n")
    return s


def raw_read(s):
    """Reads until the peer closes.  Returns (data, end): end is "eof" (a
    FIN), "reset" (ConnectionResetError) or "timeout"."""
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return data, "eof"
            data += b
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"


def raw_get(api, query="count=5", **kw):
    s = raw_open(api, query, **kw)
    try:
        t = time.monotonic()
        data, end = raw_read(s)
        return data, end, time.monotonic() - t
    finally:
        s.close()


def split_response(data):
    """(status, headers with lower-case names, body) of raw response bytes."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data[:200]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def page(api, cursor=None, count=7, token=TOKEN, params=()):
    p = [("count", str(count))] + list(params)
    if cursor:
        p.append(("cursor", cursor))
    status, _, body = request(api, "GET", LIST, p, token=token)
    return status, body


def normal_page(api, cursor=None, count=7):
    st, body = page(api, cursor, count)
    assert st == 200
    return json.loads(body)


def faulted_log(api):
    return [(e.get("fault"), e["status"]) for e in api.requests()]


def test_fault_latency(small_api):
    expected = normal_page(small_api)
    small_api.inject("latency", ms=300)
    t = time.monotonic()
    st, body = page(small_api)
    assert time.monotonic() - t >= 0.3
    assert st == 200 and json.loads(body) == expected
    t = time.monotonic()
    assert page(small_api)[0] == 200
    assert time.monotonic() - t < 0.25
    log = small_api.requests()
    assert log[-2]["fault"] == "latency" and log[-2]["fault_params"] == {"ms": 300}
    assert log[-2]["status"] == 200 and "fault" not in log[-1]


def test_fault_stall_sends_nothing_then_closes(small_api):
    small_api.inject("stall", seconds=1)
    s = raw_open(small_api, timeout=0.5)
    try:
        t = time.monotonic()
        # nothing at all for the first half second ...
        assert raw_read(s) == (b"", "timeout")
        # ... while other connections are served normally
        assert page(small_api)[0] == 200
        s.settimeout(3)
        data, end = raw_read(s)
        waited = time.monotonic() - t
    finally:
        s.close()
    assert data == b"" and end == "eof"
    assert 0.9 <= waited < 2.5
    assert faulted_log(small_api) == [("stall", None), (None, 200)]


def test_fault_stall_ends_on_stop():
    api = FakeAPI(token=TOKEN, runs=5, seed=1).start()
    api.inject("stall", seconds=30)
    s = raw_open(api, timeout=5)
    try:
        time.sleep(0.2)
        t = time.monotonic()
        api.stop()
        assert time.monotonic() - t < 2
        data, end = raw_read(s)
        assert data == b"" and end in ("eof", "reset")
        assert time.monotonic() - t < 2
    finally:
        s.close()
        api.stop()


def test_fault_stall_body(small_api):
    full = page(small_api, count=5)[1]
    small_api.inject("stall_body", seconds=1)
    s = raw_open(small_api, timeout=0.5)
    try:
        t = time.monotonic()
        data, end = raw_read(s)
        assert end == "timeout"           # headers and part of the body, then silence
        status, headers, body = split_response(data)
        assert status == 200
        length = int(headers["content-length"])
        assert 0 < len(body) < length
        s.settimeout(3)
        more, end = raw_read(s)
        waited = time.monotonic() - t
    finally:
        s.close()
    assert more == b"" and end == "eof"
    assert 0.9 <= waited < 2.5
    assert length == len(full) and body == full[:len(body)]
    assert faulted_log(small_api)[-1] == ("stall_body", 200)


def test_fault_reset_is_a_rst(small_api):
    full = page(small_api, count=5)[1]
    small_api.inject("reset")
    data, end, _ = raw_get(small_api)
    assert end == "reset"                 # ConnectionResetError, not a clean EOF
    status, headers, body = split_response(data)
    assert status == 200 and int(headers["content-length"]) == len(full)
    assert 0 < len(body) < len(full) and full.startswith(body)
    # what an HTTP client sees
    small_api.inject("reset")
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        request(small_api, "GET", LIST, [("count", "5")])
    assert [f for f, _ in faulted_log(small_api)] == [None, "reset", "reset"]


def test_fault_truncate_is_a_clean_short_body(small_api):
    full = page(small_api, count=5)[1]
    small_api.inject("truncate")
    data, end, _ = raw_get(small_api)
    assert end == "eof"                   # FIN, no reset
    status, headers, body = split_response(data)
    assert status == 200 and int(headers["content-length"]) == len(full)
    assert body == full[:len(full) // 2]
    small_api.inject("truncate")
    with pytest.raises(http.client.IncompleteRead):
        request(small_api, "GET", LIST, [("count", "5")])


def test_fault_close_gives_an_empty_reply(small_api):
    small_api.inject("close")
    data, end, waited = raw_get(small_api)
    assert (data, end) == (b"", "eof") and waited < 1
    small_api.inject("close")
    with pytest.raises(http.client.RemoteDisconnected):
        request(small_api, "GET", LIST)
    assert faulted_log(small_api) == [("close", None)] * 2
    assert page(small_api)[0] == 200


def test_fault_not_json(small_api):
    small_api.inject("not_json")
    st, headers, body = request(small_api, "GET", LIST)
    assert st == 200 and headers["Content-Type"] == "application/json"
    assert body == b"this is not json {"
    with pytest.raises(ValueError):
        json.loads(body)


@pytest.mark.parametrize("code,title", [(502, "502 Bad Gateway"),
                                        (503, "503 Service Temporarily Unavailable"),
                                        (504, "504 Gateway Time-out")])
def test_fault_html(small_api, code, title):
    small_api.inject("html", status=code)
    st, headers, body = request(small_api, "GET", LIST)
    assert st == code
    assert headers["Content-Type"] == "text/html"
    assert int(headers["Content-Length"]) == len(body)
    text = body.decode()
    assert text.startswith("<html>") and "<title>%s</title>" % title in text
    assert "nginx" in text
    with pytest.raises(ValueError):
        json.loads(body)


def test_fault_html_default_is_502(small_api):
    small_api.inject("html")
    st, _, body = request(small_api, "GET", LIST)
    assert st == 502 and b"<title>502 Bad Gateway</title>" in body


def test_fault_status(small_api):
    small_api.inject("status")
    small_api.inject("status", code=503, message="try later")
    small_api.inject("status", code=404)
    for code, msg in [(500, "internal server error"), (503, "try later"), (404, "not found")]:
        st, headers, body = request(small_api, "GET", LIST)
        assert st == code and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"error": msg}
    assert request(small_api, "GET", LIST)[0] == 200


def test_fault_rate_limit(small_api):
    small_api.inject("rate_limit")
    t0 = time.time()
    st, headers, body = request(small_api, "GET", LIST)
    assert st == 429 and json.loads(body) == {"error": "burst rate limit exceeded"}
    assert headers["Content-Type"] == "application/json"
    assert headers["Burst-RateLimit-Limit"] == "100"
    assert headers["Burst-RateLimit-Remaining"] == "0"
    reset = int(headers["Burst-RateLimit-Reset"])
    assert t0 + 1 <= reset <= t0 + 2.5
    assert headers["Retry-After"] is None
    small_api.inject("rate_limit", reset_in=5, retry_after=3)
    st, headers, _ = request(small_api, "GET", LIST)
    assert st == 429 and headers["Retry-After"] == "3"
    assert t0 + 5 <= int(headers["Burst-RateLimit-Reset"]) <= t0 + 7
    assert faulted_log(small_api) == [("rate_limit", 429)] * 2


def test_fault_rate_limit_burst_reset_unit_and_no_reset(small_api):
    small_api.inject("rate_limit", reset_unit="ms", reset_in=2)
    t0 = time.time()
    st, headers, body = request(small_api, "GET", LIST)
    assert st == 429 and json.loads(body) == {"error": "burst rate limit exceeded"}
    reset = int(headers["Burst-RateLimit-Reset"])
    assert reset > 10 ** 12
    assert (t0 + 2) * 1000 <= reset <= (t0 + 8) * 1000
    assert headers["RateLimit-Limit"] is None and headers["RateLimit-Reset"] is None
    small_api.inject("rate_limit", reset=False, limit=7)
    st, headers, _ = request(small_api, "GET", LIST)
    assert st == 429
    assert headers["Burst-RateLimit-Limit"] == "7"
    assert headers["Burst-RateLimit-Remaining"] == "0"
    assert headers["Burst-RateLimit-Reset"] is None
    # a burst limit is not stateful: the next request is served
    assert request(small_api, "GET", LIST)[0] == 200
    assert small_api.stats()["quota_refused"] == 0
    assert small_api.stats()["quota_until"] is None
    assert [e["fault_params"]["reset_unit"] for e in small_api.requests()[:2]] == ["ms", "s"]


def wait_until(t):
    while time.time() < t:
        time.sleep(min(0.1, max(0.01, t - time.time())))


def test_fault_rate_limit_daily_refuses_every_request_until_reset(small_api):
    victim = small_api.dlq_ids()[0]
    small_api.inject("rate_limit", kind="daily", reset_in=3, limit=500, on="list")
    small_api.inject("status", code=500, on="list")
    t0 = time.time()
    # a single-entry GET never takes a fault: it does not spend the quota
    assert request(small_api, "GET", LIST + "/" + victim)[0] == 200
    st, headers, body = request(small_api, "GET", LIST)
    assert st == 429 and json.loads(body) == {"error": "daily rate limit exceeded"}
    assert headers["Content-Type"] == "application/json"
    assert headers["RateLimit-Limit"] == "500"
    assert headers["RateLimit-Remaining"] == "0"
    reset = int(headers["RateLimit-Reset"])
    assert t0 + 3 <= reset <= t0 + 9
    assert headers["Burst-RateLimit-Limit"] is None and headers["Retry-After"] is None
    assert [f["fault"] for f in small_api.faults()] == ["status"]
    assert small_api.stats()["quota_until"] >= t0 + 3
    # from now on every API request gets the same 429, whatever it is
    answers = [request(small_api, "GET", LIST),
               request(small_api, "GET", LIST + "/" + victim),
               request(small_api, "DELETE", LIST + "/" + victim),
               request(small_api, "POST", LIST + "/resume", [("dlqIds", victim)], body=b""),
               request(small_api, "GET", LIST, token="wrong")]
    for st, headers, body in answers:
        assert st == 429 and json.loads(body) == {"error": "daily rate limit exceeded"}
        assert headers["RateLimit-Reset"] == str(reset)
    assert small_api.get(victim) is not None                     # nothing was done
    assert [f["fault"] for f in small_api.faults()] == ["status"]  # no fault taken
    stats = small_api.stats()
    assert stats["quota_refused"] == 5 and stats["requests"] == 7
    log = small_api.requests()
    assert [(e.get("fault"), e["status"], e.get("quota_refused", False)) for e in log] == \
        [(None, 200, False), ("rate_limit", 429, False)] + [("rate_limit", 429, True)] * 5
    assert log[2]["fault_params"]["kind"] == "daily"
    # after the reset time the quota is over and the queue goes on
    wait_until(reset + 0.05)
    assert small_api.stats()["quota_until"] is None
    assert page(small_api)[0] == 500
    assert page(small_api)[0] == 200
    assert request(small_api, "DELETE", LIST + "/" + victim)[0] == 200
    assert small_api.stats()["quota_refused"] == 5
    small_api.clear_requests()
    assert small_api.stats()["quota_refused"] == 0


def test_fault_rate_limit_daily_first_hit_by_an_action_ms_and_no_reset(small_api):
    victim = small_api.dlq_ids()[0]
    small_api.inject("rate_limit", kind="daily", reset_unit="ms", reset_in=600, on="action")
    assert page(small_api)[0] == 200                 # lists do not spend it
    t0 = time.time()
    st, headers, body = request(small_api, "DELETE", LIST + "/" + victim)
    assert st == 429 and small_api.get(victim) is not None
    reset = int(headers["RateLimit-Reset"])
    assert reset > 10 ** 12 and (t0 + 600) * 1000 <= reset <= (t0 + 606) * 1000
    # but once spent, lists are refused too
    st, headers, _ = request(small_api, "GET", LIST)
    assert st == 429 and headers["RateLimit-Reset"] == str(reset)
    assert small_api.stats()["quota_refused"] == 1
    # clear_faults() (DELETE /_admin/faults) ends it at once
    assert admin(small_api, "DELETE", "/faults") == (200, [])
    assert page(small_api)[0] == 200 and small_api.stats()["quota_until"] is None
    # reset=false: no RateLimit-Reset header, the quota still holds
    name, params = fakeapi.parse_fault_spec("rate_limit:kind=daily,reset=false,reset_in=600")
    small_api.inject(name, **params)
    assert small_api.faults()[0]["reset"] is False
    for _ in range(3):
        st, headers, body = request(small_api, "GET", LIST)
        assert st == 429 and json.loads(body)["error"] == "daily rate limit exceeded"
        assert headers["RateLimit-Limit"] == "100" and headers["RateLimit-Remaining"] == "0"
        assert headers["RateLimit-Reset"] is None
    assert small_api.stats()["quota_refused"] == 3
    small_api.clear_faults()
    assert page(small_api)[0] == 200


def test_fault_rate_limit_daily_times_and_after(small_api):
    small_api.inject("rate_limit", kind="daily", reset_in=1.5, times=2, after=1,
                     retry_after=1)
    assert page(small_api)[0] == 200                 # after=1
    for copy in range(2):
        st, headers, _ = request(small_api, "GET", LIST)
        assert st == 429 and headers["Retry-After"] == "1"
        reset = int(headers["RateLimit-Reset"])
        assert request(small_api, "GET", LIST)[0] == 429
        wait_until(reset + 0.05)
    assert small_api.faults() == []
    assert page(small_api)[0] == 200
    assert small_api.stats()["quota_refused"] == 2
    assert [e.get("quota_refused", False) for e in small_api.requests()] == \
        [False, False, True, False, True, False]


def test_fault_rate_limit_param_validation(small_api):
    for kw in ({"kind": "hourly"}, {"kind": None}, {"reset_unit": "us"},
               {"reset": "maybe"}, {"reset": 1}, {"reset": None}):
        with pytest.raises(ValueError):
            small_api.inject("rate_limit", **kw)
        assert admin(small_api, "POST", "/faults", dict(kw, fault="rate_limit"))[0] == 400
    assert small_api.faults() == []
    st, q = admin(small_api, "POST", "/faults", {"fault": "rate_limit", "kind": "daily",
                                                 "reset": False, "reset_unit": "ms"})
    assert st == 200 and q == [{"fault": "rate_limit", "times": 1, "after": 0,
                                "reset_in": 1, "retry_after": None, "limit": 100,
                                "kind": "daily", "reset_unit": "ms", "reset": False}]


def test_fault_repeat_cursor_mid_walk(small_api):
    p1 = normal_page(small_api)
    p2 = normal_page(small_api, p1["cursor"])
    small_api.inject("repeat_cursor")
    st, body = page(small_api, p1["cursor"])
    d = json.loads(body)
    assert st == 200 and d["cursor"] == p1["cursor"]   # the same cursor back
    assert d["messages"] == p2["messages"]
    assert normal_page(small_api, p1["cursor"]) == p2    # one time only


def test_fault_repeat_cursor_first_page_loops(small_api):
    p1 = normal_page(small_api)
    small_api.inject("repeat_cursor", times=None)
    d = normal_page(small_api)
    assert d["messages"] == p1["messages"]
    assert d["cursor"] == fakeapi.FIRST_PAGE_CURSOR != p1["cursor"]
    cursor = d["cursor"]
    for _ in range(5):                   # a naive client never gets out
        d = normal_page(small_api, cursor)
        assert d["cursor"] == cursor and d["messages"] == p1["messages"]
    small_api.clear_faults()
    # the fixed cursor means "from the start"
    assert normal_page(small_api, fakeapi.FIRST_PAGE_CURSOR) == p1


def test_fault_repeat_cursor_on_last_page(small_api):
    pages, _ = walk(small_api, count=7)
    last_cursor = pages[-2]["cursor"]
    small_api.inject("repeat_cursor")
    d = normal_page(small_api, last_cursor)
    assert d["cursor"] == last_cursor and d["messages"] == pages[-1]["messages"]


def test_fault_empty_page_walk_still_complete(small_api):
    small_api.inject("empty_page", times=2, after=1)
    small_api.inject("empty_page", after=4)
    pages, msgs = walk(small_api, count=7)
    assert [len(p["messages"]) for p in pages] == [7, 0, 0, 7, 0, 7, 7, 7, 5]
    assert ids(msgs) == small_api.dlq_ids()          # every entry exactly once
    log = small_api.requests()
    for i in (1, 2, 4):
        sent = dict(log[i]["query"])["cursor"]
        got = pages[i]["cursor"]
        assert got != sent                           # not a repeated cursor
        assert fakeapi.decode_cursor(got) == fakeapi.decode_cursor(sent)
        assert got.startswith("+/+/") and got.endswith("==")
    assert [e.get("fault") for e in log].count("empty_page") == 3


def test_fault_empty_page_on_first_page(small_api):
    small_api.inject("empty_page")
    d = normal_page(small_api)
    assert d["messages"] == [] and d["cursor"]
    assert d["cursor"] != fakeapi.FIRST_PAGE_CURSOR
    assert normal_page(small_api, d["cursor"]) == normal_page(small_api)


def test_fault_duplicate(small_api):
    small_api.inject("duplicate", after=2)
    pages, msgs = walk(small_api, count=7)
    assert [len(p["messages"]) for p in pages] == [7, 7, 8, 7, 7, 5]
    assert pages[2]["messages"][0] == pages[1]["messages"][-1]
    assert pages[2]["messages"][1:] == normal_page(small_api, pages[1]["cursor"])["messages"]
    dup = collections.Counter(ids(msgs))
    assert [k for k, n in dup.items() if n > 1] == [pages[1]["messages"][-1]["dlqId"]]
    assert set(dup) == set(small_api.dlq_ids())


def test_fault_duplicate_with_filter_and_first_page(small_api):
    label = labels_of(small_api.messages()[0])[0] if labels_of(small_api.messages()[0]) \
        else "payments"
    params = [("label", label)]
    p1 = json.loads(page(small_api, count=2, params=params)[1])
    small_api.inject("duplicate")
    d = json.loads(page(small_api, p1["cursor"], count=2, params=params)[1])
    assert d["messages"][0] == p1["messages"][-1]     # the previous page's last match
    small_api.inject("duplicate")
    d = json.loads(page(small_api, count=2, params=params)[1])
    assert d["messages"][0] == d["messages"][1] == p1["messages"][0]


def test_fault_huge_default_8mib(small_api):
    expected = normal_page(small_api)
    small_api.inject("huge")
    st, headers, body = request(small_api, "GET", LIST, [("count", "7")])
    assert st == 200 and int(headers["Content-Length"]) == len(body)
    assert len(body) > 8 * 1024 * 1024
    d = json.loads(body)
    assert len(d.pop("x-padding")) == 8 * 1024 * 1024
    assert d == expected


def test_fault_huge_bytes(small_api):
    small_api.inject("huge", bytes=1000)
    st, body = page(small_api)
    d = json.loads(body)
    assert d["x-padding"] == "x" * 1000 and len(d["messages"]) == 7


def test_fault_malformed_entries(small_api):
    p1 = normal_page(small_api)
    expected = normal_page(small_api, p1["cursor"])
    small_api.inject("malformed_entries")
    st, body = page(small_api, p1["cursor"])
    d = json.loads(body)                               # still valid JSON
    assert st == 200 and d["cursor"] == expected["cursor"]
    got = d["messages"]
    real = [m for m in got if isinstance(m, dict) and isinstance(m.get("dlqId"), str)
            and not m["dlqId"].startswith("malformed-") and m["dlqId"]]
    assert real == expected["messages"]               # all valid entries, in order
    hostile = [m for m in got if m not in real]
    assert got[0] in hostile and got[-1] in hostile    # before, among and after
    assert 42 in hostile and None in hostile and "just a string" in hostile
    assert any(isinstance(m, dict) and "dlqId" not in m for m in hostile)
    (wrong,) = [m for m in hostile if isinstance(m, dict)
                and m.get("dlqId") == "malformed-1-types"]
    assert isinstance(wrong["createdAt"], str) and isinstance(wrong["labels"], str)
    assert isinstance(wrong["header"], list) and isinstance(wrong["responseStatus"], dict)
    with pytest.raises(ValueError):
        base64.b64decode(wrong["bodyBase64"], validate=True)
    (nulls,) = [m for m in hostile if isinstance(m, dict)
                and m.get("dlqId") == "malformed-1-nulls"]
    assert nulls["createdAt"] is None and nulls["header"] is None
    # an empty page gets them too
    small_api.inject("malformed_entries")
    d = json.loads(page(small_api, params=[("label", "no-such")])[1])
    assert len(d["messages"]) == len(got) - len(real)
    assert not [m for m in d["messages"] if isinstance(m, dict)
                and isinstance(m.get("dlqId"), str) and m["dlqId"]
                and not m["dlqId"].startswith("malformed-")]


def test_fault_after_targets_page_3(small_api):
    small_api.inject("status", code=500, after=2)
    p1 = normal_page(small_api)
    p2 = normal_page(small_api, p1["cursor"])
    st, body = page(small_api, p2["cursor"])
    assert st == 500 and json.loads(body) == {"error": "internal server error"}
    # a retry of page 3 works and the walk goes on
    p3 = normal_page(small_api, p2["cursor"])
    assert p3["messages"] == small_api.messages()[14:21]
    assert faulted_log(small_api) == [(None, 200), (None, 200), ("status", 500), (None, 200)]
    assert small_api.faults() == []


def test_fault_after_with_times(small_api):
    small_api.inject("status", code=503, times=2, after=1)
    assert small_api.faults() == [{"fault": "status", "times": 2, "after": 1,
                                   "code": 503, "message": None}]
    assert [page(small_api)[0] for _ in range(5)] == [200, 503, 503, 200, 200]


def test_fault_times_none_lasts_until_cleared(small_api):
    small_api.inject("status", code=502, times=None)
    assert [page(small_api)[0] for _ in range(6)] == [502] * 6
    assert small_api.faults() == [{"fault": "status", "times": None, "after": 0,
                                   "code": 502, "message": None}]
    small_api.clear_faults()
    assert small_api.faults() == [] and page(small_api)[0] == 200


def test_fault_fifo_order(small_api):
    small_api.inject("status", code=500)
    small_api.inject("html", status=502, times=2)
    small_api.inject("not_json")
    small_api.inject("rate_limit")
    assert [f["fault"] for f in small_api.faults()] == ["status", "html", "not_json",
                                                         "rate_limit"]
    seen = [page(small_api) for _ in range(6)]
    assert [st for st, _ in seen] == [500, 502, 502, 200, 429, 200]
    assert seen[3][1] == b"this is not json {"
    assert [f for f, _ in faulted_log(small_api)] == ["status", "html", "html", "not_json",
                                                       "rate_limit", None]


def test_fault_fifo_with_after(small_api):
    small_api.inject("status", code=500, after=2)   # due at the 3rd request
    small_api.inject("status", code=503)            # due now: overtakes it
    assert [f["after"] for f in small_api.faults()] == [2, 0]
    assert [page(small_api)[0] for _ in range(4)] == [503, 200, 500, 200]


def test_faults_only_hit_list_gets(small_api):
    small_api.inject("status", code=500)
    one = small_api.dlq_ids()[0]
    assert request(small_api, "GET", LIST + "/" + one)[0] == 200
    assert request(small_api, "POST", LIST, body={})[0] == 405
    assert admin(small_api, "GET", "/stats")[0] == 200
    assert len(small_api.faults()) == 1
    assert page(small_api)[0] == 500


def test_page_fault_leaves_errors_alone_but_is_consumed(small_api):
    small_api.inject("empty_page")
    st, body = page(small_api, token="wrong")
    assert st == 401 and "error" in json.loads(body)
    assert small_api.faults() == []
    assert small_api.requests()[-1]["fault"] == "empty_page"
    # transport faults hit whatever the token
    small_api.inject("close")
    with pytest.raises(http.client.RemoteDisconnected):
        request(small_api, "GET", LIST, token="wrong")


def test_fault_validation(small_api):
    for args, kw in [(("nope",), {}), (("status",), {"bogus": 1}),
                     (("status",), {"code": 99}), (("status",), {"code": "500"}),
                     (("stall",), {"seconds": -1}), (("huge",), {"bytes": 1.5}),
                     (("latency",), {"times": 0.5}), (("close",), {"after": -1}),
                     (("close",), {"times": True})]:
        with pytest.raises(ValueError):
            small_api.inject(*args, **kw)
    assert small_api.faults() == []
    small_api.inject("close", times=0)       # nothing queued
    assert small_api.faults() == []
    assert set(fakeapi.FAULTS) == {
        "latency", "stall", "stall_body", "reset", "truncate", "close", "not_json",
        "html", "status", "rate_limit", "repeat_cursor", "empty_page", "duplicate",
        "huge", "malformed_entries"}


def test_admin_faults(small_api):
    st, q = admin(small_api, "POST", "/faults", {"fault": "status", "times": 2, "code": 500})
    assert st == 200 and q == [{"fault": "status", "times": 2, "after": 0, "code": 500,
                                "message": None}]
    st, q = admin(small_api, "POST", "/faults", {"fault": "latency", "times": None,
                                                 "ms": 1, "after": 3})
    assert [f["fault"] for f in q] == ["status", "latency"] and q[1]["times"] is None
    assert admin(small_api, "GET", "/faults")[1] == q
    assert admin(small_api, "POST", "/faults", {"fault": "nope"})[0] == 400
    assert admin(small_api, "POST", "/faults", {"fault": "status", "code": "x"})[0] == 400
    assert admin(small_api, "POST", "/faults", {"times": 1})[0] == 400
    assert admin(small_api, "POST", "/faults", [1])[0] == 400
    assert admin(small_api, "PUT", "/faults")[0] == 405
    assert page(small_api)[0] == 500
    assert admin(small_api, "GET", "/faults")[1][0]["times"] == 1
    assert admin(small_api, "DELETE", "/faults") == (200, [])
    assert small_api.faults() == [] and page(small_api)[0] == 200
    st, log = admin(small_api, "GET", "/requests")
    assert [(e.get("fault"), e["status"]) for e in log] == [("status", 500), (None, 200)]
    assert log[0]["fault_params"] == {"code": 500, "message": None}


def port_refuses(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def test_pause_resume_same_port(small_api):
    port = small_api.port
    before = small_api.dlq_ids()
    small_api.add({"dlqId": "kept", "createdAt": 1})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", LIST, headers={"Authorization": "Bearer " + TOKEN})
    conn.getresponse().read()
    small_api.inject("status", code=500)
    small_api.pause()
    assert small_api.paused and not small_api.running
    assert port_refuses(port)
    with pytest.raises(urllib.error.URLError) as e:
        request(small_api, "GET", LIST)
    assert isinstance(e.value.reason, ConnectionRefusedError)
    # the open keep-alive connection was closed
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", LIST, headers={"Authorization": "Bearer " + TOKEN})
        conn.getresponse().read()
    conn.close()
    small_api.pause()                    # twice is harmless
    assert small_api.resume() is small_api
    assert small_api.port == port and not small_api.paused and small_api.running
    assert small_api.dlq_ids() == before + ["kept"]
    assert page(small_api)[0] == 500     # faults are kept too
    assert ids(walk(small_api, count=7)[1]) == before + ["kept"]
    small_api.resume()                   # when running: nothing
    # stop()/start() still work, on the same port
    small_api.stop()
    assert port_refuses(port) and not small_api.paused
    small_api.start()
    assert small_api.port == port and page(small_api)[0] == 200


def test_pause_ends_a_stall(small_api):
    small_api.inject("stall", seconds=30)
    s = raw_open(small_api, timeout=5)
    try:
        time.sleep(0.2)
        t = time.monotonic()
        small_api.pause()
        data, end = raw_read(s)
        assert data == b"" and end in ("eof", "reset")
        assert time.monotonic() - t < 2
    finally:
        s.close()
    small_api.resume()
    assert page(small_api)[0] == 200


def test_admin_pause(small_api):
    st, d = admin(small_api, "POST", "/pause", {"seconds": 0.6})
    assert st == 200 and d == {"paused": 0.6}
    time.sleep(0.25)
    assert port_refuses(small_api.port)
    deadline = time.monotonic() + 5
    while small_api.paused and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page(small_api)[0] == 200
    assert admin(small_api, "POST", "/pause", {})[0] == 400
    assert admin(small_api, "POST", "/pause", {"seconds": 0})[0] == 400


def test_token_revoked_mid_walk(small_api):
    p1 = normal_page(small_api)
    p2 = normal_page(small_api, p1["cursor"])
    small_api.configure(token="rotated")
    st, body = page(small_api, p2["cursor"])
    assert st == 401 and "error" in json.loads(body)
    # the same cursor goes on with the new token
    st, body = page(small_api, p2["cursor"], token="rotated")
    assert st == 200
    assert json.loads(body)["messages"] == small_api.messages()[14:21]
    # and via the admin endpoint, back again
    assert admin(small_api, "POST", "/config", {"token": TOKEN})[0] == 200
    assert page(small_api, p2["cursor"], token="rotated")[0] == 401
    assert page(small_api, p2["cursor"])[0] == 200


def test_parse_fault_spec():
    assert fakeapi.parse_fault_spec("status:code=500,times=3") == \
        ("status", {"code": 500, "times": 3})
    assert fakeapi.parse_fault_spec("stall") == ("stall", {})
    assert fakeapi.parse_fault_spec("latency:ms=2.5,times=none,after=2") == \
        ("latency", {"ms": 2.5, "times": None, "after": 2})
    assert fakeapi.parse_fault_spec("status:code=503,message=busy") == \
        ("status", {"code": 503, "message": "busy"})
    with pytest.raises(ValueError):
        fakeapi.parse_fault_spec("status:code")


def test_cli_fault(tmp_path):
    proc, port = start_cli(sys.executable, "--runs", "5", "--seed", "1",
                           "--fault", "status:code=500,times=2",
                           "--fault", "html:status=504", tmp_path=tmp_path)
    try:
        addr = _Addr(port)
        assert [f["fault"] for f in admin(addr, "GET", "/faults")[1]] == ["status", "html"]
        assert [request(addr, "GET", LIST)[0] for _ in range(4)] == [500, 500, 504, 200]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()
    r = subprocess.run([sys.executable, FAKEAPI_PY, "--port", "0", "--fault", "nope"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode != 0 and "nope" in r.stderr and r.stdout == ""
