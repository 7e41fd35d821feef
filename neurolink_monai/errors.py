# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""User-facing errors of the package and its bundle workflows, and an exception hook that makes their message the last line printed.

``python -m monai.bundle run ...`` evaluates the configs' ``$`` expressions and ``_target_`` components inside MONAI,
which wraps whatever they raise into ``RuntimeError: Failed to evaluate ConfigExpression`` (or ``Failed to
instantiate component``, or ``applying transform``) at the end of a long traceback: the message that names the
bad file or option ends up in the middle. :func:`install_error_hook` (installed when the configs import
``neurolink_monai.bundle_utils``) replaces ``sys.excepthook`` so that:

- when the exception chain holds a :class:`NeuroLinkUserError` (a bad input, output folder, checkpoint, dataset
  list or option), or its innermost cause is a ``ValueError``, ``TypeError`` or ``OSError`` raised by this package's
  argument checks (whose messages name the bad value by convention), only that message is printed, as
  ``error: <message>``: one line naming the file or option and the problem (set ``NEUROLINK_TRACEBACK=1`` to also
  print the traceback);
- otherwise Python's usual traceback is printed and, when MONAI wrapped the original exception, its innermost
  cause is repeated as the last line ``error: <Type>: <message>``.

The interpreter exits with status 1 in both cases.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from multiprocessing.dummy import DummyProcess
from types import TracebackType

__all__ = [
    "TRACEBACK_ENV",
    "CheckpointError",
    "DatasetError",
    "MissingFileError",
    "NeuroLinkUserError",
    "OutputDirError",
    "StackContentError",
    "install_error_hook",
    "root_cause",
    "user_error",
]

TRACEBACK_ENV = "NEUROLINK_TRACEBACK"


class NeuroLinkUserError(Exception):
    """Marker base of errors caused by the user's input, output folder, checkpoint or options (not by a bug).

    Its message names the file or option and the problem; :func:`install_error_hook` prints only that message.
    Concrete errors also derive from the matching builtin (``ValueError``, ``FileNotFoundError``...).
    """


class CheckpointError(NeuroLinkUserError, ValueError):
    """A checkpoint file that is missing, not a PyTorch checkpoint, or does not fit the network."""


class DatasetError(NeuroLinkUserError, ValueError):
    """A malformed ``dataset.json``, a missing listed file, or a bad training image or label."""


class MissingFileError(NeuroLinkUserError, FileNotFoundError):
    """A file or folder named by an option or a data list does not exist (or is not what is needed)."""


class OutputDirError(NeuroLinkUserError, ValueError):
    """An output folder that is a file, cannot be created or is not writable."""


class StackContentError(NeuroLinkUserError, ValueError):
    """An image stack whose content cannot be segmented (constant or near-constant intensities)."""


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first (``__cause__``, else an unsuppressed ``__context__``)."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        out.append(current)
        seen.add(id(current))
        nxt = current.__cause__
        if nxt is None and not current.__suppress_context__:
            nxt = current.__context__
        current = nxt
    return out


def user_error(exc: BaseException) -> NeuroLinkUserError | None:
    """The innermost :class:`NeuroLinkUserError` of ``exc``'s chain, or None."""
    found = [e for e in _chain(exc) if isinstance(e, NeuroLinkUserError)]
    return found[-1] if found else None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s chain (the one MONAI's ``RuntimeError`` wrappers were raised from)."""
    return _chain(exc)[-1]


def _raised_here(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by this package's own code (its innermost traceback frame is in it)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package)


def _message_error(exc: BaseException) -> BaseException | None:
    """The exception whose message alone explains the failure, or None (a bug: print the traceback)."""
    found = user_error(exc)
    if found is not None:
        return found
    root = root_cause(exc)
    if isinstance(root, (ValueError, TypeError, OSError)) and _raised_here(root):
        return root
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


WORKER_JOIN_SECONDS = 30.0


def _join_pool_workers(timeout: float = WORKER_JOIN_SECONDS) -> None:
    """Wait (at most ``timeout`` seconds in all) for live ``ThreadPool`` worker threads to finish their current item.

    MONAI's ``CacheDataset`` fills its cache in a thread pool; when one item raises, the pool is terminated but its
    daemon worker may still be inside a torch operation on the next item. If the interpreter finalises then, the C++
    runtime aborts with ``terminate called without an active exception`` after our ``error:`` line, which is then no
    longer the last line the user sees.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if isinstance(thread, DummyProcess) and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def _hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    _join_pool_workers()
    verbose = os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes")
    found = _message_error(exc) if isinstance(exc, Exception) else None
    if found is not None:
        if verbose:
            traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        else:
            print(f"(set {TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
        print(f"error: {_one_line(found)}", file=sys.stderr, flush=True)
        return
    _previous_hook(exc_type, exc, tb)
    root = root_cause(exc)
    if root is not exc and isinstance(exc, Exception):
        print(f"error: {type(root).__name__}: {_one_line(root)}", file=sys.stderr, flush=True)


_previous_hook = sys.excepthook


def install_error_hook() -> None:
    """Install the hook described in the module docstring as ``sys.excepthook`` (idempotent; others are chained)."""
    global _previous_hook
    if sys.excepthook is not _hook:
        _previous_hook = sys.excepthook
        sys.excepthook = _hook
