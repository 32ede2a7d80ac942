#!/usr/bin/env bash
# Boots two copies of the appliance image under qemu as a replicated pair
# with the built-in election, runs transfers through the primary, kills the
# primary's qemu process mid-transfer and checks that every transfer
# completes through the backup. See --help.
#
#                  +-- fw1 VM (node 1, priority 200) --+
#  client --[brc]--+  eth0                        eth1 +--[brs]-- server
#                  +-- fw2 VM (node 2, priority 100) --+
#                      eth2 ====== [bry] sync link ====== eth2
set -euo pipefail

prog=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
image_dir=$repo/target/image
bin_dir=$repo/target/release
transfers=4
bytes=4000000
accel=auto
keep=0

usage() {
    cat <<EOF
Usage: $prog [options]

Needs root, qemu-system-x86_64, qemu-img, ovmf, iproute2, ethtool, dosfstools
and mtools, an image from image/build.sh and ftfw-lab (cargo build --release
-p ftfw-lab) for the transfers.

Creates network namespaces: a hub namespace with three Linux bridges
(ageing 0: client side, server side, sync link) holding each VM's three
taps, a client namespace (192.0.2.1) and a server namespace (192.0.2.2).
Boots two VMs (512 MB, one vCPU, KVM when usable, else TCG) from
copy-on-write overlays of the image: fw1 from the bootable disk
(ftfw-disk.img) through UEFI firmware (OVMF) and GRUB, as bare metal
boots; fw2 from the root filesystem by qemu's direct kernel boot; each with its own configuration disk
(image/config-disk.sh): transparent bridge eth0-eth1, FT-FW sync and the
election on eth2 (203.0.113.1/30 and .2). Reads the serial consoles: fails
on a kernel panic, a failed systemd unit or a boot that does not finish.
Then fetches objects through the primary (whichever node's ftfwd won the
election; FT-FW with defer: a flow passes only once the backup
acknowledged it), kills the primary's qemu (SIGKILL, by PID) while the
transfers are paused mid-way (64 KiB received, seen with ss), and checks every transfer completes
through the backup. Namespaces, taps and qemu processes are removed whatever
happens.

Options:
      --image-dir DIR   the image (default $image_dir)
      --bin-dir DIR     where ftfw-lab is (default $bin_dir)
      --transfers N     concurrent transfers when the primary dies (default $transfers)
      --bytes N         size of each (default $bytes)
      --accel A         auto, kvm or tcg (default auto: kvm when a probe
                        boot shows the kernel running within 10 s)
      --keep-logs       keep the serial logs and configs (printed at the end)
  -h, --help            this help

Exit status: 0 when both VMs booted cleanly and every transfer completed;
1 otherwise, with the reason on stderr and the consoles' tails.
EOF
}

die() { echo "$prog: FAIL: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --image-dir) [ $# -ge 2 ] || die "$1 needs a value"; image_dir=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "$1 needs a value"; bin_dir=$2; shift 2 ;;
        --transfers) [ $# -ge 2 ] || die "$1 needs a value"; transfers=$2; shift 2 ;;
        --bytes) [ $# -ge 2 ] || die "$1 needs a value"; bytes=$2; shift 2 ;;
        --accel) [ $# -ge 2 ] || die "$1 needs a value"; accel=$2; shift 2 ;;
        --keep-logs) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ "$transfers" =~ ^[1-9][0-9]*$ ]] || die "--transfers must be a positive number"
[[ "$bytes" =~ ^[1-9][0-9]*$ ]] || die "--bytes must be a positive number"
case "$accel" in auto|kvm|tcg) ;; *) die "--accel must be auto, kvm or tcg" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (namespaces, taps)"
for tool in qemu-system-x86_64 qemu-img ip ethtool mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-system-x86 qemu-utils iproute2 ethtool dosfstools mtools)"
done
ovmf=/usr/share/ovmf/OVMF.fd
[ -f "$ovmf" ] || die "$ovmf not found (apt-get install ovmf): fw1 boots the disk through UEFI firmware"
for f in ftfw-disk.img ftfw-root.img vmlinuz initrd.img cmdline.txt; do
    [ -f "$image_dir/$f" ] || die "$image_dir/$f missing: run image/build.sh"
done
lab=$bin_dir/ftfw-lab
[ -x "$lab" ] || die "$lab missing: cargo build --release -p ftfw-lab"

# --- cleanup, whatever happens -----------------------------------------------
tag=$$
ns_h=ftfwimg-h-$tag
ns_c=ftfwimg-c-$tag
ns_s=ftfwimg-s-$tag
work=$(mktemp -d /tmp/ftfw-boot-test.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    for n in "$ns_c" "$ns_s" "$ns_h"; do
        ip netns del "$n" 2>/dev/null || true
    done
    if [ "$rc" != 0 ]; then
        for v in 1 2; do
            [ -f "$work/fw$v.serial" ] || continue
            echo "--- fw$v serial console (last 40 lines)" >&2
            sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$work/fw$v.serial" | tail -n 40 >&2
        done
    fi
    if [ "$keep" = 1 ]; then
        echo "logs kept in $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(now_ms)
log() { printf '[%6.1f s] %s\n' "$(( $(now_ms) - t0 ))e-3" "$*"; }

# --- acceleration --------------------------------------------------------------
# /dev/kvm may exist and still not run guests (nested virtualisation off):
# a probe boot must print the kernel banner on the serial port.
kvm_works() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    local out=$work/kvm-probe.serial
    timeout 10 qemu-system-x86_64 -accel kvm -m 128 -no-reboot -display none \
        -monitor none -serial "file:$out" -kernel "$image_dir/vmlinuz" \
        -append "console=ttyS0 panic=-1" >/dev/null 2>&1 &
    local p=$! i
    for i in $(seq 100); do
        if grep -q 'Linux version' "$out" 2>/dev/null; then
            kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
            return 0
        fi
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
    return 1
}
if [ "$accel" = auto ]; then
    if kvm_works; then accel=kvm; else accel=tcg; fi
fi
if [ "$accel" = kvm ]; then
    accel_args=(-accel kvm -cpu host)
    boot_timeout=90
else
    accel_args=(-accel tcg)
    boot_timeout=300
fi
log "accelerator: $accel (boot timeout ${boot_timeout} s)"

# --- namespaces, hubs, taps ------------------------------------------------------
for n in "$ns_h" "$ns_c" "$ns_s"; do
    ip netns add "$n"
    ip -n "$n" link set lo up
done
for br in brc brs bry; do
    ip -n "$ns_h" link add "$br" type bridge ageing_time 0 stp_state 0 mcast_snooping 0
    ip -n "$ns_h" link set "$br" up
done
# Client and server: a veth each into their hub, offloads off so frames on
# the wire are complete.
ip link add c0 netns "$ns_c" type veth peer name hc netns "$ns_h"
ip link add s0 netns "$ns_s" type veth peer name hs netns "$ns_h"
ip -n "$ns_h" link set hc master brc
ip -n "$ns_h" link set hs master brs
for pair in "$ns_c c0" "$ns_s s0" "$ns_h hc" "$ns_h hs"; do
    set -- $pair
    ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null
    ip -n "$1" link set "$2" up
done
ip -n "$ns_c" addr add 192.0.2.1/24 dev c0
ip -n "$ns_s" addr add 192.0.2.2/24 dev s0
# Each VM: taps for eth0 (client side), eth1 (server side), eth2 (sync).
for v in 1 2; do
    for pair in "o brc" "i brs" "y bry"; do
        set -- $pair
        ip -n "$ns_h" tuntap add dev "t$v$1" mode tap
        ip -n "$ns_h" link set "t$v$1" master "$2"
        ip -n "$ns_h" link set "t$v$1" up
    done
done

# --- configuration disks -----------------------------------------------------------
key=5f0e1d2c3b4a69788796a5b4c3d2e1f0
for v in 1 2; do
    d=$work/cfg$v
    mkdir -p "$d"
    if [ "$v" = 1 ]; then
        local_ip=203.0.113.1 peer_ip=203.0.113.2 prio=200 peer_node=2 peer_prio=100
    else
        local_ip=203.0.113.2 peer_ip=203.0.113.1 prio=100 peer_node=1 peer_prio=200
    fi
    cat > "$d/ftfwd.toml" <<EOF
# fw$v of the boot test's pair (transparent bridge eth0-eth1, sync on eth2).
[daemon]
log_level = "info"

[dataplane]
workers = 1

[[port]]
name = "outside"
backend = "af_packet"
interface = "eth0"

[[port]]
name = "inside"
backend = "af_packet"
interface = "eth1"

[[bridge]]
ports = ["outside", "inside"]

[conntrack]
capacity = 65536

[rules]
policy = "drop"
file = "/etc/ftfw/rules.conf"

[sync]
local = "$local_ip"
peer = "$peer_ip"
interface = "eth2"
alive_interval_ms = 100
transport = "ftfw"
# A new flow's first packet waits until the peer has acknowledged the flow.
defer = true

[failover]
mode = "election"
node = $v
priority = $prio
key = "$key"
check_interval_ms = 50

[[failover.peer]]
node = $peer_node
address = "$peer_ip"
priority = $peer_prio
EOF
    cat > "$d/rules.conf" <<EOF
policy drop
accept ct established,related
accept in outside proto tcp dport 8080 ct new
accept proto icmp
EOF
    cat > "$d/sync.network" <<EOF
[Match]
Name=eth2

[Network]
Address=$local_ip/30
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
    echo "fw$v" > "$d/hostname"
    echo 'FTFW_HUGEPAGES_ARGS="--pages 16"' > "$d/ftfwd.default"
    "$here/config-disk.sh" "$work/cfg$v.img" "$d"/ftfwd.toml "$d"/rules.conf \
        "$d"/sync.network "$d"/hostname "$d"/ftfwd.default
done

# --- boot ---------------------------------------------------------------------------
# fw1 boots the bootable disk through UEFI firmware (OVMF, then GRUB from
# the EFI system partition), as a bare-metal machine would; fw2 boots the
# root filesystem image with qemu's direct kernel boot.
cmdline="$(cat "$image_dir/cmdline.txt") panic=-1"
declare -A qemu_pid boot_ms
for v in 1 2; do
    if [ "$v" = 1 ]; then
        qemu-img create -q -f qcow2 -b "$image_dir/ftfw-disk.img" -F raw "$work/fw$v.qcow2"
        boot=(-bios "$ovmf")
    else
        qemu-img create -q -f qcow2 -b "$image_dir/ftfw-root.img" -F raw "$work/fw$v.qcow2"
        boot=(-kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" -append "$cmdline")
    fi
    nics=()
    for i in 0 1 2; do
        tap=t$v$(echo o i y | cut -d' ' -f$((i + 1)))
        # romfile= : no iPXE option ROM, so the firmware boots the disk.
        nics+=(-netdev "tap,id=n$i,ifname=$tap,script=no,downscript=no"
               -device "virtio-net-pci,netdev=n$i,mac=52:54:00:f7:0$v:0$i,romfile=")
    done
    # In the hub namespace, where the taps are; `ip netns exec` execs qemu,
    # so $! is qemu's PID.
    ip netns exec "$ns_h" qemu-system-x86_64 "${accel_args[@]}" -m 512 -smp 1 \
        -name "ftfw-fw$v" -no-reboot -display none -monitor none \
        -serial "file:$work/fw$v.serial" \
        "${boot[@]}" \
        -drive "if=none,id=root,file=$work/fw$v.qcow2,format=qcow2" \
        -device virtio-blk-pci,drive=root,bootindex=1 \
        -drive "file=$work/cfg$v.img,format=raw,if=virtio" \
        "${nics[@]}" >"$work/fw$v.qemu.log" 2>&1 &
    qemu_pid[$v]=$!
    pids+=("$!")
done
started=$(now_ms)
log "booting fw1 (qemu pid ${qemu_pid[1]}) and fw2 (qemu pid ${qemu_pid[2]})"

# serial V: fw V's console without terminal escapes.
# A getty's prompt may share a line with a report line, so patterns are
# not anchored at the line start.
serial() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$work/fw$1.serial" 2>/dev/null | tr -d '\r'; }
boot_errors() {
    serial "$1" | grep -a -E 'Kernel panic|FAILED|Failed to start|BUG: |Oops|ftfw-boot-failed' || true
}
# role V: fw V's last role line ("role=... synced=... external=N").
role() { serial "$1" | grep -a -o 'ftfw-role: .*' | tail -n 1 | sed 's/^ftfw-role: //'; }
# wait_console V PATTERN SECONDS WHAT: until fw V's console matches.
wait_console() { wait_for "$1" "$3" "$4" console_has "$1" "$2"; }
console_has() { serial "$1" | grep -a -q -E "$2"; }
# wait_role V PATTERN SECONDS WHAT: until fw V's last role line matches.
wait_role() { wait_for "$1" "$3" "$4" role_is "$1" "$2"; }
role_is() { role "$1" | grep -q -E "$2"; }
# wait_for V SECONDS WHAT COMMAND...: until COMMAND succeeds; fails at once
# on boot errors on fw V's console or when its qemu has gone.
wait_for() {
    local v=$1 secs=$2 what=$3 deadline
    shift 3
    deadline=$(( $(now_ms) + secs * 1000 ))
    while ! "$@"; do
        local errs
        errs=$(boot_errors "$v")
        [ -z "$errs" ] || die "fw$v: boot errors on the console:"$'\n'"$errs"
        kill -0 "${qemu_pid[$v]}" 2>/dev/null || die "fw$v: qemu exited ($(tail -n 3 "$work/fw$v.qemu.log"))"
        [ "$(now_ms)" -lt "$deadline" ] || die "fw$v: no '$what' within ${secs} s"
        sleep 0.2
    done
}
for v in 1 2; do
    wait_console "$v" 'ftfw-boot: ' "$boot_timeout" "boot finished"
    boot_ms[$v]=$(( $(now_ms) - started ))
    line=$(serial "$v" | grep -a -m1 -o 'ftfw-boot: .*')
    log "fw$v: $line"
    wait_console "$v" 'ftfw-boot-time: ' 10 "boot time line"
    log "fw$v: $(serial "$v" | grep -a -m1 -o 'ftfw-boot-time: .*')"
    case "$line" in
        *"state=running failed=none "*"ftfwd=active"*) ;;
        *) die "fw$v did not boot cleanly: $line" ;;
    esac
    # fw1 must have come up through the firmware and GRUB, fw2 directly.
    want=bios
    [ "$v" = 1 ] && want=uefi
    case "$line" in
        *"firmware=$want"*) ;;
        *) die "fw$v did not boot through the expected path (firmware=$want): $line" ;;
    esac
    errs=$(boot_errors "$v")
    [ -z "$errs" ] || die "fw$v: boot errors on the console:"$'\n'"$errs"
done
# The primary is whichever ftfwd won the election: the node that started
# first (no preemption; fw1's firmware boot or fw2's direct boot may be
# quicker). The test kills that one and checks the other takes over.
pair_settled() {
    { role_is 1 'role=active ' && role_is 2 'role=backup synced=true '; } \
        || { role_is 2 'role=active ' && role_is 1 'role=backup synced=true '; }
}
wait_for 1 30 "one node active and the other a synced backup" pair_settled
if role_is 1 'role=active '; then p=1 b=2; else p=2 b=1; fi
log "fw$p active, fw$b a synced backup"

# --- transfers ------------------------------------------------------------------------
ip netns exec "$ns_s" "$lab" serve --listen 192.0.2.2:8080 >"$work/server.log" 2>&1 &
pids+=("$!")
fetch() { # BYTES PAUSE_MS: one fetch's JSON result
    ip netns exec "$ns_c" "$lab" fetch --connect 192.0.2.2:8080 --bytes "$1" \
        --stall-ms 30000 --pause-ms "$2" --json 2>/dev/null || true
}
deadline=$(( $(now_ms) + 30000 ))
until fetch 10000 0 | grep -q '"ok": *true'; do
    [ "$(now_ms)" -lt "$deadline" ] || die "no fetch through fw$p within 30 s"
    sleep 0.2
done
forwarding_ms=$(( $(now_ms) - started ))
log "first fetch through fw$p ${forwarding_ms} ms after qemu started"

# Transfers the client has received at least 64 KiB of (then each pauses).
# With [sync] defer = true a flow's first packet passed fw1 only once fw2
# had acknowledged the flow, so these are all known to fw2.
paused_transfers() {
    ip netns exec "$ns_c" ss -Htin state established '( dport = :8080 )' \
        | grep -o 'bytes_received:[0-9]*' | awk -F: '$2 >= 65536' | wc -l
}
paused_at_least() { [ "$(paused_transfers)" -ge "$1" ]; }
# Each transfer pauses after its first 64 KiB, long enough for the
# replication to be seen on fw2's console (slow under TCG) and the kill.
pause_ms=12000
for i in $(seq "$transfers"); do
    fetch "$bytes" "$pause_ms" > "$work/transfer$i.json" &
    pids+=("$!")
    tpid[$i]=$!
done
wait_for "$p" $(( pause_ms / 2000 )) "the $transfers transfers paused mid-way (64 KiB received)" \
    paused_at_least "$transfers"
for i in $(seq "$transfers"); do
    kill -0 "${tpid[$i]}" 2>/dev/null \
        || die "transfer $i ended before fw$p was killed: $(cat "$work/transfer$i.json")"
done
kill -KILL "${qemu_pid[$p]}"
killed=$(now_ms)
wait "${qemu_pid[$p]}" 2>/dev/null || true
log "fw$p killed (qemu pid ${qemu_pid[$p]}, SIGKILL) with $transfers transfers paused mid-way; fw$b last said: $(role $b)"
wait_role "$b" 'role=active ' 30 "fw$b active"
log "fw$b active $(( $(now_ms) - killed )) ms after the kill (as its console shows it)"
ok=0
for i in $(seq "$transfers"); do
    wait "${tpid[$i]}" || true
    if grep -q '"ok": *true' "$work/transfer$i.json"; then
        ok=$(( ok + 1 ))
    else
        echo "transfer $i: $(cat "$work/transfer$i.json")" >&2
    fi
done
log "transfers completed: $ok of $transfers, broken: $(( transfers - ok ))"
log "boot to ftfw-boot line: fw1 ${boot_ms[1]} ms, fw2 ${boot_ms[2]} ms ($accel); to first forwarded fetch: ${forwarding_ms} ms"
[ "$ok" = "$transfers" ] || die "$(( transfers - ok )) of $transfers transfers broke"
log "PASS"
