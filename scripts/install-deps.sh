#!/bin/sh
# Installs the Debian packages tusc needs to build (and, with "test", to test).
# As root it runs apt-get; otherwise it prints the one line to run.
set -eu
pkgs="build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libssl-dev libjansson-dev libcurl4-openssl-dev libcrypt-dev zlib1g-dev libexpat1-dev libhiredis-dev libnghttp2-dev"
if [ "${1:-}" = test ]; then
  pkgs="$pkgs libcmocka-dev python3-pytest python3-hpack python3-tuspy openssl clang libclang-rt-14-dev"
  pkgs="$pkgs haproxy curl" # deploy/haproxy.cfg in tests/integration/test_haproxy.py; bench/tls.sh
  pkgs="$pkgs nghttp2-client" # tests/integration/test_h2.py: nghttp; bench/h2.sh: h2load
  pkgs="$pkgs chromium fonts-liberation libgl1-mesa-dri" # tests/integration/test_browser.py: tus-js-client in a real browser, over h2 (two of its recommends, named since we skip recommends)
  pkgs="$pkgs tmux" # tests/upload/test_upload_tty.py reads tusc-upload's display from a pane
  pkgs="$pkgs redis-server" # tests/unit/test_lock_redis.c, tests/integration/test_redis_lock.py
  pkgs="$pkgs time" # GNU time: CPU and peak RSS in bench/upload_bench.py
  pkgs="$pkgs ceph-mon ceph-osd radosgw ceph-common python3-boto3" # tests/s3/rgw.py: a real S3 server
  command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
  command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
else
  echo "tusc needs these Debian packages; run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
