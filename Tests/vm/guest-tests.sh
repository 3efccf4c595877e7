#!/usr/bin/env bash
# Runs inside the stock-kernel VM (see run-in-vm.sh): the scenarios once per attach
# mode, each forced with --attach: connects, retransmits, poll waits and request
# correlation. kprobe and fentry are the modes the host kernel cannot exercise;
# tracepoint runs here too because Debian's 6.1 predates the socket tracepoints
# (Linux 6.3), so the payload and retransmit hooks take their raw-syscall fallbacks.
set -euo pipefail
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
export TINCTURE_EMULATED=1  # QEMU without KVM: timers and wake-ups run late
status=0
for mode in kprobe fentry tracepoint; do
    echo "== kernel $(uname -r): --attach $mode"
    TINCTURE_ATTACH=$mode TINCTURE_EXPECT_MODE=$mode \
        python3 -m pytest -v -s -p no:cacheprovider Tests/integration/test_connect.py Tests/integration/test_retransmit_poll.py Tests/integration/test_requests.py || status=1
done
exit $status
