"""A small HTTP/1.1 server (keep-alive) for the correlation tests. Listens on
HOST PORT, names itself COMM, answers every GET with 200 after ?delay=SECONDS,
and every POST with 200 once it has read the body."""
import ctypes
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

host, port, comm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctypes.CDLL(None).prctl(15, comm.encode()[:15], 0, 0, 0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        time.sleep(float(query.get("delay", ["0"])[0]))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((host, port), Handler)
print("ready", flush=True)
server.serve_forever()
