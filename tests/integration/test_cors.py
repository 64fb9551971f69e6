"""CORS (store-api.md §1.5, §8 items 1–4), enabled with --cors-origin."""
import os
import sys

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402


def _stored(pg, name, origins):
    return harness.start_stored(pg.create_database(name), "--cors-origin", origins)


def test_allowed_origin_and_preflight(pg):
    s = _stored(pg, "cors_allowed", "http://ui.example,http://other.example")
    try:
        h = s.url + "/v1/agl/health"
        r = requests.get(h, headers={"Origin": "http://ui.example"})
        assert r.status_code == 200
        assert r.headers["Access-Control-Allow-Origin"] == "http://ui.example"
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        p = requests.options(h, headers={"Origin": "http://other.example",
                                         "Access-Control-Request-Method": "GET",
                                         "Access-Control-Request-Headers": "content-type"})
        assert p.status_code == 200 and p.text == "OK"
        assert p.headers["Access-Control-Allow-Origin"] == "http://other.example"
        assert "GET" in p.headers["Access-Control-Allow-Methods"]
        assert p.headers["Access-Control-Allow-Headers"] == "content-type"
        assert p.headers["Access-Control-Max-Age"] == "600"
        # disallowed: normal answer, no allow-origin; preflight refused
        r = requests.get(h, headers={"Origin": "http://evil.example"})
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
        p = requests.options(h, headers={"Origin": "http://evil.example",
                                         "Access-Control-Request-Method": "GET"})
        assert p.status_code == 400 and p.text == "Disallowed CORS origin"
    finally:
        s.stop()


def test_wildcard(pg):
    s = _stored(pg, "cors_any", "*")
    try:
        r = requests.get(s.url + "/v1/agl/health", headers={"Origin": "http://x.example"})
        assert r.headers["Access-Control-Allow-Origin"] in ("*", "http://x.example")
        assert r.headers.get("Access-Control-Allow-Credentials", "true") == "true"
    finally:
        s.stop()


def test_no_cors_headers_without_the_option(pg):
    s = harness.start_stored(pg.create_database("cors_off"))
    try:
        r = requests.get(s.url + "/v1/agl/health", headers={"Origin": "http://ui.example"})
        assert not [k for k in r.headers if k.lower().startswith("access-control-")]
    finally:
        s.stop()
