// Consumer-throughput benchmark, Swift side (Tests/bench/consumer/run.sh): the
// agent's per-event path draining producer.bpf.o's ring while a producer thread
// fills it with BPF_PROG_TEST_RUN. Prints one JSON line, like c_consumer.
//
//   tincture-bench-consumer [--events N] [--counted-in-kernel] [--drain]
//                           [--stages read|decode|aggregate|agent] PRODUCER.bpf.o
//
// --drain: no concurrent producer; fill the ring, then time draining it, until
// N records were consumed (the consumer's own capacity). --stages cuts the
// per-event path short (default: agent, the whole path) to show what each
// step costs.
import CLibbpf
import Glibc

let usage = "usage: tincture-bench-consumer [--events N] [--counted-in-kernel] [--drain] [--stages read|decode|aggregate|agent] PRODUCER.bpf.o"
let stallSeconds = 10.0

func seconds(_ clock: clockid_t) -> Double {
    var t = timespec()
    clock_gettime(clock, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func fail(_ message: String) -> Never {
    fputs("tincture-bench-consumer: \(message)\n", stderr)
    exit(1)
}

/// The producer on its own thread, the consumer here: wall time until every record arrived.
func runConcurrent(_ reader: Reader, _ consumer: Consumer, _ producer: ProducerThread) throws -> (wall: Double, cpu: Double) {
    pinToCPU(0)
    let cpu = seconds(CLOCK_THREAD_CPUTIME_ID)
    let start = seconds(CLOCK_MONOTONIC)
    var progress = start
    var last: UInt64 = 0
    producer.start()
    while consumer.consumed + consumer.decodeErrors < producer.events {
        try reader.poll()
        if consumer.consumed != last {
            last = consumer.consumed
            progress = seconds(CLOCK_MONOTONIC)
        } else if seconds(CLOCK_MONOTONIC) - progress > stallSeconds {
            fail("stalled at \(consumer.consumed) of \(producer.events) records")
        }
    }
    let result = (seconds(CLOCK_MONOTONIC) - start, seconds(CLOCK_THREAD_CPUTIME_ID) - cpu)
    producer.join()
    return result
}

/// Fill the ring, then time draining it; repeat. Seconds are the drains' only.
func runDrain(_ reader: Reader, _ consumer: Consumer, _ producer: ProducerThread) throws -> (wall: Double, cpu: Double) {
    pinToCPU(0)
    var wall = 0.0, cpu = 0.0
    while consumer.consumed + consumer.decodeErrors < producer.events {
        producer.fill()
        if producer.error != 0 { break }
        let cpuStart = seconds(CLOCK_THREAD_CPUTIME_ID)
        let start = seconds(CLOCK_MONOTONIC)
        let consumed = try reader.consume()
        wall += seconds(CLOCK_MONOTONIC) - start
        cpu += seconds(CLOCK_THREAD_CPUTIME_ID) - cpuStart
        if consumed == 0 { fail("ring empty at \(consumer.consumed) of \(producer.events) records") }
    }
    return (wall, cpu)
}

var events: UInt64 = 5_000_000
var counted = false
var drain = false
var stages = Consumer.Stages.agent
var path: String?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--events":
        guard let value = arguments.popFirst().flatMap({ UInt64($0) }), value > 0 else { fail(usage) }
        events = value
    case "--counted-in-kernel":
        counted = true
    case "--drain":
        drain = true
    case "--stages":
        guard let value = arguments.popFirst().flatMap({ Consumer.Stages(rawValue: $0) }) else { fail(usage) }
        stages = value
    default:
        guard !argument.hasPrefix("-"), path == nil else { fail(usage) }
        path = argument
    }
}
guard let path else { fail(usage) }

do {
    let object = try ProducerObject(path: path)
    let consumer = Consumer(stages: stages)
    let reader = try Reader(mapFD: object.ringFD) { bytes in consumer.consume(bytes) }
    let producer = ProducerThread(programFD: object.programFD, events: events, counted: counted, cpu: 1)
    let (wall, cpu) = try drain ? runDrain(reader, consumer, producer) : runConcurrent(reader, consumer, producer)
    if producer.error != 0 { fail("BPF_PROG_TEST_RUN: \(String(cString: strerror(producer.error)))") }
    let lost = object.kernelLost() ?? UInt64.max
    if lost != producer.lost {
        fputs("tincture-bench-consumer: producer saw \(producer.lost) reserve failures, its global counts \(lost)\n", stderr)
    }
    let name = stages == .agent ? "swift" : "swift-\(stages.rawValue)"
    let rounded = { (x: Double) in (x * 10_000).rounded() / 10_000 }
    print("{\"consumer\":\"\(name)\",\"mode\":\"\(drain ? "drain" : "concurrent")\",\"events\":\(consumer.consumed),"
        + "\"lost\":\(lost),\"rejected\":\(consumer.decodeErrors),\"seconds\":\(rounded(wall)),"
        + "\"per_second\":\(Int((Double(consumer.consumed) / wall).rounded())),\"consumer_cpu_seconds\":\(rounded(cpu)),"
        + "\"producer_runs\":\(producer.runs),\"producer_short_runs\":\(producer.shortRuns),\"series\":\(consumer.connectSeries)}")
    exit(consumer.decodeErrors == 0 ? 0 : 1)
} catch {
    fail("\(error)")
}
