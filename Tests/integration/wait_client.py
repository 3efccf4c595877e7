"""Connects to HOST PORT, then waits for the first byte with one syscall family
(poll, epoll, select with a 5 s timeout; ppoll, epoll_pwait2 with none) and reports,
as JSON, what it measured. `short` waits 20 ms on a socket that stays silent. Its
command name is set to COMM."""
import ctypes
import json
import os
import select
import socket
import sys
import threading
import time

host, port, comm, how = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, comm.encode()[:15], 0, 0, 0)
SO_COOKIE = 57

s = socket.create_connection((host, port))
cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
start = time.monotonic_ns()
if how == "poll":
    p = select.poll()
    p.register(s, select.POLLIN)
    ready = len(p.poll(5000))
elif how == "epoll":
    e = select.epoll()
    e.register(s.fileno(), select.EPOLLIN)
    ready = len(e.poll(5.0))
elif how == "select":
    ready = len(select.select([s], [], [], 5.0)[0])
elif how == "ppoll":
    class PollFd(ctypes.Structure):
        _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]
    fds = PollFd(s.fileno(), select.POLLIN, 0)
    ready = libc.ppoll(ctypes.byref(fds), 1, None, None)  # no timespec: wait for ever
elif how == "epoll_pwait2":
    e = select.epoll()
    e.register(s.fileno(), select.EPOLLIN)
    events = ctypes.create_string_buffer(12 * 8)  # struct epoll_event is 12 bytes on x86-64
    NR_EPOLL_PWAIT2 = 441
    ready = libc.syscall(NR_EPOLL_PWAIT2, e.fileno(), events, 8, None, None, 8)  # no timeout
elif how == "short":
    p = select.poll()
    p.register(s, select.POLLIN)
    ready = len(p.poll(20))
else:
    raise SystemExit(f"unknown wait {how}")
if ready < 0:
    raise SystemExit(f"{how}: {os.strerror(ctypes.get_errno())}")
elapsed = time.monotonic_ns() - start
print(json.dumps({"pid": os.getpid(), "tid": threading.get_native_id(), "comm": comm[:15], "cookie": cookie,
                  "fd": s.fileno(), "elapsed_ns": elapsed, "ready": ready}))
