"""Connects once to HOST PORT with its command name set to COMM and reports, as JSON,
what it measured: its own pid/tid/comm, the wall time connect() took and the outcome."""
import ctypes
import errno
import json
import socket
import sys
import threading
import time

host, port, comm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PR_SET_NAME = 15
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, comm.encode()[:15], 0, 0, 0)

family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
start = time.monotonic_ns()
try:
    s.connect((host, port))
    result = "ok"
except ConnectionRefusedError:
    result = "refused"
except OSError as e:
    result = errno.errorcode.get(e.errno, str(e.errno))
elapsed = time.monotonic_ns() - start
sport = s.getsockname()[1] if result == "ok" else 0
s.close()
print(json.dumps({"pid": __import__("os").getpid(), "tid": threading.get_native_id(),
                  "comm": comm[:15], "elapsed_ns": elapsed, "result": result, "sport": sport}))
