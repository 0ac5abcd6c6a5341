#!/usr/bin/env python3
"""fakeapi: a fake Upstash Workflow DLQ API for dlqfs tests and demos.

Python standard library only (tested with Python 3.11).  Binds to loopback
only.  Deterministic given a seed.

As a module::

    from fakeapi import FakeAPI, generate
    with FakeAPI(token="test-token", runs=200, seed=1) as api:
        url = api.base_url            # "http://127.0.0.1:PORT"
        api.add({...}); api.remove("1752829295505-0")
        api.update("1752829295505-1", failureFunctionState="CALLBACK_FAIL")
        api.messages(); api.requests(); api.clear_requests()
        api.reset(runs=500, seed=42)
        api.inject("status", code=500, times=3); api.inject("reset", after=2)
        api.faults(); api.clear_faults()
        api.pause(); api.resume()      # connection refused in between
        api.configure(bulk_404="partial"); api.config()
        api.actions(); api.acted_counts("resume"); api.stats()
    FakeAPI(state_field="nested", comma_lists=False, unknown_params="ignore",
            filter_names="legacy", ignored_params=["callerIp"], ...)

As a program::

    python3 tests/fakeapi/fakeapi.py [--host 127.0.0.1] [--port 0] [--port-file FILE]
        [--token T] [--runs N] [--seed S] [--latency-ms MS]
        [--end-cursor empty|null|absent|rotate] [--now-ms MS|now] [--no-large]
        [--state-field top|nested|both] [--no-comma-lists]
        [--unknown-params reject|ignore] [--filter-names current|legacy]
        [--ignore-param NAME]... [--bulk-404 atomic|partial]
        [--demo] [--fault SPEC]...     # SPEC: status:code=500,times=3
                                       # or rate_limit:kind=daily,reset=false

Served (see API.md in the shared notes for the real API):

    GET /v2/workflows/dlq              list, filters, opaque cursor
    GET /v2/workflows/dlq/{dlqId}      one entry, or 404
    DELETE /v2/workflows/dlq/{dlqId}   200, empty body; 404 if unknown
    DELETE /v2/workflows/dlq?dlqIds=a&dlqIds=b
                                       {"deleted": n} (unknown ids skipped)
    POST /v2/workflows/dlq/resume/{dlqId}, .../restart/{dlqId}
                                       {"workflowRunId", "workflowCreatedAt"}
    POST /v2/workflows/dlq/{resume,restart}?dlqIds=...
                                       {"workflowRuns": [...], "cursor": ""}
                                       (one run per distinct id, in order;
                                       an unknown id: see bulk_404)
    POST /v2/workflows/dlq/callback/{dlqId}
                                       a run; 400 unless the entry's state
                                       is CALLBACK_FAIL (then it becomes
                                       CALLBACK_INPROGRESS, see state_field)

Admin endpoints (no auth, never called by the daemon):

    GET    /_admin/messages            current list, newest first
    POST   /_admin/messages            one message or a list: add or replace by dlqId
    GET    /_admin/messages/{dlqId}    one message (404 if unknown)
    DELETE /_admin/messages/{dlqId}    remove (404 if unknown)
    PATCH  /_admin/messages/{dlqId}    merge a JSON object; a null value removes the field
    POST   /_admin/reset               {"runs": N, "seed": S, "now_ms": T, "large": bool}
    POST   /_admin/config              {"token", "latency_ms", "end_cursor", "exact_end",
                                        "resumed_leave", "state_field",
                                        "comma_lists", "unknown_params",
                                        "filter_names", "ignored_params",
                                        "bulk_404"}: any of
                                       them; answers every option (config())
    GET    /_admin/stats               {"messages": n, "requests": n, "list_requests": n,
                                        "quota_refused": n, "quota_until": t|null}
    GET    /_admin/requests            the request log (last 10000 API requests)
    GET    /_admin/actions             {"actions": [...], "unscoped": n, "acted_counts":
                                        {dlqId: n}}: see actions(), acted_counts()
    POST   /_admin/clear-actions       empty the action log, zero the unscoped counter
    POST   /_admin/clear-requests      empty the log and zero the counters
    GET    /_admin/faults              the fault queue (see faults())
    POST   /_admin/faults              {"fault": NAME, "times": N|null, "after": K, ...params}
    DELETE /_admin/faults              clear the fault queue (and end a daily quota)
    POST   /_admin/pause               {"seconds": S}: answer, then pause() for S s

Behaviour worth knowing:
- Order is newest first: createdAt desc, then dlqId desc (string order).
- The cursor is standard base64 of the last returned entry's (createdAt,
  dlqId); it always starts with "+/+/" and ends with "==", so it must be
  percent-encoded.  Entries added or removed between pages are neither
  skipped nor repeated.  Cursors stay valid across reset() and instances.
- end_cursor "rotate" steps empty -> null -> absent once per response that
  ends a walk (so three walks in a row see all three); reset() restarts it.
- Single-value parameters (cursor, count, fromDate, toDate,
  workflowCreatedAt) given twice are a 400.  `qstash_token` is accepted
  and shows as query_token=True in the log.
- comma_lists (FakeAPI(comma_lists=), configure(), /_admin/config,
  --no-comma-lists): the docs say array parameters accept several values
  by repeating the parameter or as one comma-separated value.  True
  (default): each value of dlqIds, label, workflowUrl,
  failureFunctionState, callerIp or flowControlKey (COMMA_PARAMS) is
  split on ",", empty pieces dropped, for the list filters and for the
  dlqIds of bulk actions ("dlqIds=a,b" names two ids; actions() shows
  them split); a parameter left with no value at all ("label=", ",") is
  no filter, and a bulk call left with no id is unscoped.  False: a value
  is one value, commas included.  workflowRunId is never split.
- Filters the server may not know (list endpoint only; API.md: whether
  unknown parameters are rejected or ignored is not documented):
    unknown_params "reject" (default): a parameter the fake does not know
                     is a 400 {"error": "unknown parameter: NAME"};
                     "ignore": it is accepted and not applied
    filter_names   "current" (default, the newest OpenAPI): the filters
                     are failureFunctionState and callerIp; "legacy" (the
                     older docs, Upstash's MCP server): they are
                     failureCallbackState and callerIP, and
                     failureFunctionState and callerIp are unknown
    ignored_params names accepted and never applied, whatever
                     filter_names says (e.g. ["callerIp"])
  (FakeAPI(...=), configure(), /_admin/config; --unknown-params,
  --filter-names, --ignore-param NAME.)  The log keeps every query as
  sent; a list request's entry also has "not_applied" (the names of the
  parameters accepted but not applied) when there were any.
- Only non-admin requests are logged, counted and delayed by latency_ms.
- state_field (FakeAPI(state_field=), configure(), /_admin/config,
  --state-field): where generated entries (the initial data and reset())
  carry the failure-callback state.  Only the newest OpenAPI has a
  top-level failureFunctionState; the SDK's types and the docs' example
  carry it only as failureCallbackInfo.state (failureCallbackInfo is
  {state, responseStatus, responseBody, responseHeaders}).
    "top" (default)  failureFunctionState; about half the CALLBACK_SUCCESS
                     and CALLBACK_FAIL entries also have failureCallbackInfo
                     (with its state and the callback's response)
    "nested"         no failureFunctionState; every entry with a
                     failureCallback has failureCallbackInfo with its state
                     (and the response fields where "top" has them)
    "both"           both on every entry with a failureCallback
  The data is otherwise the same (the shape is applied after generating,
  the random draws do not move).  configure(state_field=) applies from the
  next reset().  Messages given to messages=, add() or patch() are kept
  as given.  An entry's state, for the failureFunctionState filter and the
  callback action, is failureFunctionState when it is a string, else
  failureCallbackInfo.state.  The callback action sets the new state
  where the entry holds it: both places if both are strings, the nested
  one if only it is, failureFunctionState otherwise.
- Actions: bulk calls take at most 50 dlqIds (else 400); resumed and
  restarted entries leave the DLQ unless resumed_leave=False (the real
  API does not document it).  Every action call is recorded (actions()),
  and a bulk call naming no dlqIds is counted (unscoped()) and, as the
  real API would, acts on the whole DLQ, so that the bug shows.  Each
  recorded call lists in "acted" the ids it actually acted on, and
  acted_counts(verb=None) sums them ({dlqId: n}) so a test can check
  that no id was acted on twice.
  Upstash-Retries must be digits and Upstash-Delay a duration (else 400).
- bulk_404 (FakeAPI(bulk_404=), configure(), /_admin/config, --bulk-404):
  a bulk resume or restart naming an id the fake does not know.  Whether
  the real API acts on the ids it found is not documented.
    "atomic" (default)  404 {"error": "dlq message not found: ID"}, nothing
                        done
    "partial"           every known id is acted on (a new run each, in
                        "acted") and stays in the DLQ whatever
                        resumed_leave says, then 404 {"error": "Some DLQ
                        messages were not found"}
  A bulk delete skips unknown ids either way ({"deleted": n}).

Fault injection (GET /v2/workflows/dlq and the action calls; single-entry
GETs and admin calls are never faulted, though a spent daily quota refuses
single-entry GETs too (rate_limit kind=daily); inject(on="list"|"action")
aims a fault at one kind only):
- inject(fault, times=1, after=0, **params) queues `times` copies (None:
  forever, until clear_faults()).  Every GET on the list path takes the first
  queued fault that is due, FIFO; after=K makes a fault due from the
  (K+1)-th list request counted from its injection ("fail page 3 of a walk
  starting now" is after=2).  Faults apply whatever the token; the page
  faults below leave a non-200 answer (401, 400) unchanged but are still
  consumed.  Faulted requests are logged with "fault" (the name) and
  "fault_params"; status is None when no status line was sent.
- On the wire:
    latency ms=1000         wait, then the normal answer
    stall seconds=30        read the request, send nothing, close (FIN);
                            ends early on stop()/pause()
    stall_body seconds=30   status line, headers (full Content-Length), the
                            first half of the body, nothing for S s, FIN
    reset                   same head and half body, then RST (SO_LINGER 0)
    truncate                same head and half body, then FIN at once
    close                   read the request, close (FIN) without a byte
    not_json                200, application/json, body "this is not json {"
    html status=502         nginx-style text/html error page, Server: nginx
    status code=500 message=None   {"error": message or the reason, lowercase}
    rate_limit reset_in=1 retry_after=None limit=100 kind=burst
               reset_unit=s reset=True
                            kind=burst: 429 {"error": "burst rate limit
                            exceeded"}, Burst-RateLimit-Limit: limit,
                            -Remaining: 0, -Reset: ceil(now + reset_in) in
                            unix s (reset_unit=ms: unix ms, > 10^12; the
                            docs only say "unix timestamp"); no Reset header
                            at all with reset=False; Retry-After if given.
                            kind=daily: the daily quota: 429 {"error":
                            "daily rate limit exceeded"} with RateLimit-Limit,
                            RateLimit-Remaining: 0, RateLimit-Reset (same
                            rules; qstash-js raises QstashDailyRatelimitError
                            when RateLimit-Limit is there), and stateful:
                            the request that takes the fault fixes the reset
                            time (now + reset_in); until then EVERY
                            non-admin request (list, action, single-entry
                            GET, whatever the token) gets that same 429 and
                            takes no fault (nor counts for `after`); then the
                            quota is over.  times/after/on say when the quota
                            is spent (on= restricts that first hit only).
                            Refused requests are logged with fault
                            "rate_limit" and quota_refused=True and counted
                            in stats()["quota_refused"] (the first hit is
                            not); clear_faults() ends the quota at once.
    repeat_cursor           the normal page, but cursor = the request's cursor
                            (first page: FIRST_PAGE_CURSOR, a cursor that
                            means "from the start", so it repeats too)
    empty_page              {"cursor": C, "messages": []}: C is the same
                            position as the request's, spelled differently
    duplicate               the page with the entry just before its position
                            (the previous page's last) prepended; on a first
                            page its first entry appears twice
    huge bytes=8MiB         the page with an extra "x-padding" string field
    malformed_entries       the page with hostile entries around and among
                            the real ones (42, null, no dlqId, wrong types)
- On an action call the wire faults behave alike, except that the action
  is carried out first under stall, close, not_json, stall_body, reset and
  truncate (the answer is what is lost: a reset after an empty body cuts
  the head instead), and not at all under status, html and rate_limit.
  Page faults never hit actions.
- pause() closes the listener and every connection (connect: refused);
  resume() listens again on the same port.  stop()/start() likewise.
"""

import argparse
import base64
import bisect
import collections
import gc
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "FakeAPI",
    "generate",
    "encode_cursor",
    "decode_cursor",
    "REFERENCE_NOW_MS",
    "LIST_PATH",
    "ALLOWED_PARAMS",
    "LEGACY_PARAMS",
    "FILTER_NAMES",
    "UNKNOWN_PARAMS",
    "END_CURSOR_MODES",
    "STATE_FIELDS",
    "COMMA_PARAMS",
    "CONFIG_KEYS",
    "BULK_404_MODES",
    "RATE_LIMIT_KINDS",
    "RESET_UNITS",
    "FAULTS",
    "FIRST_PAGE_CURSOR",
    "parse_fault_spec",
]

LIST_PATH = "/v2/workflows/dlq"

# 2026-11-20T00:00:00Z: the default "now" of the generator, so that generated
# data is the same from run to run.
REFERENCE_NOW_MS = 1795132800000
DAY_MS = 24 * 3600 * 1000

MAX_COUNT = 100
LOG_LIMIT = 10000

ALLOWED_PARAMS = (
    "cursor",
    "count",
    "fromDate",
    "toDate",
    "workflowUrl",
    "workflowRunId",
    "workflowCreatedAt",
    "label",
    "failureFunctionState",
    "callerIp",
    "flowControlKey",
)
# filter_names="legacy": a server as the older docs and Upstash's MCP
# server describe it, with failureCallbackState and callerIP for
# failureFunctionState and callerIp.
LEGACY_PARAMS = tuple({"failureFunctionState": "failureCallbackState",
                       "callerIp": "callerIP"}.get(k, k) for k in ALLOWED_PARAMS)
PARAMS_BY_FILTER_NAMES = {"current": ALLOWED_PARAMS, "legacy": LEGACY_PARAMS}
FILTER_NAMES = tuple(PARAMS_BY_FILTER_NAMES)
UNKNOWN_PARAMS = ("reject", "ignore")
# Parameters that may be repeated (OR within the parameter).
MULTI_PARAMS = (
    "workflowUrl",
    "workflowRunId",
    "label",
    "failureFunctionState",
    "callerIp",
    "flowControlKey",
    "failureCallbackState",
    "callerIP",
)
SINGLE_PARAMS = ("cursor", "count", "fromDate", "toDate", "workflowCreatedAt")
# Array parameters: with comma_lists (the default) one value may name
# several, comma-separated ("dlqIds=a,b" is "dlqIds=a&dlqIds=b"), as the
# docs say of array parameters.  workflowRunId is not one of them.
COMMA_PARAMS = ("dlqIds", "label", "workflowUrl", "failureFunctionState",
                "callerIp", "flowControlKey", "failureCallbackState", "callerIP")
INT_PARAMS = ("fromDate", "toDate", "workflowCreatedAt")

END_CURSOR_MODES = ("empty", "null", "absent")
_END_CURSOR_OPTIONS = END_CURSOR_MODES + ("rotate",)

# Where an entry carries its failure-callback state (FakeAPI(state_field=)).
STATE_FIELDS = ("top", "nested", "both")

FAILURE_STATES = (
    "CALLBACK_INPROGRESS",
    "CALLBACK_SUCCESS",
    "CALLBACK_FAIL",
    "CALLBACK_CANCELED",
)

_INT_RE = re.compile(r"-?[0-9]{1,19}\Z")
_COUNT_RE = re.compile(r"[0-9]{1,9}\Z")


# --------------------------------------------------------------------------
# Cursor
#
# base64(MAGIC + JSON [createdAt, dlqId] + padding spaces + CRC32).  MAGIC
# encodes to "+/+/" and the padding makes the length 1 mod 3, so every cursor
# starts with "+/+/" and ends with "==": a client that does not
# percent-encode it sends "+" as a space and gets a 400.

_CURSOR_MAGIC = b"\xfb\xff\xbf"  # base64: "+/+/"


def _pack_cursor(payload):
    raw = _CURSOR_MAGIC + payload
    while (len(raw) + 4) % 3 != 1:
        raw += b" "
    raw += zlib.crc32(raw).to_bytes(4, "big")
    return base64.b64encode(raw).decode("ascii")


def encode_cursor(created_at, dlq_id):
    """Opaque cursor for the position just after (createdAt, dlqId)."""
    return _pack_cursor(json.dumps([created_at, dlq_id], separators=(",", ":"),
                                   ensure_ascii=False).encode("utf-8"))


def _alt_cursor(created_at, dlq_id, avoid=None):
    """A cursor for the same position as encode_cursor(created_at, dlq_id)
    but spelled differently (blanks inside the JSON), and != avoid."""
    tail = json.dumps([created_at, dlq_id], separators=(",", ":"),
                      ensure_ascii=False)[1:]
    k = 1
    while True:
        c = _pack_cursor(("[" + " " * k + tail).encode("utf-8"))
        if c != avoid:
            return c
        k += 1


# A position above every entry: a cursor for it is equivalent to no cursor
# (the first page).  Used by the repeat_cursor and empty_page faults.
_START_KEY = (2 ** 63, "")
FIRST_PAGE_CURSOR = encode_cursor(*_START_KEY)


def decode_cursor(cursor):
    """(createdAt, dlqId) from a cursor; raises ValueError if invalid."""
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True)
    except (ValueError, UnicodeError) as e:
        raise ValueError("not base64") from e
    if len(raw) < len(_CURSOR_MAGIC) + 4 or not raw.startswith(_CURSOR_MAGIC):
        raise ValueError("bad cursor")
    body, crc = raw[:-4], raw[-4:]
    if zlib.crc32(body).to_bytes(4, "big") != crc:
        raise ValueError("bad cursor checksum")
    try:
        value = json.loads(body[len(_CURSOR_MAGIC):].decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        raise ValueError("bad cursor payload") from e
    if (not isinstance(value, list) or len(value) != 2
            or type(value[0]) is not int or not isinstance(value[1], str)):
        raise ValueError("bad cursor payload")
    return value[0], value[1]


# --------------------------------------------------------------------------
# Generator


_B64_TO_ALNUM = bytes.maketrans(b"+/", b"Kq")


def _rand_str(rng, n):
    """n random alphanumeric characters."""
    m = (n * 3 + 3) // 4
    raw = rng.getrandbits(8 * m).to_bytes(m, "big")
    return base64.b64encode(raw).translate(_B64_TO_ALNUM)[:n].decode("ascii")


def _rand_hex(rng, n):
    return "%0*x" % (n, rng.getrandbits(4 * n))


def _rand_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "big")


class _NoGC(object):
    """Pause the cyclic garbage collector while building many small objects
    (it makes that several times slower and finds nothing to free)."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def _pick(rng, seq):
    return seq[int(rng.random() * len(seq))]


def _randint(rng, lo, hi):
    """Random integer in [lo, hi]."""
    return lo + int(rng.random() * (hi - lo + 1))


def _wchoice(rng, items, cum):
    """Weighted choice; cum = cumulative weights (see _cum)."""
    return items[bisect.bisect(cum, rng.random() * cum[-1])]


def _cum(weights):
    out, t = [], 0
    for w in weights:
        t += w
        out.append(t)
    return out


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
           "Oct", "Nov", "Dec")


def _http_date(ms):
    t = time.gmtime(ms // 1000)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec)


# (workflowUrl, kind, step names, weight)
_WORKFLOWS = (
    ("https://app.example.com/api/workflows/payments", "payments",
     ("validate-order", "charge-card", "capture-payment", "send-receipt"), 30),
    ("https://app.example.com/api/workflows/billing/invoice", "billing",
     ("load-account", "render-invoice", "upload-pdf", "notify"), 20),
    ("https://app.example.com/api/workflows/emails/welcome", "emails",
     ("render-template", "send-email", "track-delivery"), 18),
    ("https://app.example.com/api/workflows/onboarding", "onboarding",
     ("create-tenant", "provision-db", "invite-team", "wait-for-verify"), 14),
    ("https://jobs.example.org/workflow/reports-nightly?region=eu", "reports",
     ("collect", "aggregate", "export-csv"), 10),
    ("http://localhost:3000/api/workflow", "dev",
     ("step-1", "step-2"), 8),
)
_WF_CUM = _cum(w[3] for w in _WORKFLOWS)

_LABELS_BY_KIND = {
    "payments": ("payments", "team/payments", "billing", "priority:high"),
    "billing": ("billing", "payments", "team/payments"),
    "emails": ("emails", "onboarding", "équipe"),
    "onboarding": ("onboarding", "emails", "priority:high"),
    "reports": ("billing", "team/payments"),
    "dev": ("payments", "emails"),
}

_CALLER_IPS = ("203.0.113.7", "198.51.100.23", "192.0.2.44", "2001:db8::5")
_CALLER_IP_CUM = _cum((45, 30, 15, 10))
_FLOW_KEYS = ("payments-api", "tenant:acme", "sendgrid-outbound",
              "stripe/webhooks")

_STATUSES = (500, 502, 503, 504, 404, 429, 400, 401)
_STATUS_CUM = _cum((30, 15, 10, 10, 8, 10, 10, 7))

_STATE_CUM = _cum((15, 45, 30, 10))

_METHODS = ("POST", "GET", "PUT")
_METHOD_CUM = _cum((88, 8, 4))

_SERVERS = ("nginx/1.25.3", "cloudflare", "Vercel", "envoy", "gunicorn")

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3"
    "</center>\r\n</body>\r\n</html>\r\n")
_HTML_CF_502 = (
    "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><title>app.example.com | "
    "502: Bad gateway</title></head>\n<body><div id=\"cf-error-details\">"
    "<h1>Bad gateway</h1><span>Error code 502</span><p>Cloudflare Ray ID: "
    "{ray}</p></div></body>\n</html>\n")
_HTML_504 = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n")


def _uuid(rng):
    h = _rand_hex(rng, 32)
    return "%s-%s-4%s-a%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:])


def _step_url(wf_url, step):
    base, sep, query = wf_url.partition("?")
    return base.rstrip("/") + "/" + step + (sep + query if sep else "")


def _request_body(rng, kind, run_id):
    if kind == "payments":
        obj = {"orderId": "ord_" + _rand_str(rng, 12),
               "amount": _randint(rng, 100, 250000),
               "currency": _pick(rng, ("EUR", "USD", "GBP", "JPY")),
               "customer": {"id": "cus_" + _rand_str(rng, 14),
                            "email": "user%d@example.com" % _randint(rng, 1, 9999)},
               "idempotencyKey": _uuid(rng)}
    elif kind == "billing":
        obj = {"accountId": "acct_" + _rand_str(rng, 10),
               "period": "2026-%02d" % _randint(rng, 1, 11),
               "lines": [{"sku": "plan-" + _pick(rng, ("pro", "team", "free")),
                          "qty": _randint(rng, 1, 40)}
                         for _ in range(_randint(rng, 1, 4))]}
    elif kind == "emails":
        obj = {"to": "user%d@example.com" % _randint(rng, 1, 9999),
               "template": _pick(rng, ("welcome", "reset-password", "digest")),
               "locale": _pick(rng, ("en-US", "fr-FR", "de-DE", "ja-JP")),
               "name": _pick(rng, ("Zoë", "José", "Ærin", "Łukasz", "美咲", "Sam")),
               "vars": {"plan": "pro", "trialDays": 14}}
    elif kind == "onboarding":
        obj = {"tenant": "t-" + _rand_str(rng, 8).lower(),
               "owner": "owner%d@example.com" % _randint(rng, 1, 999),
               "region": _pick(rng, ("eu-west-1", "us-east-1")),
               "seats": _randint(rng, 1, 50)}
    elif kind == "reports":
        obj = {"report": "nightly", "date": "2026-11-%02d" % _randint(rng, 1, 19),
               "shards": _randint(rng, 1, 16)}
    else:
        obj = {"hello": "world", "n": _randint(rng, 0, 100)}
    if rng.random() < 0.3:
        obj["workflowRunId"] = run_id
    return json.dumps(obj, ensure_ascii=False)


def _binary(rng):
    head = _pick(rng, (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
                       b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
                       b"\xff\xfe{\x00\"\x00",
                       b"\x80\x04\x95"))
    return head + _rand_bytes(rng, _randint(rng, 16, 240))


def _response_body(rng, status, step):
    if status == 500:
        return _pick(rng, (
            lambda: "Error: read ECONNRESET\n    at TLSWrap.onStreamRead "
                    "(node:internal/stream_base_commons:217:20)",
            lambda: "connect ETIMEDOUT 10.0.%d.%d:5432" % (_randint(rng, 0, 9),
                                                          _randint(rng, 2, 250)),
            lambda: json.dumps({"error": "Internal Server Error",
                                "message": "step '%s' threw: TypeError: Cannot "
                                           "read properties of undefined "
                                           "(reading 'id')" % step,
                                "requestId": _uuid(rng)}),
            lambda: json.dumps({"error": {"code": "card_declined",
                                          "type": "card_error",
                                          "message": "Your card was declined."}}),
            lambda: "Internal Server Error",
            lambda: json.dumps({"message": "PrismaClientKnownRequestError: "
                                           "Unique constraint failed on the "
                                           "fields: (`email`)", "code": "P2002"}),
        ))()
    if status == 502:
        return _pick(rng, (
            lambda: _HTML_502,
            lambda: _HTML_CF_502.replace("{ray}", _rand_hex(rng, 16)),
            lambda: "upstream connect error or disconnect/reset before headers. "
                    "reset reason: connection termination",
            lambda: json.dumps({"error": "FUNCTION_INVOCATION_FAILED",
                                "id": "fra1::" + _rand_str(rng, 12).lower()}),
        ))()
    if status == 503:
        return _pick(rng, (
            lambda: "upstream connect error or disconnect/reset before headers. "
                    "reset reason: overflow",
            lambda: json.dumps({"error": "Service Unavailable",
                                "retryAfter": _pick(rng, (5, 30, 60))}),
            lambda: "",
        ))()
    if status == 504:
        return _pick(rng, (
            lambda: "upstream request timeout",
            lambda: _HTML_504,
            lambda: json.dumps({"error": "FUNCTION_INVOCATION_TIMEOUT",
                                "message": "Task timed out after 10.01 seconds"}),
            lambda: "Error: ETIMEDOUT while calling https://api.partner.example/v1",
        ))()
    if status == 404:
        return _pick(rng, (
            lambda: json.dumps({"error": "route not found", "path": "/" + step}),
            lambda: "Not Found",
            lambda: "<!DOCTYPE html><html><head><title>404: This page could "
                    "not be found</title></head><body>404</body></html>",
        ))()
    if status == 429:
        return _pick(rng, (
            lambda: json.dumps({"error": "Too Many Requests",
                                "limit": 100, "remaining": 0}),
            lambda: "rate limit exceeded, retry in 30s",
        ))()
    if status == 400:
        return _pick(rng, (
            lambda: json.dumps({"error": "invalid payload",
                                "details": [{"path": ["amount"],
                                             "message": "Expected number, "
                                                        "received string"}]}),
            lambda: json.dumps({"message": "Unexpected token } in JSON at "
                                           "position 42"}),
            lambda: "Bad Request",
        ))()
    return _pick(rng, (
        lambda: json.dumps({"message": "Unauthorized"}),
        lambda: json.dumps({"error": "invalid signature",
                            "hint": "check QSTASH_CURRENT_SIGNING_KEY"}),
    ))()


def _response_header(rng, status, created_at, body):
    h = {}
    if body.startswith("<"):
        ctype = "text/html; charset=utf-8"
    elif body.startswith("{"):
        ctype = "application/json; charset=utf-8"
    else:
        ctype = "text/plain; charset=utf-8"
    h["Content-Type"] = [ctype]
    h["Date"] = [_http_date(created_at)]
    server = _pick(rng, _SERVERS)
    h["Server"] = [server]
    if server == "Vercel":
        h["X-Vercel-Id"] = ["fra1::iad1::" + _rand_str(rng, 5).lower() + "-"
                            + str(created_at) + "-" + _rand_hex(rng, 12)]
    if server == "cloudflare":
        h["Cf-Ray"] = [_rand_hex(rng, 16) + "-FRA"]
    if status in (429, 503):
        h["Retry-After"] = [str(_pick(rng, (5, 30, 60)))]
    if status == 429:
        h["X-Ratelimit-Limit"] = ["100"]
        h["X-Ratelimit-Remaining"] = ["0"]
    if rng.random() < 0.12:
        h["Set-Cookie"] = ["sid=%s; Path=/; HttpOnly" % _rand_str(rng, 20),
                           "region=eu; Path=/"]
    if rng.random() < 0.25:
        h["Cache-Control"] = ["no-store"]
    return h


def _large_text(index, created_at, target=1000 * 1024):
    """About `target` bytes of log text (deterministic, cheap to build)."""
    ts = _http_date(created_at)
    lines = []
    size = 0
    i = 0
    while size < target:
        line = ("%s ERROR [worker-%d] upstream request timeout while streaming "
                "export chunk %06d (ECONNRESET after 30000 ms)\n"
                % (ts, index, i))
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


def generate(n, seed, now_ms=None, large=None, state_field="top"):
    """Return `n` realistic WorkflowDLQMessage dicts, deterministic in
    (n, seed, now_ms, large, state_field).

    createdAt values lie within the 7 days before now_ms (default
    REFERENCE_NOW_MS).  `large` (default: n >= 100) makes up to 3 entries
    carry a ~1 MB responseBody.  The list is in generation order, not
    sorted.  state_field (see STATE_FIELDS) says where an entry with a
    failure callback carries its state: "top" (failureFunctionState, and
    failureCallbackInfo only on some CALLBACK_SUCCESS/CALLBACK_FAIL
    entries), "nested" (only failureCallbackInfo.state, on every such
    entry) or "both".  The shape is applied after generating: every
    choice is the same whatever state_field is.
    """
    if state_field not in STATE_FIELDS:
        raise ValueError("state_field must be one of %s" % (STATE_FIELDS,))
    if now_ms is None:
        now_ms = REFERENCE_NOW_MS
    now_ms = int(now_ms)
    if large is None:
        large = n >= 100
    with _NoGC():
        msgs = _generate(n, seed, now_ms, large)
        if state_field != "top":
            msgs = [_shape_state(m, state_field) if "failureCallback" in m else m
                    for m in msgs]
        return msgs


def _shape_state(msg, state_field):
    """A generated entry with a failure callback, its state moved to
    failureCallbackInfo.state ("nested") or copied there ("both"); the
    keys keep their order, failureCallbackInfo right after
    failureCallback."""
    state = msg["failureFunctionState"]
    out = {}
    for k, v in msg.items():
        if k == "failureFunctionState" and state_field == "nested":
            continue
        out[k] = v
        if k == "failureCallback" and "failureCallbackInfo" not in msg:
            out["failureCallbackInfo"] = {"state": state}
    return out


def _generate(n, seed, now_ms, large):
    rng = random.Random(seed)
    out = []
    runs = []          # pool of runs that may fail again
    used_ids = {}      # createdAt -> next sequence number
    created_list = []  # createdAt values so far, for deliberate ties

    for i in range(n):
        # -- the run this entry belongs to (some runs have several entries)
        if runs and rng.random() < 0.22:
            run = runs[len(runs) - 1 - int(rng.random() * min(40, len(runs)))]
        else:
            wf = _wchoice(rng, _WORKFLOWS, _WF_CUM)
            run = {
                "id": "wfr_" + _rand_str(rng, 21),
                "wf": wf,
                "createdAt": now_ms - _randint(rng, 60 * 1000, 7 * DAY_MS - 4 * 3600 * 1000),
                "ip": _wchoice(rng, _CALLER_IPS, _CALLER_IP_CUM),
                "fck": _pick(rng, _FLOW_KEYS) if rng.random() < 0.3 else None,
                "callback": rng.random() < 0.6,
            }
            r = rng.random()
            pool = _LABELS_BY_KIND[wf[1]]
            labels = rng.sample(pool, _randint(rng, 1, min(3, len(pool))))
            if r < 0.40:
                run["labels"], run["label"] = labels, None          # labels only
            elif r < 0.55:
                run["labels"], run["label"] = None, labels[0]       # deprecated only
            elif r < 0.70:
                run["labels"], run["label"] = labels, labels[0]     # both
            elif r < 0.72:
                run["labels"], run["label"] = [], None              # empty list
            else:
                run["labels"], run["label"] = None, None            # neither
            runs.append(run)
        wf_url, kind, steps, _ = run["wf"]

        # -- createdAt and dlqId
        if created_list and rng.random() < 0.03:
            created_at = created_list[int(rng.random() * len(created_list))]
            if created_at < run["createdAt"]:
                created_at = min(now_ms - 1, run["createdAt"] + _randint(rng, 50, 3 * 3600 * 1000))
        else:
            created_at = min(now_ms - 1, run["createdAt"] + _randint(rng, 50, 3 * 3600 * 1000))
        seq = used_ids.get(created_at, 0)
        used_ids[created_at] = seq + 1
        created_list.append(created_at)
        dlq_id = "%d-%d" % (created_at, seq)

        step = _pick(rng, steps)
        url = wf_url if rng.random() < 0.25 else _step_url(wf_url, step)
        binary_body = rng.random() < 0.10

        # -- request headers
        header = {
            "Upstash-Workflow-Runid": [run["id"]],
            "Upstash-Workflow-Url": [wf_url],
            "Upstash-Workflow-Sdk-Version": ["1"],
            "Upstash-Feature-Set": ["LazyFetch,InitialBody,WF_DetectTrigger"],
            "Upstash-Workflow-Init": ["true" if url == wf_url else "false"],
            "Content-Type": ["application/octet-stream" if binary_body
                             else "application/json"],
            "Upstash-Telemetry-Framework": [_pick(rng, ("nextjs", "hono", "express"))],
            "Upstash-Telemetry-Runtime": [_pick(rng, ("node@v22.11.0", "edge-light", "bun@1.1.34"))],
            "Upstash-Telemetry-Sdk": ["@upstash/workflow@v0.2.22"],
        }
        if run["callback"]:
            header["Upstash-Failure-Callback"] = [_step_url(wf_url, "failure")]
        if run["fck"]:
            header["Upstash-Flow-Control-Key"] = [run["fck"]]
            header["Upstash-Flow-Control-Value"] = ["parallelism=3, rate=10, period=1m"]
        if run["label"] or run["labels"]:
            header["Upstash-Label"] = [run["label"] or run["labels"][0]]
        if rng.random() < 0.2:
            header["Authorization"] = ["REDACTED:" + hashlib.sha256(
                run["id"].encode()).hexdigest()]
        if rng.random() < 0.15:
            header["Accept"] = ["application/json", "text/plain"]
        if rng.random() < 0.3:
            header["X-Request-Id"] = [_uuid(rng)]

        msg = {
            "dlqId": dlq_id,
            "messageId": "msg_" + _rand_str(rng, 40),
            "url": url,
            "method": _wchoice(rng, _METHODS, _METHOD_CUM),
        }
        if rng.random() >= 0.03:
            msg["header"] = header
        if binary_body:
            msg["body"] = ""
            msg["bodyBase64"] = base64.b64encode(_binary(rng)).decode("ascii")
        else:
            msg["body"] = _request_body(rng, kind, run["id"])
            if rng.random() < 0.05:
                msg["bodyBase64"] = ""
        msg["maxRetries"] = _pick(rng, (3, 3, 3, 3, 3, 0, 1, 2, 5, 10))
        msg["notBefore"] = 0 if rng.random() < 0.7 else created_at - _randint(rng, 1000, 600000)
        msg["createdAt"] = created_at
        msg["callerIP"] = run["ip"]
        msg["workflowRunId"] = run["id"]
        msg["workflowCreatedAt"] = run["createdAt"]
        msg["workflowUrl"] = wf_url

        status = _wchoice(rng, _STATUSES, _STATUS_CUM)
        rbody = _response_body(rng, status, step)
        if rng.random() >= 0.03:
            msg["responseStatus"] = status
        if rng.random() >= 0.03:
            msg["responseHeader"] = _response_header(rng, status, created_at, rbody)
        if rng.random() < 0.05:
            msg["responseBody"] = ""
            msg["responseBodyBase64"] = base64.b64encode(_binary(rng)).decode("ascii")
        else:
            msg["responseBody"] = rbody

        if run["callback"]:
            state = _wchoice(rng, FAILURE_STATES, _STATE_CUM)
            msg["failureCallback"] = _step_url(wf_url, "failure")
            if state in ("CALLBACK_SUCCESS", "CALLBACK_FAIL") and rng.random() < 0.5:
                ok = state == "CALLBACK_SUCCESS"
                msg["failureCallbackInfo"] = {
                    "state": state,
                    "responseStatus": 200 if ok else _pick(rng, (500, 502, 504)),
                    "responseBody": ('{"ok":true}' if ok else
                                     "failure handler crashed: ECONNRESET"),
                    "responseHeaders": {"Content-Type": [
                        "application/json" if ok else "text/plain"]},
                }
            msg["failureFunctionState"] = state
        if run["label"] is not None:
            msg["label"] = run["label"]
        if run["labels"] is not None:
            msg["labels"] = list(run["labels"])
        if run["fck"]:
            msg["flowControlKey"] = run["fck"]
        r = rng.random()
        if r < 0.06:
            msg["retryDelayExpression"] = "pow(2, retried) * 1000"
        elif r < 0.10:
            msg["x-future-field"] = {"version": 2, "tags": ["a", "b"],
                                     "nested": {"ok": True, "n": None}}
        out.append(msg)

    if large and n > 0:
        candidates = [k for k, m in enumerate(out) if m.get("responseBody")]
        picks = rng.sample(candidates, min(3, len(candidates)))
        for k in sorted(picks):
            m = out[k]
            m["responseBody"] = _large_text(k, m["createdAt"])
            if "responseHeader" in m:
                m["responseHeader"]["Content-Type"] = ["text/plain; charset=utf-8"]
    return out


# --------------------------------------------------------------------------
# Store


class _Record(object):
    """One entry as its sort key, filter fields and JSON bytes.  Built from
    a message dict, which it does not keep: later changes to that dict do
    not reach the fake."""

    __slots__ = ("key", "enc", "url", "run", "wca", "labels", "state", "ip",
                 "fck")

    def __init__(self, msg):
        created = msg.get("createdAt")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            created = 0
        self.key = (int(created), msg["dlqId"])
        s = lambda v: v if isinstance(v, str) else None
        self.url = s(msg.get("workflowUrl"))
        self.run = s(msg.get("workflowRunId"))
        wca = msg.get("workflowCreatedAt")
        self.wca = wca if type(wca) is int else None
        if "labels" in msg:
            labels = msg["labels"]
            labels = labels if isinstance(labels, list) else []
        else:
            labels = [msg.get("label")]
        self.labels = tuple(x for x in labels if isinstance(x, str))
        # the run's state: the top-level one if it is a string, else
        # failureCallbackInfo.state (API.md: "the first of the two")
        state = msg.get("failureFunctionState")
        if not isinstance(state, str):
            info = msg.get("failureCallbackInfo")
            state = info.get("state") if isinstance(info, dict) else None
        self.state = s(state)
        self.ip = s(msg.get("callerIP"))
        self.fck = s(msg.get("flowControlKey"))
        try:
            self.enc = json.dumps(msg, ensure_ascii=False,
                                  separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            self.enc = json.dumps(msg, separators=(",", ":")).encode("ascii")

    def message(self):
        return json.loads(self.enc)


def _check_message(m):
    if not isinstance(m, dict):
        raise ValueError("a message must be a JSON object")
    if not isinstance(m.get("dlqId"), str) or not m["dlqId"]:
        raise ValueError("a message needs a non-empty string dlqId")


class _HTTPError(Exception):
    def __init__(self, status, text):
        Exception.__init__(self, text)
        self.status = status
        self.text = text


# --------------------------------------------------------------------------
# Fault injection
#
# inject(fault, times, after, **params) queues faults; each GET on LIST_PATH
# takes the first queued fault that is due (see FakeAPI.inject).

_MIB = 1024 * 1024

# fault -> {param: default}.  Every fault also takes `times` and `after`.
FAULTS = {
    "latency": {"ms": 1000},
    "stall": {"seconds": 30},
    "stall_body": {"seconds": 30},
    "reset": {},
    "truncate": {},
    "close": {},
    "not_json": {},
    "html": {"status": 502},
    "status": {"code": 500, "message": None},
    "rate_limit": {"reset_in": 1, "retry_after": None, "limit": 100,
                   "kind": "burst", "reset_unit": "s", "reset": True},
    "repeat_cursor": {},
    "empty_page": {},
    "duplicate": {},
    "huge": {"bytes": 8 * _MIB},
    "malformed_entries": {},
}
# Faults that change the page of a successful list answer.
_PAGE_FAULTS = ("repeat_cursor", "empty_page", "duplicate", "huge",
                "malformed_entries")

# What a fault may be aimed at (inject(on=...)).
FAULT_TARGETS = (None, "list", "action")

NOT_JSON_BODY = b"this is not json {"
RATE_LIMIT_ERROR = "burst rate limit exceeded"
DAILY_RATE_LIMIT_ERROR = "daily rate limit exceeded"
RATE_LIMIT_KINDS = ("burst", "daily")
RESET_UNITS = ("s", "ms")

_NGINX_TITLES = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def _send_rate_limit(h, p, until):
    """A 429 of the rate_limit fault with params p, resetting at `until`
    (unix seconds)."""
    prefix = "Burst-RateLimit-" if p["kind"] == "burst" else "RateLimit-"
    extra = [(prefix + "Limit", str(p["limit"])), (prefix + "Remaining", "0")]
    if p["reset"]:
        scale = 1000 if p["reset_unit"] == "ms" else 1
        extra.append((prefix + "Reset", str(int(math.ceil(until * scale)))))
    if p["retry_after"] is not None:
        extra.append(("Retry-After", str(p["retry_after"])))
    msg = RATE_LIMIT_ERROR if p["kind"] == "burst" else DAILY_RATE_LIMIT_ERROR
    return h._send(429, {"error": msg}, extra=extra)


def _reason(code):
    return BaseHTTPRequestHandler.responses.get(code, ("Error",))[0]


def _nginx_page(code):
    title = _NGINX_TITLES.get(code) or "%d %s" % (code, _reason(code))
    return ("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n"
            "<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n" % (title, title)).encode("ascii")


def _number(name, v, lo=0, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError("%s must be a number" % name)
    if integer and v != int(v):
        raise ValueError("%s must be an integer" % name)
    if v < lo:
        raise ValueError("%s must be >= %s" % (name, lo))
    return int(v) if integer else v


def _check_fault(fault, params):
    """Validated params with defaults filled in; ValueError if bad."""
    if fault not in FAULTS:
        raise ValueError("unknown fault %r (one of %s)" % (fault, ", ".join(sorted(FAULTS))))
    spec = FAULTS[fault]
    for k in params:
        if k not in spec:
            raise ValueError("fault %s takes no parameter %r (takes: %s)"
                             % (fault, k, ", ".join(sorted(spec)) or "none"))
    p = dict(spec)
    p.update(params)
    for k in ("ms", "seconds", "reset_in"):
        if k in p:
            p[k] = _number(k, p[k])
    for k in ("limit",):
        if k in p:
            p[k] = _number(k, p[k], integer=True)
    if "bytes" in p:
        p["bytes"] = _number("bytes", p["bytes"], integer=True)
    for k in ("code", "status"):
        if k in p:
            p[k] = _number(k, p[k], integer=True)
            if not 100 <= p[k] <= 599:
                raise ValueError("%s must be an HTTP status (100-599)" % k)
    if p.get("message") is not None and not isinstance(p["message"], str):
        raise ValueError("message must be a string")
    if "kind" in p:
        p["kind"] = _choice("kind", p["kind"], RATE_LIMIT_KINDS)
        p["reset_unit"] = _choice("reset_unit", p["reset_unit"], RESET_UNITS)
        r = p["reset"]
        if isinstance(r, str) and r.lower() in ("true", "false"):
            r = r.lower() == "true"     # from a --fault SPEC
        if not isinstance(r, bool):
            raise ValueError("reset must be true or false")
        p["reset"] = r
    ra = p.get("retry_after")
    if ra is not None and not isinstance(ra, str):
        p["retry_after"] = _number("retry_after", ra)
        if p["retry_after"] == int(p["retry_after"]):
            p["retry_after"] = int(p["retry_after"])
    return p


def _hostile_entries(tag):
    """JSON texts of entries no client should trust (malformed_entries)."""
    wrong = {
        "dlqId": tag + "-types",
        "messageId": ["msg_not_a_string"],
        "url": 12,
        "method": None,
        "header": ["Content-Type", "application/json"],
        "body": {"not": "a string"},
        "bodyBase64": "!!not*base64%%",
        "maxRetries": "3",
        "notBefore": "soon",
        "createdAt": "1752829295505",
        "callerIP": False,
        "workflowRunId": 7,
        "workflowCreatedAt": "yesterday",
        "workflowUrl": ["https://x.example"],
        "responseStatus": {"code": 500},
        "responseHeader": "text/plain",
        "responseBody": 3.5,
        "responseBodyBase64": "@@@",
        "failureCallbackInfo": "oops",
        "failureFunctionState": 3,
        "label": ["payments"],
        "labels": "payments",
        "flowControlKey": {"k": 1},
    }
    nulls = {k: None for k in wrong}
    nulls["dlqId"] = tag + "-nulls"
    header_values = {"dlqId": tag + "-header-values", "createdAt": -1,
                     "header": {"X-One": "not-a-list", "X-Two": [1, None, {}]},
                     "labels": [None, 5, "ok"], "responseStatus": -7}
    texts = [
        "42",
        json.dumps({"messageId": "msg_" + tag, "createdAt": 1,
                    "body": "an entry without dlqId"}),
        json.dumps(wrong),
        "null",
        json.dumps(nulls),
        '"just a string"',
        "[]",
        json.dumps({"dlqId": None, "createdAt": 5}),
        json.dumps({"dlqId": 123456, "createdAt": 5}),
        json.dumps({"dlqId": "", "createdAt": 5}),
        json.dumps(header_values),
        "true",
    ]
    return [t.encode("utf-8") for t in texts]


# --------------------------------------------------------------------------
# HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, *args, **kw):
        ThreadingHTTPServer.__init__(self, *args, **kw)
        self.stopping = threading.Event()   # set by stop()/pause(): ends stalls
        self._abort = set()                 # sockets to close with a RST
        self._abort_lock = threading.Lock()

    def abort_later(self, sock):
        """Close `sock` with a RST (SO_LINGER {1, 0}) instead of a FIN when
        its handler is done."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._abort_lock:
            self._abort.add(sock)

    def shutdown_request(self, request):
        with self._abort_lock:
            abort = request in self._abort
            self._abort.discard(request)
        if abort:
            self.close_request(request)   # no shutdown(SHUT_WR): no FIN
        else:
            ThreadingHTTPServer.shutdown_request(self, request)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeapi/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._track(self.connection, True)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        finally:
            self.server.fake._track(self.connection, False)

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _head(self, status, length, ctype="application/json", extra=(),
              server="fakeapi/1"):
        reason = self.responses.get(status, ("",))[0]
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Date: %s\r\nServer: %s\r\n"
                % (status, reason, ctype, length, self.date_time_string(), server))
        for k, v in extra:
            head += "%s: %s\r\n" % (k, v)
        if self.close_connection:
            head += "Connection: close\r\n"
        return head.encode("latin-1") + b"\r\n"

    def _send(self, status, body, ctype="application/json", extra=(),
              server="fakeapi/1"):
        if not isinstance(body, bytes):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.wfile.write(self._head(status, len(body), ctype, extra, server) + body)
        self.wfile.flush()

    def _handle(self):
        try:
            self.server.fake._dispatch(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle


BULK_MAX = 50  # dlqIds per bulk action request
BULK_404_MODES = ("atomic", "partial")
BULK_404_PARTIAL_ERROR = "Some DLQ messages were not found"
_DELAY_RE = re.compile(r"([0-9]{1,9}(ms|s|m|h|d))+\Z")
_RETRIES_RE = re.compile(r"[0-9]{1,4}\Z")


def _split_list(value):
    """The values of one comma-separated array parameter value; empty
    pieces are dropped ("a,,b," -> ["a", "b"], "" -> [])."""
    return [p for p in value.split(",") if p]


def _state_patch(msg, state):
    """The patch that sets an entry's failure-callback state where the
    entry holds it: failureFunctionState if it is a string, and
    failureCallbackInfo.state if that is a string (both when both);
    failureFunctionState if neither."""
    top = isinstance(msg.get("failureFunctionState"), str)
    info = msg.get("failureCallbackInfo")
    nested = isinstance(info, dict) and isinstance(info.get("state"), str)
    fields = {}
    if top or not nested:
        fields["failureFunctionState"] = state
    if nested:
        info = dict(info)
        info["state"] = state
        fields["failureCallbackInfo"] = info
    return fields


def _action_route(method, path):
    """(verb, bulk, dlqId or None) for an action call, else None."""
    if method == "DELETE":
        if path == LIST_PATH:
            return ("delete", True, None)
        rest = path[len(LIST_PATH) + 1:] if path.startswith(LIST_PATH + "/") else ""
        if rest and "/" not in rest:
            return ("delete", False, unquote(rest))
        return None
    if method != "POST" or not path.startswith(LIST_PATH + "/"):
        return None
    verb, _, rest = path[len(LIST_PATH) + 1:].partition("/")
    if verb not in ("resume", "restart", "callback"):
        return None
    if not _:
        return (verb, True, None) if verb != "callback" else None
    if rest and "/" not in rest:
        return (verb, False, unquote(rest))
    return None


# The options of configure() and POST /_admin/config, in the order config()
# lists them.
CONFIG_KEYS = ("token", "latency_ms", "end_cursor", "exact_end", "resumed_leave",
               "state_field", "comma_lists", "unknown_params", "filter_names",
               "ignored_params", "bulk_404")


def _choice(name, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise ValueError("%s must be one of %s" % (name, ", ".join(choices)))
    return v


def _check_option(k, v):
    """The value of option k, checked (ValueError if bad)."""
    if k == "end_cursor":
        return _choice(k, v, _END_CURSOR_OPTIONS)
    if k in ("resumed_leave", "comma_lists") and not isinstance(v, bool):
        raise ValueError("%s must be true or false" % k)
    if k == "latency_ms" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
        raise ValueError("latency_ms must be a number >= 0")
    if k == "state_field":
        return _choice(k, v, STATE_FIELDS)
    if k == "unknown_params":
        return _choice(k, v, UNKNOWN_PARAMS)
    if k == "bulk_404":
        return _choice(k, v, BULK_404_MODES)
    if k == "filter_names":
        return _choice(k, v, FILTER_NAMES)
    if k == "ignored_params":
        if isinstance(v, str) or not isinstance(v, (list, tuple, set, frozenset)) \
                or not all(isinstance(x, str) and x for x in v):
            raise ValueError("ignored_params must be a list of parameter names")
        return sorted(set(v))
    return v


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FakeAPI(object):
    """The fake DLQ API.  See the module docstring."""

    def __init__(self, token="test-token", runs=200, seed=1, latency_ms=0,
                 end_cursor="rotate", host="127.0.0.1", port=0, now_ms=None,
                 large=None, exact_end=True, messages=None, resumed_leave=True,
                 state_field="top", comma_lists=True, unknown_params="reject",
                 filter_names="current", ignored_params=(), bulk_404="atomic"):
        """token: the accepted bearer token (None: accept anything).
        runs, seed, now_ms, large: passed to generate() for the initial data;
        messages: use these instead (runs/seed ignored).
        latency_ms: sleep before answering each /v2 request.
        end_cursor: "empty" | "null" | "absent" | "rotate" (the last page's
        cursor is "", null, or missing; rotate cycles through the three, one
        step per end-of-walk response, starting with "empty").
        exact_end: True: the page holding the last entry ends the walk;
        False: a full page always carries a cursor, so a walk may end with
        an empty page.
        resumed_leave: True: an entry resumed or restarted leaves the DLQ
        (whether the real API does is not documented); False: it stays.
        state_field: "top" | "nested" | "both": the shape of generated
        entries' failure-callback state (see generate()); used by reset(),
        so the initial data and every later reset() have it.  Messages
        given to messages=, add() or patch() are stored as given.
        comma_lists: True: a value of an array parameter (COMMA_PARAMS:
        the list filters and the dlqIds of bulk actions) is split on ","
        (empty pieces dropped), as the docs say; False: a value is one
        value, commas included.
        unknown_params: "reject" (a list parameter the fake does not know is
        a 400) | "ignore" (accepted, not applied).
        filter_names: "current" (failureFunctionState, callerIp) | "legacy"
        (failureCallbackState, callerIP; the current names are then unknown).
        ignored_params: names of list parameters accepted and not applied,
        whatever filter_names says (e.g. ["callerIp"]).
        bulk_404: a bulk resume/restart naming an unknown id: "atomic"
        (404, nothing done) | "partial" (the known ids are acted on and
        stay in the DLQ, then 404).
        Every option after `large` can be changed with configure()."""
        if host == "localhost":
            host = "127.0.0.1"
        if not _is_loopback(host):
            raise ValueError("fakeapi binds to loopback only, not %r" % host)
        if end_cursor not in _END_CURSOR_OPTIONS:
            raise ValueError("end_cursor must be one of %s" % (_END_CURSOR_OPTIONS,))
        self.host = host
        self.port = port
        self.token = token
        self.latency_ms = latency_ms
        self.end_cursor = end_cursor
        self.exact_end = exact_end
        self._lock = threading.RLock()
        self._by_id = {}
        self._keys = []       # ascending (createdAt, dlqId); API order is reversed
        self._log = collections.deque(maxlen=LOG_LIMIT)
        self._n_requests = 0
        self._n_list = 0
        self._end_counter = 0
        self._server = None
        self._thread = None
        self._paused = False
        self._life_lock = threading.RLock()
        self._conns = set()
        self._conns_lock = threading.Lock()
        self._faults = []      # dicts: fault, params, start, times (None: forever)
        self._list_seq = 0     # GET LIST_PATH requests so far (never reset)
        # requests that may take a fault, by target (never reset)
        self._seq = {None: 0, "list": 0, "action": 0}
        self.resumed_leave = resumed_leave
        self.state_field = _check_option("state_field", state_field)
        self.comma_lists = _check_option("comma_lists", comma_lists)
        self.unknown_params = _check_option("unknown_params", unknown_params)
        self.filter_names = _check_option("filter_names", filter_names)
        self.ignored_params = _check_option("ignored_params", ignored_params)
        self.bulk_404 = _check_option("bulk_404", bulk_404)
        self._actions = collections.deque(maxlen=LOG_LIMIT)
        self._n_unscoped = 0
        self._run_counter = 0
        self._n_faulted = 0
        self._quota = None          # a spent daily quota: {"params", "until"}
        self._n_quota_refused = 0
        if messages is not None:
            self._load(messages)
        else:
            self.reset(runs, seed, now_ms=now_ms, large=large)

    # -- lifecycle -----------------------------------------------------------

    def start(self):
        """Bind and serve in a daemon thread.  Returns self.  After a stop()
        or pause() it listens again on the same port."""
        with self._life_lock:
            if self._server is not None:
                return self
            cls = _Server6 if ":" in self.host else _Server
            srv = cls((self.host, self.port), _Handler)
            srv.fake = self
            self._server = srv
            self._paused = False
            self.port = srv.server_address[1]
            self._thread = threading.Thread(target=srv.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name="fakeapi", daemon=True)
            self._thread.start()
            return self

    def stop(self):
        """Stop serving and close every open connection (stalled ones too)."""
        with self._life_lock:
            self._paused = False
            srv, self._server = self._server, None
            if srv is None:
                return
            srv.stopping.set()
            srv.shutdown()
            srv.server_close()
            with self._conns_lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if self._thread is not None:
                self._thread.join(5)
                self._thread = None

    def pause(self):
        """Close the listening socket and every open connection: connecting
        is refused until resume().  The data, faults and log are kept."""
        with self._life_lock:
            if self._server is not None:
                self.stop()
                self._paused = True

    def resume(self):
        """Listen again on the same port after pause().  Returns self."""
        return self.start()

    @property
    def paused(self):
        return self._paused

    @property
    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)

    def url(self, path):
        return self.base_url + path

    def _track(self, conn, add):
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- data ----------------------------------------------------------------

    def _load(self, msgs):
        for m in msgs:
            _check_message(m)
        by_id = {}
        with _NoGC():
            for m in msgs:
                by_id[m["dlqId"]] = _Record(m)
        with self._lock:
            self._by_id = by_id
            self._keys = sorted(r.key for r in by_id.values())
            self._end_counter = 0

    def reset(self, runs=None, seed=None, now_ms=None, large=None):
        """Replace all entries with generate(runs, seed, now_ms, large).
        The request log is kept (see clear_requests)."""
        runs = 200 if runs is None else int(runs)
        seed = 1 if seed is None else seed
        msgs = generate(runs, seed, now_ms=now_ms, large=large,
                        state_field=self.state_field)
        with _NoGC():
            by_id = {m["dlqId"]: _Record(m) for m in msgs}
        with self._lock:
            self._by_id = by_id
            self._keys = sorted(r.key for r in by_id.values())
            self._end_counter = 0

    def configure(self, **opts):
        """Change options at run time: token, latency_ms, end_cursor,
        exact_end, resumed_leave, state_field (from the next reset()).
        All are checked before any is changed (ValueError)."""
        checked = {}
        for k, v in opts.items():
            if k not in CONFIG_KEYS:
                raise ValueError("unknown option: %s" % k)
            checked[k] = _check_option(k, v)
        with self._lock:
            for k, v in checked.items():
                setattr(self, k, v)
                if k == "end_cursor":
                    self._end_counter = 0

    def config(self):
        """The options configure() takes, with their current values (what
        POST /_admin/config answers)."""
        with self._lock:
            out = {k: getattr(self, k) for k in CONFIG_KEYS}
            out["ignored_params"] = list(out["ignored_params"])
            return out

    # -- faults --------------------------------------------------------------

    def inject(self, fault, times=1, after=0, on=None, **params):
        """Queue `times` copies of `fault` (times=None: every list request
        until clear_faults()).  Each GET LIST_PATH request takes the first
        queued fault that is due, in FIFO order; a fault with after=K is due
        from the (K+1)-th list request counted from its injection, so
        inject("status", after=2) hits page 3 of a walk that starts now.
        on: None (list GETs and action calls alike; `after` then counts
        both), "list" (list GETs only) or "action" (action calls only;
        `after` counts action calls).  Page faults only ever hit list GETs.
        Params and their defaults are in FAULTS.  Returns faults()."""
        if times is not None:
            times = _number("times", times, integer=True)
        after = _number("after", after, integer=True)
        if on not in FAULT_TARGETS:
            raise ValueError("on must be one of %s" % (FAULT_TARGETS,))
        if on == "action" and fault in _PAGE_FAULTS:
            raise ValueError("fault %s changes list pages: not for actions" % fault)
        p = _check_fault(fault, params)
        with self._lock:
            if times != 0:
                self._faults.append({"fault": fault, "params": p, "times": times,
                                     "on": on,
                                     "start": self._seq[on] + after})
            return self._faults_locked()

    def clear_faults(self):
        """Drop every queued fault, and end a spent daily quota."""
        with self._lock:
            self._faults = []
            self._quota = None

    def faults(self):
        """The queue, first due first: dicts with fault, times (copies left,
        None: forever), after (list requests still to wait), params."""
        with self._lock:
            return self._faults_locked()

    def _faults_locked(self):
        out = []
        for f in self._faults:
            d = {"fault": f["fault"], "times": f["times"],
                 "after": max(0, f["start"] - self._seq[f["on"]])}
            if f["on"] is not None:
                d["on"] = f["on"]
            d.update(f["params"])
            out.append(d)
        return out

    def _take_fault(self, kind="list"):
        """Called once per GET LIST_PATH (kind "list") and once per action
        call (kind "action"): (fault, params, n) or None."""
        with self._lock:
            seqs = dict(self._seq)
            self._seq[kind] += 1
            self._seq[None] += 1
            self._list_seq = self._seq["list"]
            for i, f in enumerate(self._faults):
                if f["on"] not in (None, kind):
                    continue
                if kind != "list" and f["fault"] in _PAGE_FAULTS:
                    continue
                if f["start"] <= seqs[f["on"]]:
                    if f["times"] is not None:
                        f["times"] -= 1
                        if f["times"] <= 0:
                            del self._faults[i]
                    self._n_faulted += 1
                    return f["fault"], dict(f["params"]), self._n_faulted
        return None

    def _put(self, rec):
        old = self._by_id.get(rec.key[1])
        if old is not None:
            i = bisect.bisect_left(self._keys, old.key)
            del self._keys[i]
        self._by_id[rec.key[1]] = rec
        bisect.insort(self._keys, rec.key)
        return old is not None

    def add(self, msg_or_list):
        """Add one message or a list; an existing dlqId is replaced.
        Returns (added, replaced)."""
        msgs = msg_or_list if isinstance(msg_or_list, list) else [msg_or_list]
        for m in msgs:
            _check_message(m)
        with _NoGC():
            recs = [_Record(m) for m in msgs]
        added = replaced = 0
        with self._lock:
            if len(recs) > 1000:
                for r in recs:
                    if r.key[1] in self._by_id:
                        replaced += 1
                    else:
                        added += 1
                    self._by_id[r.key[1]] = r
                self._keys = sorted(r.key for r in self._by_id.values())
            else:
                for r in recs:
                    if self._put(r):
                        replaced += 1
                    else:
                        added += 1
        return added, replaced

    def remove(self, dlq_id):
        """Remove one entry.  Returns False if it was not there."""
        with self._lock:
            rec = self._by_id.pop(dlq_id, None)
            if rec is None:
                return False
            i = bisect.bisect_left(self._keys, rec.key)
            del self._keys[i]
            return True

    def patch(self, dlq_id, fields):
        """Merge `fields` into an entry; a None value removes the field.
        Returns the new message; KeyError if unknown, ValueError if the
        patch would change dlqId."""
        if not isinstance(fields, dict):
            raise ValueError("a patch must be a JSON object")
        if "dlqId" in fields and fields["dlqId"] != dlq_id:
            raise ValueError("dlqId cannot be changed")
        with self._lock:
            rec = self._by_id.get(dlq_id)
            if rec is None:
                raise KeyError(dlq_id)
            msg = rec.message()
            for k, v in fields.items():
                if v is None:
                    msg.pop(k, None)
                else:
                    msg[k] = v
            try:
                new = _Record(msg)
            except (TypeError, ValueError) as e:
                raise ValueError("patch is not JSON: %s" % e)
            self._put(new)
            return new.message()

    def update(self, dlq_id, **fields):
        """patch() with keyword arguments (use patch() for keys that are not
        identifiers, e.g. "x-future-field")."""
        return self.patch(dlq_id, fields)

    def get(self, dlq_id):
        """A copy of one entry, or None."""
        with self._lock:
            rec = self._by_id.get(dlq_id)
            return None if rec is None else json.loads(rec.enc)

    def dlq_ids(self):
        """All dlqIds in API order (newest first)."""
        with self._lock:
            return [k[1] for k in reversed(self._keys)]

    def messages(self):
        """Copies of all entries in API order (newest first)."""
        with self._lock:
            encs = [self._by_id[k[1]].enc for k in reversed(self._keys)]
        with _NoGC():
            return [json.loads(e) for e in encs]

    def __len__(self):
        return len(self._by_id)

    # -- request log ---------------------------------------------------------

    def requests(self):
        """The log of /v2 (and other non-admin) requests, oldest first: dicts
        with method, path, raw_query, query (list of (name, value)), auth_ok,
        auth ("bearer", "query" or None), query_token (True if a
        qstash_token parameter was sent), status, headers (without
        Authorization), time."""
        with self._lock:
            out = []
            for e in self._log:
                e = dict(e)
                e["query"] = list(e["query"])
                e["headers"] = dict(e["headers"])
                out.append(e)
            return out

    def clear_requests(self):
        with self._lock:
            self._log.clear()
            self._n_requests = 0
            self._n_list = 0
            self._n_quota_refused = 0

    def stats(self):
        """messages, requests, list_requests (since the start or
        clear_requests()); quota_refused: requests refused by a spent
        daily quota (not counting the one that spent it) since then;
        quota_until: when a spent daily quota ends (unix seconds), or
        None."""
        with self._lock:
            q = self._quota
            until = q["until"] if q is not None and time.time() < q["until"] else None
            return {"messages": len(self._by_id), "requests": self._n_requests,
                    "list_requests": self._n_list,
                    "quota_refused": self._n_quota_refused,
                    "quota_until": until}

    # -- list ----------------------------------------------------------------

    def _next_end_mode(self):
        if self.end_cursor != "rotate":
            return self.end_cursor
        mode = END_CURSOR_MODES[self._end_counter % 3]
        self._end_counter += 1
        return mode

    def list_page(self, pairs, fault=None, entry=None):
        """Answer a list request given its query pairs.  Returns the response
        body bytes; raises _HTTPError for a 400.  fault: None or a
        (name, params, n) of one of the _PAGE_FAULTS.  entry: the request's
        log entry, given "not_applied" when a parameter was accepted but
        not applied."""
        with self._lock:
            comma = self.comma_lists
            known = PARAMS_BY_FILTER_NAMES[self.filter_names]
            reject = self.unknown_params == "reject"
            ignored = frozenset(self.ignored_params)
        values = {}
        not_applied = []
        for k, v in pairs:
            if k == "qstash_token":
                continue
            if k in ignored or k not in known:
                if k not in ignored and reject:
                    raise _HTTPError(400, "unknown parameter: %s" % k)
                if k not in not_applied:
                    not_applied.append(k)
                continue
            if k in SINGLE_PARAMS and k in values:
                raise _HTTPError(400, "parameter given more than once: %s" % k)
            if comma and k in COMMA_PARAMS:
                values.setdefault(k, []).extend(_split_list(v))
            else:
                values.setdefault(k, []).append(v)
        # an array parameter whose every value was empty names nothing:
        # no filter (with comma_lists only; else "" is a value)
        values = {k: v for k, v in values.items() if v}
        if entry is not None and not_applied:
            entry["not_applied"] = not_applied

        count = MAX_COUNT
        if "count" in values:
            v = values["count"][0]
            if not _COUNT_RE.match(v) or not 1 <= int(v) <= MAX_COUNT:
                raise _HTTPError(400, "count must be an integer between 1 and %d" % MAX_COUNT)
            count = int(v)
        ints = {}
        for k in INT_PARAMS:
            if k in values:
                v = values[k][0]
                if not _INT_RE.match(v):
                    raise _HTTPError(400, "%s must be an integer (unix ms)" % k)
                ints[k] = int(v)
        cursor_key = None
        cur = values.get("cursor", [""])[0]
        if cur != "":
            try:
                cursor_key = decode_cursor(cur)
            except ValueError:
                raise _HTTPError(400, "invalid cursor")

        checks = []
        for param, attr in (("workflowUrl", "url"), ("workflowRunId", "run"),
                            ("failureFunctionState", "state"),
                            ("failureCallbackState", "state"),
                            ("callerIp", "ip"), ("callerIP", "ip"),
                            ("flowControlKey", "fck")):
            if param in values:
                checks.append((attr, frozenset(values[param])))
        wca = ints.get("workflowCreatedAt")
        labels = frozenset(values["label"]) if "label" in values else None

        def match(rec):
            for attr, vals in checks:
                if getattr(rec, attr) not in vals:
                    return False
            if wca is not None and rec.wca != wca:
                return False
            if labels is not None:
                for lab in rec.labels:
                    if lab in labels:
                        return True
                return False
            return True

        fname = fault[0] if fault is not None else None
        if fname == "empty_page":
            # same position, spelled differently: the walk must go on
            pos = cursor_key if cursor_key is not None else _START_KEY
            c = _alt_cursor(pos[0], pos[1], avoid=cur)
            return b'{"cursor":' + json.dumps(c).encode("ascii") + b',"messages":[]}'

        with self._lock:
            keys = self._keys
            top = len(keys)
            if "toDate" in ints:
                top = bisect.bisect_left(keys, (ints["toDate"] + 1, ""))
            hi = top
            if cursor_key is not None:
                hi = min(hi, bisect.bisect_left(keys, cursor_key))
            lo = 0
            if "fromDate" in ints:
                lo = bisect.bisect_left(keys, (ints["fromDate"], ""))
            by_id = self._by_id
            page = []
            more = False
            i = hi - 1
            while i >= lo:
                rec = by_id[keys[i][1]]
                i -= 1
                if not match(rec):
                    continue
                if len(page) == count:
                    more = True
                    break
                page.append(rec)
                if len(page) == count and not self.exact_end:
                    more = True
                    break
            encs = [r.enc for r in page]
            if fname == "repeat_cursor":
                cursor_json = json.dumps(cur or FIRST_PAGE_CURSOR).encode("ascii")
            elif more:
                last = page[-1].key
                cursor_json = json.dumps(encode_cursor(last[0], last[1])).encode("ascii")
            else:
                mode = self._next_end_mode()
                cursor_json = {"empty": b'""', "null": b"null", "absent": None}[mode]
            if fname == "duplicate":
                # the entry just before the position (the last one of the
                # previous page); on a first page, the page's first entry
                dup = None
                if cursor_key is not None:
                    j = bisect.bisect_left(keys, cursor_key)
                    while j < top and j < len(keys):
                        rec = by_id[keys[j][1]]
                        if j >= lo and match(rec):
                            dup = rec.enc
                            break
                        j += 1
                if dup is None and encs:
                    dup = encs[0]
                if dup is not None:
                    encs.insert(0, dup)
        if fname == "malformed_entries":
            bad = _hostile_entries("malformed-%d" % fault[2])
            third = len(bad) // 3
            mid = len(encs) // 2
            encs = bad[:third] + encs[:mid] + bad[third:2 * third] + encs[mid:] + bad[2 * third:]
        parts = [b"{"]
        if cursor_json is not None:
            parts.append(b'"cursor":' + cursor_json + b",")
        if fname == "huge":
            parts.append(b'"x-padding":"' + b"x" * fault[1]["bytes"] + b'",')
        parts.append(b'"messages":[')
        parts.append(b",".join(encs))
        parts.append(b"]}")
        return b"".join(parts)

    # -- HTTP dispatch -------------------------------------------------------

    def _dispatch(self, h):
        split = urlsplit(h.path)
        path = split.path
        if path == "/_admin" or path.startswith("/_admin/"):
            return self._admin(h, path)
        try:
            h._read_body()
        except (ValueError, OSError):
            h.close_connection = True
            return h._send(400, {"error": "bad request body"})
        route = _action_route(h.command, path)
        is_list = path == LIST_PATH and route is None
        quota = self._active_quota()
        if quota is not None:
            fault = None    # refused by the daily quota: no fault is taken
        elif route is not None:
            fault = self._take_fault("action")
        elif is_list and h.command == "GET":
            fault = self._take_fault("list")
        else:
            fault = None
        lat = self.latency_ms
        if lat:
            time.sleep(lat / 1000.0)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        query_token = None
        for k, v in pairs:
            if k == "qstash_token":
                query_token = v
        authz = h.headers.get("Authorization")
        token = self.token
        auth = None
        if authz is not None:
            scheme, _, cred = authz.strip().partition(" ")
            if scheme.lower() == "bearer" and (token is None or cred.strip() == token):
                auth = "bearer"
        if auth is None and query_token is not None and (token is None or query_token == token):
            auth = "query"
        if auth is None and token is None:
            auth = "none"
        entry = {
            "method": h.command,
            "path": path,
            "raw_query": split.query,
            "query": [tuple(p) for p in pairs],
            "auth_ok": auth is not None,
            "auth": auth if auth != "none" else None,
            "query_token": query_token is not None,
            "headers": {k: v for k, v in h.headers.items()
                        if k.lower() != "authorization"},
            "time": time.time(),
        }
        if route is not None:
            self._action_entry(entry, route, pairs)
        if quota is not None:
            entry["fault"] = "rate_limit"
            entry["fault_params"] = dict(quota["params"])
            entry["quota_refused"] = True
            with self._lock:
                self._n_quota_refused += 1
            self._log_entry(entry, 429, is_list)
            return _send_rate_limit(h, quota["params"], quota["until"])
        if fault is not None:
            entry["fault"] = fault[0]
            entry["fault_params"] = dict(fault[1])
            return self._faulted(h, fault, entry, path, pairs, auth is not None)
        status, body = self._api(h, path, pairs, auth is not None, None,
                                 entry if route is not None else None, entry)
        self._log_entry(entry, status, is_list)
        h._send(status, body)

    def _active_quota(self):
        """The daily quota a rate_limit kind=daily fault spent, while it
        lasts ({"params", "until"}), else None."""
        with self._lock:
            q = self._quota
            if q is not None and time.time() >= q["until"]:
                q = self._quota = None
            return q

    def _log_entry(self, entry, status, is_list):
        entry["status"] = status
        with self._lock:
            self._log.append(entry)
            self._n_requests += 1
            if is_list:
                self._n_list += 1
            if "action" in entry:
                self._actions.append(entry)

    # -- actions -------------------------------------------------------------

    def actions(self):
        """Every action call (delete, resume, restart, callback; single and
        bulk), oldest first, the last LOG_LIMIT: the request log's dicts
        (method, path, raw_query, query, headers without Authorization,
        auth_ok, status, time, fault when faulted) plus action (the verb),
        bulk (bool), dlqIds (the ids named: the path's one, or the dlqIds
        parameters, as read: split on commas with comma_lists), unscoped (a
        bulk call naming no id), acted (the ids this call actually deleted,
        resumed, restarted or called back, in order; [] when it did
        nothing: refused, faulted before acting, 404, 400) and response
        (the JSON answer as sent, None when there was none or it was not
        JSON)."""
        with self._lock:
            out = []
            for e in self._actions:
                e = dict(e)
                e["query"] = list(e["query"])
                e["headers"] = dict(e["headers"])
                e["dlqIds"] = list(e["dlqIds"])
                e["acted"] = list(e["acted"])
                out.append(e)
            return out

    def acted_counts(self, verb=None):
        """{dlqId: how many times an action call acted on it} over the
        action log (actions()), for every verb or only `verb` ("delete",
        "resume", "restart", "callback"): a test can check that no id was
        acted on twice."""
        with self._lock:
            counts = collections.Counter(
                i for e in self._actions if verb is None or e["action"] == verb
                for i in e["acted"])
        return dict(counts)

    def unscoped(self):
        """The number of bulk action calls that named no dlqIds since the
        start or clear_actions().  Such a call acts on the whole DLQ (and
        the fake does so, as the real API would): dlqfs must never send
        one.  The calls themselves are in actions() with unscoped=True."""
        with self._lock:
            return self._n_unscoped

    def clear_actions(self):
        """Empty the action log and zero the unscoped counter."""
        with self._lock:
            self._actions.clear()
            self._n_unscoped = 0

    def _action_entry(self, entry, route, pairs):
        verb, bulk, dlq_id = route
        if bulk:
            ids = [v for k, v in pairs if k == "dlqIds"]
            if self.comma_lists:
                ids = [i for v in ids for i in _split_list(v)]
        else:
            ids = [dlq_id]
        entry["action"] = verb
        entry["bulk"] = bulk
        entry["dlqIds"] = ids
        entry["unscoped"] = bulk and not any(ids)
        entry["response"] = None
        entry["acted"] = []
        if entry["unscoped"]:
            with self._lock:
                self._n_unscoped += 1

    def _new_run(self):
        self._run_counter += 1
        digest = hashlib.sha256(b"run-%d" % self._run_counter).digest()
        rid = base64.b64encode(digest).translate(_B64_TO_ALNUM)[:21].decode("ascii")
        return {"workflowRunId": "wfr_" + rid,
                "workflowCreatedAt": int(time.time() * 1000)}

    def _act(self, entry, headers):
        """Carry out an authorised action call: (status, body)."""
        verb, bulk, ids = entry["action"], entry["bulk"], entry["dlqIds"]
        if verb in ("resume", "restart"):
            r = headers.get("Upstash-Retries")
            if r is not None and not _RETRIES_RE.match(r.strip()):
                return 400, {"error": "invalid Upstash-Retries header: %s" % r}
            d = headers.get("Upstash-Delay")
            if d is not None and not _DELAY_RE.match(d.strip()):
                return 400, {"error": "invalid Upstash-Delay header: %s" % d}
        with self._lock:
            if bulk:
                if entry["unscoped"]:
                    targets = self.dlq_ids()   # the whole DLQ, as the API
                else:
                    targets = list(dict.fromkeys(ids))
                    if len(targets) > BULK_MAX:
                        return 400, {"error": "at most %d dlqIds per request"
                                     % BULK_MAX}
                if verb == "delete":
                    entry["acted"] = [i for i in targets if self.remove(i)]
                    return 200, {"deleted": len(entry["acted"])}
                missing = [i for i in targets if i not in self._by_id]
                if missing and self.bulk_404 == "partial":
                    # the known ids are acted on and stay in the DLQ
                    entry["acted"] = [i for i in targets if i in self._by_id]
                    for i in entry["acted"]:
                        self._new_run()
                    return 404, {"error": BULK_404_PARTIAL_ERROR}
                if missing:
                    return 404, {"error": "dlq message not found: %s" % missing[0]}
                runs = []
                for i in targets:
                    runs.append(self._new_run())
                    if self.resumed_leave:
                        self.remove(i)
                entry["acted"] = targets
                return 200, {"workflowRuns": runs, "cursor": ""}
            dlq_id = ids[0]
            rec = self._by_id.get(dlq_id)
            if rec is None:
                return 404, {"error": "dlq message not found: %s" % dlq_id}
            if verb == "delete":
                self.remove(dlq_id)
                entry["acted"] = [dlq_id]
                return 200, b""
            if verb == "callback":
                if rec.state != "CALLBACK_FAIL":
                    return 400, {"error": "failure callback can only be retried "
                                 "in CALLBACK_FAIL state, not %s" % rec.state}
                self.patch(dlq_id, _state_patch(rec.message(), "CALLBACK_INPROGRESS"))
                entry["acted"] = [dlq_id]
                return 200, self._new_run()
            run = self._new_run()
            if self.resumed_leave:
                self.remove(dlq_id)
            entry["acted"] = [dlq_id]
            return 200, run

    def _faulted(self, h, fault, entry, path, pairs, auth_ok):
        """Answer a GET LIST_PATH request that suffers `fault`."""
        name, p, n = fault
        stopping = h.server.stopping
        is_list = "action" not in entry
        if name in ("stall", "close"):
            # nothing at all is sent; then the connection is closed (FIN).
            # An action is carried out first: its answer is what is lost.
            if not is_list:
                self._api(h, path, pairs, auth_ok, None, entry)
            self._log_entry(entry, None, is_list)
            h.close_connection = True
            if name == "stall":
                stopping.wait(p["seconds"])
            return
        if name == "not_json":
            if not is_list:
                self._api(h, path, pairs, auth_ok, None, entry)
            self._log_entry(entry, 200, is_list)
            return h._send(200, NOT_JSON_BODY)
        if name == "html":
            code = p["status"]
            self._log_entry(entry, code, is_list)
            return h._send(code, _nginx_page(code), ctype="text/html",
                           server="nginx")
        if name == "status":
            code = p["code"]
            msg = p["message"]
            if msg is None:
                msg = _reason(code).lower()
            self._log_entry(entry, code, is_list)
            return h._send(code, {"error": msg})
        if name == "rate_limit":
            until = time.time() + p["reset_in"]
            if p["kind"] == "daily":
                # the quota is spent: every request until `until` is refused
                with self._lock:
                    self._quota = {"params": dict(p), "until": until}
            self._log_entry(entry, 429, is_list)
            return _send_rate_limit(h, p, until)
        if name == "latency":
            stopping.wait(p["ms"] / 1000.0)
            fault = None
        status, body = self._api(h, path, pairs, auth_ok, fault,
                                 None if is_list else entry, entry)
        self._log_entry(entry, status, is_list)
        if name not in ("stall_body", "reset", "truncate"):
            return h._send(status, body)
        # the status line, all headers (full Content-Length), half the body;
        # an empty body (a single delete): half the head
        if not isinstance(body, bytes):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        head = h._head(status, len(body))
        h.close_connection = True
        if body:
            h.wfile.write(head + body[:len(body) // 2])
        else:
            h.wfile.write(head[:len(head) // 2])
        h.wfile.flush()
        if name == "stall_body":
            stopping.wait(p["seconds"])
        elif name == "reset":
            h.server.abort_later(h.connection)
        # truncate: the handler ends; the connection is closed with a FIN

    def _api(self, h, path, pairs, auth_ok, fault=None, action=None, log=None):
        prefix = LIST_PATH + "/"
        if path != LIST_PATH and not path.startswith(prefix):
            return 404, {"error": "not found"}
        if not auth_ok:
            return 401, {"error": "unauthorized: missing or invalid token"}
        if action is not None:
            status, body = self._act(action, h.headers)
            action["response"] = body if isinstance(body, dict) else None
            return status, body
        if h.command != "GET":
            return 405, {"error": "method not allowed"}
        if path == LIST_PATH:
            if fault is not None and fault[0] not in _PAGE_FAULTS:
                fault = None
            try:
                return 200, self.list_page(pairs, fault, log)
            except _HTTPError as e:
                return e.status, {"error": e.text}
        rest = path[len(prefix):]
        if not rest or "/" in rest:
            return 404, {"error": "not found"}
        dlq_id = unquote(rest)
        with self._lock:
            rec = self._by_id.get(dlq_id)
            body = rec.enc if rec is not None else None
        if body is None:
            return 404, {"error": "dlq message not found: %s" % dlq_id}
        return 200, body

    def _admin(self, h, path):
        try:
            raw = h._read_body()
        except (ValueError, OSError):
            h.close_connection = True
            return h._send(400, {"error": "bad request body"})
        m = h.command
        try:
            data = None
            if m in ("POST", "PATCH") and raw.strip():
                try:
                    data = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeError):
                    raise _HTTPError(400, "body is not JSON")
            if path == "/_admin/messages":
                if m == "GET":
                    return h._send(200, b"[" + b",".join(self._encoded_all()) + b"]")
                if m == "POST":
                    try:
                        added, replaced = self.add(data)
                    except ValueError as e:
                        raise _HTTPError(400, str(e))
                    return h._send(200, {"added": added, "replaced": replaced,
                                         "messages": len(self._by_id)})
                raise _HTTPError(405, "method not allowed")
            if path.startswith("/_admin/messages/"):
                dlq_id = unquote(path[len("/_admin/messages/"):])
                if m == "GET":
                    msg = self.get(dlq_id)
                    if msg is None:
                        raise _HTTPError(404, "unknown dlqId: %s" % dlq_id)
                    return h._send(200, msg)
                if m == "DELETE":
                    if not self.remove(dlq_id):
                        raise _HTTPError(404, "unknown dlqId: %s" % dlq_id)
                    return h._send(200, {"deleted": 1})
                if m == "PATCH":
                    try:
                        return h._send(200, self.patch(dlq_id, data))
                    except KeyError:
                        raise _HTTPError(404, "unknown dlqId: %s" % dlq_id)
                    except ValueError as e:
                        raise _HTTPError(400, str(e))
                raise _HTTPError(405, "method not allowed")
            if path == "/_admin/reset" and m == "POST":
                data = data or {}
                if not isinstance(data, dict):
                    raise _HTTPError(400, "reset takes a JSON object")
                try:
                    self.reset(data.get("runs"), data.get("seed"),
                               now_ms=data.get("now_ms"), large=data.get("large"))
                except (TypeError, ValueError) as e:
                    raise _HTTPError(400, str(e))
                return h._send(200, self.stats())
            if path == "/_admin/config" and m == "POST":
                if not isinstance(data, dict):
                    raise _HTTPError(400, "config takes a JSON object")
                try:
                    self.configure(**data)
                except ValueError as e:
                    raise _HTTPError(400, str(e))
                return h._send(200, self.config())
            if path == "/_admin/faults":
                if m == "GET":
                    return h._send(200, self.faults())
                if m == "DELETE":
                    self.clear_faults()
                    return h._send(200, [])
                if m == "POST":
                    if not isinstance(data, dict) or not isinstance(data.get("fault"), str):
                        raise _HTTPError(400, 'faults takes {"fault": NAME, "times": N, ...}')
                    params = dict(data)
                    name = params.pop("fault")
                    try:
                        return h._send(200, self.inject(name, **params))
                    except (TypeError, ValueError) as e:
                        raise _HTTPError(400, str(e))
                raise _HTTPError(405, "method not allowed")
            if path == "/_admin/pause" and m == "POST":
                secs = (data or {}).get("seconds") if isinstance(data, dict) else None
                try:
                    secs = _number("seconds", secs)
                except ValueError as e:
                    raise _HTTPError(400, str(e))
                if not 0 < secs <= 3600:
                    raise _HTTPError(400, "seconds must be in (0, 3600]")
                h.close_connection = True
                h._send(200, {"paused": secs})
                threading.Thread(target=self._pause_for, args=(secs,),
                                 name="fakeapi-pause", daemon=True).start()
                return
            if path == "/_admin/stats" and m == "GET":
                return h._send(200, self.stats())
            if path == "/_admin/requests" and m == "GET":
                return h._send(200, self.requests())
            if path == "/_admin/actions" and m == "GET":
                return h._send(200, {"actions": self.actions(),
                                     "unscoped": self.unscoped(),
                                     "acted_counts": self.acted_counts()})
            if path == "/_admin/clear-actions" and m == "POST":
                self.clear_actions()
                return h._send(200, {"cleared": True})
            if path == "/_admin/clear-requests" and m == "POST":
                self.clear_requests()
                return h._send(200, {"cleared": True})
            raise _HTTPError(404, "not found")
        except _HTTPError as e:
            return h._send(e.status, {"error": e.text})

    def _pause_for(self, secs):
        time.sleep(0.05)  # let the admin answer leave first
        with self._life_lock:
            if self._server is None:
                return
            self.pause()
        time.sleep(secs)
        with self._life_lock:
            if self._paused:
                self.resume()

    def _encoded_all(self):
        with self._lock:
            return [self._by_id[k[1]].enc for k in reversed(self._keys)]


# --------------------------------------------------------------------------
# Command line


def _write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def parse_fault_spec(spec):
    """"status:code=500,times=3" -> ("status", {"code": 500, "times": 3}).
    Values are ints, floats, none/null/forever (None) or strings."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    params = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        k, eq, v = item.partition("=")
        k, v = k.strip(), v.strip()
        if not eq or not k:
            raise ValueError("bad fault parameter %r (want name=value)" % item)
        if v.lower() in ("none", "null", "forever", "inf"):
            val = None
        else:
            try:
                val = int(v)
            except ValueError:
                try:
                    val = float(v)
                except ValueError:
                    val = v
        params[k] = val
    return name, params


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="fakeapi.py",
        description="Fake Upstash Workflow DLQ API (loopback only).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--token")
    p.add_argument("--runs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--end-cursor", choices=_END_CURSOR_OPTIONS, default="rotate")
    p.add_argument("--now-ms", help="generator's 'now' in unix ms, or 'now' "
                   "(default: %d, 2026-11-20T00:00:00Z)" % REFERENCE_NOW_MS)
    p.add_argument("--no-large", action="store_true",
                   help="no ~1 MB response bodies")
    p.add_argument("--state-field", choices=STATE_FIELDS, default="top",
                   help="where generated entries carry the failure-callback "
                   "state: top-level failureFunctionState (default), "
                   "failureCallbackInfo.state (nested) or both")
    p.add_argument("--no-comma-lists", action="store_true",
                   help="a comma in an array parameter's value is part of "
                   "one value (default: it separates values)")
    p.add_argument("--unknown-params", choices=UNKNOWN_PARAMS, default="reject",
                   help="a list parameter the fake does not know: 400 "
                   "(reject, default) or accepted and not applied (ignore)")
    p.add_argument("--filter-names", choices=FILTER_NAMES, default="current",
                   help="current: failureFunctionState and callerIp filters "
                   "(default); legacy: failureCallbackState and callerIP")
    p.add_argument("--ignore-param", action="append", default=[], metavar="NAME",
                   help="accept this list parameter and do not apply it "
                   "(repeatable)")
    p.add_argument("--bulk-404", choices=BULK_404_MODES, default="atomic",
                   help="a bulk resume/restart naming an unknown id: 404 and "
                   "nothing done (atomic, default), or the known ids acted on "
                   "and kept, then 404 (partial)")
    p.add_argument("--demo", action="store_true",
                   help="500 runs, seed 42, token 'demo-token'")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="queue a fault for the list endpoint, e.g. "
                   "status:code=500,times=3 or stall:seconds=5,after=2 or "
                   "latency:ms=200,times=none (repeatable; faults: %s)"
                   % ", ".join(sorted(FAULTS)))
    a = p.parse_args(argv)

    if not _is_loopback(a.host):
        p.error("--host must be a loopback address, not %r" % a.host)
    if a.latency_ms < 0:
        p.error("--latency-ms must be >= 0")
    if a.runs is not None and a.runs < 0:
        p.error("--runs must be >= 0")
    now_ms = None
    if a.now_ms == "now":
        now_ms = int(time.time() * 1000)
    elif a.now_ms is not None:
        try:
            now_ms = int(a.now_ms)
        except ValueError:
            p.error("--now-ms takes unix ms or 'now'")
    token = a.token if a.token is not None else ("demo-token" if a.demo else "test-token")
    runs = a.runs if a.runs is not None else (500 if a.demo else 200)
    seed = a.seed if a.seed is not None else (42 if a.demo else 1)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    fake = FakeAPI(token=token, runs=runs, seed=seed, latency_ms=a.latency_ms,
                   end_cursor=a.end_cursor, host=a.host, port=a.port,
                   now_ms=now_ms, large=False if a.no_large else None,
                   state_field=a.state_field,
                   comma_lists=not a.no_comma_lists,
                   unknown_params=a.unknown_params, filter_names=a.filter_names,
                   ignored_params=a.ignore_param, bulk_404=a.bulk_404)
    for spec in a.fault:
        try:
            name, params = parse_fault_spec(spec)
            fake.inject(name, **params)
        except (TypeError, ValueError) as e:
            p.error("--fault %s: %s" % (spec, e))
    try:
        fake.start()
    except OSError as e:
        sys.stderr.write("fakeapi: cannot listen on %s:%d: %s\n" % (a.host, a.port, e))
        return 1
    if a.port_file:
        _write_port_file(a.port_file, fake.port)
    sys.stdout.write("fakeapi listening on %s\n" % fake.base_url)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
