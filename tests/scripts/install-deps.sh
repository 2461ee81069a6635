#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine: the C
# toolchain and RocksDB for the rocksdb crate, and the real peers the tests
# talk to (libiscsi's tools, qemu's iscsi driver, Debian's tgt for the
# benchmarks), and Debian's Chromium, which the browser tests drive through
# Playwright (Playwright cannot download its own browsers here; never run
# `playwright install`), and what the appliance image's build and boot test
# need. Idempotent; run as root.
set -euo pipefail

need_apt=0
for bin in clang iscsi-test-cu iscsi-inq tgtd; do
  command -v "$bin" >/dev/null 2>&1 || need_apt=1
done
[ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] || need_apt=1
[ -e /usr/include/iscsi/iscsi.h ] || need_apt=1
# qemu-img must have the iscsi driver (Debian 12's 7.2 with qemu-block-extra;
# the preinstalled backports 10.x has none).
qemu-img --help 2>/dev/null | grep -qw iscsi || need_apt=1
# The browser tests (tests/browser/) launch /usr/bin/chromium.
{ command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || need_apt=1

# The appliance: its build (mmdebstrap, mtools, dosfstools, sfdisk,
# systemd-boot, strip), its boot test (qemu-system-x86 with OVMF) and the
# local console's test (tmux).
need_appliance=0
for bin in mmdebstrap mcopy mkfs.vfat sfdisk strip qemu-system-x86_64 tmux; do
  command -v "$bin" >/dev/null 2>&1 || need_appliance=1
done
[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ] || need_appliance=1
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_appliance=1
if [ "$need_appliance" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends mmdebstrap mtools dosfstools fdisk systemd-boot-efi binutils \
    qemu-system-x86 ovmf tmux >/dev/null
fi

if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # qemu-utils and qemu-block-extra go together, at the version of
  # qemu-block-extra, so the downgrade from backports is explicit.
  qver=$(apt-cache show qemu-block-extra | awk '/^Version:/ {print $2; exit}')
  apt-get install -y -qq --allow-downgrades \
    clang libclang-dev librocksdb-dev \
    libiscsi-bin libiscsi-dev \
    "qemu-utils=$qver" "qemu-block-extra=$qver" \
    tgt chromium >/dev/null
fi

# Debian starts tgt's service when it is installed, and it takes port 3260
# on every address; the benchmarks start their own tgtd on loopback ports.
# Stop and mask it wherever there is a service manager to ask.
if [ -d /run/systemd/system ]; then
  systemctl disable --now tgt >/dev/null 2>&1 || true
  systemctl mask tgt >/dev/null 2>&1 || true
elif [ -x /etc/init.d/tgt ]; then
  /etc/init.d/tgt stop >/dev/null 2>&1 || true
fi
if command -v ss >/dev/null && ss -ltn 'sport = :3260' | grep -q 3260; then
  echo "install-deps: port 3260 is still taken:" >&2
  ss -ltnp 'sport = :3260' >&2 || true
fi

if [ -x tests/install-python-deps.sh ]; then
  tests/install-python-deps.sh
fi
