"""The socket and the uvicorn server of `uniir serve`.

The port is bound (and listened on) before the run is loaded, so a port in use is said at
once in one line and no other process takes the port while the model loads; uvicorn then
serves on that socket.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from uniir_cli.serve.errors import PortInUse


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or a `PortInUse` that says what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUse(f"cannot serve on host {host!r} ({exc.strerror}); pass --host 127.0.0.1 or an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may rebind at once (not while in use)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is in use (another server?); pass another --port, or stop that server") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PortInUse(f"not allowed to serve on port {port} of {host}; pass a --port above 1023") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise PortInUse(f"{host} is no address of this machine; pass --host 127.0.0.1 or one of its addresses") from None
        raise
    sock.listen(128)  # held from now on; requests wait in the backlog until the run is loaded
    return sock


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(app: Any, sock: socket.socket, access_log: bool = False) -> None:
    """Serve `app` on the bound socket until Ctrl+C."""
    import uvicorn

    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                            timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
