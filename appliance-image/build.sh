#!/usr/bin/env bash
# Builds the appliance: a UEFI-bootable Debian bookworm disk with the sgw
# binary, its systemd units, systemd-networkd (DHCP), chrony and the console
# local console (sgw console), and nothing else (no SSH server, no
# passwords: root is locked).
#
# Outputs, in $OUT (default appliance-image/out):
#   sgw-appliance.qcow2   KVM, Proxmox (compressed)
#   sgw-appliance.vmdk    streamOptimized, and inside:
#   sgw-appliance.ova     VMware: the OVF descriptor, its manifest, the vmdk
#   sgw-appliance.vhdx    Hyper-V (dynamic)
#   SHA256SUMS            of the four
#   rootfs.manifest       every path of the root tree with its mode, owner
#                         and SHA-256: two builds from the same inputs give
#                         the same manifest (see "Reproducible" below)
#   BUILD-INFO            versions, sizes and stage times
#   INPUTS                the hash of the inputs: a build with the same
#                         inputs finds the outputs up to date and stops
#
# Usage: appliance-image/build.sh [--update-lock]
#   --update-lock   resolve the package list again and rewrite
#                   appliance-image/packages.lock (otherwise the build
#                   installs exactly the versions the lock names, and fails,
#                   saying so, when the mirror no longer has one)
#
# Environment:
#   SGW_BIN       the sgw binary (default ${CARGO_TARGET_DIR:-target}/release/sgw,
#                 built with cargo when missing)
#   OUT           where the outputs go
#   WORK          scratch and cache (default ~/.cache/sgw-appliance); the
#                 debootstrapped tree is cached there, keyed by the lock file
#   MIRROR        a Debian mirror (default: the one this machine's apt uses)
#   SOURCE_DATE_EPOCH  file times in the image (default: the last commit's time)
#   UPDATE_PUBLIC_KEY  a file holding the ed25519 public key (base64) that
#                 update packages must be signed with (`sgw update keygen`);
#                 without it the image takes no update packages
#
# Reproducible: the root tree (paths, modes, owners, contents) is the same
# for the same lock file, sgw binary and SOURCE_DATE_EPOCH; rootfs.manifest
# shows it. The disk images are not byte-identical: ext4 and vfat keep
# creation times and random hash seeds beside the files, and qemu-img
# compresses in parallel.
#
# Needs root (chroot for the kernel's initramfs), mmdebstrap, mtools,
# dosfstools, fdisk (sfdisk), e2fsprogs, qemu-utils and systemd-boot-efi.
# No loop devices and no mounts but the chroot's /proc, /sys and /dev.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT=${OUT:-$HERE/out}
WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/sgw-appliance}
LOCK=$HERE/packages.lock
SUITE=bookworm
# What the appliance needs, and nothing else.
PACKAGES=(systemd-sysv udev systemd-resolved linux-image-cloud-amd64 initramfs-tools kmod iproute2
          chrony tzdata ca-certificates e2fsprogs util-linux
          # sgw links RocksDB from Debian (.cargo/config.toml), and with it
          # snappy, lz4, zstd, bz2 and gflags.
          librocksdb7.8)
ESP_MIB=160
ROOT_MIB=1024
T0=$(date +%s)

die() { echo "build.sh: $*" >&2; exit 1; }
step() { echo "== $*"; }
[ "$(id -u)" = 0 ] || die "run as root (the kernel's initramfs is made in a chroot)"
for t in mmdebstrap mcopy mmd mkfs.vfat sfdisk mkfs.ext4 qemu-img strip; do
    command -v "$t" >/dev/null || die "$t is missing: apt-get install mmdebstrap mtools dosfstools fdisk e2fsprogs qemu-utils systemd-boot-efi binutils"
done
BOOT_EFI=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$BOOT_EFI" ] || die "$BOOT_EFI is missing: apt-get install systemd-boot-efi"

SGW_BIN=${SGW_BIN:-${CARGO_TARGET_DIR:-$TOP/target}/release/sgw}
if [ ! -x "$SGW_BIN" ]; then
    step "building sgw"
    (cd "$TOP" && cargo build --release -p gateway --bin sgw)
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct 2>/dev/null || echo 0)}
MIRROR=${MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)}
MIRROR=${MIRROR:-$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
[ -n "$MIRROR" ] || die "set MIRROR to a Debian mirror URL"
mkdir -p "$WORK" "$OUT"

# ---- nothing to do when the inputs are those of the outputs ---------------
# The inputs: this script, the lock, the root overlay, the OVF template, the
# README, the sgw binary and the source date.
UPDATE_PUBLIC_KEY=${UPDATE_PUBLIC_KEY:-}
if [ -n "$UPDATE_PUBLIC_KEY" ]; then
    # base64 of 32 bytes: 44 characters ending in one '='.
    grep -qxE '[A-Za-z0-9+/]{43}=' "$UPDATE_PUBLIC_KEY" 2>/dev/null \
        || die "UPDATE_PUBLIC_KEY: $UPDATE_PUBLIC_KEY is not an ed25519 public key (sgw update public-key --key KEY)"
fi
INPUTS=$( { sha256sum "$0" "$LOCK" "$HERE/sgw-appliance.ovf.in" "$TOP/README.md" "$SGW_BIN" ${UPDATE_PUBLIC_KEY:+"$UPDATE_PUBLIC_KEY"}
            (cd "$HERE/rootfs" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
            echo "$SOURCE_DATE_EPOCH"; } | sha256sum | cut -c1-64)
if [ "${1:-}" != --update-lock ] && [ "$(cat "$OUT/INPUTS" 2>/dev/null)" = "$INPUTS" ] &&
   (cd "$OUT" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
    echo "== up to date: $OUT holds the images of these inputs ($INPUTS)"
    exit 0
fi
rm -f "$OUT/INPUTS"

# ---- the package lock -----------------------------------------------------
if [ "${1:-}" = --update-lock ] || [ ! -f "$LOCK" ]; then
    step "resolving the package list into $LOCK"
    rm -rf "$WORK/lock-tree"
    mmdebstrap --mode=root --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --customize-hook='chroot "$1" dpkg-query -W -f="\${Package}=\${Version}\n" > "$1/../lock.new"' \
        "$SUITE" "$WORK/lock-tree" "$MIRROR" > "$WORK/lock.log" 2>&1 || { tail -30 "$WORK/lock.log"; die "mmdebstrap failed"; }
    { echo "# Every package in the appliance's root, pinned (appliance-image/build.sh --update-lock)."
      echo "# suite: $SUITE"; sort "$WORK/lock.new"; } > "$LOCK"
    rm -rf "$WORK/lock-tree" "$WORK/lock.new"
fi
LOCK_HASH=$(sha256sum "$LOCK" | cut -c1-16)
PINNED=$(grep -v '^#' "$LOCK" | paste -sd, -)

# ---- stage 1: the Debian tree (cached per lock file) ----------------------
BASE=$WORK/base-$LOCK_HASH.tar
if [ ! -f "$BASE" ]; then
    step "stage 1: mmdebstrap $SUITE with the locked packages"
    t=$(date +%s)
    mmdebstrap --mode=root --variant=minbase --include="$PINNED" \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*' \
        "$SUITE" "$WORK/base.tmp.tar" "$MIRROR" > "$WORK/stage1.log" 2>&1 \
        || { tail -30 "$WORK/stage1.log"; die "mmdebstrap failed (a pinned version gone from the mirror? run with --update-lock)"; }
    mv "$WORK/base.tmp.tar" "$BASE"
    echo "   $(( $(date +%s) - t )) s"
fi

# ---- stage 2: the appliance's files ----------------------------------------
step "stage 2: the appliance's root"
ROOT=$WORK/root
cleanup() { for d in dev/pts dev sys proc; do mountpoint -q "$ROOT/$d" && umount "$ROOT/$d"; done; return 0; }
trap cleanup EXIT
cleanup
rm -rf "$ROOT" && mkdir -p "$ROOT"
tar -C "$ROOT" -xpf "$BASE"
cp -a "$HERE/rootfs/." "$ROOT/"
chown -R 0:0 "$ROOT/etc/sgw" "$ROOT/etc/systemd" "$ROOT/etc/repart.d"
# Without its debug info (the release profile keeps it for profiling):
# a fifth of the size.
install -m 0755 "$SGW_BIN" "$ROOT/usr/bin/sgw"
strip --strip-debug "$ROOT/usr/bin/sgw"
# Every library it needs is in the image (a missing one only shows at boot).
missing=$(chroot "$ROOT" ldd /usr/bin/sgw | grep 'not found' || true)
[ -z "$missing" ] || die "sgw needs libraries the image lacks (add their packages to PACKAGES, then --update-lock): $missing"
chroot "$ROOT" /usr/bin/sgw --version > /dev/null || die "sgw does not run in the image"
if [ -n "$UPDATE_PUBLIC_KEY" ]; then
    install -m 0644 "$UPDATE_PUBLIC_KEY" "$ROOT/etc/sgw/update-key.pub"
    printf '# Update packages must be signed with this key (sgw update pack).\nupdate_public_key = "/etc/sgw/update-key.pub"\n' >> "$ROOT/etc/sgw/sgw.toml"
fi
install -d -m 0755 "$ROOT/usr/share/doc/sgw"
install -m 0644 "$TOP/README.md" "$ROOT/usr/share/doc/sgw/README.md"
# No passwords anywhere: root is locked; there is no SSH server.
sed -i 's/^root:[^:]*:/root:*:/' "$ROOT/etc/shadow"
# A machine id made at first boot, not baked into every copy.
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -sf /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
KVER=$(basename "$(ls -d "$ROOT"/usr/lib/modules/*/ | head -1)")
mount -t proc proc "$ROOT/proc"; mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"; mount --bind /dev/pts "$ROOT/dev/pts"
chroot "$ROOT" systemctl enable sgw.service sgw-console@tty1.service sgw-console@ttyS0.service \
    systemd-networkd.service systemd-resolved.service systemd-networkd-wait-online.service chrony.service \
    > "$WORK/enable.log" 2>&1 || { cat "$WORK/enable.log"; die "systemctl enable failed"; }
# The console takes the login prompts' place (root is locked anyway).
chroot "$ROOT" systemctl mask getty@tty1.service serial-getty@ttyS0.service >> "$WORK/enable.log" 2>&1 \
    || { cat "$WORK/enable.log"; die "systemctl mask failed"; }
chroot "$ROOT" update-initramfs -u -k "$KVER" > "$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log"; die "update-initramfs failed"; }
cleanup
trap - EXIT
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
# Fixed times for every file, so the tree's manifest repeats.
find "$ROOT" -xdev -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
(cd "$ROOT" && find . -xdev \( -type f -o -type l -o -type d \) -print0 | LC_ALL=C sort -z |
    while IFS= read -r -d '' p; do
        if [ -f "$p" ] && [ ! -L "$p" ]; then h=$(sha256sum < "$p" | cut -c1-64); elif [ -L "$p" ]; then h="-> $(readlink "$p")"; else h=-; fi
        printf '%s %s %s\n' "$(stat -c '%a %u:%g' "$p")" "$p" "$h"
    done) > "$OUT/rootfs.manifest"

# ---- stage 3: the disk ------------------------------------------------------
step "stage 3: ESP, root file system, GPT"
D=$WORK/disk
rm -rf "$D" && mkdir -p "$D"
export MTOOLS_SKIP_CHECK=1
mkfs.vfat -C -F 32 -n ESP -i 5d5a0001 "$D/esp.img" $(( ESP_MIB * 1024 )) > /dev/null
mmd -i "$D/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$D/esp.img" "$BOOT_EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$D/esp.img" "$WORK/vmlinuz" ::/vmlinuz
mcopy -i "$D/esp.img" "$WORK/initrd.img" ::/initrd.img
printf 'default sgw.conf\ntimeout 0\n' > "$D/loader.conf"
printf 'title sgw storage gateway\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=LABEL=root ro console=tty0 console=ttyS0,115200 quiet\n' > "$D/sgw.conf"
mcopy -i "$D/esp.img" "$D/loader.conf" ::/loader/loader.conf
mcopy -i "$D/esp.img" "$D/sgw.conf" ::/loader/entries/sgw.conf
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L root -U 5d5a0000-0000-4000-8000-000000000001 \
    -E root_owner=0:0,hash_seed=5d5a0000-0000-4000-8000-000000000002 -d "$ROOT" "$D/root.img" ${ROOT_MIB}M
# GPT: the ESP, then the root (the discoverable x86-64 root type, which
# systemd-repart grows at first boot).
DISK=$D/disk.raw
truncate -s $(( (1 + ESP_MIB + ROOT_MIB + 1) * 1024 * 1024 )) "$DISK"
sfdisk -q "$DISK" <<EOF
label: gpt
label-id: 5D5A0000-0000-4000-8000-000000000000
start=1MiB, size=${ESP_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=5D5A0000-0000-4000-8000-0000000000E5, name=esp
start=$(( 1 + ESP_MIB ))MiB, size=${ROOT_MIB}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=5D5A0000-0000-4000-8000-000000000011, name=root
EOF
dd if="$D/esp.img" of="$DISK" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$D/root.img" of="$DISK" bs=1M seek=$(( 1 + ESP_MIB )) conv=notrunc,sparse status=none

# ---- stage 4: the formats -------------------------------------------------
step "stage 4: qcow2, vmdk, ova, vhdx"
t=$(date +%s)
N=sgw-appliance
rm -f "$OUT/$N".{qcow2,vmdk,vhdx,ova,ovf,mf}
qemu-img convert -q -O qcow2 -c "$DISK" "$OUT/$N.qcow2"
qemu-img convert -q -O vmdk -o subformat=streamOptimized "$DISK" "$OUT/$N.vmdk"
qemu-img convert -q -O vhdx -o subformat=dynamic "$DISK" "$OUT/$N.vhdx"
DISK_BYTES=$(stat -c %s "$DISK")
VMDK_BYTES=$(stat -c %s "$OUT/$N.vmdk")
sed -e "s/@DISK_BYTES@/$DISK_BYTES/g" -e "s/@VMDK_BYTES@/$VMDK_BYTES/g" -e "s/@VERSION@/$("$SGW_BIN" --version | awk '{print $2}')/g" \
    "$HERE/sgw-appliance.ovf.in" > "$D/$N.ovf"
(cd "$D" && cp "$OUT/$N.vmdk" . &&
    printf 'SHA256(%s)= %s\n' "$N.ovf" "$(sha256sum "$N.ovf" | cut -c1-64)" "$N.vmdk" "$(sha256sum "$N.vmdk" | cut -c1-64)" > "$N.mf" &&
    tar --format=ustar --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" -cf "$OUT/$N.ova" "$N.ovf" "$N.mf" "$N.vmdk")
(cd "$OUT" && sha256sum "$N.qcow2" "$N.vmdk" "$N.ova" "$N.vhdx" > SHA256SUMS)
CONVERT_S=$(( $(date +%s) - t ))

mib() { echo $(( ($(stat -c %s "$1") + 1048575) / 1048576 )); }
{
    echo "sgw:            $("$SGW_BIN" --version)"
    echo "kernel:         $KVER"
    echo "lock:           $LOCK ($(grep -vc '^#' "$LOCK") packages, $LOCK_HASH)"
    echo "source date:    $SOURCE_DATE_EPOCH"
    echo "root tree:      $(du -sm "$ROOT" | cut -f1) MiB in a ${ROOT_MIB} MiB ext4 ($(mib "$D/root.img") MiB allocated)"
    echo "disk:           $(( DISK_BYTES / 1048576 )) MiB (GPT: ESP ${ESP_MIB} MiB, root ${ROOT_MIB} MiB)"
    for f in qcow2 vmdk ova vhdx; do echo "$N.$f: $(mib "$OUT/$N.$f") MiB"; done
    echo "formats:        ${CONVERT_S} s"
    echo "total:          $(( $(date +%s) - T0 )) s"
} > "$OUT/BUILD-INFO"
cat "$OUT/BUILD-INFO"
echo "$INPUTS" > "$OUT/INPUTS"
