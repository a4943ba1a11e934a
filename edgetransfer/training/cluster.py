"""Multi-worker training from ``TF_CONFIG``: who is chief, a bounded wait for the peers,
and a check that every worker runs the same settings on the same data.

TensorFlow's ``MultiWorkerMirroredStrategy()`` blocks until every worker in ``TF_CONFIG``
has started, with no timeout, so a worker that never comes hangs the others for ever.
Before building it each worker therefore listens on its own address (the port TF will
take a moment later) and waits, up to ``--worker-timeout`` seconds, until it can connect
to every peer's address; the error names the addresses that never answered. Once the
strategy exists the workers all-gather a digest of their settings and data, and refuse to
train when they differ (a mismatch would otherwise deadlock or silently mix two runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass

from .. import _lazy
from ..errors import ConfigError

_POLL_S = 0.2


@dataclass(frozen=True)
class Cluster:
    """This process's place in ``TF_CONFIG``: every address, in chief-then-worker order."""

    addresses: tuple[str, ...]
    me: int
    task: str

    @property
    def is_chief(self) -> bool:
        """The chief (a ``chief`` task, else worker 0) alone writes the run folder."""
        return self.me == 0

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(a for i, a in enumerate(self.addresses) if i != self.me)


def from_env() -> Cluster | None:
    """The cluster in ``TF_CONFIG`` when it names more than one worker, else ``None``."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    fix = 'set TF_CONFIG to {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
    try:
        conf = json.loads(raw)
        spec, task = conf["cluster"], conf["task"]
        addresses = [*spec.get("chief", []), *spec.get("worker", [])]
        offset = 0 if task["type"] == "chief" else len(spec.get("chief", []))
        if task["type"] not in ("chief", "worker"):
            raise ValueError(f"task type {task['type']!r} (only chief and worker train)")
        me = offset + int(task["index"])
        if not 0 <= me < len(addresses):
            raise ValueError(f"task index {task['index']} is not in the cluster")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not a usable cluster: {e}", fix=fix) from None
    return Cluster(tuple(addresses), me, f"{task['type']}:{task['index']}") if len(addresses) > 1 else None


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def _reachable(address: str) -> bool:
    try:
        with socket.create_connection(_split(address), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for_peers(cluster: Cluster, timeout: float) -> None:
    """Listen on our own address and wait until every peer's address accepts a connection.

    Raises:
        ConfigError: a peer did not answer within ``timeout`` seconds (named in the message),
            or our own port is taken.
    """
    own = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        own.bind(("", _split(cluster.addresses[cluster.me])[1]))
        own.listen(16)
    except OSError as e:
        own.close()
        raise ConfigError(
            f"cannot listen on this worker's address {cluster.addresses[cluster.me]}: {e.strerror}",
            fix="free that port or give this worker another one in TF_CONFIG",
        ) from None
    deadline = time.monotonic() + timeout
    missing = list(cluster.peers)
    try:
        while missing:
            missing = [a for a in missing if not _reachable(a)]
            if missing and time.monotonic() > deadline:
                raise ConfigError(
                    f"worker(s) {', '.join(missing)} did not join within {timeout:g} s "
                    f"(this is {cluster.task} at {cluster.addresses[cluster.me]})",
                    fix="start the same `edgetransfer train` command there with its own TF_CONFIG task, "
                    "fix the addresses in TF_CONFIG, or raise --worker-timeout",
                )
            if missing:
                time.sleep(_POLL_S)
        # Peers may still be polling us: stay reachable a moment before TF takes the port.
        time.sleep(2 * _POLL_S + 1.0)
    finally:
        own.close()


def digest(settings: dict) -> str:
    """A stable hash of what must be equal on every worker (settings and data)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def check_same(strategy, cluster: Cluster, mine: str) -> None:
    """All-gather every worker's digest and refuse to train if any differs from the chief's.

    Raises:
        ConfigError: the workers run different settings or data (the differing tasks named).
    """
    tf = _lazy.tf()
    # Four 16-bit pieces of the digest as float32: exact, and every collective supports it.
    code = tf.constant([[float(int(mine[i : i + 4], 16)) for i in range(0, 16, 4)]], tf.float32)

    def gather():
        return tf.distribute.get_replica_context().all_gather(code, axis=0)

    rows = strategy.experimental_local_results(strategy.run(gather))[0].numpy()
    per_worker = rows.reshape(len(cluster.addresses), -1, rows.shape[-1])[:, 0]
    differ = [cluster.addresses[i] for i, row in enumerate(per_worker) if (row != per_worker[0]).any()]
    if differ:
        raise ConfigError(
            f"the workers were started with different settings or data: {', '.join(differ)} "
            f"differ from the chief {cluster.addresses[0]}",
            fix="start every worker with the same `edgetransfer train` options on the same data; "
            "only TF_CONFIG's task may differ",
        )
