#!/usr/bin/env bash
# Makes a small vfat disk image labelled FTFWCFG holding the given files,
# for the appliance's first-boot configuration (see --help).
set -euo pipefail

prog=$(basename "$0")
label=FTFWCFG
size_kb=2048

usage() {
    cat <<EOF
Usage: $prog [--label NAME] [--size-kb N] IMAGE FILE...

Writes IMAGE, a vfat disk image (no partition table) labelled $label
holding FILEs, which the appliance copies at every boot (ftfw-config.service):
  ftfwd.toml, rules.conf, *.rules  -> /etc/ftfw/
  keepalived.conf                  -> /etc/keepalived/ (starts keepalived)
  *.network, *.netdev, *.link      -> /etc/systemd/network/ (addresses,
                                      e.g. the sync link's)
  ftfwd.default                    -> /etc/default/ftfwd (hugepages:
                                      FTFW_HUGEPAGES_ARGS="--pages N")
  hostname                         -> the host name
  root.passwd                      -> root's password hash (openssl passwd -6)
Attach it as a second disk. An existing IMAGE is replaced.

Options:
      --label NAME   file system label (default $label; the appliance looks
                     for ftfw.config_label=NAME on its kernel command line)
      --size-kb N    image size (default $size_kb kB)
  -h, --help         this help
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --label) [ $# -ge 2 ] || die "$1 needs a value"; label=$2; shift 2 ;;
        --size-kb) [ $# -ge 2 ] || die "$1 needs a value"; size_kb=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { usage >&2; die "need an IMAGE and at least one FILE"; }
[[ "$size_kb" =~ ^[0-9]+$ ]] || die "--size-kb must be a number, not '$size_kb'"
image=$1
shift
for tool in mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dosfstools mtools)"
done
for f in "$@"; do
    [ -f "$f" ] || die "no such file: $f"
done
rm -f "$image"
mkfs.vfat -C -n "$label" "$image" "$size_kb" >/dev/null
# -D o: overwrite a file given twice instead of asking.
mcopy -D o -i "$image" "$@" ::/
