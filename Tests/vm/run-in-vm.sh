#!/usr/bin/env bash
# Run a command inside Debian's stock kernel (linux-image-amd64, 6.1 today) under
# QEMU in software emulation (TCG) with virtme-ng, and hand its output and exit
# status back to the host. Used to prove the kprobe and fentry attach modes, which
# the host kernel does not offer (see shared/KERNEL-NOTES.md).
#
# Usage: Tests/vm/run-in-vm.sh [--timeout SECS] [--cpus N] [--memory SIZE] [--keep] [--verbose] -- COMMAND [ARG...]
#
# Everything it needs is installed on first use (Debian packages, virtme-ng from
# PyPI, the kernel unpacked into .build-vm/ and its modules into /lib/modules).
# See Tests/vm/README.md.
set -euo pipefail

readonly PROG=run-in-vm
readonly VNG_PIP_SPEC='virtme-ng==1.42'
readonly DEBIAN_PACKAGES=(qemu-system-x86 kmod busybox-static iproute2)

T0=$(date +%s.%N)

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 125; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
    cat >&2 <<'EOF'
usage: Tests/vm/run-in-vm.sh [options] -- COMMAND [ARG...]

Boots Debian's stock kernel under QEMU (TCG, no KVM) with virtme-ng and runs
COMMAND as root inside it, in the current directory (the host's filesystem is
shared read-only; /tmp, /etc, /var, ... are throw-away overlays). Prints the
guest command's stdout+stderr and exits with its exit status.

options:
  --timeout SECS   bound for the whole run, setup included (default 600)
  --cpus N         guest vCPUs (default 2)
  --memory SIZE    guest memory, QEMU syntax (default 2G)
  --keep           keep the per-run folder (console log, output) under .build-vm/runs/
  --verbose        show the VM console log (kernel messages) even on success
  -h, --help       this text

Passed into the guest: every TINCTURE_* and PYTEST_* variable, CI, PATH, HOME,
LANG/LC_*, PYENV_*. The guest also gets TINCTURE_IN_VM=1 and TINCTURE_VM_RESULTS
(a folder that is writable in the guest and kept on the host with --keep).
Exit status: COMMAND's, or 124 on timeout, or 125 when the VM or the setup failed.
EOF
}

# ---------------------------------------------------------------- arguments
TIMEOUT=600
CPUS=2
MEMORY=2G
KEEP=0
VERBOSE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; TIMEOUT=$2; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --cpus) [ $# -ge 2 ] || die "--cpus needs a value"; CPUS=$2; shift 2 ;;
        --cpus=*) CPUS=${1#*=}; shift ;;
        --memory) [ $# -ge 2 ] || die "--memory needs a value"; MEMORY=$2; shift 2 ;;
        --memory=*) MEMORY=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --verbose) VERBOSE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) die "unexpected argument '$1': usage: $0 [--timeout SECS] [options] -- COMMAND [ARG...] (see --help)" ;;
    esac
done
[ $# -gt 0 ] || die "no command given: usage: $0 [--timeout SECS] [options] -- COMMAND [ARG...] (see --help)"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer number of seconds, got '$TIMEOUT'"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a positive integer, got '$CPUS'"
[[ "$MEMORY" =~ ^[1-9][0-9]*[MG]?$ ]] || die "--memory must look like 2G or 1536M, got '$MEMORY'"
[ "$(id -u)" = 0 ] || die "must run as root (installs packages, writes /lib/modules)"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported"

DEADLINE=$(( ${T0%.*} + TIMEOUT ))
# Runs a setup command bounded by what is left of --timeout.
bounded() {
    local r=$(( DEADLINE - $(date +%s) ))
    [ "$r" -gt 0 ] || { say "timed out after ${TIMEOUT}s (during setup)"; exit 124; }
    timeout --kill-after=10 "$r" "$@"
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE="$REPO_ROOT/.build-vm"
# virtme-ng pastes paths unquoted into a shell command line.
[[ "$CACHE" =~ ^[A-Za-z0-9_./+-]+$ ]] || die "the repository path '$REPO_ROOT' contains characters virtme-ng cannot cope with"
[[ "$PWD" =~ ^[A-Za-z0-9_./+@:-]+$ ]] || die "the current directory '$PWD' contains characters virtme-ng cannot cope with"
mkdir -p "$CACHE/runs"

# ---------------------------------------------------------------- setup (serialised)
exec 9>"$CACHE/setup.lock"
bounded flock 9 || die "could not take $CACHE/setup.lock"

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 -o APT::Sandbox::User=root)
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        bounded apt-get "${APT_OPTS[@]}" update >"$CACHE/apt.log" 2>&1 \
            || { cat "$CACHE/apt.log" >&2; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
}

# 1a. Debian packages
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    say "installing ${missing[*]}"
    bounded apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}" >"$CACHE/apt.log" 2>&1 \
        || { tail -n 40 "$CACHE/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing although busybox-static is installed"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing although qemu-system-x86 is installed"

# 1b. virtme-ng from PyPI, into the Python that python3 names (pyenv here).
PYTHON=$(command -v python3 || true)
[ -n "$PYTHON" ] || { [ -x /root/.pyenv/shims/python3 ] && PYTHON=/root/.pyenv/shims/python3; } \
    || die "no python3 on PATH (nor /root/.pyenv/shims/python3)"
# The real interpreter (not the pyenv shim) and its scripts folder, where pip puts vng.
read -r PYEXE VNG_BIN < <("$PYTHON" -c 'import sys, sysconfig; print(sys.executable, sysconfig.get_path("scripts"))') \
    || die "$PYTHON does not run"
vng_ok() { [ -x "$VNG_BIN/vng" ] && [ -x "$VNG_BIN/virtme-run" ] && "$PYEXE" -c 'import virtme_ng.run, virtme.commands.run' 2>/dev/null; }
if ! vng_ok; then
    say "pip install $VNG_PIP_SPEC"
    bounded "$PYEXE" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$VNG_PIP_SPEC" \
        >"$CACHE/pip.log" 2>&1 || { tail -n 40 "$CACHE/pip.log" >&2; die "pip install $VNG_PIP_SPEC failed"; }
    vng_ok || die "virtme-ng installed but $VNG_BIN/vng or $VNG_BIN/virtme-run is not usable"
fi
VNG="$VNG_BIN/vng"

# 2. The stock kernel: its .deb unpacked into .build-vm/ (never installed as the host's kernel),
#    its modules moved to the host's /lib/modules/<ver>, where the guest (which runs on the host's
#    filesystem) and vng's initramfs builder find them. Only boot/ stays in .build-vm/kernel/: with
#    no lib/modules beside the vmlinuz, vng uses /lib/modules rather than a second copy.
KDIR="$CACHE/kernel"
kernel_ready() {
    [ -f "$KDIR/READY" ] && KVER=$(cat "$KDIR/READY") && [ -n "$KVER" ] \
        && [ -f "$KDIR/boot/vmlinuz-$KVER" ] && [ -f "/lib/modules/$KVER/modules.dep" ] \
        && [ -d "/lib/modules/$KVER/kernel" ]
}
kernel_package() {  # the concrete linux-image-6.1...-amd64 (not -cloud-) that linux-image-amd64 depends on
    apt-cache show --no-all-versions linux-image-amd64 2>/dev/null \
        | sed -n 's/^Depends: //p' | sed 's/[,|]/\n/g' | awk '{print $1}' \
        | grep -E '^linux-image-[0-9][0-9.]*-[0-9]+-amd64$' | head -n1
}
if ! kernel_ready; then
    KPKG=$(kernel_package || true)
    [ -n "$KPKG" ] || { apt_update; KPKG=$(kernel_package || true); }
    [ -n "$KPKG" ] || die "cannot find the kernel package that linux-image-amd64 depends on"
    rm -rf "$KDIR" "$CACHE/kernel.tmp"
    mkdir -p "$CACHE/kernel.tmp/deb"
    say "downloading $KPKG"
    if ! (cd "$CACHE/kernel.tmp/deb" && bounded apt-get "${APT_OPTS[@]}" download "$KPKG") >"$CACHE/apt.log" 2>&1; then
        # The mirror may have moved on to a newer ABI: refresh the lists and resolve again.
        apt_update
        KPKG=$(kernel_package || true); [ -n "$KPKG" ] || die "cannot find the kernel package after apt-get update"
        say "downloading $KPKG"
        (cd "$CACHE/kernel.tmp/deb" && bounded apt-get "${APT_OPTS[@]}" download "$KPKG") >"$CACHE/apt.log" 2>&1 \
            || { tail -n 20 "$CACHE/apt.log" >&2; die "apt-get download $KPKG failed"; }
    fi
    KVER=${KPKG#linux-image-}
    debs=("$CACHE"/kernel.tmp/deb/"$KPKG"_*.deb)
    [ -f "${debs[0]}" ] || die "apt-get download left no $KPKG .deb in $CACHE/kernel.tmp/deb"
    dpkg -x "${debs[0]}" "$CACHE/kernel.tmp/root" || die "dpkg -x ${debs[0]} failed"
    [ -f "$CACHE/kernel.tmp/root/boot/vmlinuz-$KVER" ] || die "$KPKG has no boot/vmlinuz-$KVER"
    [ -d "$CACHE/kernel.tmp/root/lib/modules/$KVER/kernel" ] || die "$KPKG has no lib/modules/$KVER"
    if [ ! -d "/lib/modules/$KVER/kernel" ]; then
        say "installing modules into /lib/modules/$KVER"
        mkdir -p /lib/modules
        rm -rf "/lib/modules/.$KVER.tmp" "/lib/modules/$KVER"
        cp -a "$CACHE/kernel.tmp/root/lib/modules/$KVER" "/lib/modules/.$KVER.tmp"
        mv "/lib/modules/.$KVER.tmp" "/lib/modules/$KVER"
    fi
    depmod "$KVER" || die "depmod $KVER failed"
    mkdir -p "$KDIR"
    mv "$CACHE/kernel.tmp/root/boot" "$KDIR/boot"
    rm -rf "$CACHE/kernel.tmp"
    echo "$KVER" >"$KDIR/READY"
    kernel_ready || die "kernel setup did not complete"
fi
VMLINUZ="$KDIR/boot/vmlinuz-$KVER"
exec 9>&-   # setup done: release the lock
SETUP_S=$(elapsed "$T0")

# ---------------------------------------------------------------- the run
RUN=$(mktemp -d "$CACHE/runs/run.XXXXXX")
chmod 755 "$RUN"
VNG_PID='' TAIL_PID=''

qemu_pid() {  # QEMU's PID from its pidfile, only if that process really is ours
    local pid
    [ -s "$RUN/qemu.pid" ] || return 1
    pid=$(tr -dc 0-9 <"$RUN/qemu.pid")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$RUN/qemu.pid" \
        && echo "$pid"
}
stop_vm() {
    local pid
    if pid=$(qemu_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ -n "$VNG_PID" ] && kill -0 "$VNG_PID" 2>/dev/null; then
        # vng was started with setsid: its process group holds only what it started.
        kill -TERM -- "-$VNG_PID" 2>/dev/null || kill -TERM "$VNG_PID" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$VNG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$VNG_PID" 2>/dev/null || true
    fi
}
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_vm
    if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then say "run folder kept: $RUN"; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Environment for the guest: it does not inherit ours reliably, so write it down.
{
    while IFS= read -r name; do
        case "$name" in
            TINCTURE_*|PYTEST_*|CI|PATH|HOME|LANG|LC_*|PYENV_*) printf 'export %s=%q\n' "$name" "${!name}" ;;
        esac
    done < <(compgen -e)
    # The interpreter that python3 names here goes first: pyenv's shims are bash scripts that
    # cost seconds per start under TCG and 9p.
    # shellcheck disable=SC2016  # $PATH expands in the guest
    printf 'export PATH=%q:"$PATH"\n' "$(dirname "$PYEXE")"
    printf 'export TINCTURE_IN_VM=1\n'
    printf 'export TINCTURE_VM_RESULTS=%q\n' "$RUN/results"
} >"$RUN/env.sh"
mkdir "$RUN/results"

# The guest side: prepare the guest, run COMMAND, record output and exit status in $RUN.
# (virtme-ng cannot relay the guest's stdout here: the stock kernel has virtio_console as a
# module that vng's initramfs does not load, so vng falls back to the serial console.)
{
    printf '#!/bin/bash\n# generated by %s on the host; runs inside the guest\n' "$PROG"
    printf 'run=%q\ncwd=%q\nkboot=%q\n' "$RUN" "$PWD" "$KDIR/boot"
    printf 'cmd=('; printf '%q ' "$@"; printf ')\n'
    cat <<'GUEST'
exec </dev/null
# Output goes through a pipe to cat: the --rwdir is 9p mounted sync, where every write costs
# about half a millisecond, and cat coalesces a chatty program's many small writes.
exec > >(exec cat >>"$run/output.log") 2>&1
relay=$!
: >"$run/started"
. "$run/env.sh"
note() { printf '[vm] %s\n' "$*"; }
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug || note "warning: cannot mount debugfs"
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || note "warning: cannot mount tracefs"
ip link set lo up || note "warning: cannot bring lo up"
if ! { t=$(mktemp /tmp/.vmcheck.XXXXXX) && rm -f "$t"; } 2>/dev/null; then
    mount -t tmpfs -o mode=1777 tmpfs /tmp || note "warning: /tmp is not writable"
fi
# The guest sees the host's /boot: show it the guest kernel's config (bpftool, libbpf Kconfig externs).
kver=$(uname -r)
if [ ! -e "/boot/config-$kver" ] && [ -f "$kboot/config-$kver" ]; then
    mount -t tmpfs -o mode=755 tmpfs /boot && cp "$kboot/config-$kver" "$kboot/System.map-$kver" /boot/ \
        || note "warning: cannot provide /boot/config-$kver"
fi
yn() { if [ -e "$1" ]; then echo yes; else echo no; fi; }
note "uname -r: $kver"
note "kprobe PMU /sys/bus/event_source/devices/kprobe: $(yn /sys/bus/event_source/devices/kprobe)"
note "BTF /sys/kernel/btf/vmlinux: $(yn /sys/kernel/btf/vmlinux)"
if cd "$cwd"; then
    note "running in $cwd: ${cmd[*]}"
    "${cmd[@]}"
    rc=$?
else
    rc=125
fi
# Let the relay drain; bounded, since a stray background process of COMMAND may hold the pipe.
exec >/dev/null 2>&1
for _ in $(seq 30); do kill -0 "$relay" 2>/dev/null || break; sleep 0.1; done
echo "$rc" >"$run/exit-code.tmp" && mv "$run/exit-code.tmp" "$run/exit-code"
sync
GUEST
} >"$RUN/guest.sh"
: >"$RUN/output.log"

say "booting $KVER (TCG, $CPUS vCPUs, $MEMORY) to run: $*"
T_BOOT=$(date +%s.%N)
# --force-9p: Debian's /usr/lib/qemu/virtiofsd is the old C daemon that vng cannot use; without
# this flag vng waits ~3 s per shared folder for it before falling back to 9p anyway.
# --verbose: the kernel console goes to console.log (shown when the guest fails) instead of /dev/null.
PATH="$VNG_BIN:$PATH" setsid "$VNG" --disable-kvm --force-9p --verbose --run "$VMLINUZ" \
    --cpus "$CPUS" --memory "$MEMORY" --busybox "$BUSYBOX" \
    --rwdir "$RUN" --cwd "$PWD" \
    --exec "/bin/bash $RUN/guest.sh" \
    --qemu-opts="-pidfile $RUN/qemu.pid" \
    </dev/null >"$RUN/console.log" 2>&1 &
VNG_PID=$!

# Relay the guest's output as it is written (tail exits once vng is gone and the file is drained).
tail -n +1 -f --pid="$VNG_PID" "$RUN/output.log" &
TAIL_PID=$!

BOOT_S='' TIMED_OUT=0 DONE_AT=''
while kill -0 "$VNG_PID" 2>/dev/null; do
    if [ -z "$BOOT_S" ] && [ -e "$RUN/started" ]; then BOOT_S=$(elapsed "$T_BOOT"); fi
    if [ -z "$DONE_AT" ] && [ -e "$RUN/exit-code" ]; then DONE_AT=$(date +%s); fi
    # The result is on the host (9p is mounted sync): a guest slow to power off is not waited for.
    if [ -n "$DONE_AT" ] && [ "$(date +%s)" -ge $(( DONE_AT + 3 )) ]; then stop_vm; break; fi
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then TIMED_OUT=1; stop_vm; break; fi
    sleep 0.2
done
VNG_RC=0; wait "$VNG_PID" || VNG_RC=$?
VNG_PID=''
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=''
[ -n "$BOOT_S" ] || { [ -e "$RUN/started" ] && BOOT_S=$(elapsed "$T_BOOT"); } || BOOT_S='-'
VM_S=$(elapsed "$T_BOOT")

if [ "$VERBOSE" = 1 ]; then
    say "---- VM console log ----"; cat "$RUN/console.log" >&2; say "---- end of VM console log ----"
fi
timing="kernel $KVER; setup ${SETUP_S}s, boot ${BOOT_S}s, VM ${VM_S}s, total $(elapsed "$T0")s"
if [ -s "$RUN/exit-code" ] && rc=$(tr -dc 0-9 <"$RUN/exit-code") && [ -n "$rc" ]; then
    say "guest command exited $rc ($timing)"
    exit "$rc"
fi
KEEP=1   # the VM failed: keep its console log for a look
if [ "$VERBOSE" = 0 ]; then
    say "---- last lines of the VM console log ($RUN/console.log) ----"
    tail -n 60 "$RUN/console.log" >&2
    say "---- end of VM console log ----"
fi
if [ "$TIMED_OUT" = 1 ]; then
    say "timed out after ${TIMEOUT}s: the guest command did not finish; QEMU was killed ($timing)"
    exit 124
fi
if [ ! -e "$RUN/started" ]; then
    die "the VM never started the guest command (vng exit status $VNG_RC; boot failed?) ($timing)"
fi
die "the guest wrote no exit status: the command or the guest kernel crashed (vng exit status $VNG_RC) ($timing)"
