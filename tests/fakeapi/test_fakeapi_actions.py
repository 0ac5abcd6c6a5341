"""Tests of the fake API's action endpoints (tests/fakeapi/fakeapi.py):
delete, resume, restart (single and bulk), callback, their recording, the
unscoped-call counter and faults on actions.

Run: /usr/bin/python3 -m pytest -q tests/fakeapi/test_fakeapi_actions.py
Standard library only.
"""

import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from fakeapi import FakeAPI  # noqa: E402
from test_fakeapi import request  # noqa: E402  (one HTTP helper)

TOKEN = "test-token"
LIST = "/v2/workflows/dlq"


def call(api, method, path, ids=None, token=TOKEN, headers=None):
    """(status, decoded JSON or raw bytes).  ids: the dlqIds parameters."""
    params = [("dlqIds", i) for i in ids] if ids is not None else ()
    status, _, raw = request(api, method, path, params, token=token,
                             headers=headers,
                             body=b"" if method == "POST" else None)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def one(i):
    return LIST + "/" + urllib.parse.quote(i, safe="")


def admin(api, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api.base_url + "/_admin" + path, data=data,
                                 method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


@pytest.fixture
def api():
    with FakeAPI(token=TOKEN, runs=60, seed=3, large=False) as fake:
        yield fake


def test_delete_one(api):
    victim = api.dlq_ids()[0]
    assert call(api, "DELETE", one(victim)) == (200, b"")
    assert api.get(victim) is None and len(api) == 59
    st, body = call(api, "DELETE", one(victim))
    assert st == 404 and "not found" in body["error"]


def test_delete_odd_id_is_percent_decoded(api):
    api.add({"dlqId": "odd/id +%", "createdAt": 5})
    assert call(api, "DELETE", one("odd/id +%"))[0] == 200
    assert api.get("odd/id +%") is None
    assert api.actions()[-1]["dlqIds"] == ["odd/id +%"]


def test_bulk_delete_counts_and_skips_unknown(api):
    ids = api.dlq_ids()[:3]
    st, body = call(api, "DELETE", LIST, ids + ["1-0", ids[0]])
    assert st == 200 and body == {"deleted": 3}
    assert len(api) == 57
    rec = api.actions()[-1]
    assert rec["action"] == "delete" and rec["bulk"] and not rec["unscoped"]
    assert rec["dlqIds"] == ids + ["1-0", ids[0]]


def test_bulk_over_50_is_400_and_does_nothing(api):
    ids = api.dlq_ids()[:51]
    for method, path in (("DELETE", LIST), ("POST", LIST + "/resume"),
                         ("POST", LIST + "/restart")):
        st, body = call(api, method, path, ids)
        assert st == 400 and "50" in body["error"]
    assert len(api) == 60
    assert call(api, "DELETE", LIST, ids[:50]) == (200, {"deleted": 50})


@pytest.mark.parametrize("verb", ["resume", "restart"])
def test_resume_restart_one(api, verb):
    victim = api.dlq_ids()[5]
    st, body = call(api, "POST", LIST + "/%s/%s" % (verb, victim),
                    headers={"Upstash-Retries": "3", "Upstash-Delay": "10s",
                             "Upstash-Flow-Control-Key": "k",
                             "Upstash-Flow-Control-Value": "rate=1"})
    assert st == 200 and body["workflowRunId"].startswith("wfr_")
    assert len(body["workflowRunId"]) == 25
    assert isinstance(body["workflowCreatedAt"], int)
    assert api.get(victim) is None          # resumed runs leave by default
    rec = api.actions()[-1]
    assert rec["action"] == verb and rec["dlqIds"] == [victim]
    assert rec["headers"]["Upstash-Retries"] == "3"
    assert rec["headers"]["Upstash-Flow-Control-Value"] == "rate=1"
    assert "Authorization" not in rec["headers"]
    assert rec["response"] == body and rec["status"] == 200
    st, body = call(api, "POST", LIST + "/%s/%s" % (verb, victim))
    assert st == 404


def test_resumed_runs_can_stay(api):
    api.configure(resumed_leave=False)
    ids = api.dlq_ids()[:2]
    assert call(api, "POST", LIST + "/resume/" + ids[0])[0] == 200
    assert call(api, "POST", LIST + "/restart", ids)[0] == 200
    assert len(api) == 60
    st, cfg = admin(api, "POST", "/config", {"resumed_leave": True})
    assert st == 200 and cfg["resumed_leave"] is True
    with pytest.raises(ValueError):
        api.configure(resumed_leave="yes")


def test_bad_option_headers_are_400(api):
    victim = api.dlq_ids()[0]
    for h in ({"Upstash-Retries": "x"}, {"Upstash-Delay": "soon"}):
        assert call(api, "POST", LIST + "/resume/" + victim, headers=h)[0] == 400
    assert api.get(victim) is not None


@pytest.mark.parametrize("verb", ["resume", "restart"])
def test_bulk_resume_restart(api, verb):
    ids = api.dlq_ids()[:4]
    st, body = call(api, "POST", LIST + "/" + verb, ids + [ids[0]])
    assert st == 200 and body["cursor"] == ""
    runs = body["workflowRuns"]
    assert len(runs) == 4 and len({r["workflowRunId"] for r in runs}) == 4
    assert all(api.get(i) is None for i in ids)


def test_bulk_resume_with_an_unknown_id_does_nothing(api):
    ids = api.dlq_ids()[:3]
    st, body = call(api, "POST", LIST + "/resume", ids + ["1-0"])
    assert st == 404 and "1-0" in body["error"]
    assert all(api.get(i) is not None for i in ids)


def test_callback_only_in_callback_fail(api):
    ids = api.dlq_ids()
    api.update(ids[0], failureFunctionState="CALLBACK_FAIL")
    api.update(ids[1], failureFunctionState="CALLBACK_SUCCESS")
    api.update(ids[2], failureFunctionState=None)
    st, body = call(api, "POST", LIST + "/callback/" + ids[0])
    assert st == 200 and body["workflowRunId"].startswith("wfr_")
    assert api.get(ids[0])["failureFunctionState"] == "CALLBACK_INPROGRESS"
    assert len(api) == 60                     # a callback does not remove
    for i in ids[:3]:                         # the first is no longer FAIL
        st, body = call(api, "POST", LIST + "/callback/" + i)
        assert st == 400 and "CALLBACK_FAIL" in body["error"]
    assert call(api, "POST", LIST + "/callback/1-0")[0] == 404
    # no bulk callback endpoint
    assert call(api, "POST", LIST + "/callback", ids[:2])[0] == 405


def test_actions_need_the_token(api):
    victim = api.dlq_ids()[0]
    for method, path, ids in (("DELETE", one(victim), None),
                              ("DELETE", LIST, [victim]),
                              ("POST", LIST + "/resume/" + victim, None),
                              ("POST", LIST + "/restart", [victim]),
                              ("POST", LIST + "/callback/" + victim, None)):
        st, body = call(api, method, path, ids, token="wrong")
        assert st == 401 and "error" in body
    assert api.get(victim) is not None
    recs = api.actions()
    assert len(recs) == 5 and not any(r["auth_ok"] for r in recs)
    assert all(r["status"] == 401 and r["response"] is None for r in recs)


def test_unscoped_calls_are_counted_and_act_on_everything(api):
    assert api.unscoped() == 0
    st, body = call(api, "POST", LIST + "/resume")
    assert st == 200 and len(body["workflowRuns"]) == 60
    assert len(api) == 0 and api.unscoped() == 1
    api.reset(runs=10, seed=1)
    assert call(api, "DELETE", LIST, [""]) == (200, {"deleted": 10})
    assert api.unscoped() == 2
    recs = [r for r in api.actions() if r["unscoped"]]
    assert [r["action"] for r in recs] == ["resume", "delete"]
    st, d = admin(api, "GET", "/actions")
    assert st == 200 and d["unscoped"] == 2 and len(d["actions"]) == 2
    assert admin(api, "POST", "/clear-actions")[0] == 200
    assert api.unscoped() == 0 and api.actions() == []


def test_action_log_via_admin_and_request_log(api):
    ids = api.dlq_ids()[:2]
    call(api, "DELETE", LIST, ids)
    call(api, "GET", LIST)                     # not an action
    st, d = admin(api, "GET", "/actions")
    assert [(a["method"], a["path"], a["raw_query"]) for a in d["actions"]] == [
        ("DELETE", LIST, "dlqIds=%s&dlqIds=%s" % tuple(ids))]
    assert d["actions"][0]["response"] == {"deleted": 2}
    # the request log has both; the list counter only the list
    assert [r["method"] for r in api.requests()] == ["DELETE", "GET"]
    assert api.stats()["list_requests"] == 1


def test_non_actions_are_unchanged(api):
    assert call(api, "POST", LIST)[0] == 405
    assert call(api, "PUT", one(api.dlq_ids()[0]))[0] == 405
    assert call(api, "POST", LIST + "/resume/a/b")[0] == 405
    assert api.actions() == []


def test_faults_hit_actions(api):
    victim = api.dlq_ids()[0]
    api.inject("status", code=503, on="action")
    assert call(api, "GET", LIST)[0] == 200     # the list is not hit
    st, body = call(api, "DELETE", one(victim))
    assert st == 503 and api.get(victim) is not None   # not done
    assert api.actions()[-1]["fault"] == "status"
    # a reset after the action: done, answer lost
    api.inject("reset", on="action")
    with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
        call(api, "POST", LIST + "/resume/" + victim)
    assert api.get(victim) is None
    # un-targeted faults hit both; page faults only lists
    api.inject("empty_page")
    api.inject("status", code=500)
    assert call(api, "DELETE", one(api.dlq_ids()[0]))[0] == 500
    st, body = call(api, "GET", LIST)
    assert st == 200 and body["messages"] == []
    with pytest.raises(ValueError):
        api.inject("duplicate", on="action")
    with pytest.raises(ValueError):
        api.inject("close", on="nowhere")
    assert api.faults() == []


def test_fault_after_counts_actions(api):
    ids = api.dlq_ids()
    api.inject("status", code=500, after=1, on="action")
    assert api.faults()[0]["after"] == 1 and api.faults()[0]["on"] == "action"
    call(api, "GET", LIST)                      # lists do not count
    assert call(api, "DELETE", one(ids[0]))[0] == 200
    assert call(api, "DELETE", one(ids[1]))[0] == 500
    assert call(api, "DELETE", one(ids[2]))[0] == 200


def test_callback_sets_the_state_where_the_entry_holds_it():
    info = {"state": "CALLBACK_FAIL", "responseStatus": 502,
            "responseBody": "failure handler crashed", "responseHeaders": {}}
    msgs = [
        {"dlqId": "top", "createdAt": 5, "failureFunctionState": "CALLBACK_FAIL"},
        {"dlqId": "nested", "createdAt": 4, "failureCallbackInfo": dict(info)},
        {"dlqId": "both", "createdAt": 3, "failureFunctionState": "CALLBACK_FAIL",
         "failureCallbackInfo": dict(info)},
        {"dlqId": "top-not-a-string", "createdAt": 2, "failureFunctionState": 7,
         "failureCallbackInfo": {"state": "CALLBACK_FAIL"}},
        {"dlqId": "top-fail-nested-odd", "createdAt": 1,
         "failureFunctionState": "CALLBACK_FAIL", "failureCallbackInfo": {"state": None}},
    ]
    with FakeAPI(token=TOKEN, messages=msgs) as api:
        for m in msgs:
            st, body = call(api, "POST", LIST + "/callback/" + m["dlqId"])
            assert st == 200 and body["workflowRunId"].startswith("wfr_"), m["dlqId"]
        got = {m["dlqId"]: m for m in api.messages()}
        assert got["top"] == {"dlqId": "top", "createdAt": 5,
                              "failureFunctionState": "CALLBACK_INPROGRESS"}
        assert got["nested"] == {"dlqId": "nested", "createdAt": 4,
                                 "failureCallbackInfo": dict(info, state="CALLBACK_INPROGRESS")}
        assert got["both"]["failureFunctionState"] == "CALLBACK_INPROGRESS"
        assert got["both"]["failureCallbackInfo"] == dict(info, state="CALLBACK_INPROGRESS")
        assert got["top-not-a-string"]["failureFunctionState"] == 7
        assert got["top-not-a-string"]["failureCallbackInfo"] == {"state": "CALLBACK_INPROGRESS"}
        assert got["top-fail-nested-odd"]["failureFunctionState"] == "CALLBACK_INPROGRESS"
        assert got["top-fail-nested-odd"]["failureCallbackInfo"] == {"state": None}
        # now in CALLBACK_INPROGRESS, whichever place holds it: no second run
        for m in msgs:
            st, body = call(api, "POST", LIST + "/callback/" + m["dlqId"])
            assert st == 400 and "CALLBACK_INPROGRESS" in body["error"]


def test_callback_on_generated_nested_entries():
    with FakeAPI(token=TOKEN, runs=60, seed=3, large=False, state_field="nested") as api:
        fails = [m for m in api.messages()
                 if m.get("failureCallbackInfo", {}).get("state") == "CALLBACK_FAIL"]
        others = [m for m in api.messages()
                  if m.get("failureCallbackInfo", {}).get("state") not in (None, "CALLBACK_FAIL")]
        assert fails and others
        victim = fails[0]
        assert call(api, "POST", LIST + "/callback/" + victim["dlqId"])[0] == 200
        after = api.get(victim["dlqId"])
        assert "failureFunctionState" not in after
        assert after["failureCallbackInfo"] == dict(victim["failureCallbackInfo"],
                                                    state="CALLBACK_INPROGRESS")
        st, body = call(api, "POST", LIST + "/callback/" + others[0]["dlqId"])
        assert st == 400 and others[0]["failureCallbackInfo"]["state"] in body["error"]
        st, page = call(api, "GET", LIST + "?failureFunctionState=CALLBACK_INPROGRESS")
        assert victim["dlqId"] in [m["dlqId"] for m in page["messages"]]


def test_comma_separated_dlq_ids_name_several(api):
    ids = api.dlq_ids()[:5]
    # one comma-separated value, sent with a bare comma
    st, _, raw = request(api, "DELETE", LIST, raw_query="dlqIds=%s,%s" % tuple(ids[:2]))
    assert st == 200 and json.loads(raw) == {"deleted": 2}
    assert api.get(ids[0]) is None and api.get(ids[1]) is None
    rec = api.actions()[-1]
    assert rec["dlqIds"] == ids[:2] and not rec["unscoped"]
    assert rec["raw_query"] == "dlqIds=%s,%s" % tuple(ids[:2])
    # mixed with repeated parameters, empty pieces dropped, %2C alike
    st, body = call(api, "POST", LIST + "/resume", [",%s,,%s" % tuple(ids[2:4]), ids[4]])
    assert st == 200 and len(body["workflowRuns"]) == 3
    assert api.actions()[-1]["dlqIds"] == ids[2:5]
    assert all(api.get(i) is None for i in ids) and len(api) == 55
    assert api.unscoped() == 0


def test_comma_separated_dlq_ids_count_against_the_bulk_limit(api):
    ids = api.dlq_ids()[:51]
    st, body = call(api, "POST", LIST + "/restart", [",".join(ids)])
    assert st == 400 and "50" in body["error"]
    assert len(api) == 60
    assert call(api, "DELETE", LIST, [",".join(ids[:25]), ",".join(ids[25:50])]) == \
        (200, {"deleted": 50})


def test_comma_only_dlq_ids_is_an_unscoped_call(api):
    st, body = call(api, "DELETE", LIST, [","])
    assert st == 200 and body == {"deleted": 60}
    assert api.unscoped() == 1
    rec = api.actions()[-1]
    assert rec["unscoped"] and rec["dlqIds"] == []


def test_comma_lists_off_a_comma_is_part_of_the_id(api):
    api.configure(comma_lists=False)
    ids = api.dlq_ids()[:2]
    api.add({"dlqId": "x,y", "createdAt": 1})
    st, body = call(api, "DELETE", LIST, [",".join(ids)])
    assert st == 200 and body == {"deleted": 0}
    assert api.actions()[-1]["dlqIds"] == [",".join(ids)]
    st, body = call(api, "POST", LIST + "/resume", [",".join(ids)])
    assert st == 404 and ",".join(ids) in body["error"]
    assert all(api.get(i) is not None for i in ids)
    assert call(api, "DELETE", LIST, ["x,y"]) == (200, {"deleted": 1})
    assert api.get("x,y") is None and len(api) == 60
    assert call(api, "DELETE", LIST, [","]) == (200, {"deleted": 0})
    assert api.unscoped() == 0


def test_acted_lists_what_each_call_did(api):
    ids = api.dlq_ids()
    api.update(ids[6], failureFunctionState="CALLBACK_FAIL")
    api.update(ids[7], failureFunctionState="CALLBACK_SUCCESS")
    calls = [
        ("DELETE", one(ids[0]), None),                       # [ids[0]]
        ("DELETE", one(ids[0]), None),                       # 404: []
        ("DELETE", LIST, [ids[1], "1-0", ids[1], ids[2]]),   # [ids[1], ids[2]]
        ("POST", LIST + "/resume/" + ids[3], None),          # [ids[3]]
        ("POST", LIST + "/restart", [ids[4], ids[5], ids[4]]),  # [ids[4], ids[5]]
        ("POST", LIST + "/callback/" + ids[6], None),        # [ids[6]]
        ("POST", LIST + "/callback/" + ids[7], None),        # 400: []
        ("POST", LIST + "/restart", [ids[8], "1-0"]),        # 404, atomic: []
        ("POST", LIST + "/resume/" + ids[9], None),          # 401: []
    ]
    for method, path, dlq_ids in calls:
        call(api, method, path, dlq_ids, token="wrong" if path.endswith(ids[9]) else TOKEN)
    recs = api.actions()
    assert [r["status"] for r in recs] == [200, 404, 200, 200, 200, 200, 400, 404, 401]
    assert [r["acted"] for r in recs] == [
        [ids[0]], [], [ids[1], ids[2]], [ids[3]], [ids[4], ids[5]], [ids[6]], [], [], []]
    assert api.acted_counts() == {i: 1 for i in ids[:7]}
    assert api.acted_counts("delete") == {ids[0]: 1, ids[1]: 1, ids[2]: 1}
    assert api.acted_counts("restart") == {ids[4]: 1, ids[5]: 1}
    assert api.acted_counts("callback") == {ids[6]: 1}
    assert api.acted_counts("resume") == {ids[3]: 1}
    # acting twice on one id shows
    api.configure(resumed_leave=False)
    call(api, "POST", LIST + "/resume", [ids[8]])
    call(api, "POST", LIST + "/restart/" + ids[8])
    assert api.acted_counts()[ids[8]] == 2
    assert api.acted_counts("resume")[ids[8]] == 1
    st, d = admin(api, "GET", "/actions")
    assert d["acted_counts"] == api.acted_counts()
    assert [a["acted"] for a in d["actions"]][-2:] == [[ids[8]], [ids[8]]]
    api.clear_actions()
    assert api.acted_counts() == {}


def test_acted_under_faults(api):
    ids = api.dlq_ids()
    api.inject("status", code=503, on="action")           # refused: not done
    api.inject("close", on="action")                      # done, answer lost
    api.inject("rate_limit", on="action")
    assert call(api, "DELETE", one(ids[0]))[0] == 503
    with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
        call(api, "DELETE", LIST, ids[1:3])
    assert call(api, "POST", LIST + "/resume/" + ids[3])[0] == 429
    assert [(r["fault"], r["acted"]) for r in api.actions()] == [
        ("status", []), ("close", ids[1:3]), ("rate_limit", [])]
    assert api.acted_counts() == {ids[1]: 1, ids[2]: 1}


def test_daily_quota_refuses_actions(api):
    ids = api.dlq_ids()
    api.inject("rate_limit", kind="daily", reset_in=600, on="action")
    for method, path, dlq_ids in (("DELETE", one(ids[0]), None),
                                  ("POST", LIST + "/resume", ids[:2]),
                                  ("POST", LIST + "/callback/" + ids[2], None)):
        st, body = call(api, method, path, dlq_ids)
        assert st == 429 and body == {"error": "daily rate limit exceeded"}
    assert len(api) == 60
    recs = api.actions()
    assert [(r["fault"], r.get("quota_refused", False), r["acted"]) for r in recs] == [
        ("rate_limit", False, []), ("rate_limit", True, []), ("rate_limit", True, [])]
    assert api.stats()["quota_refused"] == 2 and api.acted_counts() == {}
    api.clear_faults()
    assert call(api, "DELETE", one(ids[0]))[0] == 200
    assert api.acted_counts() == {ids[0]: 1}


@pytest.mark.parametrize("verb", ["resume", "restart"])
@pytest.mark.parametrize("leave", [True, False])
def test_bulk_404_partial_acts_on_the_known_ids_and_keeps_them(api, verb, leave):
    api.configure(resumed_leave=leave)
    assert api.config()["bulk_404"] == "atomic"
    st, cfg = admin(api, "POST", "/config", {"bulk_404": "partial"})
    assert st == 200 and cfg["bulk_404"] == "partial"
    ids = api.dlq_ids()[:3]
    st, body = call(api, "POST", LIST + "/" + verb, [ids[0], "1-0", ids[1], ids[0], ids[2]])
    assert st == 404 and body == {"error": "Some DLQ messages were not found"}
    assert all(api.get(i) is not None for i in ids) and len(api) == 60
    rec = api.actions()[-1]
    assert rec["acted"] == ids and rec["response"] == body
    assert api.acted_counts(verb) == {i: 1 for i in ids}
    # a run was made for each known id: the next run is the 4th a fake makes
    st, run = call(api, "POST", LIST + "/%s/%s" % (verb, ids[0]))
    assert st == 200
    with FakeAPI(token=TOKEN, runs=5, seed=1) as other:
        for i in other.dlq_ids()[:4]:
            call(other, "POST", LIST + "/%s/%s" % (verb, i))
        assert other.actions()[-1]["response"]["workflowRunId"] == run["workflowRunId"]
    assert api.acted_counts(verb)[ids[0]] == 2
    # with every id known, it is an ordinary bulk call
    st, body = call(api, "POST", LIST + "/" + verb, ids[1:])
    assert st == 200 and len(body["workflowRuns"]) == 2
    assert (api.get(ids[1]) is None) == leave


def test_bulk_404_partial_with_no_known_id_and_atomic_again(api):
    api.configure(bulk_404="partial")
    st, body = call(api, "POST", LIST + "/resume", ["1-0", "2-0"])
    assert st == 404 and body == {"error": "Some DLQ messages were not found"}
    assert api.actions()[-1]["acted"] == [] and api.acted_counts() == {}
    # deletes skip unknown ids in both modes
    ids = api.dlq_ids()[:2]
    assert call(api, "DELETE", LIST, [ids[0], "1-0"]) == (200, {"deleted": 1})
    api.configure(bulk_404="atomic")
    st, body = call(api, "POST", LIST + "/resume", [ids[1], "1-0"])
    assert st == 404 and body == {"error": "dlq message not found: 1-0"}
    assert api.actions()[-1]["acted"] == [] and api.get(ids[1]) is not None
    assert admin_status(api, {"bulk_404": "some"}) == 400
    with pytest.raises(ValueError):
        FakeAPI(bulk_404=True)
    with FakeAPI(token=TOKEN, runs=3, seed=1, bulk_404="partial") as other:
        i = other.dlq_ids()[0]
        assert call(other, "POST", LIST + "/restart", [i, "1-0"])[0] == 404
        assert other.acted_counts() == {i: 1} and other.get(i) is not None


def admin_status(api, config):
    try:
        return admin(api, "POST", "/config", config)[0]
    except urllib.error.HTTPError as e:
        with e:
            return e.code
