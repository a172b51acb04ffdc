"""Authentication and ownership: -auth-htpasswd (bcrypt, sha512-crypt, yescrypt; weak
hashes refused at start-up), -auth-jwt-key (HS256, RS256: expired, wrong audience,
wrong signature, alg none), the 401 challenge with -auth-realm, open OPTIONS
preflights, per-user ownership (403, or 404 with -auth-hide-foreign), the principal in
hook JSON, and SIGHUP reloading the credential files.

Password hashes are made with libxcrypt itself (ctypes), JWTs with hmac and the openssl
CLI, so nothing here trusts tusc's own code to produce what it then checks.
"""
import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import OCTET, TUSC_BIN, assert_error, b64, deadline_poll, sanitizer_env

HOOKS_DIR = Path(__file__).resolve().parent / "hooks_scripts"

_libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_libcrypt.crypt_gensalt.restype = ctypes.c_char_p
_libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def make_hash(prefix, password, cost=0):
    setting = _libcrypt.crypt_gensalt(prefix.encode(), cost, None, 0)
    assert setting, prefix
    h = _libcrypt.crypt(password.encode(), setting)
    assert h and not h.startswith(b"*"), prefix
    return h.decode()


USERS = {
    # bcrypt at a low cost keeps the suite fast; $2y$ is what `htpasswd -B` writes.
    "alice": ("$2y$", "alice-pw", 5),
    "bob": ("$6$", "bob-pw", 0),
    "carol": ("$y$", "carol-pw", 0),
}


def write_htpasswd(path, users=USERS):
    lines = ["# tusc test users"]
    for user, (prefix, pw, cost) in users.items():
        h = make_hash("$2b$" if prefix == "$2y$" else prefix, pw, cost)
        if prefix == "$2y$":
            h = "$2y$" + h[4:]
        lines.append(f"{user}:{h}")
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user, pw=None):
    if pw is None:
        pw = USERS[user][1]
    return {"Authorization": "Basic " + b64(f"{user}:{pw}")}


@pytest.fixture
def htpasswd(tmp_path):
    return write_htpasswd(tmp_path / "users.htpasswd")


def create(srv, auth, length=5, expect=201):
    r = srv.request("POST", srv.base_path, {"Upload-Length": str(length), **auth})
    assert r.status == expect, r
    return r


def upload_path(r):
    from urllib.parse import urlsplit
    return urlsplit(r.header("Location")).path


# --- Basic / htpasswd --------------------------------------------------------------


def test_unauthenticated_gets_401_with_realm(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd), "-auth-realm", "UserAuth")
    for method, path, hs in (("POST", "/files/", {"Upload-Length": "1"}),
                             ("HEAD", "/files/0123456789abcdef0123456789abcdef", {}),
                             ("PATCH", "/files/0123456789abcdef0123456789abcdef",
                              {"Upload-Offset": "0", "Content-Type": OCTET}),
                             ("GET", "/files/0123456789abcdef0123456789abcdef", {}),
                             ("DELETE", "/files/0123456789abcdef0123456789abcdef", {})):
        r = srv.request(method, path, hs)
        assert r.status == 401, (method, r)
        assert r.header_all("WWW-Authenticate") == ['Basic realm="UserAuth", charset="UTF-8"'], r
        if method != "HEAD":
            assert_error(r, 401, "ERR_UNAUTHORIZED")
    # nothing was created by the refused POST
    assert not any(srv.upload_dir.rglob("*.info"))


def test_default_realm_is_tusc(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    r = srv.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.header("WWW-Authenticate") == 'Basic realm="tusc", charset="UTF-8"', r


@pytest.mark.parametrize("user", sorted(USERS))
def test_each_hash_kind_accepted_and_wrong_password_refused(tusc, htpasswd, user):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    r = create(srv, basic(user))
    up = upload_path(r)
    r = srv.patch(up, 0, b"hello", basic(user))
    assert r.status == 204, r
    create(srv, basic(user, USERS[user][1] + "x"), expect=401)
    create(srv, basic(user, ""), expect=401)


@pytest.mark.parametrize("header", [
    "Basic " + b64("nobody:alice-pw"),
    "Basic " + b64("alice"),                 # no colon
    "Basic " + b64(":alice-pw"),             # empty user
    "Basic " + b64("alice:alice-pw")[:-2],   # broken base64
    "Basic",
    "Bearer abc.def.ghi",                    # JWT not configured
    "Digest username=\"alice\"",
    "basic" + b64("alice:alice-pw"),         # no space
])
def test_malformed_or_unknown_credentials_refused(tusc, htpasswd, header):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    create(srv, {"Authorization": header}, expect=401)


def test_scheme_is_case_insensitive(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    create(srv, {"Authorization": "bAsIc " + b64("bob:bob-pw")})


def test_options_preflight_stays_open(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    r = srv.request("OPTIONS", "/files/", {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Upload-Length, Tus-Resumable",
    }, tus=False)
    assert r.status in (200, 204), r
    assert r.header("Access-Control-Allow-Origin") == "https://app.example", r
    assert "authorization" in (r.header("Access-Control-Allow-Headers") or "").lower(), r
    r = srv.request("OPTIONS", "/files/")
    assert r.status in (200, 204) and r.header("Tus-Version"), r


@pytest.mark.parametrize("line,what", [
    ("dave:$apr1$abcdefgh$0123456789abcdefghijkl", "md5-apr1"),
    ("dave:secret", "plain-text"),
    ("dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
])
def test_weak_entries_refused_at_startup(tmp_path, htpasswd, line, what):
    text = htpasswd.read_text() + line + "\n"
    bad = tmp_path / "bad.htpasswd"
    bad.write_text(text)
    lineno = len(text.splitlines())
    p = subprocess.run([TUSC_BIN, "-port", "0", "-host", "127.0.0.1", "-upload-dir",
                        str(tmp_path / "up"), "-auth-htpasswd", str(bad)],
                       capture_output=True, timeout=60, env=sanitizer_env())
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert f"{bad}:{lineno}" in err and what in err and "user dave" in err, err
    assert "AddressSanitizer" not in err and "LeakSanitizer" not in err, err


def test_missing_htpasswd_file_refused(tmp_path):
    p = subprocess.run([TUSC_BIN, "-port", "0", "-upload-dir", str(tmp_path / "up"),
                        "-auth-htpasswd", str(tmp_path / "nope")],
                       capture_output=True, timeout=60, env=sanitizer_env())
    assert p.returncode == 2, p
    assert str(tmp_path / "nope") in p.stderr.decode()


def test_bcrypt_does_not_block_other_requests(tusc, tmp_path):
    """A slow bcrypt check runs on the thread pool: a request that needs no hashing
    (OPTIONS) is answered while checks are running."""
    users = {"slow": ("$2b$", "slow-pw", 13)}  # ~0.5-1 s per check, more under ASan
    path = write_htpasswd(tmp_path / "slow.htpasswd", users)
    srv = tusc("-auth-htpasswd", str(path), "-workers", "1")
    import threading
    done = []

    def slow():
        r = srv.request("POST", "/files/", {"Upload-Length": "1",
                                           "Authorization": "Basic " + b64("slow:wrong")},
                        timeout=120)
        done.append(r.status)

    t = threading.Thread(target=slow)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.05)
    r = srv.request("OPTIONS", "/files/")
    quick = time.monotonic() - t0
    assert r.status in (200, 204), r
    t.join(120)
    slow_time = time.monotonic() - t0
    assert done == [401]
    assert quick < slow_time / 2, (quick, slow_time)


def test_success_cache_keeps_resumes_fast(tusc, tmp_path):
    users = {"slow": ("$2b$", "slow-pw", 12)}
    path = write_htpasswd(tmp_path / "slow.htpasswd", users)
    srv = tusc("-auth-htpasswd", str(path))
    auth = {"Authorization": "Basic " + b64("slow:slow-pw")}
    t0 = time.monotonic()
    up = upload_path(create(srv, auth, length=3))
    first = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(3):
        assert srv.patch(up, i, b"x", auth).status == 204
    later = (time.monotonic() - t0) / 3
    assert later < first, (first, later)
    # a wrong password is never served from the cache
    create(srv, {"Authorization": "Basic " + b64("slow:slow-pwx")}, expect=401)


# --- ownership ----------------------------------------------------------------------


@pytest.mark.parametrize("hide", [False, True])
def test_second_user_cannot_touch_first_users_upload(tusc, htpasswd, hide):
    flags = ["-auth-htpasswd", str(htpasswd)] + (["-auth-hide-foreign"] if hide else [])
    srv = tusc(*flags)
    up = upload_path(create(srv, basic("alice"), length=10))
    assert srv.patch(up, 0, b"01234", basic("alice")).status == 204
    want = 404 if hide else 403
    code = "ERR_UPLOAD_NOT_FOUND" if hide else "ERR_FORBIDDEN"

    r = srv.head(up, basic("bob"))
    assert r.status == want, r
    assert not r.has("Upload-Offset"), r
    r = srv.patch(up, 5, b"56789", basic("bob"))
    assert_error(r, want, code)
    r = srv.download(up, basic("bob"))
    assert_error(r, want, code)
    assert b"01234" not in r.body
    r = srv.request("DELETE", up, basic("bob"))
    assert_error(r, want, code)

    # untouched, and still the owner's
    r = srv.head(up, basic("alice"))
    assert r.status == 200 and r.header("Upload-Offset") == "5", r
    assert srv.patch(up, 5, b"56789", basic("alice")).status == 204
    r = srv.download(up, basic("alice"))
    assert r.status == 200 and r.body == b"0123456789", r
    assert srv.request("DELETE", up, basic("alice")).status == 204
    assert not any(srv.upload_dir.rglob("*.info"))


def test_owner_persisted_in_info(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    up = upload_path(create(srv, basic("carol")))
    info = [p for p in srv.upload_dir.rglob("*.info")]
    assert len(info) == 1
    assert json.loads(info[0].read_text())["tusc"]["Owner"] == "carol"
    created = [l for l in srv.stderr().splitlines() if "event=UploadCreated" in l]
    assert len(created) == 1 and "user=carol" in created[0], created
    # survives a restart
    srv.stop()
    srv.start()
    assert srv.head(up, basic("carol")).status == 200
    assert srv.head(up, basic("bob")).status == 403


def test_concatenation_of_foreign_partial_refused(tusc, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    ext = srv.request("OPTIONS", "/files/").header("Tus-Extension") or ""
    if "concatenation" not in ext.split(","):
        pytest.skip("concatenation not built")
    p1 = upload_path(srv.request("POST", "/files/", {"Upload-Length": "3",
                                                      "Upload-Concat": "partial",
                                                      **basic("alice")}))
    assert srv.patch(p1, 0, b"abc", basic("alice")).status == 204
    p2 = upload_path(srv.request("POST", "/files/", {"Upload-Length": "3",
                                                      "Upload-Concat": "partial",
                                                      **basic("bob")}))
    assert srv.patch(p2, 0, b"def", basic("bob")).status == 204
    r = srv.request("POST", "/files/", {"Upload-Concat": f"final;{p1} {p2}", **basic("bob")})
    assert_error(r, 403, "ERR_FORBIDDEN")
    r = srv.request("POST", "/files/", {"Upload-Concat": f"final;{p2}", **basic("bob")})
    assert r.status == 201, r


def test_principal_reaches_hooks(tusc, htpasswd, tmp_path, monkeypatch):
    log = tmp_path / "hooklog"
    log.mkdir()
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    srv = tusc("-auth-htpasswd", str(htpasswd), "-hooks-dir", str(HOOKS_DIR),
               "-hooks-enabled-events", "post-create")
    create(srv, basic("bob"))

    def entries():
        return [json.loads(p.read_text()) for p in log.glob("*-post-create.json")]

    e = deadline_poll(entries, 20, what="post-create hook")[0]
    assert e["stdin"]["Event"]["TuscPrincipal"] == "bob"
    # tusc checked the password itself: hooks get the scheme, never the secret.
    assert e["stdin"]["Event"]["HTTPRequest"]["Header"]["Authorization"] == ["Basic [REDACTED]"]
    assert basic("bob")["Authorization"].split()[1] not in e["raw"]


# --- JWT ----------------------------------------------------------------------------


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(claims, secret, header=None):
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    body = b64url(json.dumps(claims))
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def jwt_rs256(claims, key_path, header=None):
    head = b64url(json.dumps(header or {"alg": "RS256", "typ": "JWT"}))
    body = b64url(json.dumps(claims))
    signing_input = f"{head}.{body}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path)],
                         input=signing_input, capture_output=True, check=True).stdout
    return f"{head}.{body}.{b64url(sig)}"


def bearer(token):
    return {"Authorization": "Bearer " + token}


SECRET = b"0123456789abcdef0123456789abcdef-tusc-test"


@pytest.fixture
def hs_server(tusc, tmp_path):
    key = tmp_path / "jwt.secret"
    key.write_bytes(SECRET + b"\n")  # a trailing newline, as `echo` leaves it, is dropped
    return tusc("-auth-jwt-key", str(key), "-auth-jwt-alg", "HS256",
                "-auth-jwt-audience", "uploads", "-auth-jwt-issuer", "https://idp.example",
                "-auth-realm", "UserAuth")


def claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "aud": "uploads", "iss": "https://idp.example", "iat": now,
         "exp": now + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def test_jwt_hs256_accepted_and_refused(hs_server):
    srv = hs_server
    now = int(time.time())
    up = upload_path(create(srv, bearer(jwt_hs256(claims(), SECRET))))
    assert srv.patch(up, 0, b"hello", bearer(jwt_hs256(claims(), SECRET))).status == 204
    # audience given as a list
    create(srv, bearer(jwt_hs256(claims(aud=["other", "uploads"]), SECRET)))
    # not yet valid within the skew is fine
    create(srv, bearer(jwt_hs256(claims(nbf=now + 5), SECRET)))

    refused = {
        "expired": jwt_hs256(claims(exp=now - 120), SECRET),
        "wrong audience": jwt_hs256(claims(aud="someone-else"), SECRET),
        "no audience": jwt_hs256(claims(aud=None), SECRET),
        "wrong issuer": jwt_hs256(claims(iss="https://evil.example"), SECRET),
        "not yet valid": jwt_hs256(claims(nbf=now + 600), SECRET),
        "wrong signature": jwt_hs256(claims(), b"not-the-secret"),
        "no subject": jwt_hs256(claims(sub=None), SECRET),
        "alg none": b64url(json.dumps({"alg": "none", "typ": "JWT"})) + "." +
                    b64url(json.dumps(claims())) + ".",
        "alg none signed": jwt_hs256(claims(), SECRET, {"alg": "none"}),
        "alg HS512": jwt_hs256(claims(), SECRET, {"alg": "HS512"}),
        "padded": jwt_hs256(claims(), SECRET) + "=",
        "garbage": "not-a-token",
    }
    for what, tok in refused.items():
        r = srv.request("POST", "/files/", {"Upload-Length": "1", **bearer(tok)})
        assert r.status == 401, (what, r)
        assert r.header("WWW-Authenticate") == 'Bearer realm="UserAuth"', (what, r)


def hook_requests(tusc, tmp_path, monkeypatch, flags, headers, events=("pre-create", "post-create")):
    """Starts tusc with the recording file hooks, creates an upload, and returns the
    raw hook inputs of `events` once all have arrived."""
    log = tmp_path / "hooklog"
    log.mkdir()
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    srv = tusc(*flags, "-hooks-dir", str(HOOKS_DIR), "-hooks-enabled-events", ",".join(events))
    r = srv.request("POST", srv.base_path, {"Upload-Length": "5",
                                            "Upload-Metadata": "filename " + b64("a.txt"),
                                            **headers})
    assert r.status == 201, r

    def entries():
        found = [json.loads(p.read_text()) for p in sorted(log.glob("*.json"))]
        return found if len(found) == len(events) else None

    return deadline_poll(entries, 20, what="hooks")


def test_hooks_get_authorization_redacted_with_jwt(tusc, tmp_path, monkeypatch):
    key = tmp_path / "jwt.secret"
    key.write_bytes(SECRET)
    token = jwt_hs256(claims(aud=None, iss=None), SECRET)
    for e in hook_requests(tusc, tmp_path, monkeypatch, ["-auth-jwt-key", str(key)],
                           {"Authorization": "bearer " + token}):
        assert e["stdin"]["Event"]["TuscPrincipal"] == "alice"
        assert e["stdin"]["Event"]["HTTPRequest"]["Header"]["Authorization"] == \
            ["bearer [REDACTED]"]
        assert token.split(".")[2] not in e["raw"] and token.split(".")[1] not in e["raw"]


def test_hooks_get_authorization_unchanged_without_builtin_auth(tusc, tmp_path, monkeypatch):
    """Hook-based authentication (as with tusd) needs the credentials themselves."""
    value = "Basic " + b64("hookuser:hook-secret")
    for e in hook_requests(tusc, tmp_path, monkeypatch, [], {"Authorization": value}):
        assert "TuscPrincipal" not in e["stdin"]["Event"]
        assert e["stdin"]["Event"]["HTTPRequest"]["Header"]["Authorization"] == [value]


def test_jwt_sub_owns_uploads(hs_server):
    srv = hs_server
    alice = bearer(jwt_hs256(claims(sub="alice"), SECRET))
    mallory = bearer(jwt_hs256(claims(sub="mallory"), SECRET))
    up = upload_path(create(srv, alice))
    assert srv.head(up, mallory).status == 403
    assert_error(srv.patch(up, 0, b"x", mallory), 403, "ERR_FORBIDDEN")
    assert srv.head(up, alice).status == 200


@pytest.fixture
def rsa_keys(tmp_path):
    key = tmp_path / "rsa.pem"
    pub = tmp_path / "rsa.pub.pem"
    other = tmp_path / "other.pem"
    for k in (key, other):
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", str(k)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    return key, pub, other


def test_jwt_rs256(tusc, rsa_keys):
    key, pub, other = rsa_keys
    srv = tusc("-auth-jwt-key", str(pub), "-auth-jwt-alg", "RS256")
    now = int(time.time())
    c = {"sub": "bob", "exp": now + 60}
    up = upload_path(create(srv, bearer(jwt_rs256(c, key))))
    assert srv.patch(up, 0, b"hello", bearer(jwt_rs256(c, key))).status == 204
    create(srv, bearer(jwt_rs256({"sub": "bob", "exp": now - 120}, key)), expect=401)
    create(srv, bearer(jwt_rs256(c, other)), expect=401)  # wrong signature
    # alg confusion: HS256 "signed" with the public key as the HMAC secret
    create(srv, bearer(jwt_hs256(c, pub.read_bytes())), expect=401)
    create(srv, bearer(jwt_hs256(c, pub.read_bytes(), {"alg": "RS256"})), expect=401)
    create(srv, bearer(b64url('{"alg":"none"}') + "." + b64url(json.dumps(c)) + "."),
           expect=401)


def test_jwt_key_of_wrong_type_refused(tmp_path, rsa_keys):
    _key, pub, _other = rsa_keys
    p = subprocess.run([TUSC_BIN, "-port", "0", "-upload-dir", str(tmp_path / "up"),
                        "-auth-jwt-key", str(pub), "-auth-jwt-alg", "ES256"],
                       capture_output=True, timeout=60, env=sanitizer_env())
    assert p.returncode == 2, p
    assert "ES256" in p.stderr.decode(), p.stderr.decode()


def test_basic_and_bearer_together(tusc, htpasswd, tmp_path):
    key = tmp_path / "jwt.secret"
    key.write_bytes(SECRET)
    srv = tusc("-auth-htpasswd", str(htpasswd), "-auth-jwt-key", str(key))
    r = srv.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 401
    assert sorted(r.header_all("WWW-Authenticate")) == [
        'Basic realm="tusc", charset="UTF-8"', 'Bearer realm="tusc"'], r
    create(srv, basic("alice"))
    create(srv, bearer(jwt_hs256({"sub": "alice"}, SECRET)))


# --- SIGHUP ----------------------------------------------------------------------------


def test_sighup_reloads_credentials_and_keeps_old_on_error(tusc, tmp_path):
    path = write_htpasswd(tmp_path / "u.htpasswd", {"alice": ("$6$", "old-pw", 0)})
    srv = tusc("-auth-htpasswd", str(path))
    create(srv, basic("alice", "old-pw"))

    write_htpasswd(path, {"alice": ("$6$", "new-pw", 0)})
    srv.proc.send_signal(signal.SIGHUP)
    deadline_poll(lambda: srv.request("POST", "/files/", {"Upload-Length": "1",
                                                          **basic("alice", "new-pw")}).status
                  == 201, 20, what="new password accepted")
    create(srv, basic("alice", "old-pw"), expect=401)

    # a bad file keeps the previous credentials and says why
    path.write_text("alice:plaintext\n")
    srv.proc.send_signal(signal.SIGHUP)
    deadline_poll(lambda: "credentials not reloaded" in srv.stderr(), 20, what="reload error")
    assert "plain-text" in srv.stderr()
    create(srv, basic("alice", "new-pw"))
