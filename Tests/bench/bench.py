#!/usr/bin/env python3
"""`make bench`: Tincture's overhead next to the tools users would run instead.

Every comparison runs its rows interleaved in one run (A B C A B C ...), so
machine drift lands on all rows alike, and reports medians. Load runs inside a
private network namespace on loopback; the namespace is removed on exit.

Sections: connect storm (untraced, tincture, tincture + tail, bpftrace,
libbpf-tools tcpstates), request storm, poll-wait storm (with a check that
/metrics counted every wait), consumer throughput (Swift reader vs a C libbpf
consumer on the same ring), footprint (RSS, CPU per event, /metrics at 10 000
series). Prints a Markdown table; --json writes every raw figure too.
"""
import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, ".build", "bench")
AGENT = os.path.join(ROOT, ".build", "release", "tincture")
TCPSTATES = "/usr/sbin/tcpstates"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# The tools Tincture is compared with: Debian package -> file that proves it is installed.
PEERS = {"bpftrace": "/usr/bin/bpftrace", "libbpf-tools": TCPSTATES}


def install_peers():
    """apt-get installs the missing peers; returns an error message or None."""
    missing = [pkg for pkg, path in PEERS.items() if not os.path.exists(path)]
    if not missing:
        return None
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if r.returncode != 0:
            return f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()[-1000:]}"
    return None


def build_tools():
    os.makedirs(OUT, exist_ok=True)
    for tool in ("connstorm", "reqstorm", "pollstorm"):
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", os.path.join(OUT, tool),
                        os.path.join(HERE, f"{tool}.c")], check=True)


class Netns:
    def __init__(self):
        self.name = f"tnbench-{os.getpid()}"

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def run(self, *args):
        before = cpu_ticks()
        r = subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, timeout=900)
        after = cpu_ticks()
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stderr.strip()}")
        figures = json.loads(r.stdout.strip().splitlines()[-1])
        # What the hypervisor took from this guest during the run (its own other tenants).
        total = sum(after) - sum(before)
        figures["steal_share"] = (after[7] - before[7]) / total if total > 0 else 0.0
        return figures


def cpu_ticks():
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def steal_corrected(run):
    """Throughput per CPU the guest actually had: the storms saturate both CPUs."""
    return run["per_second"] / max(0.5, 1.0 - run.get("steal_share", 0.0))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Agent:
    """`tincture agent` with built-in defaults, on a free port and a private socket."""

    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="tincture-bench-")
        self.listen = f"127.0.0.1:{free_port()}"
        self.socket = os.path.join(self.dir, "events.sock")
        self.args = [AGENT, "agent", "--listen", self.listen, "--events-socket", self.socket, *extra]

    def __enter__(self):
        self.log = open(os.path.join(self.dir, "agent.log"), "w+")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.log.read()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("agent not ready within 60 s")

    def __exit__(self, *exc):
        stop(self.proc)
        self.log.close()

    def get(self, path):
        with urllib.request.urlopen(f"http://{self.listen}{path}", timeout=30) as r:
            return r.status, r.read().decode()

    def metrics(self):
        return self.get("/metrics")[1]

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self):
        return int(open(f"/proc/{self.proc.pid}/statm").read().split()[1]) * PAGE / 1e6


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Tail:
    """`tincture tail --json`, drained as fast as it writes."""

    def __init__(self, agent):
        self.proc = subprocess.Popen([AGENT, "tail", "--socket", agent.socket, "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        if "streaming from agent" not in line:
            raise RuntimeError(f"tail did not start: {line}")
        self.lines = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        for chunk in iter(lambda: self.proc.stdout.read(1 << 16), b""):
            self.lines += chunk.count(b"\n")

    def close(self):
        stop(self.proc, signal.SIGINT)
        self.thread.join(5)


class Tool:
    """A peer tracer, started and given time to attach, its output drained."""

    def __init__(self, args, ready):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited {self.proc.returncode}")
            if ready in line:
                break
        time.sleep(0.5)  # both print their banner just before the last attach
        self.thread = threading.Thread(target=lambda: [None for _ in iter(lambda: self.proc.stdout.read(1 << 16), b"")],
                                       daemon=True)
        self.thread.start()

    def close(self):
        stop(self.proc, signal.SIGINT)
        self.thread.join(5)


BPFTRACE_CONNECT = os.path.join(HERE, "connect-latency.bt")


def interleaved(rows, reps, run_once):
    """rows: name -> context factory (None: untraced). Returns name -> [figures]."""
    results = {name: [] for name in rows}
    for rep in range(reps):
        for name, factory in rows.items():
            results[name].append(run_once(name, factory))
            log(f"  rep {rep + 1}/{reps} {name}: {results[name][-1]['per_second']:.0f}/s")
    return results


def with_row(factory, body):
    if factory is None:
        return body(None)
    holder = factory()
    try:
        return body(holder)
    finally:
        holder.close()


class AgentRow:
    def __init__(self, tail=False, extra=()):
        self.agent = Agent(extra).__enter__()
        self.tail = Tail(self.agent) if tail else None

    def close(self):
        if self.tail:
            self.tail.close()
        self.agent.__exit__()


def connect_storm(ns, args):
    rows = {
        "untraced": None,
        "tincture agent (defaults)": lambda: AgentRow(),
        "tincture agent + tail": lambda: AgentRow(tail=True),
        "bpftrace connect-latency histogram": lambda: Tool(["stdbuf", "-oL", "bpftrace", BPFTRACE_CONNECT], "Attaching"),
        "libbpf-tools tcpstates": lambda: Tool(["stdbuf", "-oL", TCPSTATES], "SKADDR"),
    }

    def once(name, factory):
        return with_row(factory, lambda h: ns.run(os.path.join(OUT, "connstorm"), "-d", str(args.seconds)))

    return interleaved(rows, args.reps, once)


def request_storm(ns, args):
    rows = {"untraced": None, "tincture agent (defaults)": lambda: AgentRow()}

    def once(name, factory):
        def body(h):
            r = ns.run(os.path.join(OUT, "reqstorm"), "-d", str(args.seconds))
            if h:
                m = h.agent.metrics()
                r["agent_requests"] = metric_sum(m, "tincture_http_requests_ended_total")
                r["agent_lost_payloads"] = metric_sum(m, "tincture_events_lost_total", kind="payload")
            return r
        return with_row(factory, body)

    return interleaved(rows, args.reps, once)


POLL_STORMS = {
    # The budget workload: many threads waiting with a short (1 ms) timeout, back to back.
    "short": ["-t", "256", "-w", "1"],
    # The worst case: zero-timeout readiness checks, the syscall's own cost at full rate.
    "zero": ["-t", "2", "-w", "0"],
}


def poll_storm(ns, args, kind):
    rows = {"untraced": None, "tincture agent (defaults)": lambda: AgentRow()}

    def once(name, factory):
        def body(h):
            r = ns.run(os.path.join(OUT, "pollstorm"), "-d", str(args.seconds), *POLL_STORMS[kind])
            if h:
                m = h.agent.metrics()
                r["counted"] = metric_sum(m, "tincture_poll_wait_seconds_count", comm="pollstorm")
            return r
        return with_row(factory, body)

    return interleaved(rows, args.reps, once)


def consumer_throughput(args):
    # Concurrent runs only: the drain-mode diagnostics (`run.sh` without --no-drain) are not in the table.
    r = subprocess.run([os.path.join(HERE, "consumer", "run.sh"), "--runs", str(args.reps), "--no-drain"],
                       capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"consumer benchmark failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def footprint(ns, args, during_soak=None):
    """`during_soak`: work that is not a measurement (a build), run while the soak runs:
    the soak measures the agent's memory and CPU per connect, which a busy machine does not
    change, only the connection count."""
    out = {}
    with Agent() as a:
        time.sleep(1)
        out["rss_start_mb"] = a.rss_mb()
        # The soak: the connect storm for args.soak seconds, RSS sampled as it runs. Its first
        # chunks are short, so the first sample past a million connections is "after 1 M".
        samples, cpu0, conns, t0 = [], a.cpu_seconds(), 0, time.monotonic()
        side = threading.Thread(target=during_soak) if during_soak else None
        if side:
            side.start()
        while time.monotonic() - t0 < args.soak:
            chunk = 5 if "rss_after_1m_mb" not in out else 30
            chunk = min(chunk, max(1, args.soak - (time.monotonic() - t0)))
            conns += ns.run(os.path.join(OUT, "connstorm"), "-d", f"{chunk:.1f}")["connections"]
            samples.append(round(a.rss_mb(), 2))
            if conns >= 1_000_000 and "rss_after_1m_mb" not in out:
                out["connections_to_1m"] = conns
                out["rss_after_1m_mb"] = samples[-1]
        if side:
            side.join()
        if "rss_after_1m_mb" not in out:  # a soak too short to reach a million
            out["connections_to_1m"] = conns
            out["rss_after_1m_mb"] = samples[-1]
        out["soak_seconds"] = round(time.monotonic() - t0, 1)
        out["soak_connections"] = conns
        out["rss_soak_samples_mb"] = samples
        out["rss_after_soak_mb"] = samples[-1]
        out["cpu_s_per_m_connects"] = (a.cpu_seconds() - cpu0) / (conns / 1e6)
        # With a live tail every connect travels through the ring, the reader and the stream.
        tail = Tail(a)
        before = metric_sum(a.metrics(), "tincture_events_total")
        cpu0 = a.cpu_seconds()
        ns.run(os.path.join(OUT, "connstorm"), "-d", "5")
        time.sleep(0.5)
        events = metric_sum(a.metrics(), "tincture_events_total") - before
        out["tail_events"] = events
        out["cpu_s_per_m_events_tailed"] = (a.cpu_seconds() - cpu0) / (events / 1e6) if events else None
        tail.close()
    # /metrics at 10 000 series, as Prometheus counts them (one per sample line: each
    # connect label set is 23 of them), and, for scale, at 10 000 connect label sets.
    out["render"] = [scrape_at(ns, label_sets) for label_sets in (435, 10_000)]
    return out


def scrape_at(ns, label_sets):
    """/metrics after refused connects to `label_sets` closed ports: each one connect series."""
    with Agent(extra=["--series-cap", "20000"]) as a:
        subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", REFUSE % label_sets],
                       check=True, timeout=300)
        time.sleep(0.2)  # connects past the kernel map's size travel as events: let the reader drain them
        text = a.metrics()
        out = {"label_sets": len(re.findall(r"^tincture_tcp_connect_duration_seconds_count\{", text, re.M)),
               "series": sum(1 for line in text.splitlines() if line and not line.startswith("#"))}
        times, renders = [], []
        for _ in range(21 if label_sets < 1000 else 7):
            t = time.perf_counter()
            a.get("/metrics")
            times.append((time.perf_counter() - t) * 1000)
            renders.append(metric_sum(a.metrics(), "tincture_scrape_render_seconds") * 1000)
        out["scrape_ms_median"] = statistics.median(times)
        out["render_ms_median"] = statistics.median(renders)
        out["metrics_bytes"] = len(text)
        return out


REFUSE = """
import socket
for port in range(20000, 20000 + %d):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass
    s.close()
"""


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} MiB RAM, Linux {platform.release()}"


def med(values):
    return statistics.median(values)


def table(res, args):
    lines = [f"Machine: {res['machine']}. Medians of {args.reps} interleaved runs of {args.seconds} s each. "
             "The last ratio divides each run by the share of CPU the hypervisor left the guest (steal time, "
             "median share in brackets): noise from other tenants, not from the rows.", ""]
    lines += ["| benchmark | row | median | ratio to untraced | budget | steal-corrected ratio |",
              "|---|---|---|---|---|---|"]
    budgets = {"tincture agent (defaults)": "≥ 0.95× and ahead of both peers"}
    for key, label, unit, budget in (
            ("connect", "connect storm", "conn/s", None),
            ("request", "request storm", "req/s", "≥ 0.95×"),
            ("poll", "poll-wait storm (256 threads, 1 ms timeouts)", "waits/s", "≥ 0.95×"),
            ("poll_zero", "poll worst case (2 threads, zero timeout)", "calls/s", "")):
        if key not in res:
            continue
        runs = res[key]
        base = med([r["per_second"] for r in runs["untraced"]])
        base_fair = med([steal_corrected(r) for r in runs["untraced"]])
        for name, rr in runs.items():
            v = med([r["per_second"] for r in rr])
            fair = med([steal_corrected(r) for r in rr])
            steal = med([r.get("steal_share", 0.0) for r in rr]) * 100
            b = budgets.get(name, "") if budget is None else (budget if name != "untraced" else "")
            lines.append(f"| {label} | {name} | {v:,.0f} {unit} | {v / base:.3f}× | {b} | "
                         f"{fair / base_fair:.3f}× ({steal:.1f} %) |")
    for key, label in (("poll", "poll-wait storm"), ("poll_zero", "poll worst case")):
        if key not in res:
            continue
        agent_runs = res[key]["tincture agent (defaults)"]
        exact = all(r["counted"] == r["poll"] + r["epoll_wait"] for r in agent_runs)
        counted = ", ".join(format(int(r["counted"]), ",") for r in agent_runs)
        lines.append(f"| {label} | /metrics counted every wait | {'yes' if exact else 'NO'} ({counted}) | | exact |")
    if "request" in res:
        agent_runs = res["request"]["tincture agent (defaults)"]
        lost = sum(r["agent_lost_payloads"] for r in agent_runs)
        seen = sum(r["agent_requests"] for r in agent_runs)
        sent = sum(r["requests"] for r in agent_runs)
        lines.append(f"| request storm | request records / requests sent (both sides) | {seen:,.0f} / {2 * sent:,.0f}, "
                     f"{lost:,.0f} payload events lost (counted) | | |")
    if "consumer" in res:
        cr = res["consumer"]
        lines.append(f"| consumer throughput | C libbpf consumer | {cr['c_per_second']:,.0f} events/s | | |")
        lines.append(f"| consumer throughput | Swift reader (decode, correlate, aggregate) | {cr['swift_per_second']:,.0f} events/s "
                     f"| {cr['ratio']:.2f}× of C | ≥ 0.5× |")
    if "footprint" in res:
        f = res["footprint"]
        s = f["rss_soak_samples_mb"]
        spread = (max(s) - min(s)) / min(s) * 100 if s else 0
        lines += [
            f"| footprint | RSS after start | {f['rss_start_mb']:.1f} MB | | < 40 MB |",
            f"| footprint | RSS after {f['connections_to_1m']:,} connections | {f['rss_after_1m_mb']:.1f} MB | | < 40 MB |",
            f"| footprint | RSS over a {f['soak_seconds']:.0f} s connect storm ({f['soak_connections']:,} conns) | "
            f"{min(s):.1f}–{max(s):.1f} MB, spread {spread:.1f} % | | flat ±5 % |",
            f"| footprint | agent CPU per million connects (defaults) | {f['cpu_s_per_m_connects']:.3f} s | | |",
            f"| footprint | agent CPU per million events (tail attached, {f['tail_events']:,.0f} events) | "
            f"{f['cpu_s_per_m_events_tailed'] or 0:.2f} s | | |",
        ]
        for r in f["render"]:
            lines.append(f"| footprint | GET /metrics at {r['series']:,} series ({r['label_sets']:,} connect label sets, "
                         f"{r['metrics_bytes'] / 1e6:.1f} MB) | render {r['render_ms_median']:.2f} ms, "
                         f"{r['scrape_ms_median']:.1f} ms end to end | | {'render < 5 ms' if r['series'] < 20000 else ''} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5, help="interleaved runs per row (median reported); default 5")
    p.add_argument("--seconds", type=float, default=2, help="length of one storm run; default 2")
    p.add_argument("--soak", type=float, default=600, help="length of the footprint connect storm; default 600")
    p.add_argument("--only", action="append", choices=["connect", "request", "poll", "consumer", "footprint"],
                   help="run only these sections (repeatable)")
    p.add_argument("--json", help="also write every raw figure to this file")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the agent and the peer tools load BPF programs)")
    if args.reps < 1 or args.seconds <= 0 or args.soak <= 0:
        sys.exit("bench: --reps, --seconds and --soak must be positive")
    if not os.path.exists(AGENT):
        sys.exit(f"bench: {AGENT} is missing; run `make bench`, which builds and installs what it needs")
    build_tools()
    only = set(args.only or ["connect", "request", "poll", "consumer", "footprint"])
    res = {"machine": machine()}
    started = time.monotonic()
    peer_error = []

    def get_peers():
        error = install_peers()
        if error:
            peer_error.append(error)

    def build_consumer():
        r = subprocess.run([os.path.join(HERE, "consumer", "run.sh"), "--build-only"],
                           capture_output=True, text=True, timeout=1800, cwd=ROOT)
        if r.returncode != 0:
            log(f"consumer build failed (the consumer section will retry): {r.stderr[-2000:]}")

    def beside_soak():
        # Neither is a measurement; the soak measures memory, which they do not change.
        if "connect" in only:
            get_peers()
        if "consumer" in only:
            build_consumer()

    if "connect" in only and "footprint" not in only:
        get_peers()

    def connect_section(ns):
        if peer_error or any(not os.path.exists(path) for path in PEERS.values()):
            sys.exit("bench: the peer tools are missing and could not be installed: "
                     + (peer_error[0] if peer_error else "apt-get reported success but they are absent"))
        return connect_storm(ns, args)

    # The footprint soak goes first: the peers' installation and the consumer
    # benchmark's build run during it.
    sections = [
        ("footprint", f"footprint ({args.soak:.0f} s soak)",
         lambda ns: footprint(ns, args, beside_soak if {"connect", "consumer"} & only else None)),
        ("connect", "connect storm", connect_section),
        ("request", "request storm", lambda ns: request_storm(ns, args)),
        ("poll", "poll-wait storm", lambda ns: poll_storm(ns, args, "short")),
        ("poll_zero", "poll worst case (zero timeout)", lambda ns: poll_storm(ns, args, "zero")),
        ("consumer", "consumer throughput", lambda ns: consumer_throughput(args)),
    ]
    res["section_seconds"] = {}
    with Netns() as ns:
        for key, label, run in sections:
            if key.split("_")[0] not in only:
                continue
            log(label)
            t = time.monotonic()
            res[key] = run(ns)
            res["section_seconds"][key] = round(time.monotonic() - t)
    res["elapsed_s"] = round(time.monotonic() - started)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(table(res, args))
    log(f"done in {res['elapsed_s']} s")


if __name__ == "__main__":
    main()
