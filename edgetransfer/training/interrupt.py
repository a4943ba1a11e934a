"""Ctrl-C during training that cannot be lost.

Python runs a SIGINT handler at the next bytecode of the main thread, wherever that is. During
Keras' ``fit`` that is sometimes a finaliser: a weakref callback (``WeakKeyDictionary``'s
``remove``) or a ``__del__`` run when a step's temporaries are freed. A ``KeyboardInterrupt``
raised there cannot propagate: Python hands it to ``sys.unraisablehook`` and carries on (the CLI's
hook logs it at ``-vv`` only), so the run trained to the end and exited 0 with nothing on stderr.
Measured here: 1 of 14 SIGINTs sent at random moments into a 32 px fine-tune was lost that way,
the cause of the two-worker CI flake of ``test_sigint_mid_epoch_exits_130_and_keeps_the_checkpoint``.

:func:`guard` installs a handler that remembers the interrupt before raising it; :func:`check`
(called after every batch and epoch by :class:`_Check`, and between the stages of a run) raises it
again from ordinary code, where nothing swallows it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_pending = threading.Event()


def _handler(signum, frame) -> None:
    _pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Make SIGINT sticky for the duration: a ``KeyboardInterrupt`` swallowed by a finaliser is
    raised again at the next :func:`check`. Only in the main thread, and only where SIGINT has
    Python's default handler: an ignored SIGINT (``nohup``, a background job) or an
    application's own handler is left alone."""
    _pending.clear()
    try:
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return
        previous = signal.signal(signal.SIGINT, _handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        # cleared on every way out, the unguarded one too: a flag left set made the next fit in the
        # process (one run without a guard, as a test worker's with SIGINT ignored) stop as if Ctrl-C'd
        _pending.clear()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived under :func:`guard` (even a swallowed one)."""
    if _pending.is_set():
        raise KeyboardInterrupt


def callback():
    """A Keras callback that calls :func:`check` after every batch and epoch."""
    from .. import _lazy

    keras = _lazy.keras()

    class _Check(keras.callbacks.Callback):  # type: ignore[name-defined]  # keras is lazy
        def on_train_batch_end(self, batch, logs=None):
            check()

        def on_test_batch_end(self, batch, logs=None):
            check()

        def on_epoch_end(self, epoch, logs=None):
            check()

    return _Check()
