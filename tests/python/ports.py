"""Free loopback ports for test processes.

A port found free by binding port 0 is released before the process under test binds it, so
the kernel may hand the same port to the next caller: a cluster of several nodes asks for many
ports in a row. Every port handed out here is remembered for the life of this process and never
handed out again (other processes can still take one in between; the start-up check of each
test process reports that clearly).
"""
import socket
import threading

_handed_out: set = set()
_lock = threading.Lock()
# Bound the retries: the ephemeral range holds ~28,000 ports; a test run uses a few hundred.
_ATTEMPTS = 1000


def free_port(host: str = "127.0.0.1") -> int:
    with _lock:
        for _ in range(_ATTEMPTS):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no fresh free port on {host} after {_ATTEMPTS} attempts")
