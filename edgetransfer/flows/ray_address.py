"""``--ray-address``: checked before any work, so a wrong one is an answer in seconds, not a hang.

``ray.init(address=...)`` on an address where nothing listens, or on a host name that does not
resolve, waits on Ray's own retries without a bound the caller controls (issue 37: the sweep never
returned on ``127.0.0.1:1`` or ``no-such-host.invalid:6379``). So the address is parsed, its host
resolved and its port connected to, each under :data:`CONNECT_TIMEOUT_S`, before Ray is started.
Ray's forms: ``auto`` / ``local`` (no check), ``HOST:PORT`` (the GCS of a running cluster) and
``ray://HOST:PORT`` (Ray Client, default port 10001); see the ``ray.init`` documentation.
"""

from __future__ import annotations

import re
import socket
import threading

from ..errors import ConfigError, ToolchainError

CONNECT_TIMEOUT_S = 5.0
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")
_FIX = "pass the head node's address as HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:10001, or drop --ray-address"


def parse(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``address``; ``None`` for Ray's ``auto`` and ``local``.

    Raises:
        ConfigError: not an address Ray accepts (names it).
    """
    text = address.strip()
    if text in ("auto", "local"):
        return None
    rest = text[len("ray://") :] if text.startswith("ray://") else text
    host, sep, port = rest.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT", fix=_FIX)
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int, timeout_s: float) -> list:
    """``getaddrinfo`` under a deadline (it has none of its own: a dead DNS server blocks for minutes)."""
    found: list = []
    failed: list[BaseException] = []

    def look() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ToolchainError(
            f"--ray-address: resolving {host!r} took over {timeout_s:.0f} s", fix="check the name and the DNS"
        )
    if failed or not found:
        raise ConfigError(
            f"--ray-address: the host {host!r} does not resolve ({failed[0] if failed else ''})", fix=_FIX
        )
    return found


def reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Return when something accepts a TCP connection at ``address`` within ``timeout_s``.

    Raises:
        ConfigError: not an address, a host that does not resolve, or a refused connection (exit 2).
        ToolchainError: no answer within ``timeout_s`` (exit 3: the network, or a cluster still starting).
    """
    target = parse(address)
    if target is None:
        return
    host, port = target
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in _resolve(host, port, timeout_s):
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(sockaddr)
            return
        except TimeoutError:
            raise ToolchainError(
                f"--ray-address {address}: no answer within {timeout_s:.0f} s",
                fix="check that the cluster is up and reachable from here (a firewall?), then run again",
            ) from None
        except OSError as exc:
            last = exc
    raise ConfigError(
        f"--ray-address {address}: nothing accepts connections there ({last.strerror if last else 'refused'})",
        fix="start the cluster (ray start --head) or correct the address; " + _FIX,
    )
