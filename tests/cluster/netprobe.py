"""Plain sockets between a NetLab's endpoints, to prove the nemesis' faults without sluice.

`EchoServers(lab)` runs, in every endpoint (nodes and the root namespace), a TCP echo listener
and a UDP receiver on the endpoint's lab address; `tcp_echo(src, dst)` connects from src to
dst's listener and expects its bytes back within a bounded time; `udp_delivered(src, dst)` sends
one datagram and says whether dst received it (one direction only, unlike TCP).

Run as a script (`python3 netprobe.py HOST PORT`) it is a TCP echo server process, for the
process faults (pause, kill -9, restart).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid

# Bound on one probe: connect, send, receive the echo (a dropped SYN is retried after 1 s by the
# kernel, so 1.5 s lets a healthy link through and keeps a cut one short).
PROBE_TIMEOUT_S = 1.5
TCP_PORT = 7001
UDP_PORT = 7002


def _serve_tcp(srv: socket.socket):
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket):
    with conn:
        conn.settimeout(30)
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


class EchoServers:
    def __init__(self, lab):
        self.lab = lab
        self.socks = []
        self.udp = {}  # endpoint -> socket
        self.received = {}  # endpoint -> set of tokens
        self.lock = threading.Lock()

    def endpoints(self):
        return range(0, self.lab.n + 1)

    def start(self) -> "EchoServers":
        for e in self.endpoints():
            t = self.lab.socket(e, socket.AF_INET, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((self.lab.ip(e), TCP_PORT))
            t.listen(64)
            self.socks.append(t)
            threading.Thread(target=_serve_tcp, args=(t,), daemon=True).start()
            u = self.lab.socket(e, socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((self.lab.ip(e), UDP_PORT))
            self.socks.append(u)
            self.udp[e] = u
            self.received[e] = set()
            threading.Thread(target=self._serve_udp, args=(e, u), daemon=True).start()
        return self

    def _serve_udp(self, e, u):
        while True:
            try:
                data, _ = u.recvfrom(2048)
            except OSError:
                return
            with self.lock:
                self.received[e].add(data)

    def close(self):
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def tcp_echo(self, src: int, dst: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
        return tcp_echo(self.lab.socket(src), self.lab.ip(dst), TCP_PORT, timeout)

    def udp_delivered(self, src: int, dst: int, timeout: float = 0.5) -> bool:
        """Sends 3 datagrams src→dst (one token); True when dst received it within `timeout`."""
        token = uuid.uuid4().bytes
        with self.lab.socket(src, socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.lab.ip(src), 0))
            for _ in range(3):
                try:
                    s.sendto(token, (self.lab.ip(dst), UDP_PORT))
                except OSError:
                    pass  # an output drop may answer EPERM: not delivered
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if token in self.received[dst]:
                    return True
            time.sleep(0.01)
        return False


def tcp_echo(sock: socket.socket, host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Connects `sock` to host:port, sends a token, True when it comes back within `timeout`."""
    token = uuid.uuid4().hex.encode()
    deadline = time.monotonic() + timeout
    with sock:
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.sendall(token)
            got = b""
            while len(got) < len(token):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
                chunk = sock.recv(len(token) - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == token
        except OSError:
            return False


def main(argv):
    host, port = argv[1], int(argv[2])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(64)
    print(f"echo listening on {host}:{port}", flush=True)
    _serve_tcp(srv)


if __name__ == "__main__":
    main(sys.argv)
