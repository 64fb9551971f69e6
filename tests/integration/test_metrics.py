"""GET /metrics (issue 4): the Prometheus text format 0.0.4, parsed strictly, and counters that
move as requests flow. prometheus_client is not in the test venv, so a small strict parser is
here: every sample line must belong to a family declared by # HELP/# TYPE, names and labels
must follow the format, histograms must be cumulative and end in +Inf == _count."""

from __future__ import annotations

import math
import re

from conftest import make_span

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')


def parse(text):
    assert text.endswith("\n")
    types, helps, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and doc and name not in helps, line
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"family declared twice: {line}"
            types[name] = typ
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            v = float(value)  # raises on junk
            assert not math.isnan(v)
            fam = name
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and name[: -len(suf)] in types:
                    fam = name[: -len(suf)]
            assert fam in types and fam in helps, f"sample of an undeclared family: {line}"
            if types[fam] == "counter":
                assert name.endswith("_total") and v >= 0, line
            samples.append((name, dict(LABEL_RE.findall(labels)), v))
    # histogram sanity
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for name, labels, v in samples:
            if name == fam + "_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, []).append((labels["le"], v))
        for key, buckets in series.items():
            values = [v for _, v in buckets]
            assert values == sorted(values), (fam, key, buckets)
            assert buckets[-1][0] == "+Inf"
            count = [v for n, l, v in samples if n == fam + "_count" and
                     tuple(sorted(l.items())) == key]
            assert count == [buckets[-1][1]], (fam, key)
    return types, samples


def value(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    return sum(vals)


def scrape(store):
    r = store.get(store.url + "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def test_metrics_format_and_counters(store):
    types, s0 = scrape(store)
    for fam in ("agl_http_requests_total", "agl_http_request_duration_seconds",
                "agl_rollouts", "agl_attempts", "agl_queue_depth", "agl_spans_ingested_total",
                "agl_db_pool_connections", "agl_db_query_duration_seconds",
                "process_resident_memory_bytes"):
        assert fam in types, fam
    assert types["agl_http_request_duration_seconds"] == "histogram"
    assert value(s0, "process_resident_memory_bytes") > 1 << 20

    route = "/v1/agl/queues/rollouts/enqueue"
    before = value(s0, "agl_http_requests_total", route=route, method="POST", status="201")
    store.enqueue(3)
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    for i in range(4):
        store.add_span(make_span(rid, aid, i + 1, span_id=f"{i:016x}"))
    store.get("/no/such/route")
    store.post("/rollouts/search", {"limit": 0})  # 400
    _, s1 = scrape(store)
    assert value(s1, "agl_http_requests_total", route=route, method="POST", status="201") == \
        before + 1
    assert value(s1, "agl_http_requests_total", route="/v1/agl/spans", method="POST",
                 status="201") == 4
    assert value(s1, "agl_http_requests_total", route="unmatched", status="404") >= 1
    assert value(s1, "agl_http_requests_total", route="/v1/agl/rollouts/search",
                 status="400") == 1
    assert value(s1, "agl_http_request_duration_seconds_count", route="/v1/agl/spans",
                 method="POST") == 4
    assert value(s1, "agl_spans_ingested_total") - value(s0, "agl_spans_ingested_total") == 4
    assert value(s1, "agl_spans") == 4
    assert value(s1, "agl_queue_depth") == 3
    assert value(s1, "agl_rollouts", status="queuing") == 3
    assert value(s1, "agl_rollouts", status="running") == 1  # spans are heartbeats
    assert value(s1, "agl_attempts", status="running") == 1
    assert value(s1, "agl_db_query_duration_seconds_count") > \
        value(s0, "agl_db_query_duration_seconds_count")
    assert value(s1, "agl_db_pool_size") >= 1
    # the scrape itself is counted on the next one
    _, s2 = scrape(store)
    assert value(s2, "agl_http_requests_total", route="/metrics", status="200") >= 2


def test_client_method_text_is_not_a_label(store):
    store.request("BREW", "/v1/agl/health")
    _, s = scrape(store)
    assert value(s, "agl_http_requests_total", method="other") >= 1
    assert not [l for _, l, _ in s if l.get("method") == "BREW"]
