"""The built binary as a user runs it: defaults, curl, promtool, tail, signals,
bad input of every kind."""
import os
import pathlib
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import types

import pytest

from tincture_harness import (BIN, Agent, Netns, Tail, loss_report, parse_metrics, require_root, sample,
                              stop_process, unique)

DEFAULT_SOCKET = "/run/tincture/events.sock"


def tincture(*args, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.parametrize("args, message", [
    (["agent", "--listen", "nonsense"], "--listen 'nonsense' is not HOST:PORT"),
    (["agent", "--listen", "127.0.0.1:70000"], "is not HOST:PORT"),
    (["agent", "--attach", "uprobe"], "auto"),
    (["agent", "--events-socket", "relative.sock"], "must be an absolute path"),
    (["agent", "--series-cap", "0"], "--series-cap must be at least 1"),
    (["tail", "--min-duration", "soon"], "--min-duration 'soon' is not a duration"),
    (["tail", "--port", "99999"], "port"),
    (["tail", "--comm", "a-much-too-long-command-name"], "longer than the kernel's 15-byte"),
    (["frobnicate"], "Unexpected argument"),
])
def test_bad_flags_are_rejected_with_a_message(args, message):
    r = tincture(*args)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr


def test_help_teaches():
    r = tincture("--help")
    assert r.returncode == 0
    for word in ("agent", "tail", "check", "explain", "sudo tincture agent", "retransmits", "poll", "request ID"):
        assert word in r.stdout, word
    r = tincture("tail", "--help")
    assert "--min-duration" in r.stdout and "--kind" in r.stdout and "Examples" in r.stdout
    for command in ("agent", "tail", "explain", "check"):
        r = tincture(command, "--help")
        assert r.returncode == 0 and "\\\n" not in r.stdout, (command, r.stdout)


def test_tail_without_agent_says_how_to_start_one(tmp_path):
    r = tincture("tail", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 1
    assert "no Tincture agent is serving events" in r.stderr
    assert "sudo tincture agent" in r.stderr


def test_agent_without_privileges_names_what_is_missing(tmp_path):
    require_root()
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to drop privileges")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", BIN, "agent", "--events-socket", str(tmp_path / "e.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 77, r
    assert "CAP_BPF" in r.stderr and "CAP_PERFMON" in r.stderr and "sudo tincture agent" in r.stderr


def test_check_reports_facts_and_plan():
    require_root()
    r = tincture("check")
    assert r.returncode == 0, r.stdout + r.stderr
    for word in ("BTF", "ring buffer", "kprobes", "fentry", "tracefs", "attach plan", "every hook can attach"):
        assert word in r.stdout, r.stdout
    # Every hook, with the mode auto chose (marked *) and why the others were not.
    for hook in ("tcp_connect", "tcp_retransmit", "poll_wait", "http_payload"):
        assert f"  {hook}: " in r.stdout, (hook, r.stdout)
    assert r.stdout.count("    * ") == 4, r.stdout


def test_no_attachable_mode_exits_nonzero_with_reason():
    require_root()
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        pytest.skip("this kernel has kprobes; the scenario needs one without")
    r = tincture("agent", "--attach", "kprobe", "--listen", "127.0.0.1:0", "--events-socket", "/tmp/tn-none.sock")
    assert r.returncode == 1
    assert "hook tcp_connect: not attached" in r.stderr and "CONFIG_KPROBES" in r.stderr, r.stderr
    assert "no hook could attach with --attach kprobe" in r.stderr and "tincture check" in r.stderr


@pytest.fixture
def user_agent():
    """The agent exactly as `make run` and the systemd unit start it: no flags."""
    require_root()
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 9477)) == 0:
            pytest.fail("something already listens on 127.0.0.1:9477; stop it to run this test")
    proc = subprocess.Popen([BIN, "agent"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        r = subprocess.run(["curl", "-sf", "http://127.0.0.1:9477/healthz"], capture_output=True, text=True)
        if r.returncode == 0 and os.path.exists(DEFAULT_SOCKET):
            break
        time.sleep(0.1)
    yield proc
    stop_process(proc)


def test_sigterm_while_starting_exits_within_a_second(tmp_path):
    """The attach plan tries every mode for real and takes a while: a SIGTERM then
    ends the start-up at once, nothing left attached."""
    require_root()
    proc = subprocess.Popen([BIN, "agent", "--listen", "127.0.0.1:0", "--events-socket", str(tmp_path / "e.sock")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        stop_process(proc)
    err = proc.stderr.read()
    print(f"SIGTERM 0.2 s into start-up: exit {rc} after {took * 1000:.0f} ms")
    assert rc == 0 and took < 1.0, (rc, took, err)


def test_agent_end_to_end_with_defaults(user_agent):
    st = os.stat(DEFAULT_SOCKET)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600

    # `tincture tail --json` as a user runs it: the default socket.
    tail = Tail(types.SimpleNamespace(socket=DEFAULT_SOCKET))
    comm = unique("tn-e2e-")
    try:
        with Netns() as ns:
            server = ns.listener(9000)
            try:
                report = ns.connect("127.0.0.1", 9000, comm)
            finally:
                stop_process(server)
        events = tail.poll(lambda evs: any(e.get("comm") == comm for e in evs))
    finally:
        tail.close()
    mine = [e for e in events if e.get("comm") == comm]
    assert mine, "tail --json showed no event of the test's connect"
    event = mine[0]
    for key in ("kind", "ts_ns", "pid", "tid", "comm", "cookie", "saddr", "sport", "daddr", "dport",
                "duration_ns", "result", "syn_retransmits"):
        assert key in event, key
    assert event["pid"] == report["pid"] and event["result"] == "ok"
    assert abs(event["ts_ns"] - time.time_ns()) < 60e9, "ts_ns is Unix time"

    r = subprocess.run(["curl", "-sf", "http://127.0.0.1:9477/metrics"], capture_output=True, text=True)
    assert r.returncode == 0
    assert f'comm="{comm}",endpoint="127.0.0.1:9000",result="ok"' in r.stdout
    lint = subprocess.run(["promtool", "check", "metrics"], input=r.stdout, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    head = subprocess.run(["curl", "-sI", "http://127.0.0.1:9477/metrics"], capture_output=True, text=True)
    assert "200 OK" in head.stdout and "version=0.0.4" in head.stdout
    missing = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://127.0.0.1:9477/nope"], capture_output=True, text=True)
    assert missing.stdout == "404"
    post = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                           "http://127.0.0.1:9477/metrics"], capture_output=True, text=True)
    assert post.stdout == "405"

    started = time.monotonic()
    user_agent.terminate()
    assert user_agent.wait(timeout=5) == 0, user_agent.stderr.read()
    assert time.monotonic() - started < 1.0, "SIGTERM must detach and exit within a second"
    assert not os.path.exists(DEFAULT_SOCKET), "the agent removes its socket on exit"


def test_sigint_exits_cleanly_too():
    require_root()
    with Agent() as a:
        started = time.monotonic()
        a.proc.send_signal(2)
        assert a.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 1.0
        assert "detaching" in a.output()


def test_second_agent_on_same_socket_is_refused():
    require_root()
    with Agent() as first:
        r = tincture("agent", "--listen", "127.0.0.1:0", "--events-socket", first.socket)
        assert r.returncode == 1
        assert "another agent is already serving" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    require_root()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = tincture("agent", "--listen", f"127.0.0.1:{port}", "--events-socket", str(tmp_path / "e.sock"))
    assert r.returncode == 1
    assert f"binding 127.0.0.1:{port}: Address already in use" in r.stderr


def test_slow_subscriber_loses_its_own_events_counted_and_never_blocks():
    require_root()
    with Agent(extra=["--subscriber-queue", "1024"]) as a:
        stuck = socket.socket(socket.AF_UNIX)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(a.socket)
        stuck.sendall(b"subscribe\n")  # and never reads
        # The burst below can finish in well under a second; it must not start
        # before the agent has registered the stuck subscriber.
        deadline = time.monotonic() + 5
        while sample(parse_metrics(a.metrics()), "tincture_subscribers") != 1:
            assert time.monotonic() < deadline, "the agent never registered the stuck subscriber"
            time.sleep(0.05)
        live = Tail(a)
        comm = unique("tn-burst-")
        n = 3000
        with Netns() as ns:
            server = ns.listener(9001)
            try:
                code = ("import socket\n"
                        "import ctypes; ctypes.CDLL(None).prctl(15, %r.encode(), 0, 0, 0)\n"
                        "for _ in range(%d):\n"
                        "    s=socket.create_connection(('127.0.0.1', 9001)); s.close()\n") % (comm, n)
                subprocess.run(ns.exec_args(sys.executable, "-c", code), check=True, timeout=60)
            finally:
                stop_process(server)
        events = live.poll(lambda evs: sum(e["kind"] == "connect" and e["comm"] == comm for e in evs) >= n,
                           timeout=15)
        live.close()
        assert sum(e["kind"] == "connect" and e["comm"] == comm for e in events) == n, \
            ("a live subscriber misses nothing", loss_report(a))
        metrics = parse_metrics(a.metrics())
        assert sample(metrics, "tincture_subscriber_dropped_events_total") > 0
        assert sample(metrics, "tincture_tcp_connect_duration_seconds_count",
                      comm=comm, endpoint="127.0.0.1:9001", result="ok") == n
        stuck.close()


def test_malformed_and_stalled_http_clients(tmp_path):
    require_root()
    with Agent() as a:
        host, port = a.listen.rsplit(":", 1)
        stalled = socket.create_connection((host, int(port)))  # sends nothing
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
            assert s.recv(100).startswith(b"HTTP/1.1 431")
        started = time.monotonic()
        assert a.get("/metrics")[0] == 200
        assert time.monotonic() - started < 1, "a stalled client must not delay scrapes"
        stalled.close()


def test_systemd_unit_verifies_and_install_places_files(tmp_path):
    unit = (pathlib.Path(__file__).resolve().parents[2] / "systemd/tincture.service").read_text()
    assert "ExecStart=/usr/local/bin/tincture agent" in unit
    local = tmp_path / "tincture.service"
    local.write_text(unit.replace("/usr/local/bin/tincture", BIN))
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
        assert r.returncode == 0 and "tincture.service" not in r.stderr, r.stderr
    root = pathlib.Path(__file__).resolve().parents[2]
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-C", str(root), "install", f"DESTDIR={dest}"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(dest / "usr/local/bin/tincture", os.X_OK)
    assert (dest / "etc/systemd/system/tincture.service").read_text() == unit


def test_agent_drops_all_capabilities_once_attached():
    require_root()
    with Agent() as a:
        with open(f"/proc/{a.proc.pid}/status") as f:
            caps = dict(line.split(":\t", 1) for line in f.read().splitlines() if line.startswith("Cap"))
        assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps
        # Still fully working without them: counters, scrape, stream, clean exit.
        assert "tincture_events_lost_total" in a.metrics()
        t = Tail(a)
        t.close()
        a.proc.terminate()
        assert a.proc.wait(timeout=5) == 0
