import XCTest
@testable import TinctureCore

final class HistogramTests: XCTestCase {
    func testBoundIsInclusiveAndAboveLastGoesToInf() {
        var h = Histogram(bounds: [0.1, 1, 10])
        for v in [0.05, 0.1, 0.100001, 1, 10, 11] { h.observe(v) }
        XCTAssertEqual(h.counts, [2, 2, 1, 1])
        XCTAssertEqual(h.cumulative, [2, 4, 5, 6])
        XCTAssertEqual(h.count, 6)
        XCTAssertEqual(h.sum, 0.05 + 0.1 + 0.100001 + 1 + 10 + 11, accuracy: 1e-12)
    }

    func testConnectBucketsSeparateSYNRetransmitSteps() {
        // Exponential SYN timeouts: 0, 1, 2, 3, 4 lost SYNs take ~0, 1, 3, 7, 15 s.
        // Linear ones (Linux 6.x): 1, 2, 3, 4 lost SYNs take ~1, 2, 3, 4 s.
        // Every distinct count of lost SYNs lands in a bucket of its own.
        let b = Buckets.connectSeconds
        for schedule in [[0.00005, 1.002, 3.01, 7.02, 15.03], [1.002, 2.004, 3.01, 4.01, 6.02]] {
            var h = Histogram(bounds: b)
            for v in schedule { h.observe(v) }
            XCTAssertEqual(h.counts.filter { $0 == 1 }.count, schedule.count, "\(schedule)")
        }
        XCTAssertEqual(b.filter { $0 > 0.5 }, [1.5, 2.5, 3.5, 4.5, 7.5, 15.5, 31.5, 63.5])
    }

    func testSeriesCapFoldsIntoOther() {
        var f = HistogramFamily(name: "x", help: "h", labelNames: ["comm", "endpoint", "result"],
                                bounds: [1], seriesCap: 2, foldable: ["comm", "endpoint"])
        f.observe(["a", "1.1.1.1:1", "ok"], 0.5)
        f.observe(["b", "1.1.1.1:1", "ok"], 0.5)
        f.observe(["c", "2.2.2.2:2", "refused"], 0.5)  // third label set: folded
        f.observe(["a", "1.1.1.1:1", "ok"], 0.5)        // existing: still counted as itself
        XCTAssertEqual(f.folded, 1)
        XCTAssertEqual(f.series[["other", "other", "refused"]]?.count, 1)
        XCTAssertEqual(f.series[["a", "1.1.1.1:1", "ok"]]?.count, 2)
    }
}

final class AggregationTests: XCTestCase {
    func testRetransmitsCountSegmentsByOwnerEndpointAndState() {
        var a = Aggregates()
        for fixture in [Fixtures.retransmitV4, Fixtures.retransmitV4, Fixtures.synackV4] {
            guard case .success(let e) = EventDecoder.decode(fixture) else { return XCTFail() }
            a.record(e)
        }
        XCTAssertEqual(a.retransmits.series[["python3", "10.0.0.2:8080", "ESTABLISHED"]], 6)
        XCTAssertEqual(a.retransmits.series[["nginx", "127.0.0.1:8080", "SYN_RECV"]], 1)
        XCTAssertEqual(a.eventsReceived[.retransmit], 3)
    }

    func testUnknownOwnerIsLabelledSo() {
        guard case .success(.retransmit(var r)) = EventDecoder.decode(Fixtures.retransmitV4) else { return XCTFail() }
        r.ownerKnown = false
        r.comm = ""
        var a = Aggregates()
        a.record(.retransmit(r))
        XCTAssertEqual(a.retransmits.series.keys.first?.first, "unknown")
    }

    func testPollEventsOnlyCountAsReceived() {
        guard case .success(let e) = EventDecoder.decode(Fixtures.pollEpoll) else { return XCTFail() }
        var a = Aggregates()
        a.record(e)
        XCTAssertEqual(a.eventsReceived[.poll], 1)
        XCTAssertTrue(a.connectDuration.series.isEmpty && a.retransmits.series.isEmpty)
    }

    func testCounterFamilyCapFolds() {
        var f = CounterFamily(name: "c_total", help: "h", labelNames: ["comm", "endpoint", "state"], seriesCap: 1,
                              foldable: ["comm", "endpoint"])
        f.add(["a", "x:1", "ESTABLISHED"], 2)
        f.add(["b", "y:2", "SYN_SENT"], 3)
        XCTAssertEqual(f.series[["other", "other", "SYN_SENT"]], 3)
        XCTAssertEqual(f.folded, 1)
    }
}

final class ExpositionTests: XCTestCase {
    func testPollWaitHistogramFromKernelRowsExactText() {
        var counts = [UInt64](repeating: 0, count: Buckets.pollSeconds.count + 1)
        counts[0] = 2      // ≤ 10 µs
        counts[9] = 1      // ≤ 0.5 s
        counts[16] = 1     // above 60 s
        var o = SelfObservation()
        o.pollWaits = [PollHistogramRow(comm: "curl", syscall: "poll", counts: counts, sumNs: 61_300_000_020)]
        let text = ExpositionWriter.render(Aggregates(), o)
        let expected = """
            tincture_poll_wait_seconds_bucket{comm="curl",syscall="poll",le="1e-05"} 2
            tincture_poll_wait_seconds_bucket{comm="curl",syscall="poll",le="0.0001"} 2
            """
        XCTAssertTrue(text.contains(expected), text)
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_bucket{comm=\"curl\",syscall=\"poll\",le=\"0.25\"} 2\n"))
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_bucket{comm=\"curl\",syscall=\"poll\",le=\"0.5\"} 3\n"))
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_bucket{comm=\"curl\",syscall=\"poll\",le=\"60\"} 3\n"))
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_bucket{comm=\"curl\",syscall=\"poll\",le=\"+Inf\"} 4\n"))
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_sum{comm=\"curl\",syscall=\"poll\"} 61.30000002\n"))
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_count{comm=\"curl\",syscall=\"poll\"} 4\n"))
    }

    func testPollWaitRowsPastTheCapMergeIntoOther() {
        let one = [UInt64](repeating: 0, count: Buckets.pollSeconds.count) + [1]
        var o = SelfObservation()
        o.seriesCap = 1
        o.pollWaits = [PollHistogramRow(comm: "a", syscall: "poll", counts: one, sumNs: 1),
                       PollHistogramRow(comm: "b", syscall: "poll", counts: one, sumNs: 1),
                       PollHistogramRow(comm: "c", syscall: "poll", counts: one, sumNs: 1)]
        let text = ExpositionWriter.render(Aggregates(), o)
        XCTAssertTrue(text.contains("tincture_poll_wait_seconds_count{comm=\"other\",syscall=\"poll\"} 2\n"), text)
        XCTAssertTrue(text.contains("tincture_series_folded_total{family=\"tincture_poll_wait_seconds\"} 2\n"), text)
    }

    func testIntegersPrintInDecimalWithoutStrings() {
        var w = ExpositionWriter()
        for v: UInt64 in [0, 9, 10, 99, 100, 1_234_567_890, UInt64.max] {
            w.appendInteger(v)
            w.append(" ")
        }
        XCTAssertEqual(w.text, "0 9 10 99 100 1234567890 18446744073709551615 ")
    }

    func testExactHistogramText() {
        var f = HistogramFamily(name: "t_seconds", help: "Test.", labelNames: ["comm", "endpoint"],
                                bounds: [0.5, 1.5], seriesCap: 10, foldable: [])
        f.observe(["py\"th\\on\n", "127.0.0.1:80"], 1.25)
        f.observe(["curl", "[::1]:80"], 0.25)
        var w = ExpositionWriter()
        w.histogram(f)
        XCTAssertEqual(w.text, """
            # HELP t_seconds Test.
            # TYPE t_seconds histogram
            t_seconds_bucket{comm="curl",endpoint="[::1]:80",le="0.5"} 1
            t_seconds_bucket{comm="curl",endpoint="[::1]:80",le="1.5"} 1
            t_seconds_bucket{comm="curl",endpoint="[::1]:80",le="+Inf"} 1
            t_seconds_sum{comm="curl",endpoint="[::1]:80"} 0.25
            t_seconds_count{comm="curl",endpoint="[::1]:80"} 1
            t_seconds_bucket{comm="py\\"th\\\\on\\n",endpoint="127.0.0.1:80",le="0.5"} 0
            t_seconds_bucket{comm="py\\"th\\\\on\\n",endpoint="127.0.0.1:80",le="1.5"} 1
            t_seconds_bucket{comm="py\\"th\\\\on\\n",endpoint="127.0.0.1:80",le="+Inf"} 1
            t_seconds_sum{comm="py\\"th\\\\on\\n",endpoint="127.0.0.1:80"} 1.25
            t_seconds_count{comm="py\\"th\\\\on\\n",endpoint="127.0.0.1:80"} 1

            """)
    }

    func testKernelConnectRowsMergeWithUncountedEventsAndCarryExemplars() throws {
        var a = Aggregates()
        let dest = SocketAddress(family: .inet, bytes: [10, 0, 0, 7], port: 443)
        var counted = ConnectEvent(pid: 1, tid: 1, error: 0, endNs: 2_000_000_000, startNs: 1_000_000_000, cookie: 9,
                                   synRetransmits: 1, source: dest, destination: dest, established: true, mode: .tracepoint,
                                   comm: "curl")
        a.record(.connect(counted))
        XCTAssertTrue(a.connectDuration.series.isEmpty, "a connect the kernel counted is not counted twice")
        counted.countedInKernel = false
        a.record(.connect(counted))
        var o = SelfObservation()
        var counts = [UInt64](repeating: 0, count: Buckets.connectSeconds.count + 1)
        counts[0] = 5          // 5 fast ones in le=0.0001
        counts[12] = 1         // one in le=1.5
        o.connects = [ConnectHistogramRow(comm: "curl", destination: dest, result: .ok, counts: counts, sumNs: 1_000_400_000),
                      ConnectHistogramRow(comm: "curl", destination: dest, result: .refused,
                                          counts: [1] + [UInt64](repeating: 0, count: Buckets.connectSeconds.count),
                                          sumNs: 50_000)]
        let request = RequestRecord(requestID: "req-42", side: .client, pid: 1, tid: 1, comm: "curl", cookie: 9,
                                    method: "GET", target: "/", status: 200, local: dest, remote: dest,
                                    startNs: 0, connectNs: 1_000_000_000, synRetransmits: 1, retransmits: 0,
                                    pollWaitNs: 0, ttfbNs: 1_100_000_000, end: .responded)
        a.record(request, wallTimeSeconds: 1_700_000_000)
        let text = ExpositionWriter.render(a, o, openMetrics: true)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_bucket{comm=\"curl\",endpoint=\"10.0.0.7:443\",result=\"ok\",le=\"0.0001\"} 5\n"), text)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_bucket{comm=\"curl\",endpoint=\"10.0.0.7:443\",result=\"ok\",le=\"1.5\"} 7 # {request_id=\"req-42\"} 1 1700000000.000\n"), text)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_count{comm=\"curl\",endpoint=\"10.0.0.7:443\",result=\"ok\"} 7\n"), text)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_count{comm=\"curl\",endpoint=\"10.0.0.7:443\",result=\"refused\"} 1\n"), text)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_sum{comm=\"curl\",endpoint=\"10.0.0.7:443\",result=\"ok\"} 2.0004\n"), text)
    }

    func testFullRenderFromAnEvent() throws {
        guard case .success(.connect(var connect)) = EventDecoder.decode(Fixtures.connectV4) else { return XCTFail() }
        // The kernel histogram counts connects; the agent counts only those it could not.
        XCTAssertTrue(connect.countedInKernel)
        connect.countedInKernel = false
        var a = Aggregates()
        a.record(.connect(connect))
        a.recordDecodeError(.unknownKind(9))
        var o = SelfObservation()
        o.lostEvents = [.connect: 3]
        o.kernelUntracked = ["owner_map_full": 0]
        o.subscriberDrops = 5
        o.subscribers = 1
        o.probes = [.init(hook: "tcp_connect", mode: .tracepoint), .init(hook: "tcp_other", mode: nil)]
        o.version = "9.9.9"
        o.lastScrapeSeconds = 0.0125
        let text = ExpositionWriter.render(a, o)
        let expectedTail = """
            tincture_tcp_connect_duration_seconds_bucket{comm="python3",endpoint="127.0.0.1:8080",result="ok",le="0.5"} 0
            tincture_tcp_connect_duration_seconds_bucket{comm="python3",endpoint="127.0.0.1:8080",result="ok",le="1.5"} 1
            """
        XCTAssertTrue(text.contains(expectedTail), text)
        XCTAssertTrue(text.contains("tincture_tcp_connect_duration_seconds_sum{comm=\"python3\",endpoint=\"127.0.0.1:8080\",result=\"ok\"} 1.002\n"))
        XCTAssertTrue(text.hasSuffix("""
            # HELP tincture_events_total Events received from the kernel ring buffer, by kind.
            # TYPE tincture_events_total counter
            tincture_events_total{kind="connect"} 1
            tincture_events_total{kind="retransmit"} 0
            tincture_events_total{kind="poll"} 0
            tincture_events_total{kind="payload"} 0
            # HELP tincture_events_lost_total Events dropped in the kernel because the ring buffer was full, by kind.
            # TYPE tincture_events_lost_total counter
            tincture_events_lost_total{kind="connect"} 3
            tincture_events_lost_total{kind="retransmit"} 0
            tincture_events_lost_total{kind="poll"} 0
            tincture_events_lost_total{kind="payload"} 0
            # HELP tincture_kernel_untracked_total Kernel-side state the BPF programs could not record, by reason.
            # TYPE tincture_kernel_untracked_total counter
            tincture_kernel_untracked_total{reason="owner_map_full"} 0
            # HELP tincture_decode_errors_total Ring-buffer records the agent could not decode, by reason.
            # TYPE tincture_decode_errors_total counter
            tincture_decode_errors_total{reason="unknown_kind"} 1
            # HELP tincture_subscriber_dropped_events_total Events not delivered to a live subscriber because it read too slowly.
            # TYPE tincture_subscriber_dropped_events_total counter
            tincture_subscriber_dropped_events_total 5
            # HELP tincture_subscribers Live event subscribers connected now.
            # TYPE tincture_subscribers gauge
            tincture_subscribers 1
            # HELP tincture_series_folded_total Observations folded into label value "other" because a family reached its series cap.
            # TYPE tincture_series_folded_total counter
            tincture_series_folded_total{family="tincture_tcp_connect_duration_seconds"} 0
            tincture_series_folded_total{family="tincture_tcp_retransmits_total"} 0
            tincture_series_folded_total{family="tincture_http_request_duration_seconds"} 0
            tincture_series_folded_total{family="tincture_poll_wait_seconds"} 0
            # HELP tincture_probe_info Attach mode of each hook (1 per hook); mode="none" when it could not attach.
            # TYPE tincture_probe_info gauge
            tincture_probe_info{hook="tcp_connect",mode="tracepoint"} 1
            tincture_probe_info{hook="tcp_other",mode="none"} 1
            # HELP tincture_probe_attached 1 when the hook is attached, 0 when it failed in every allowed mode.
            # TYPE tincture_probe_attached gauge
            tincture_probe_attached{hook="tcp_connect"} 1
            tincture_probe_attached{hook="tcp_other"} 0
            # HELP tincture_scrape_render_seconds Time the previous /metrics scrape took to read the kernel maps and render, seconds.
            # TYPE tincture_scrape_render_seconds gauge
            tincture_scrape_render_seconds 0.0125
            # HELP tincture_build_info Build information.
            # TYPE tincture_build_info gauge
            tincture_build_info{version="9.9.9"} 1

            """), text)
    }

    func testNumbers() {
        XCTAssertEqual(ExpositionWriter.formatDouble(1), "1")
        XCTAssertEqual(ExpositionWriter.formatDouble(0.00025), "0.00025")
        XCTAssertEqual(ExpositionWriter.formatDouble(.infinity), "+Inf")
        XCTAssertEqual(ExpositionWriter.formatDouble(1.5), "1.5")
    }
}
