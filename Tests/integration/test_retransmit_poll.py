"""Retransmits and poll waits on the running kernel, checked against the namespace's
own counters (/proc/net/snmp, /proc/net/netstat) and the client's own wall clock."""
import time

import pytest

from tincture_harness import (ATTACH, EXPECT_MODE, LATEST_ANSWER_S, Agent, Netns, Tail, loss_report, parse_metrics,
                              require_root, sample, stop_process, unique)

POLL_MIN = "100ms"


@pytest.fixture(scope="module")
def agent():
    require_root()
    with Agent(attach=ATTACH, extra=["--poll-min-duration", POLL_MIN]) as a:
        yield a


def test_hooks_attached(agent):
    metrics = parse_metrics(agent.metrics())
    for hook in ("tcp_retransmit", "poll_wait"):
        assert sample(metrics, "tincture_probe_attached", hook=hook) == 1, agent.output()
        if EXPECT_MODE:
            assert sample(metrics, "tincture_probe_info", hook=hook, mode=EXPECT_MODE) == 1


def test_data_retransmits_match_the_kernel_counter(agent, tail):
    comm = unique("tn-rtx-")
    port = 8090
    with Netns() as ns:
        server = ns.sink(port)
        # Drop every 4th data-carrying packet towards the server: pure ACKs are small.
        ns.nft("add", "table", "inet", "tincture_test")
        ns.nft("add", "chain", "inet", "tincture_test", "in",
               "{ type filter hook input priority 0; policy accept; }")
        ns.nft("add", "rule", "inet", "tincture_test", "in", "tcp", "dport", str(port),
               "meta", "length", "gt", "200", "numgen", "inc", "mod", "4", "==", "0", "drop")
        before = ns.netstat("Tcp", "RetransSegs")
        try:
            client = ns.run_client("send_client.py", "127.0.0.1", port, comm, 200, 1000)
        finally:
            stop_process(server)
        kernel = ns.netstat("Tcp", "RetransSegs") - before
    assert kernel >= 10, f"the nftables drops did not cause retransmits ({kernel})"

    def mine(evs):
        return [e for e in evs if e["kind"] == "retransmit" and e["dport"] == port and e["comm"] == comm]

    events = tail.poll(lambda evs: sum(e["segs"] for e in mine(evs)) >= kernel, timeout=10)
    ours = sum(e["segs"] for e in mine(events))
    print(f"retransmits: agent {ours} segments, kernel RetransSegs {kernel}")
    assert abs(ours - kernel) <= 0.05 * kernel, (ours, kernel)
    for e in mine(events):
        assert e["pid"] == client["pid"] and e["tid"] > 0
        assert e["state"] in ("ESTABLISHED", "FIN_WAIT1", "CLOSING", "LAST_ACK"), e
        assert e["sport"] == client["sport"] and e["side"] == "client"
        # The client read its socket's cookie before sending: every mode reports that one.
        assert e["cookie"] == client["cookie"], (e, client)
        assert 0 < e["srtt_us"] < 5_000_000, e
        if EXPECT_MODE:
            assert e["mode"] == EXPECT_MODE

    metrics = parse_metrics(agent.metrics())
    counted = sum(v for (name, labels), v in metrics.items()
                  if name == "tincture_tcp_retransmits_total"
                  and dict(labels).get("comm") == comm and dict(labels).get("endpoint") == f"127.0.0.1:{port}")
    assert counted == ours


def test_syn_drop_is_a_syn_sent_retransmit_and_the_connect_counts_it(agent, tail):
    comm = unique("tn-synr-")
    port = 8091
    with Netns() as ns:
        ns.drop_every_other_syn(port)
        server = ns.listener(port)
        try:
            r = ns.connect("127.0.0.1", port, comm)
        finally:
            stop_process(server)
        kernel = ns.netstat("TcpExt", "TCPSynRetrans")
    events = tail.poll(lambda evs: any(e["kind"] == "connect" and e["comm"] == comm for e in evs))
    rtx = [e for e in events if e["kind"] == "retransmit" and e["comm"] == comm]
    assert [e["state"] for e in rtx] == ["SYN_SENT"] * kernel, (
        rtx, [e for e in events if e["kind"] == "retransmit" or e.get("comm") == comm], loss_report(agent))
    assert rtx[0]["pid"] == r["pid"] and rtx[0]["dport"] == port
    connect = [e for e in events if e["kind"] == "connect" and e["comm"] == comm]
    assert connect[0]["syn_retransmits"] == kernel == 1
    metrics = parse_metrics(agent.metrics())
    assert sample(metrics, "tincture_tcp_retransmits_total", comm=comm, endpoint=f"127.0.0.1:{port}",
                  state="SYN_SENT") == 1


def test_tail_kind_filter_keeps_only_that_kind(agent):
    """`tail --kind retransmit --comm C` during a connect that loses a SYN: the
    retransmit shows, the connect (also C's) does not."""
    comm = unique("tn-kind-")
    port = 8095
    only = Tail(agent, "--kind", "retransmit", "--comm", comm)
    try:
        with Netns() as ns:
            ns.drop_every_other_syn(port)
            server = ns.listener(port)
            try:
                ns.connect("127.0.0.1", port, comm)
            finally:
                stop_process(server)
        only.poll(lambda evs: evs)
        time.sleep(0.5)  # the connect event, were it let through, would be here by now
        events = only.events
    finally:
        only.close()
    assert events and all(e["kind"] == "retransmit" and e["comm"] == comm for e in events), events


def test_synack_retransmit_names_the_server(agent, tail):
    port = 8092
    with Netns() as ns:
        server = ns.listener(port)
        # Drop the server's first SYN-ACK on its way out: the server must send it again.
        ns.nft("add", "table", "inet", "tincture_test")
        ns.nft("add", "chain", "inet", "tincture_test", "out",
               "{ type filter hook output priority 0; policy accept; }")
        ns.nft("add", "rule", "inet", "tincture_test", "out", "tcp", "sport", str(port), "tcp", "flags",
               "&", "(syn|ack)", "==", "syn|ack", "numgen", "inc", "mod", "2", "==", "0", "drop")
        try:
            r = ns.connect("127.0.0.1", port, unique("tn-sack-"))
        finally:
            stop_process(server)
        kernel_synretrans = ns.netstat("TcpExt", "TCPSynRetrans")
    assert r["result"] == "ok"
    synacks = tail.poll(lambda evs: [e for e in evs if e["kind"] == "retransmit" and e.get("synack")
                                     and e["sport"] == port])
    synacks = [e for e in synacks if e["kind"] == "retransmit" and e.get("synack") and e["sport"] == port]
    assert len(synacks) >= 1, synacks
    e = synacks[0]
    assert e["state"] == "SYN_RECV" and e["pid"] == server.pid and e["side"] == "server", e
    assert e["dport"] == r["sport"]
    assert kernel_synretrans >= len(synacks)


@pytest.mark.parametrize("how, syscalls, timeout_ms", [
    ("poll", {"poll"}, 5000),
    ("epoll", {"epoll_wait", "epoll_pwait"}, 5000),
    ("select", {"select", "pselect6"}, 5000),
    ("ppoll", {"ppoll"}, -1),
    ("epoll_pwait2", {"epoll_pwait2"}, -1),
])
def test_long_wait_is_an_event_with_the_socket_cookie(agent, tail, how, syscalls, timeout_ms):
    comm = unique("tn-wait-")
    port = 8093
    with Netns() as ns:
        server = ns.sink(port, delay=0.3)
        try:
            r = ns.run_client("wait_client.py", "127.0.0.1", port, comm, how)
        finally:
            stop_process(server)
    assert r["ready"] == 1

    def mine(evs):
        return [e for e in evs if e["kind"] == "poll" and e["tid"] == r["tid"] and e["syscall"] in syscalls]

    events = mine(tail.poll(lambda evs: mine(evs)))
    assert len(events) == 1, events
    e = events[0]
    print(f"{how}: client {r['elapsed_ns'] / 1e6:.1f} ms, agent {e['duration_ns'] / 1e6:.1f} ms, "
          f"syscall {e['syscall']}, cookie {e['cookie']} (client's {r['cookie']}), mode {e['mode']}")
    # The peer answers after 300 ms; the client's own clock says how long it really waited
    # (under emulation the peer can be late). The kernel's figure must agree within 10 %.
    assert 0.29e9 <= r["elapsed_ns"] < LATEST_ANSWER_S * 1e9, r
    assert abs(e["duration_ns"] - r["elapsed_ns"]) <= 0.1 * r["elapsed_ns"], (e, r)
    assert e["pid"] == r["pid"] and e["comm"] == comm
    assert e["ready"] == 1 and e["timeout_ms"] == timeout_ms
    assert e["cookie"] == r["cookie"] and e["fd"] == r["fd"]
    if EXPECT_MODE:
        assert e["mode"] == EXPECT_MODE
    metrics = parse_metrics(agent.metrics())
    name = "tincture_poll_wait_seconds"
    labels = dict(comm=comm, syscall=e["syscall"])
    # The bucket of the wait the agent measured (0.5 s unless the peer was late), none below it.
    bounds = ["0.25", "0.5", "1", "2.5"]
    upper = next(b for b in bounds if e["duration_ns"] <= float(b) * 1e9)
    assert sample(metrics, name + "_bucket", le=bounds[bounds.index(upper) - 1], **labels) == 0
    assert sample(metrics, name + "_bucket", le=upper, **labels) == 1


def test_short_wait_travels_no_event_but_is_counted(agent, tail):
    comm = unique("tn-shrt-")
    port = 8094
    with Netns() as ns:
        server = ns.sink(port, delay=2)
        try:
            r = ns.run_client("wait_client.py", "127.0.0.1", port, comm, "short")
        finally:
            stop_process(server)
    assert r["ready"] == 0
    # Counted in the kernel: the scrape shows exactly one poll wait for this command.
    metrics = parse_metrics(agent.metrics())
    name = "tincture_poll_wait_seconds"
    assert sample(metrics, name + "_count", comm=comm, syscall="poll") == 1
    assert sample(metrics, name + "_bucket", comm=comm, syscall="poll", le="0.01") == 0
    assert sample(metrics, name + "_bucket", comm=comm, syscall="poll", le="0.025") == 1
    # Below --poll-min-duration: no event for that thread.
    events = tail.poll(lambda evs: False, timeout=1)
    assert not [e for e in events if e["kind"] == "poll" and e["tid"] == r["tid"]]
