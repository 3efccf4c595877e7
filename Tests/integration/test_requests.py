"""Request correlation end to end: real HTTP programs (a Python HTTP/1.1 server and
curl) in a private namespace, their requests joined to what the kernel did."""
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tincture_harness import (ATTACH, BIN, EXPECT_MODE, HERE, LATEST_ANSWER_S, Agent, Netns, Tail, parse_metrics,
                              require_root, sample, stop_process, unique)

PORT = 8100


@pytest.fixture(scope="module")
def agent():
    require_root()
    with Agent(attach=ATTACH) as a:
        yield a


@pytest.fixture
def ns():
    require_root()
    with Netns() as n:
        yield n


def start_server(ns, comm):
    proc = subprocess.Popen(ns.exec_args(sys.executable, str(HERE / "http_server.py"), "127.0.0.1", str(PORT), comm),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def curl(ns, *args, stdin=None):
    """Runs curl in the namespace; returns its pid (`ip netns exec` execs it in place)."""
    if not shutil.which("curl"):
        pytest.fail("curl is needed (make deps installs it)")
    proc = subprocess.Popen(ns.exec_args("curl", "-sS", "-o", "/dev/null", *args), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(input=stdin, timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    return proc.pid


def requests(events, **match):
    return [e for e in events if e["kind"] == "request" and all(e.get(k) == v for k, v in match.items())]


def test_payload_hook_attached(agent):
    metrics = parse_metrics(agent.metrics())
    assert sample(metrics, "tincture_probe_attached", hook="http_payload") == 1, agent.output()
    if EXPECT_MODE:
        assert sample(metrics, "tincture_probe_info", hook="http_payload", mode=EXPECT_MODE) == 1


def test_syn_drop_request_has_connect_cost_on_both_sides(agent, tail, ns):
    server_comm = unique("tn-srv-")
    ns.drop_every_other_syn(PORT)
    server = start_server(ns, server_comm)
    try:
        started = time.monotonic()
        curl_pid = curl(ns, "-H", "X-Request-ID: test-123", f"http://127.0.0.1:{PORT}/")
        wall = time.monotonic() - started
    finally:
        stop_process(server)
    events = tail.poll(lambda evs: len(requests(evs, request_id="test-123")) >= 2)
    client = requests(events, request_id="test-123", side="client")
    served = requests(events, request_id="test-123", side="server")
    assert len(client) == 1 and len(served) == 1, requests(events, request_id="test-123")
    c, s = client[0], served[0]
    print(f"client record: connect {c['connect_ns'] / 1e6:.1f} ms, {c['syn_retransmits']} SYN retransmit, "
          f"ttfb {c['ttfb_ns'] / 1e6:.1f} ms, poll {c['poll_wait_ns'] / 1e6:.1f} ms (curl wall {wall * 1000:.0f} ms)")
    assert c["comm"] == "curl" and c["pid"] == curl_pid
    assert c["method"] == "GET" and c["target"] == "/" and c["status"] == 200
    assert 0.95e9 <= c["connect_ns"] <= 1.2e9 and c["syn_retransmits"] == 1
    assert c["dport"] == PORT and c["end"] == "responded"
    assert s["comm"] == server_comm and s["connect_ns"] == 0 and s["sport"] == PORT and s["status"] == 200
    assert s["pid"] == server.pid
    metrics = parse_metrics(agent.metrics())
    assert sample(metrics, "tincture_http_request_duration_seconds_count", comm="curl", side="client",
                  endpoint=f"127.0.0.1:{PORT}") >= 1


def test_keep_alive_gives_one_record_per_request(agent, tail, ns):
    server = start_server(ns, unique("tn-ka-"))
    try:
        url = f"http://127.0.0.1:{PORT}/"
        curl(ns, "-H", "X-Request-ID: ka-1", url, "--next", "-o", "/dev/null", "-H", "X-Request-ID: ka-2", url,
             "--next", "-o", "/dev/null", "-H", "X-Request-ID: ka-3", url)
    finally:
        stop_process(server)
    ids = ["ka-1", "ka-2", "ka-3"]
    events = tail.poll(lambda evs: all(requests(evs, request_id=i, side=side) for i in ids
                                       for side in ("client", "server")))
    for side in ("client", "server"):
        assert [len(requests(events, request_id=i, side=side)) for i in ids] == [1, 1, 1], side
    records = [requests(events, request_id=i, side="client")[0] for i in ids]
    assert len({r["cookie"] for r in records}) == 1, "one connection"
    assert [r["end"] for r in records] == ["responded"] * 3
    assert records[0]["connect_ns"] > 0
    assert [r["connect_ns"] for r in records[1:]] == [0, 0], "only the first request pays the connect"


def test_traceparent_and_generated_ids(agent, tail, ns):
    server = start_server(ns, unique("tn-tp-"))
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        curl(ns, "-H", f"traceparent: 00-{trace}-00f067aa0ba902b7-01", f"http://127.0.0.1:{PORT}/tp")
        curl(ns, f"http://127.0.0.1:{PORT}/anonymous")
    finally:
        stop_process(server)
    events = tail.poll(lambda evs: requests(evs, target="/anonymous", side="client")
                       and requests(evs, request_id=trace, side="client"))
    assert requests(events, request_id=trace, side="client")[0]["target"] == "/tp"
    anon = requests(events, target="/anonymous", side="client")[0]
    assert anon["request_id"] == f"sk-{anon['cookie']}-1"


def test_poll_wait_joins_the_request(agent, tail, ns):
    server = start_server(ns, unique("tn-slow-"))
    try:
        curl(ns, "-H", "X-Request-ID: slow-1", f"http://127.0.0.1:{PORT}/slow?delay=0.3")
    finally:
        stop_process(server)
    events = tail.poll(lambda evs: requests(evs, request_id="slow-1", side="client"))
    r = requests(events, request_id="slow-1", side="client")[0]
    print(f"slow request: ttfb {r['ttfb_ns'] / 1e6:.1f} ms, poll wait {r['poll_wait_ns'] / 1e6:.1f} ms")
    assert 0.3e9 <= r["ttfb_ns"] < LATEST_ANSWER_S * 1e9
    assert 0.27e9 <= r["poll_wait_ns"] <= r["ttfb_ns"] * 1.01


def test_data_retransmits_join_the_request(agent, tail, ns):
    """A POST whose body loses packets on the way: the retransmits on the socket while
    the request is in flight join the client's record, no more than the kernel counted."""
    rid = unique("rtx-")
    ns.nft("add", "table", "inet", "tincture_test")
    ns.nft("add", "chain", "inet", "tincture_test", "in", "{ type filter hook input priority 0; policy accept; }")
    ns.nft("add", "rule", "inet", "tincture_test", "in", "tcp", "dport", str(PORT),
           "meta", "length", "gt", "200", "numgen", "inc", "mod", "4", "==", "0", "drop")
    server = start_server(ns, unique("tn-post-"))
    before = ns.netstat("Tcp", "RetransSegs")
    try:
        # 256 KiB in 4 KiB writes: many segments, a quarter of them dropped once.
        curl(ns, "-H", f"X-Request-ID: {rid}", "-H", "Expect:", "--limit-rate", "2M",
             "--data-binary", "@/dev/stdin", f"http://127.0.0.1:{PORT}/upload", stdin=b"x" * (256 * 1024))
    finally:
        stop_process(server)
    kernel = ns.netstat("Tcp", "RetransSegs") - before
    events = tail.poll(lambda evs: requests(evs, request_id=rid, side="client"))
    r = requests(events, request_id=rid, side="client")[0]
    print(f"POST with drops: record retransmits {r['retransmits']}, namespace RetransSegs {kernel}")
    assert kernel >= 1, "the drops caused no retransmit"
    assert 1 <= r["retransmits"] <= kernel, (r, kernel)
    assert r["method"] == "POST" and r["status"] == 200 and r["end"] == "responded"


def test_configured_request_id_header_wins(ns):
    """--request-id-header X-Trace-Id: that header names the request, even where an
    X-Request-ID is present too (the configured list replaces the default one)."""
    with Agent(attach=ATTACH, extra=["--request-id-header", "X-Trace-Id"]) as a:
        t = Tail(a)
        server = start_server(ns, unique("tn-hdr-"))
        try:
            curl(ns, "-H", "X-Request-ID: not-this-one", "-H", "X-Trace-Id: configured-1", f"http://127.0.0.1:{PORT}/h")
            events = t.poll(lambda evs: requests(evs, target="/h", side="client"))
        finally:
            stop_process(server)
            t.close()
    assert [r["request_id"] for r in requests(events, target="/h", side="client")] == ["configured-1"]


def test_explain_and_tail_by_request_id(agent, ns):
    rid = unique("explain-")
    ns.drop_every_other_syn(PORT)
    server = start_server(ns, unique("tn-exp-"))
    by_id = Tail(agent, "--request-id", rid)
    try:
        curl(ns, "-H", f"X-Request-ID: {rid}", f"http://127.0.0.1:{PORT}/")
        events = by_id.poll(lambda evs: len([e for e in evs if e["kind"] == "request"]) >= 2)
    finally:
        stop_process(server)
        by_id.close()
    records = [e for e in events if e["kind"] == "request"]
    assert sorted(r["side"] for r in records) == ["client", "server"], events
    assert all(r["request_id"] == rid for r in records), events
    client = next(r for r in records if r["side"] == "client")
    # Only this request's record and the kernel events joined to it: the client's
    # connect and its SYN retransmit, shown before the client's record.
    shown = events[:events.index(client)]
    assert [e for e in shown if e["kind"] == "connect" and e["cookie"] == client["cookie"]], events
    assert [e for e in shown if e["kind"] == "retransmit" and e["cookie"] == client["cookie"]
            and e["state"] == "SYN_SENT"], events
    cookies = {r["cookie"] for r in records}
    tids = {r["tid"] for r in records}
    strangers = [e for e in events if e["kind"] != "request" and e["cookie"] not in cookies and e.get("tid") not in tids]
    assert not strangers, strangers
    out = subprocess.run([BIN, "explain", "--socket", agent.socket, rid], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    assert f"request {rid}  client  curl" in out.stdout
    assert "connect paid 1 SYN retransmit" in out.stdout
    missing = subprocess.run([BIN, "explain", "--socket", agent.socket, "no-such-id"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no request with ID no-such-id" in missing.stderr


def test_openmetrics_exemplars_parse_and_text_still_lints(agent, tail, ns):
    # An independent OpenMetrics parser (Tests/integration/run.sh installs it).
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    rid = unique("om-")
    server = start_server(ns, unique("tn-om-"))
    try:
        # A 200 ms answer: curl's poll wait joins the request, so all three histograms get its ID.
        curl(ns, "-H", f"X-Request-ID: {rid}", f"http://127.0.0.1:{PORT}/?delay=0.2")
    finally:
        stop_process(server)
    tail.poll(lambda evs: requests(evs, request_id=rid, side="client"))
    status, om = agent.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and om.endswith("# EOF\n")
    exemplars = []
    for family in text_string_to_metric_families(om):
        for s in family.samples:
            if s.exemplar:
                exemplars.append((family.name, s.exemplar.labels.get("request_id")))
    assert ("tincture_http_request_duration_seconds", rid) in exemplars, exemplars
    assert ("tincture_tcp_connect_duration_seconds", rid) in exemplars, exemplars
    assert ("tincture_poll_wait_seconds", rid) in exemplars, exemplars
    assert "request_id" not in agent.metrics(), "request IDs never appear in the plain text format"
    lint = subprocess.run(["promtool", "check", "metrics"], input=agent.metrics(), capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_request_closed_without_an_answer_ends_as_closed(agent, tail, ns):
    """A server that reads a request and closes the connection 400 ms later: each
    side's record ends when its socket closes ("closed", not the 60 s timeout), with
    how long it ran. The second request is a long target cut by the capture: still a
    request (generated ID), ended the same way."""
    comm = unique("tn-gone-")
    rid = unique("gone-")
    code = (
        "import socket,threading,time,ctypes\n"
        f"ctypes.CDLL(None).prctl(15,{comm!r}.encode(),0,0,0)\n"
        f"s=socket.socket();s.bind(('127.0.0.1',{PORT}));s.listen()\n"
        "def srv():\n"
        "    for _ in range(2):\n"
        "        c,_=s.accept();got=b''\n"
        "        while not (got.endswith(b'\\r\\n\\r\\n') or len(got)>=5005): got+=c.recv(65536)\n"
        "        time.sleep(0.4);c.close()\n"
        "t=threading.Thread(target=srv);t.start()\n"
        f"for req in (b'GET /gone HTTP/1.1\\r\\nX-Request-ID: {rid}\\r\\n\\r\\n', b'GET /'+b'A'*5000):\n"
        f"    c=socket.create_connection(('127.0.0.1',{PORT}));c.sendall(req)\n"
        "    assert c.recv(65536)==b''\n"
        "    c.close()\n"
        "t.join()\n")
    started = time.monotonic()
    subprocess.run(ns.exec_args(sys.executable, "-c", code), check=True, timeout=60)
    mine = lambda evs: requests(evs, comm=comm)
    events = tail.poll(lambda evs: len(mine(evs)) >= 4, timeout=10)
    assert time.monotonic() - started < 30, "ended by the close, not by the 60 s timeout"
    records = mine(events)
    print("closed records:", [(r["side"], r["request_id"][:20], r["end"], r["duration_ns"] / 1e6) for r in records])
    assert len(records) == 4, records
    for side in ("client", "server"):
        named = requests(records, request_id=rid, side=side)
        assert len(named) == 1, (side, records)
        r = named[0]
        assert r["end"] == "closed" and r["status"] == 0 and r["ttfb_ns"] == 0, r
        assert 0.38e9 <= r["duration_ns"] <= 2e9, r
        long = [x for x in requests(records, side=side) if x["target"].startswith("/AAAA")]
        assert len(long) == 1 and long[0]["end"] == "closed" and long[0]["request_id"].startswith("sk-"), records
    metrics = parse_metrics(agent.metrics())
    assert sample(metrics, "tincture_http_requests_ended_total", end="closed") >= 4


def test_non_http_traffic_and_junk_make_no_records(agent, tail, ns):
    comm = unique("tn-junk-")
    code = (
        "import socket,threading,ctypes\n"
        f"ctypes.CDLL(None).prctl(15,{comm!r}.encode(),0,0,0)\n"
        f"s=socket.socket();s.bind(('127.0.0.1',{PORT}));s.listen()\n"
        "def srv():\n"
        "    while True:\n"
        "        c,_=s.accept()\n"
        "        while c.recv(65536): pass\n"
        "threading.Thread(target=srv,daemon=True).start()\n"
        "junk=[b'\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03'+bytes(200), b'GET', b'GET  / HTTP/1.1\\r\\n\\r\\n',\n"
        "      b'POST /x HTTP/9.9\\r\\n', b'HTTP/1.1 2000 OK\\r\\n', bytes(range(256)), b'GET /\\x00\\xff HTTP/1.1\\r\\n',\n"
        "      b'*1\\r\\n$4\\r\\nPING\\r\\n']\n"
        "for j in junk:\n"
        f"    c=socket.create_connection(('127.0.0.1',{PORT})); c.sendall(j); c.close()\n")
    subprocess.run(ns.exec_args(sys.executable, "-c", code), check=True, timeout=60)
    events = tail.poll(lambda evs: False, timeout=1.5)
    assert not [e for e in events if e["kind"] == "request" and e["comm"] == comm]
    assert agent.get("/healthz")[0] == 200


def test_fast_connect_cost_reaches_the_request_without_a_tail(ns):
    """With nobody tailing, a fast clean connect travels no event (the kernel
    histogram counts it); the first request on the socket still reports it."""
    with Agent(attach=ATTACH) as a:
        server = start_server(ns, unique("tn-fast-"))
        rid = unique("fast-")
        try:
            url = f"http://127.0.0.1:{PORT}/"
            curl(ns, "-H", f"X-Request-ID: {rid}-1", url, "--next", "-o", "/dev/null", "-H", f"X-Request-ID: {rid}-2", url)
        finally:
            stop_process(server)
        records = {}
        deadline = time.monotonic() + 10
        while len(records) < 2 and time.monotonic() < deadline:
            for n in (1, 2):
                out = subprocess.run([BIN, "explain", "--socket", a.socket, "--json", f"{rid}-{n}"],
                                     capture_output=True, text=True, timeout=30)
                client = [json.loads(line) for line in out.stdout.splitlines() if '"side":"client"' in line]
                if client:
                    records[n] = client[0]
            time.sleep(0.1)
        assert set(records) == {1, 2}, records
        print(f"fast connect: {records[1]['connect_ns'] / 1e3:.0f} us reported on the first request")
        assert 0 < records[1]["connect_ns"] < 100e6, "the first request carries the connect's latency"
        assert records[2]["connect_ns"] == 0, "only the first request pays the connect"
        metrics = parse_metrics(a.metrics())
        assert sample(metrics, "tincture_tcp_connect_duration_seconds_count",
                      comm="curl", endpoint=f"127.0.0.1:{PORT}", result="ok") == 1
