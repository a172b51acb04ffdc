"""CORS: origin echo, anchored -cors-allow-origin, preflight."""
import pytest


def test_default_origin_echoed(server):
    up = server.create(length=1)
    r = server.head(up, {"Origin": "https://app.example"})
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") == "https://app.example", r
    expose = (r.header("Access-Control-Expose-Headers") or "").lower()
    for h in ("upload-offset", "location", "upload-length", "tus-resumable"):
        assert h in expose, (h, r)


def test_no_origin_no_cors_headers(server):
    r = server.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 201, r
    assert not r.has("Access-Control-Allow-Origin"), r


def test_preflight(server):
    r = server.request("OPTIONS", "/files/", {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "Upload-Offset, Tus-Resumable, Content-Type",
    }, tus=False)
    assert r.status in (200, 204), r
    assert r.header("Access-Control-Allow-Origin") == "https://app.example", r
    methods = [m.strip().upper() for m in (r.header("Access-Control-Allow-Methods") or "").split(",")]
    for m in ("POST", "HEAD", "PATCH", "OPTIONS", "DELETE"):
        assert m in methods, (m, r)
    allow = (r.header("Access-Control-Allow-Headers") or "").lower()
    for h in ("upload-offset", "tus-resumable", "upload-length", "upload-metadata",
              "content-type"):
        assert h in allow, (h, r)
    assert r.header("Access-Control-Max-Age") == "86400", r


def test_preflight_max_age_flag(tusc):
    srv = tusc("-cors-max-age", "60")
    r = srv.request("OPTIONS", "/files/", {"Origin": "https://x.example",
                                           "Access-Control-Request-Method": "POST"}, tus=False)
    assert r.header("Access-Control-Max-Age") == "60", r


@pytest.mark.parametrize("pattern", [r"^https://a\.com$", r"https://a\.com"])
def test_allow_origin_is_anchored(tusc, pattern):
    srv = tusc("-cors-allow-origin", pattern)
    up = srv.create(length=1)
    ok = srv.head(up, {"Origin": "https://a.com"})
    assert ok.status == 200, ok
    assert ok.header("Access-Control-Allow-Origin") == "https://a.com", ok
    for evil in ("https://a.com.evil.net", "https://evil.net/?https://a.com", "http://a.com",
                 "xhttps://a.com"):
        r = srv.head(up, {"Origin": evil})
        allowed = r.header("Access-Control-Allow-Origin")
        assert allowed not in (evil, "*"), (evil, r)
        assert r.status in (200, 403), (evil, r)
        pre = srv.request("OPTIONS", "/files/", {"Origin": evil,
                                                 "Access-Control-Request-Method": "PATCH"},
                          tus=False)
        assert pre.header("Access-Control-Allow-Origin") not in (evil, "*"), (evil, pre)
        if pre.status == 403:
            assert pre.error_code() == "ERR_ORIGIN_NOT_ALLOWED", pre


def test_disallowed_origin_post_not_allowed(tusc):
    srv = tusc("-cors-allow-origin", r"^https://a\.com$")
    r = srv.request("POST", "/files/", {"Upload-Length": "1", "Origin": "https://a.com.evil.net"})
    assert r.header("Access-Control-Allow-Origin") is None, r
    if r.status == 403:
        assert r.error_code() == "ERR_ORIGIN_NOT_ALLOWED", r
    else:
        assert r.status == 201, r


def test_disable_cors(tusc):
    srv = tusc("-disable-cors")
    r = srv.request("OPTIONS", "/files/", {"Origin": "https://app.example",
                                           "Access-Control-Request-Method": "PATCH"}, tus=False)
    assert not r.has("Access-Control-Allow-Origin"), r
    assert not r.has("Access-Control-Allow-Methods"), r


def test_allow_credentials(tusc):
    srv = tusc("-cors-allow-credentials")
    r = srv.request("OPTIONS", "/files/", {"Origin": "https://app.example",
                                           "Access-Control-Request-Method": "PATCH"}, tus=False)
    assert r.header("Access-Control-Allow-Origin") == "https://app.example", r
    assert r.header("Access-Control-Allow-Credentials") == "true", r
