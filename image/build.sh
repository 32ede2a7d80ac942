#!/usr/bin/env bash
# Builds the ftfw appliance image from Debian 12 packages with mmdebstrap:
# a bootable GPT disk (UEFI, GRUB) for bare metal, and the same root
# filesystem as a partitionless ext4 image (label ftfwroot) plus the kernel
# and initrd for qemu's direct kernel boot with the command line in
# cmdline.txt. See --help and README.md
# ("The appliance image").
set -euo pipefail

prog=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$repo/target/image
bin_dir=""
sources=()
suite=bookworm
extra_mb=96

usage() {
    cat <<EOF
Usage: $prog [options]

Builds a bootable ftfw appliance from Debian 12 ($suite) packages with
mmdebstrap (minbase variant, no recommends): linux-image-amd64, systemd,
udev, iproute2, ethtool, keepalived, jq, and ftfwd and ftfwctl built from
this tree (cargo build --release -p ftfw-control). Must run as root.

Writes to the output directory (default target/image):
  ftfw-disk.img   the bootable disk for bare metal: GPT, a 64 MB EFI system
                  partition with GRUB (the removable-media loader
                  EFI/BOOT/BOOTX64.EFI), the kernel and the initrd, then
                  the root filesystem as partition 2. Write it to a disk or
                  USB stick (dd) and boot it with UEFI firmware
  ftfw-root.img   the root filesystem: a partitionless ext4 image labelled
                  ftfwroot (raw, sparse)
  vmlinuz         the kernel, and
  initrd.img      its initramfs, both from the image's /boot
  cmdline.txt     the kernel command line (serial console on ttyS0)
  build-info.txt  what went in (versions, sizes, build time)
Boot it, e.g.:
  qemu-system-x86_64 -enable-kvm -m 512 -nographic \\
    -kernel vmlinuz -initrd initrd.img -append "\$(cat cmdline.txt)" \\
    -drive file=ftfw-root.img,format=raw,if=virtio \\
    -drive file=config.img,format=raw,if=virtio
where config.img is a configuration disk made by image/config-disk.sh;
or boot the whole disk through UEFI firmware as a machine would:
  qemu-system-x86_64 -m 512 -nographic -bios /usr/share/ovmf/OVMF.fd \\
    -drive file=ftfw-disk.img,format=raw,if=virtio \\
    -drive file=config.img,format=raw,if=virtio

Running it again rebuilds everything from scratch in OUT/.work and then
replaces the previous files; an interrupted run leaves the previous image
as it was.

Options:
  -o, --out DIR        output directory (default $out)
      --bin-dir DIR    take ftfwd and ftfwctl from DIR instead of building
                       them (cargo build --release -p ftfw-control)
      --sources FILE   apt sources for the image (one-line or deb822 file);
                       may be repeated. Default: the host's own apt sources
                       (/etc/apt/sources.list and /etc/apt/sources.list.d/
                       *.list, *.sources)
      --extra-mb N     free space left in the root filesystem (default
                       $extra_mb MB)
  -h, --help           this help

Exit status: 0 when the image was built; 1 on any failure, with the reason
on stderr.
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        -o|--out) [ $# -ge 2 ] || die "$1 needs a value"; out=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "$1 needs a value"; bin_dir=$2; shift 2 ;;
        --sources) [ $# -ge 2 ] || die "$1 needs a value"; sources+=("$2"); shift 2 ;;
        --extra-mb) [ $# -ge 2 ] || die "$1 needs a value"; extra_mb=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ "$extra_mb" =~ ^[0-9]+$ ]] || die "--extra-mb must be a number, not '$extra_mb'"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root, mkfs)"
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mmd mcopy sfdisk grub-mkstandalone; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap e2fsprogs dosfstools mtools fdisk grub-common grub-efi-amd64-bin)"
done

started=$(date +%s)

# --- apt sources: the host's, unless given ---------------------------------
if [ ${#sources[@]} -eq 0 ]; then
    [ -s /etc/apt/sources.list ] && grep -q '^[[:space:]]*deb ' /etc/apt/sources.list \
        && sources+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -s "$f" ] && sources+=("$f")
    done
    [ ${#sources[@]} -gt 0 ] || die "the host has no apt sources; pass --sources FILE"
fi
for f in "${sources[@]}"; do
    [ -f "$f" ] || die "no such sources file: $f"
done

# --- ftfwd and ftfwctl -----------------------------------------------------
if [ -z "$bin_dir" ]; then
    echo "== building ftfwd and ftfwctl (cargo build --release -p ftfw-control)"
    (cd "$repo" && cargo build --release --locked -p ftfw-control --bins)
    bin_dir=$repo/target/release
fi
for b in ftfwd ftfwctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found or not executable"
done

# --- root filesystem ---------------------------------------------------------
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/.work
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# Staged files copied into the image by the customize hooks.
stage=$work/stage
mkdir -p "$stage/usr/sbin"
cp -a "$here/overlay/." "$stage/"
# Stripped: the release profile keeps debug info (tens of MB).
install -s -m 0755 "$bin_dir/ftfwd" "$bin_dir/ftfwctl" "$stage/usr/sbin/"
install -m 0755 "$repo/hugepages.sh" "$stage/usr/sbin/ftfw-hugepages"

packages=systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,zstd,iproute2,ethtool,keepalived,jq,procps,less
# Kernel modules no firewall appliance loads (graphics, sound, media,
# wireless, Bluetooth, InfiniBand, staging, exotic file systems): removed
# before the initramfs is made, about half of /lib/modules.
prune="drivers/gpu drivers/media sound drivers/net/wireless net/wireless
net/mac80211 drivers/infiniband drivers/bluetooth net/bluetooth
drivers/staging drivers/iio drivers/isdn drivers/net/can net/can
drivers/input/touchscreen drivers/comedi fs/ocfs2 fs/gfs2 fs/btrfs fs/xfs
fs/nfs fs/nfsd fs/ceph fs/smb fs/cifs fs/ntfs3 fs/f2fs fs/jfs fs/reiserfs
fs/ubifs fs/nilfs2"

echo "== mmdebstrap ($suite, minbase, no recommends) from: ${sources[*]}"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --include="$packages" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "COMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/ftfw"' \
    --customize-hook="sync-in $stage /" \
    --customize-hook='echo ftfw > "$1/etc/hostname"' \
    --customize-hook='printf "LABEL=ftfwroot / ext4 defaults,errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
    --customize-hook='mkdir -p "$1/etc/ftfw"' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd.service ftfw-config.service ftfw-hugepages.service ftfw-ports.service ftfwd.service ftfw-boot-report.service' \
    --customize-hook="for d in $(echo $prune); do rm -rf \"\$1\"/lib/modules/*/kernel/\$d; done" \
    --customize-hook='for k in "$1"/lib/modules/*; do chroot "$1" depmod "$(basename "$k")"; done' \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$suite" "$rootfs" "${sources[@]}"

# --- kernel, initrd, file system -------------------------------------------
kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)
kver=${kernel##*/vmlinuz-}
[ -f "$rootfs/boot/initrd.img-$kver" ] || die "no initrd for kernel $kver in the image"
cp "$kernel" "$work/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$work/initrd.img"
echo "root=LABEL=ftfwroot rw console=ttyS0,115200 net.ifnames=0" > "$work/cmdline.txt"

used_mb=$(du -sm "$rootfs" | cut -f1)
size_mb=$(( used_mb + used_mb / 10 + extra_mb ))
echo "== ext4 root filesystem: ${used_mb} MB used, ${size_mb} MB image"
mkfs.ext4 -q -L ftfwroot -m 1 -d "$rootfs" "$work/ftfw-root.img" "${size_mb}M"

# --- the bootable disk: GPT, an EFI system partition with GRUB, the root ----
# What a bare-metal machine (or qemu with UEFI firmware) boots: GRUB as the
# removable-media loader /EFI/BOOT/BOOTX64.EFI (a standalone image with its
# configuration inside, no menu), the kernel and initrd beside it on the
# EFI system partition, and the root filesystem above as partition 2.
# Assembled in a plain file (sfdisk, mtools, dd): no loop device, no mount.
esp_mb=64
disk_cmdline="root=LABEL=ftfwroot rw console=tty0 console=ttyS0,115200 net.ifnames=0"
printf '%s\n' 'set timeout=0' 'insmod efi_gop' \
    'search --no-floppy --file --set=root /ftfw/vmlinuz' \
    "linux /ftfw/vmlinuz $disk_cmdline" \
    'initrd /ftfw/initrd.img' 'boot' > "$work/grub.cfg"
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
    --modules="part_gpt fat search search_fs_file linux normal efi_gop" \
    --locales= --fonts= --themes= \
    "boot/grub/grub.cfg=$work/grub.cfg"
mkfs.vfat -n FTFWEFI -C "$work/esp.img" $(( esp_mb * 1024 )) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/ftfw
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/vmlinuz" "$work/initrd.img" ::/ftfw/
# 1 MiB for the GPT in front, 1 MiB for its backup at the end.
disk=$work/ftfw-disk.img
disk_mb=$(( 1 + esp_mb + size_mb + 1 ))
truncate -s "${disk_mb}M" "$disk"
printf '%s\n' 'label: gpt' \
    "start=2048, size=$(( esp_mb * 2048 )), type=U, name=\"EFI system\"" \
    "start=$(( (1 + esp_mb) * 2048 )), size=$(( size_mb * 2048 )), type=L, name=ftfwroot" \
    | sfdisk --quiet "$disk"
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/ftfw-root.img" of="$disk" bs=1M seek=$(( 1 + esp_mb )) conv=notrunc,sparse status=none
rm -f "$work/esp.img" "$work/BOOTX64.EFI" "$work/grub.cfg"

{
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - started )) s"
    echo "bootable disk: ${disk_mb} MB (GPT: ${esp_mb} MB EFI system partition with GRUB, the root partition)"
    echo "suite: $suite (mmdebstrap minbase, no recommends)"
    echo "kernel: $kver"
    echo "ftfwd: $(sha256sum "$bin_dir/ftfwd" | cut -c1-16) ($bin_dir/ftfwd)"
    echo "root filesystem: ${used_mb} MB used of ${size_mb} MB"
    echo "kernel + initrd: $(du -ck "$work/vmlinuz" "$work/initrd.img" | tail -n 1 | cut -f1) kB"
    echo "packages: $(chroot "$rootfs" dpkg-query -W -f '.\n' | wc -l)"
} > "$work/build-info.txt"
rm -rf "$rootfs" "$stage"

# Replace the previous image only now that the new one is complete.
for f in ftfw-disk.img ftfw-root.img vmlinuz initrd.img cmdline.txt build-info.txt; do
    mv -f "$work/$f" "$out/$f"
done
cat "$out/build-info.txt"
echo "== done: $out"
