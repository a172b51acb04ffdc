"""Kernel TLS (kTLS), for real: tusc on a kernel that has the tls module.

The build machine's kernel has no kTLS, so this boots a VM (tests/vm/vm.py: Debian's cloud
kernel under qemu, TCG) with the tls and AEAD crypto modules loaded, the real tusc binary
(TUSC_BIN, sanitizer build included) and curl. In the VM, for TLS 1.3 with AES-128-GCM,
AES-256-GCM and ChaCha20-Poly1305, TLS 1.2 with the same three, and HTTP/2 over TLS 1.3,
curl uploads a multi-MiB body (a creation-with-upload POST, HEAD, a PATCH sent on a fresh
connection right behind its handshake, HEAD) and downloads it back for a sha256 compare.
The kernel must have done the crypto: /proc/net/tls_stat's software TX/RX session counters
and tusc's tusc_tls_ktls_connections_total rise by one per connection; with
-tls-ktls off they stay put and the same uploads still work. tusc must stop cleanly
(status 0, no sanitizer report).

Also here, on the host kernel (no tls module): the fallback — tusc says so at startup,
counts no kTLS connection, and serves HTTPS as before.

Skips when qemu, busybox-static or the kernel (scripts/install-deps.sh test) are missing,
except under CI (CI set in the environment), where it fails."""
import os
import re
import shutil
import subprocess
import sys
import ssl
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SANITIZER_MARKERS, TUSC_BIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm"))
import vm  # noqa: E402

BODY_MIB = 8
VM_TIMEOUT = 900  # s; the whole run takes a few minutes under TCG on a busy machine

# name, curl options, expected "SSL connection using" text
CASES = [
    ("tls13-aes128", "--http1.1 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256", "TLSv1.3 / TLS_AES_128_GCM_SHA256"),
    ("tls13-aes256", "--http1.1 --tlsv1.3 --tls13-ciphers TLS_AES_256_GCM_SHA384", "TLSv1.3 / TLS_AES_256_GCM_SHA384"),
    ("tls13-chacha", "--http1.1 --tlsv1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256",
     "TLSv1.3 / TLS_CHACHA20_POLY1305_SHA256"),
    ("tls12-aes128", "--http1.1 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256",
     "TLSv1.2 / ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("tls12-aes256", "--http1.1 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES256-GCM-SHA384",
     "TLSv1.2 / ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("tls12-chacha", "--http1.1 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-CHACHA20-POLY1305",
     "TLSv1.2 / ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("h2-tls13-aes128", "--http2 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256",
     "TLSv1.3 / TLS_AES_128_GCM_SHA256"),
]
CONNECTIONS_PER_CASE = 5  # POST, HEAD, PATCH, HEAD, GET: one curl (connection) each

MODULES = ["tls", "gcm", "ctr", "ghash_generic", "aesni_intel", "chacha20poly1305",
           "chacha_generic", "poly1305_generic"]

# Runs in the VM (busybox sh). Prints "RESULT <case> key=value ..." lines.
SCRIPT = r"""
set -u
CURL="curl -sS --cacert /etc/tusc/cert.pem --max-time 300"
URL=https://127.0.0.1
MIB=__MIB__
dd if=/dev/urandom of=/tmp/body bs=1048576 count=$MIB 2>/dev/null
HALF=$((MIB * 1048576 / 2))
head -c $HALF /tmp/body > /tmp/half1
tail -c +$((HALF + 1)) /tmp/body > /tmp/half2
SIZE=$((MIB * 1048576))
echo "RESULT body sha=$(sha256sum < /tmp/body | cut -d' ' -f1)"

start_tusc() {
  rm -rf /tmp/port /tmp/data; mkdir -p /tmp/data
  ASAN_OPTIONS=detect_leaks=1 tusc -host 127.0.0.1 -port 0 -port-file /tmp/port \
    -upload-dir /tmp/data -tls-certificate /etc/tusc/cert.pem -tls-key /etc/tusc/key.pem \
    -verbose "$@" > /tmp/tusc.log 2>&1 &
  TPID=$!
  wait_for 120 test -s /tmp/port || { echo "tusc did not start"; cat /tmp/tusc.log; exit 1; }
  PORT=$(cat /tmp/port)
  wait_for 120 $CURL -o /dev/null $URL:$PORT/metrics || { echo "tusc does not answer"; cat /tmp/tusc.log; exit 1; }
}

stop_tusc() {
  kill -TERM $TPID
  wait $TPID
  echo "RESULT $1 tusc_status=$?"
  grep -E "kTLS" /tmp/tusc.log | sed 's/^time=[^ ]* //' | sort | uniq -c | sed 's/^/TUSCLOG /'
  if grep -qE "__SANITIZER__" /tmp/tusc.log; then
    echo "RESULT $1 sanitizer=1"; cat /tmp/tusc.log
  fi
}

stat_of() { awk -v k="$1" '$1 == k {print $2}' /proc/net/tls_stat; }
ktls_metric() {
  $CURL $URL:$PORT/metrics | awk '$1 == "tusc_tls_ktls_connections_total" {print $2}'
}

# case name, then curl options
run_case() {
  name=$1; shift
  tx0=$(stat_of TlsTxSw); rx0=$(stat_of TlsRxSw); m0=$(ktls_metric)
  loc=$($CURL "$@" -v -D /tmp/h -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' \
        -H "Upload-Length: $SIZE" -H 'Content-Type: application/offset+octet-stream' \
        --data-binary @/tmp/half1 $URL:$PORT/files/ 2>/tmp/v; \
        awk 'tolower($1) == "location:" {print $2}' /tmp/h | tr -d '\r')
  suite=$(sed -n 's/.*SSL connection using \(.*\)$/\1/p' /tmp/v | tr -d '\r')
  created=$(awk '/^HTTP/ {s = $2} END {print s}' /tmp/h)  # after any 100 Continue
  off1=$($CURL "$@" -I -H 'Tus-Resumable: 1.0.0' "$loc" | awk 'tolower($1) == "upload-offset:" {print $2}' | tr -d '\r')
  patch=$($CURL "$@" -o /dev/null -w '%{http_code} %{http_version}' -X PATCH -H 'Tus-Resumable: 1.0.0' \
          -H "Upload-Offset: $off1" -H 'Content-Type: application/offset+octet-stream' \
          --data-binary @/tmp/half2 "$loc")
  off2=$($CURL "$@" -I -H 'Tus-Resumable: 1.0.0' "$loc" | awk 'tolower($1) == "upload-offset:" {print $2}' | tr -d '\r')
  sha=$($CURL "$@" "$loc" | sha256sum | cut -d' ' -f1)
  tx1=$(stat_of TlsTxSw); rx1=$(stat_of TlsRxSw); m1=$(ktls_metric)
  echo "RESULT $name suite='$suite' created=$created off1=$off1 patch='$patch' off2=$off2 sha=$sha tx=$((tx1 - tx0)) rx=$((rx1 - rx0)) metric=$((m1 - m0))"
}

# Exact switch points: Finished and a cut request in one segment (ktls_client.py).
coalesce() {
  m0=$(ktls_metric)
  python3 /ktls_client.py $PORT /etc/tusc/cert.pem $1 $2
  echo "RESULT coalesce-$1-metric delta=$(($(ktls_metric) - m0))"
}

# Our close_notify after the switch: the client must read it as one (curl -v shows it).
close_notify() {
  $CURL -v --http1.1 -o /dev/null -H 'Connection: close' $URL:$PORT/metrics 2>&1 |
    grep -c "(IN), TLS alert, close notify" | sed 's/^/RESULT close_notify count=/'
}

# A client KeyUpdate after the switch: kTLS RX cannot follow it; the connection closes.
# s_client sends a request, and once the answer is there, a KeyUpdate ("k").
key_update() {
  : > /tmp/s_client.out
  { printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    wait_for 60 grep -q "tusc_tls_ktls_connections_total" /tmp/s_client.out
    printf 'k\n'
    wait_for 60 grep -q "closing on a record of type 22" /tmp/tusc.log
  } | timeout 180 openssl s_client -connect 127.0.0.1:$PORT -CAfile /etc/tusc/cert.pem \
    -tls1_3 -alpn http/1.1 > /tmp/s_client.out 2>&1
  grep -q "closing on a record of type 22" /tmp/tusc.log
  echo "RESULT key_update closed=$? alive=$($CURL -o /dev/null -w '%{http_code}' $URL:$PORT/metrics)"
}

echo "RESULT kernel ulp='$(cat /proc/sys/net/ipv4/tcp_available_ulp)'"
start_tusc
__CASES__
coalesce 1.3 6
coalesce 1.2 3
close_notify
key_update
stop_tusc auto

start_tusc -tls-ktls off
run_case off-tls13-aes128 --http1.1 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
stop_tusc off
"""


def gen_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)


def parse(out):
    results = {}
    for line in out.splitlines():
        at = line.find("RESULT ")  # the console may put escape sequences first
        if at < 0:
            continue
        _, name, rest = line[at:].split(" ", 2)
        fields = results.setdefault(name, {})
        for m in re.finditer(r"(\w+)=('([^']*)'|\S*)", rest):
            fields[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return results


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory):
    why = vm.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"cannot run the kTLS VM: {why}", pytrace=False)
        pytest.skip(why)
    d = tmp_path_factory.mktemp("ktls-vm")
    gen_cert(d)
    image = vm.Image()
    image.add_binary(TUSC_BIN, "/bin/tusc")
    image.add_binary(shutil.which("curl") or "/usr/bin/curl", "/usr/bin/curl")
    image.add_binary(shutil.which("openssl") or "/usr/bin/openssl", "/usr/bin/openssl")
    image.add_python()
    image.add_file(Path(vm.__file__).parent / "ktls_client.py", "/ktls_client.py", 0o644)
    image.add_file(d / "cert.pem", "/etc/tusc/cert.pem", 0o644)
    image.add_file(d / "key.pem", "/etc/tusc/key.pem", 0o600)
    image.add_modules(MODULES)
    cases = "\n".join(f"run_case {name} {opts}" for name, opts, _ in CASES)
    script = (SCRIPT.replace("__MIB__", str(BODY_MIB)).replace("__CASES__", cases)
              .replace("__SANITIZER__", "|".join(re.escape(m) for m in SANITIZER_MARKERS)))
    t0 = time.monotonic()
    status, out = image.run(script, timeout=VM_TIMEOUT)
    took = time.monotonic() - t0
    print(f"kTLS VM run: {took:.0f} s")
    (d / "console.log").write_text(out)
    return status, out, parse(out)


def test_vm_script_ran(vm_run):
    status, out, res = vm_run
    assert status == 0, out[-6000:]
    assert "tls" in res["kernel"]["ulp"].split()
    assert res["auto"]["tusc_status"] == "0", out[-6000:]
    assert res["off"]["tusc_status"] == "0", out[-6000:]
    assert "sanitizer" not in res["auto"] and "sanitizer" not in res["off"], out[-20000:]
    assert "TUSCLOG" in out and "kTLS: the kernel has TLS" in out, out[-6000:]


def check_upload(res, name, expect_suite, body_sha, h2=False):
    r = res.get(name)
    assert r is not None, f"no result for {name}"
    assert r["suite"] == expect_suite, r
    assert r["created"] == "201", r
    assert int(r["off1"]) == BODY_MIB * 1048576 // 2, r
    code, version = r["patch"].split()
    assert code == "204", r
    assert version == ("2" if h2 else "1.1"), r
    assert int(r["off2"]) == BODY_MIB * 1048576, r
    assert r["sha"] == body_sha, r


@pytest.mark.parametrize("name,opts,suite", CASES, ids=[c[0] for c in CASES])
def test_ktls_upload_download(vm_run, name, opts, suite):
    status, out, res = vm_run
    check_upload(res, name, suite, res["body"]["sha"], h2="--http2" in opts)
    r = res[name]
    # Every connection of the case went to the kernel, both directions (the metrics
    # scrape that measures it may add one more).
    n = CONNECTIONS_PER_CASE
    assert n <= int(r["metric"]) <= n + 1, r
    assert n <= int(r["tx"]) <= n + 1, r
    assert n <= int(r["rx"]) <= n + 1, r


@pytest.mark.parametrize("version,rounds", [("1.3", 6), ("1.2", 3)])
def test_ktls_switch_with_coalesced_records(vm_run, version, rounds):
    """The client's last handshake flight and a request cut inside a record arrive
    together: tusc must hand over at the next record boundary, losing no byte."""
    status, out, res = vm_run
    r = res.get(f"coalesce-{version}")
    assert r is not None, out[-6000:]
    assert r["good"] == str(rounds), (r, res.get(f"coalesce-{version}-fail"))
    # Two connections a round (upload, download), all in the kernel; plus the scrape.
    assert 2 * rounds <= int(res[f"coalesce-{version}-metric"]["delta"]) <= 2 * rounds + 1
    if version == "1.3":  # a handshake whose last read ended inside a record, at least once
        assert "receive in the kernel (after reading up to a record boundary)" in out


def test_ktls_close_notify_sent(vm_run):
    status, out, res = vm_run
    assert res["close_notify"]["count"] == "1", out[-6000:]


def test_ktls_key_update_closes_cleanly(vm_run):
    status, out, res = vm_run
    assert res["key_update"] == {"closed": "0", "alive": "200"}, out[-6000:]
    # No other record made a kTLS connection fail (the peers' close_notify is a close).
    assert "closing on a record of type 21" not in out


def test_ktls_off_stays_in_user_space(vm_run):
    status, out, res = vm_run
    check_upload(res, "off-tls13-aes128", "TLSv1.3 / TLS_AES_128_GCM_SHA256", res["body"]["sha"])
    r = res["off-tls13-aes128"]
    assert r["metric"] == "0" and r["tx"] == "0" and r["rx"] == "0", r
    assert "kTLS: off" in out


# --- the host kernel: no tls module, user space ------------------------------------------


def test_fallback_on_a_kernel_without_ktls(tusc, tmp_path):
    ulp = Path("/proc/sys/net/ipv4/tcp_available_ulp").read_text().split()
    if "tls" in ulp:
        pytest.skip("this kernel has kTLS loaded; the VM test covers it")
    gen_cert(tmp_path)
    srv = tusc("-tls-certificate", str(tmp_path / "cert.pem"), "-tls-key",
               str(tmp_path / "key.pem"))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    body = os.urandom(3 * 1048576 + 17)
    url = f"https://127.0.0.1:{srv.port}"
    req = urllib.request.Request(url + "/files/", method="POST", data=body, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(body)),
        "Content-Type": "application/offset+octet-stream"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.status == 201
        loc = resp.headers["Location"]
    with urllib.request.urlopen(loc, context=ctx, timeout=30) as resp:
        assert resp.read() == body
    with urllib.request.urlopen(url + "/metrics", context=ctx, timeout=30) as resp:
        metrics = resp.read().decode()
    assert re.search(r"^tusc_tls_ktls_connections_total 0$", metrics, re.M), metrics
    assert srv.stop() == 0
    assert "kTLS: not available (this kernel has no tls module)" in srv.stderr()
