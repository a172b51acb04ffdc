"""/metrics: Prometheus text format 0.0.4, tusd's metric names, and counters that move
as expected after a known sequence of requests.

The parser below is strict on purpose (a scraper would silently drop what a lenient
parser accepts): metric and label name grammar, label value escapes, Go float syntax,
one TYPE/HELP per family before its samples, samples of a family contiguous, no
duplicate series, histograms cumulative with a +Inf bucket equal to _count.
"""
import math
import re
import socket
import time

import pytest

from conftest import b64, deadline_poll

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ParseError(AssertionError):
    pass


def parse_labels(s, i, line):
    """Parses {a="b",...} starting after '{'; returns (dict, index after '}')."""
    labels = {}
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ParseError(f"bad label name: {line!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError(f"expected =\" after label {name}: {line!r}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ParseError(f"unterminated label value: {line!r}")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ParseError(f"bad escape in {line!r}")
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ParseError("newline in label value")
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ParseError(f"duplicate label {name}: {line!r}")
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ParseError(f"expected , or }} in {line!r}")


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram", "summary"):
            return name[:-len(suffix)]
    return name


def parse(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    if not text.endswith("\n"):
        raise ParseError("exposition must end with a newline")
    families = {}
    types = {}
    current = None
    closed = set()
    series = set()
    for line in text.split("\n")[:-1]:
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise ParseError(f"bad name in {line!r}")
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"]:
                    raise ParseError(f"{parts[1]} after samples of {name}")
                key = parts[1].lower()
                if fam[key] is not None:
                    raise ParseError(f"second {parts[1]} for {name}")
                value = parts[3] if len(parts) > 3 else ""
                if key == "type":
                    if value not in TYPES:
                        raise ParseError(f"unknown type {value!r}")
                    types[name] = value
                fam[key] = value
            continue
        m = NAME.match(line)
        if not m:
            raise ParseError(f"bad sample line {line!r}")
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i + 1, line)
        if line[i:i + 1] != " ":
            raise ParseError(f"expected a space before the value: {line!r}")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2) or not FLOAT.fullmatch(rest[0]):
            raise ParseError(f"bad value in {line!r}")
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise ParseError(f"bad timestamp in {line!r}")
        value = float(rest[0].replace("Inf", "inf"))
        fam_name = family_of(name, types)
        if fam_name != current:
            if fam_name in closed:
                raise ParseError(f"samples of {fam_name} are not contiguous")
            if current is not None:
                closed.add(current)
            current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise ParseError(f"duplicate series {key}")
        series.add(key)
        fam = families.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        fam["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] == "counter":
            for s in fam["samples"]:
                if s[2] < 0 or math.isnan(s[2]):
                    raise ParseError(f"counter {s} is negative")
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    groups = {}
    for sname, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            if "le" not in labels:
                raise ParseError(f"bucket without le: {sname} {labels}")
            g["buckets"].append((float(labels["le"].replace("Inf", "inf")), value))
        elif sname == name + "_sum":
            g["sum"] = value
        elif sname == name + "_count":
            g["count"] = value
        else:
            raise ParseError(f"unexpected sample {sname} in histogram {name}")
    for rest, g in groups.items():
        les = [b[0] for b in g["buckets"]]
        if les != sorted(les) or not les or les[-1] != math.inf:
            raise ParseError(f"{name}{rest}: buckets not sorted or no +Inf: {les}")
        counts = [b[1] for b in g["buckets"]]
        if counts != sorted(counts):
            raise ParseError(f"{name}{rest}: buckets not cumulative: {counts}")
        if g["count"] != counts[-1] or g["sum"] is None:
            raise ParseError(f"{name}{rest}: _count {g['count']} != +Inf {counts[-1]}")


def value(fams, name, **labels):
    fam = fams[family_of(name, {k: v["type"] for k, v in fams.items()})]
    hits = [s[2] for s in fam["samples"] if s[0] == name and s[1] == labels]
    assert len(hits) <= 1
    return hits[0] if hits else 0.0


def scrape(srv, path="/metrics", port=None):
    if port is None:
        r = srv.request("GET", path, tus=False)
    else:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path)
        resp = c.getresponse()
        body = resp.read()
        c.close()
        from conftest import Response
        r = Response(resp.status, resp.reason, list(resp.getheaders()), body)
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    return parse(r.body.decode("utf-8"))


# --- the parser itself must reject what scrapers reject ------------------------------


@pytest.mark.parametrize("text", [
    "a 1",                                              # no final newline
    "# TYPE a counter\na{b=\"c} 1\n",                   # unterminated value
    "# TYPE a counter\na{b=\"\\x\"} 1\n",               # bad escape
    "# TYPE a counter\na 1\nb 2\na{x=\"1\"} 3\n",       # not contiguous
    "# TYPE a counter\na 1\na 2\n",                     # duplicate series
    "# TYPE a counter\na -1\n",                         # negative counter
    "# TYPE a widget\na 1\n",                           # unknown type
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
    "h_sum 1\nh_count 1\n",                             # not cumulative
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
    "# TYPE a counter\n1a 1\n",                         # bad name
    "# TYPE a counter\na 1.2.3\n",                      # bad value
])
def test_strict_parser_rejects(text):
    with pytest.raises(ParseError):
        parse(text)


def test_strict_parser_accepts():
    fams = parse("# HELP a An \\\\ thing\n# TYPE a counter\na{x=\"q\\\"\\n\"} 1e3\n"
                 "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                 "h_sum 0.7\nh_count 2\ng +Inf\n")
    assert value(fams, "a", x='q"\n') == 1000
    assert value(fams, "h_count") == 2


# --- tusc's exposition ----------------------------------------------------------------


TUSD_FAMILIES = {
    "tusd_requests_total": "counter", "tusd_errors_total": "counter",
    "tusd_bytes_received": "counter", "tusd_uploads_created": "counter",
    "tusd_uploads_finished": "counter", "tusd_uploads_terminated": "counter",
    "tusd_connections_open": "gauge", "tusd_hook_invocations_total": "counter",
    "tusd_hook_errors_total": "counter",
    "process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge", "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "tusc_request_duration_seconds": "histogram", "tusc_bytes_written_total": "counter",
    "tusc_active_uploads": "gauge", "tusc_lock_waits_total": "counter",
    "tusc_hook_queue_depth": "gauge", "tusc_hook_duration_seconds": "histogram",
    "tusc_tls_ktls_connections_total": "counter",
}


def test_families_names_and_labels(server):
    fams = scrape(server)
    for name, typ in TUSD_FAMILIES.items():
        assert name in fams, name
        assert fams[name]["type"] == typ, name
        assert fams[name]["help"], name
    methods = {s[1]["method"] for s in fams["tusd_requests_total"]["samples"]}
    assert {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"} <= methods
    hooktypes = {s[1]["hooktype"] for s in fams["tusd_hook_invocations_total"]["samples"]}
    assert hooktypes == {"pre-create", "post-create", "post-receive", "pre-finish",
                         "post-finish", "pre-terminate", "post-terminate"}
    # Plausible process figures.
    assert value(fams, "process_resident_memory_bytes") > 1_000_000
    assert value(fams, "process_open_fds") >= 3
    assert value(fams, "process_max_fds") >= value(fams, "process_open_fds")
    assert abs(value(fams, "process_start_time_seconds") - time.time()) < 600
    assert value(fams, "tusd_connections_open") >= 1


def test_counters_move_after_known_requests(server):
    m0 = scrape(server)
    path = server.create(5)
    assert server.patch(path, 0, b"hello").status == 204
    assert server.head(path).status == 200
    other = server.create(3, body=b"ab")
    assert server.request("DELETE", other).status == 204
    assert server.patch("/files/" + "f" * 32, 0, b"x").status == 404
    assert server.request("POST", "/files/", {"Tus-Resumable": None,
                                               "Upload-Length": "1"}).status == 412
    assert server.request("OPTIONS", "/files/").status == 200
    m1 = scrape(server)

    def d(name, **labels):
        return value(m1, name, **labels) - value(m0, name, **labels)

    assert d("tusd_requests_total", method="POST") == 3
    assert d("tusd_requests_total", method="PATCH") == 2
    assert d("tusd_requests_total", method="HEAD") == 1
    assert d("tusd_requests_total", method="DELETE") == 1
    assert d("tusd_requests_total", method="OPTIONS") == 1
    assert d("tusd_requests_total", method="GET") == 1  # the second scrape itself
    assert d("tusd_bytes_received") == 7
    assert d("tusc_bytes_written_total") == 7
    assert d("tusd_uploads_created") == 2
    assert d("tusd_uploads_finished") == 1
    assert d("tusd_uploads_terminated") == 1
    assert d("tusd_errors_total", status="404", code="ERR_UPLOAD_NOT_FOUND") == 1
    assert d("tusd_errors_total", status="412", code="ERR_UNSUPPORTED_VERSION") == 1
    assert d("tusc_request_duration_seconds_count", method="PATCH") == 2
    assert d("tusc_request_duration_seconds_count", method="POST") == 3
    assert value(m1, "tusc_active_uploads") == 0
    assert value(m1, "process_cpu_seconds_total") >= value(m0, "process_cpu_seconds_total")


def test_hook_metrics(tusc, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-create").write_text("#!/bin/sh\nexit 1\n")
    (hooks / "post-create").write_text("#!/bin/sh\nsleep 1\n")
    for p in hooks.iterdir():
        p.chmod(0o755)
    srv = tusc("-hooks-dir", str(hooks), "-hooks-enabled-events", "pre-create",
               "-workers", "1")
    assert srv.request("POST", "/files/", {"Upload-Length": "1"}).status == 500
    fams = scrape(srv)
    assert value(fams, "tusd_hook_invocations_total", hooktype="pre-create") == 1
    assert value(fams, "tusd_hook_errors_total", hooktype="pre-create") == 1
    assert value(fams, "tusd_hook_invocations_total", hooktype="post-create") == 0
    assert value(fams, "tusc_hook_duration_seconds_count", hooktype="pre-create") == 1


def test_hook_queue_depth_and_drops(tusc, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "post-create").write_text("#!/bin/sh\nsleep 2\n")
    (hooks / "post-create").chmod(0o755)
    srv = tusc("-hooks-dir", str(hooks), "-hooks-enabled-events", "post-create",
               "-hooks-queue-size", "2", "-workers", "1")
    for _ in range(5):
        srv.create(1)  # never waits for the post-create hook
    fams = scrape(srv)
    assert value(fams, "tusc_hook_queue_depth") == 2
    assert value(fams, "tusc_hook_queue_dropped_total") == 3
    assert "hook queue full" in srv.stderr()
    deadline_poll(lambda: value(scrape(srv), "tusc_hook_queue_depth") == 0, 20,
                  what="hook queue drained")
    fams = scrape(srv)
    assert value(fams, "tusc_hook_duration_seconds_count", hooktype="post-create") == 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_separate_metrics_listener(tusc):
    port = free_port()
    srv = tusc("-metrics-listen", f"127.0.0.1:{port}", "-metrics-path", "/internal/m")
    assert srv.request("GET", "/internal/m", tus=False).status == 404
    fams = scrape(srv, "/internal/m", port=port)
    assert "tusd_requests_total" in fams
    srv.create(1)
    fams = scrape(srv, "/internal/m", port=port)
    assert value(fams, "tusd_uploads_created") == 1


def test_metrics_disabled(tusc):
    srv = tusc("-expose-metrics=false")
    assert srv.request("GET", "/metrics", tus=False).status == 404


def test_custom_metrics_path(tusc):
    srv = tusc("-metrics-path", "/stats")
    assert srv.request("GET", "/metrics", tus=False).status == 404
    fams = scrape(srv, "/stats")
    assert "tusd_uploads_created" in fams
