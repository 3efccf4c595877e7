#!/usr/bin/env bash
# Consumer-throughput benchmark: events per second that the agent's Swift per-event
# path (decode, aggregate, correlate) drains from a real BPF ring buffer, against a
# minimal C libbpf consumer on the same ring and the same producer.
#
#   Tests/bench/consumer/run.sh [--runs N] [--events N] [--counted-in-kernel] [--no-drain] [--build-only]
#
# Builds what it needs under .build/bench/consumer (build output on stderr), then
# runs C and Swift alternately, N times each (default 5), one JSON line per run,
# each with a producer thread calling BPF_PROG_TEST_RUN while the consumer drains.
# Unless --no-drain, the same again with --drain (no concurrent producer: fill the
# ring, time draining it; each consumer's own capacity) and its medians as one line.
# --build-only: build both consumers and the producer, then exit.
# Last line: the concurrent medians and their ratio,
#   {"c_per_second":...,"swift_per_second":...,"ratio":...}
# In a concurrent run, producer_short_runs counts test runs that found the ring
# nearly full (the producer then backs off): near producer_runs, the consumer set
# the pace; near 0, the producer did and per_second is a lower bound for that
# consumer. lost must be 0. Needs root and a kernel with BTF.
set -euo pipefail

cd "$(dirname "$0")/../../.."
HERE=Tests/bench/consumer
OUT=.build/bench/consumer
RUNS=5
EVENTS=5000000
DRAIN=1
BUILD_ONLY=0
EXTRA=()

while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--events) EVENTS=$2; shift 2 ;;
	--counted-in-kernel) EXTRA+=(--counted-in-kernel); shift ;;
	--no-drain) DRAIN=0; shift ;;
	--build-only) BUILD_ONLY=1; shift ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
done

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root to load and test-run BPF programs" >&2
	exit 77
fi

CLANG=$(command -v /opt/swift/usr/bin/clang 2>/dev/null || command -v clang)
ARCH=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
mkdir -p "$OUT"

{
	# the agent's BPF object and skeleton: the Swift reader links the agent's ring reader
	make --no-print-directory bpf
	echo "  BPF    $OUT/producer.bpf.o"
	"$CLANG" -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$ARCH -I.build/bpf \
		-c $HERE/producer.bpf.c -o $OUT/producer.bpf.o
	echo "  CC     $OUT/c_consumer"
	gcc -O2 -g -Wall -Wextra -Werror -o $OUT/c_consumer $HERE/c_consumer.c -lbpf -lelf -lz -lpthread
	echo "  SWIFT  tincture-bench-consumer"
	# The agent's release flags (Makefile RELEASE_FLAGS), so both share one build.
	swift build -c release --static-swift-stdlib --product tincture-bench-consumer
} >&2
[ "$BUILD_ONLY" = 1 ] && exit 0
SWIFT_BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)/tincture-bench-consumer

# The value of "key" in a JSON line of numbers and strings.
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }

median() { sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run MODE_FLAGS...: C and Swift alternately, RUNS times each; sets C_MEDIAN, SWIFT_MEDIAN.
run() {
	local c_rates=() swift_rates=() line
	for ((i = 0; i < RUNS; i++)); do
		line=$($OUT/c_consumer --events "$EVENTS" "$@" ${EXTRA[@]+"${EXTRA[@]}"} $OUT/producer.bpf.o)
		echo "$line"
		c_rates+=("$(field per_second <<<"$line")")
		line=$("$SWIFT_BIN" --events "$EVENTS" "$@" ${EXTRA[@]+"${EXTRA[@]}"} $OUT/producer.bpf.o)
		echo "$line"
		swift_rates+=("$(field per_second <<<"$line")")
	done
	C_MEDIAN=$(printf '%s\n' "${c_rates[@]}" | median)
	SWIFT_MEDIAN=$(printf '%s\n' "${swift_rates[@]}" | median)
}

summary() { # [mode]
	awk -v c="$C_MEDIAN" -v s="$SWIFT_MEDIAN" -v mode="$1" 'BEGIN {
		printf "{%s\"c_per_second\":%.0f,\"swift_per_second\":%.0f,\"ratio\":%.4f}\n",
			mode == "" ? "" : "\"mode\":\"" mode "\",", c, s, s / c }'
}

run
CONCURRENT=$(summary "")
if [ "$DRAIN" = 1 ]; then
	run --drain
	summary drain
fi
echo "$CONCURRENT"
