"""Connects to HOST PORT and sends COUNT chunks of SIZE bytes, a few ms apart, then
waits until the server has read everything. Reports its pid/comm, port and socket
cookie as JSON."""
import ctypes
import json
import os
import socket
import sys
import time

host, port, comm, count, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ctypes.CDLL(None).prctl(15, comm.encode()[:15], 0, 0, 0)
s = socket.create_connection((host, port))
SO_COOKIE = 57
cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
chunk = b"x" * size
for _ in range(count):
    s.sendall(chunk)
    time.sleep(0.002)
s.shutdown(socket.SHUT_WR)
# The server answers with the byte count once it has read to EOF: every segment arrived.
total = int(s.makefile().readline())
assert total == count * size, total
print(json.dumps({"pid": os.getpid(), "comm": comm[:15], "sport": s.getsockname()[1], "cookie": cookie}))
