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
  pkgs="$pkgs qemu-system-x86 busybox-static" # tests/vm/vm.py: kTLS tests in a VM (tests/integration/test_ktls_vm.py)
  pkgs="$pkgs e2fsprogs" # tests/integration/test_powercut_vm.py: mkfs.ext4 and e2fsck on the power-cut disk images
  command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
  command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi
# The kernel tests/vm/vm.py boots (a kernel with the tls module, for kTLS): Debian's cloud
# kernel, unpacked (not installed) under TUSC_VM_KERNEL_DIR. The package name changes with
# Debian's kernel ABI, so it is resolved through the linux-image-cloud-amd64 metapackage.
vm_kernel() {
  dir=${TUSC_VM_KERNEL_DIR:-/var/cache/tusc-vm}
  ls "$dir"/root/boot/vmlinuz-* >/dev/null 2>&1 && return 0
  if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
    echo "tusc's VM tests need a kernel unpacked under $dir; run as root: sh scripts/install-deps.sh test" >&2
    return 1
  fi
  resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image/ {print $2; exit}'; }
  pkg=$(resolve)
  if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -q
    pkg=$(resolve)
  fi
  if [ -z "$pkg" ]; then
    echo "cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2
    return 1
  fi
  (cd "$dir" && rm -f ./*.deb && apt-get download -q "$pkg") &&
    dpkg-deb -x "$dir/$(cd "$dir" && ls ./*.deb | head -n 1)" "$dir/root" &&
    rm -f "$dir"/*.deb
}

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  # Not fatal: without the kernel the VM tests skip (and fail under CI).
  if [ "${1:-}" = test ]; then vm_kernel || true; fi
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
  if [ "${1:-}" = test ]; then vm_kernel || true; fi
else
  echo "tusc needs these Debian packages; run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
