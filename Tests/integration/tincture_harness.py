"""Shared machinery for Tincture's integration tests: the agent, `tincture tail`,
private network namespaces with nftables rules, and small traffic programs.

Every namespace and process a test creates is removed by the test, even on failure.
Traffic goes only to loopback inside namespaces these tests create.
"""
import json
import os
import pathlib
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TINCTURE_BIN", str(ROOT / ".build/release/tincture"))
ATTACH = os.environ.get("TINCTURE_ATTACH", "auto")
EXPECT_MODE = os.environ.get("TINCTURE_EXPECT_MODE")  # e.g. "kprobe" in the stock-kernel VM
# How late a peer told to answer after 300 ms may be. Under the VM's software
# emulation (TINCTURE_EMULATED=1) its wake-up has been seen 370 ms late; the
# tests' real check is the agent against the client's own clock.
LATEST_ANSWER_S = 1.5 if os.environ.get("TINCTURE_EMULATED") == "1" else 0.6
ON_CI = os.environ.get("CI") == "true"
HERE = pathlib.Path(__file__).resolve().parent


def require_root():
    """BPF tests need root. On CI a missing privilege is a failure, never a skip."""
    if os.geteuid() != 0:
        if ON_CI:
            pytest.fail("integration tests must run as root on CI")
        pytest.skip("needs root (BPF, network namespaces)")


def unique(prefix):
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class Netns:
    """A private network namespace with loopback up; removed on exit."""

    def __init__(self):
        self.name = unique("tn-test-")

    def __enter__(self):
        run("ip", "netns", "add", self.name)
        try:
            run("ip", "-n", self.name, "link", "set", "lo", "up")
        except Exception:
            run("ip", "netns", "del", self.name, check=False)
            raise
        return self

    def __exit__(self, *exc):
        # Deleting the namespace drops its nftables tables and sockets with it.
        run("ip", "netns", "del", self.name, check=False)

    def exec_args(self, *cmd):
        return ["ip", "netns", "exec", self.name, *cmd]

    def nft(self, *rule):
        run("ip", "netns", "exec", self.name, "nft", *rule)

    def drop_every_other_syn(self, port):
        """Every other SYN to `port` is dropped: each connect pays one SYN retransmit (~1 s)."""
        self.nft("add", "table", "inet", "tincture_test")
        self.nft("add", "chain", "inet", "tincture_test", "in",
                 "{ type filter hook input priority 0; policy accept; }")
        self.nft("add", "rule", "inet", "tincture_test", "in", "tcp", "dport", str(port),
                 "tcp", "flags", "syn", "numgen", "inc", "mod", "2", "==", "0", "drop")

    def netstat(self, group, field):
        """A counter from the namespace's own /proc/net/netstat or /proc/net/snmp (kernel ground truth)."""
        for path in ("/proc/net/netstat", "/proc/net/snmp"):
            lines = run("ip", "netns", "exec", self.name, "cat", path).stdout.splitlines()
            for names, values in zip(lines[::2], lines[1::2]):
                if names.startswith(group + ":"):
                    table = dict(zip(names.split()[1:], values.split()[1:]))
                    if field in table:
                        return int(table[field])
        raise KeyError(f"{group}:{field}")

    def listener(self, port, host="127.0.0.1"):
        """A process that accepts connections on `port` and closes them at once."""
        code = (
            "import socket\n"
            f"s=socket.socket(socket.AF_INET6 if ':' in {host!r} else socket.AF_INET)\n"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(({host!r},{port}));s.listen(128)\n"
            "print('ready',flush=True)\n"
            "while True: s.accept()[0].close()\n")
        proc = subprocess.Popen(self.exec_args(sys.executable, "-c", code),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def sink(self, port, host="127.0.0.1", delay=0.0):
        """A server that reads each connection to EOF and answers with the byte count;
        with `delay`, it first waits that long and sends one byte (a late answer)."""
        code = (
            "import socket,threading,time\n"
            f"s=socket.socket(socket.AF_INET6 if ':' in {host!r} else socket.AF_INET)\n"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(({host!r},{port}));s.listen(128)\n"
            "def serve(c):\n"
            f"    if {delay!r} > 0:\n"
            f"        time.sleep({delay!r}); c.sendall(b'x'); time.sleep(2); c.close(); return\n"
            "    n=0\n"
            "    while True:\n"
            "        b=c.recv(65536)\n"
            "        if not b: break\n"
            "        n+=len(b)\n"
            "    c.sendall(str(n).encode()+b'\\n'); c.close()\n"
            "print('ready',flush=True)\n"
            "while True:\n"
            "    c,_=s.accept(); threading.Thread(target=serve,args=(c,),daemon=True).start()\n")
        proc = subprocess.Popen(self.exec_args(sys.executable, "-c", code), stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def run_client(self, script, *args, timeout=120):
        out = subprocess.run(self.exec_args(sys.executable, str(HERE / script), *map(str, args)),
                             check=True, capture_output=True, text=True, timeout=timeout).stdout
        return json.loads(out)

    def connect(self, host, port, comm):
        """Runs tests/integration/connect_client.py in the namespace; returns its JSON report."""
        out = subprocess.run(
            self.exec_args(sys.executable, str(HERE / "connect_client.py"), host, str(port), comm),
            check=True, capture_output=True, text=True, timeout=60).stdout
        return json.loads(out)


def stop_process(proc, timeout=5):
    """Stops a process this test started, by PID; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Not even SIGKILL finished it: it is stuck in the kernel. Say where, never hang.
                raise RuntimeError(f"pid {proc.pid} ({proc.args[:2]}) survived SIGKILL for 30 s: "
                                   f"{_kernel_state(proc.pid)}") from None
    return proc.returncode


def _kernel_state(pid):
    """State, wait channel and kernel stack of a process, as far as /proc shows them."""
    out = []
    for name in ("status", "wchan", "stack"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                text = f.read()
        except OSError as e:
            text = f"<{e}>"
        if name == "status":
            text = " ".join(line for line in text.splitlines() if line.startswith("State:"))
        out.append(f"{name}: {text.strip()}")
    return "; ".join(out)


class Agent:
    """`tincture agent` on a free port with its own event socket."""

    def __init__(self, attach=ATTACH, listen=None, socket_path=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="tincture-test-")
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.socket = socket_path or os.path.join(self.dir, "events.sock")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.args = [BIN, "agent", "--listen", self.listen, "--events-socket", self.socket,
                     "--attach", attach, *extra]
        self.proc = None

    def __enter__(self):
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.output()}")
            try:
                if self.get("/healthz")[0] == 200 and os.path.exists(self.socket):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"agent not ready in 60 s: {self.output()}")

    def __exit__(self, *exc):
        stop_process(self.proc)
        self.log.close()

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def get(self, path, headers=None):
        req = urllib.request.Request(f"http://{self.listen}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        status, text = self.get("/metrics")
        assert status == 200
        return text


class Tail:
    """`tincture tail --json`, its output drained continuously by a thread (a test
    that stops reading must not turn into a slow subscriber)."""

    def __init__(self, agent, *args):
        self.proc = subprocess.Popen([BIN, "tail", "--socket", agent.socket, "--json", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lock = threading.Lock()
        self._events = []
        # The agent greets each subscriber; tail reports it on stderr. Wait for it.
        line = self.proc.stderr.readline().decode()
        assert "streaming from agent" in line, line
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.proc.stdout:
            if line.strip():
                event = json.loads(line)
                with self._lock:
                    self._events.append(event)

    @property
    def events(self):
        with self._lock:
            return list(self._events)

    def poll(self, until, timeout=10):
        """Waits until `until(events)` is true or the timeout passes; returns the events."""
        deadline = time.monotonic() + timeout
        while not until(self.events) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.events

    def close(self):
        stop_process(self.proc)
        self._reader.join(timeout=5)


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            labels = {}
            for part in _split_labels(rest.rstrip("}")):
                k, v = part.split("=", 1)
                labels[k] = v.strip('"')
        else:
            name, labels = name_labels, {}
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def _split_labels(text):
    parts, cur, quoted = [], "", False
    for ch in text:
        if ch == '"' and not cur.endswith("\\"):
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def sample(metrics, name, **labels):
    want = set(labels.items())
    hits = [v for (n, ls), v in metrics.items() if n == name and want <= set(ls)]
    assert len(hits) <= 1, f"{name}{labels} matched {len(hits)} series"
    return hits[0] if hits else None


def loss_report(agent):
    """The agent's own loss and untracked counters (non-zero ones), for assertion messages."""
    metrics = parse_metrics(agent.metrics())
    wanted = ("tincture_events_lost_total", "tincture_kernel_untracked_total",
              "tincture_subscriber_dropped_events_total", "tincture_decode_errors_total", "tincture_events_total")
    return {f"{name}{dict(labels)}": v for (name, labels), v in sorted(metrics.items(), key=str)
            if name in wanted and v}
