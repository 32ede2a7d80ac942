#!/usr/bin/env bash
# Reserves hugepages and mounts hugetlbfs for ftfwd's DPDK backend, and
# optionally binds NICs to vfio-pci. Idempotent: running it twice changes
# nothing the second time. See --help.
set -euo pipefail

prog=$(basename "$0")
pages=256
size=2M
mount_point=/dev/hugepages
node=""
bind=()
dry_run=0

usage() {
    cat <<EOF
Usage: $prog [options]

Reserves hugepages for DPDK on every NUMA node (or one), mounts hugetlbfs,
and optionally binds network devices to vfio-pci with dpdk-devbind.py.
Running it again with the same options changes nothing.

Options:
  -n, --pages N         pages to reserve per NUMA node (default $pages)
  -s, --size 2M|1G      page size (default $size; 1G pages are best reserved
                        at boot: hugepagesz=1G hugepages=N on the kernel line)
      --node N          reserve on NUMA node N only (default: every node)
  -m, --mount DIR       hugetlbfs mount point (default $mount_point)
  -b, --bind PCI        bind the device at PCI address PCI (0000:03:00.0) to
                        vfio-pci; may be repeated. The interface must be down.
      --dry-run         print what would be done, change nothing
  -h, --help            this help

Exit status: 0 when the requested pages are reserved (and mounted, and
devices bound); 1 on any failure, with the reason on stderr.

Example (appliance boot, see configs/ftfwd-dpdk.service):
  $prog --pages 512 --bind 0000:03:00.0 --bind 0000:03:00.1
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }

run() {
    if [ "$dry_run" = 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# write VALUE FILE: like `echo VALUE > FILE`, honouring --dry-run.
write() {
    if [ "$dry_run" = 1 ]; then
        echo "would write $1 to $2"
    else
        echo "$1" > "$2" || die "cannot write $1 to $2"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        -n|--pages) [ $# -ge 2 ] || die "$1 needs a value"; pages=$2; shift 2 ;;
        -s|--size) [ $# -ge 2 ] || die "$1 needs a value"; size=$2; shift 2 ;;
        --node) [ $# -ge 2 ] || die "$1 needs a value"; node=$2; shift 2 ;;
        -m|--mount) [ $# -ge 2 ] || die "$1 needs a value"; mount_point=$2; shift 2 ;;
        -b|--bind) [ $# -ge 2 ] || die "$1 needs a value"; bind+=("$2"); shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ "$pages" =~ ^[0-9]+$ ]] || die "--pages must be a number, not '$pages'"
case "$size" in
    2M|2m|2048k|2048kB) kb=2048 ;;
    1G|1g|1048576k|1048576kB) kb=1048576 ;;
    *) die "--size must be 2M or 1G, not '$size'" ;;
esac
if [ -n "$node" ] && ! [[ "$node" =~ ^[0-9]+$ ]]; then
    die "--node must be a number, not '$node'"
fi
for dev in "${bind[@]}"; do
    [[ "$dev" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] \
        || die "'$dev' is not a PCI address like 0000:03:00.0"
    [ -e "/sys/bus/pci/devices/$dev" ] || die "no PCI device $dev"
done
if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "must run as root (or use --dry-run)"
fi

# --- reserve -------------------------------------------------------------
nodes_dir=/sys/devices/system/node
if [ -d "$nodes_dir/node0" ]; then
    if [ -n "$node" ]; then
        [ -d "$nodes_dir/node$node" ] || die "no NUMA node $node (have: $(ls -d $nodes_dir/node[0-9]* | xargs -n1 basename | tr '\n' ' '))"
        nodes=("$nodes_dir/node$node")
    else
        nodes=("$nodes_dir"/node[0-9]*)
    fi
    for n in "${nodes[@]}"; do
        f="$n/hugepages/hugepages-${kb}kB/nr_hugepages"
        [ -e "$f" ] || die "the kernel does not offer ${size} pages on $(basename "$n") ($f missing)"
        cur=$(cat "$f")
        if [ "$cur" -ge "$pages" ]; then
            echo "$(basename "$n"): $cur ${size} pages reserved (>= $pages), unchanged"
            continue
        fi
        write "$pages" "$f"
        if [ "$dry_run" = 0 ]; then
            got=$(cat "$f")
            [ "$got" -ge "$pages" ] || die "$(basename "$n"): asked for $pages ${size} pages, the kernel gave $got (memory too fragmented or too small; reserve at boot instead)"
            echo "$(basename "$n"): $got ${size} pages reserved"
        fi
    done
else
    # No NUMA information (some VMs): the global pool.
    [ -z "$node" ] || die "no NUMA nodes in $nodes_dir; drop --node"
    f="/sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages"
    [ -e "$f" ] || die "the kernel does not offer ${size} pages ($f missing)"
    cur=$(cat "$f")
    if [ "$cur" -ge "$pages" ]; then
        echo "$cur ${size} pages reserved (>= $pages), unchanged"
    else
        write "$pages" "$f"
        if [ "$dry_run" = 0 ]; then
            got=$(cat "$f")
            [ "$got" -ge "$pages" ] || die "asked for $pages ${size} pages, the kernel gave $got"
            echo "$got ${size} pages reserved"
        fi
    fi
fi

# --- mount ---------------------------------------------------------------
if awk -v m="$mount_point" '$2 == m && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
    echo "hugetlbfs already mounted on $mount_point"
else
    run mkdir -p "$mount_point"
    run mount -t hugetlbfs -o "pagesize=${size^^}" nodev "$mount_point"
    [ "$dry_run" = 1 ] || echo "hugetlbfs mounted on $mount_point"
fi

# --- bind ----------------------------------------------------------------
if [ ${#bind[@]} -gt 0 ]; then
    devbind=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
    [ -n "$devbind" ] || die "dpdk-devbind.py not found (Debian: apt-get install dpdk)"
    for dev in "${bind[@]}"; do
        drv=$(basename "$(readlink -f "/sys/bus/pci/devices/$dev/driver" 2>/dev/null)" 2>/dev/null || true)
        if [ "$drv" = vfio-pci ]; then
            echo "$dev already bound to vfio-pci"
            continue
        fi
        if [ ! -d /sys/bus/pci/drivers/vfio-pci ]; then
            run modprobe vfio-pci || die "cannot load the vfio-pci module"
        fi
        run "$devbind" --bind=vfio-pci "$dev" \
            || die "binding $dev to vfio-pci failed (is its interface down? is the IOMMU on: intel_iommu=on / amd_iommu=on?)"
        [ "$dry_run" = 1 ] || echo "$dev bound to vfio-pci (was ${drv:-no driver})"
    done
fi
