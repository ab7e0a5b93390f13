"""``module.path:attribute`` references in configs, and the folders they are imported from.

A reference is imported like any Python import, from ``sys.path``, plus the folders a suite is
read from: the folder holding the config file and the working directory the command runs in
(a console script, unlike ``python -m``, does not search the working directory). So a
``mymodels.py`` beside the suite's YAML, or in the folder ``forgetbench`` runs from, is found without
``pip install``. The folders are also put on ``PYTHONPATH``, so the worker processes and local Ray
workers the suite starts import the same module.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REFERENCE_FORMAT = "module.path:attribute"
_SEARCHED: list[str] = []  # folders added here, in the order they were added (for error messages)


def add_search_folder(folder: str | Path) -> None:
    """Let references import modules from ``folder`` (appended: installed packages keep precedence)."""
    path = str(Path(folder).expanduser().resolve())
    if path not in _SEARCHED:
        _SEARCHED.append(path)
    if path not in sys.path:
        sys.path.append(path)
        importlib.invalidate_caches()
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([*entries, path])


FACTORY_TIMEOUT_ENV = "FORGETBENCH_FACTORY_TIMEOUT"
DEFAULT_FACTORY_TIMEOUT = 300.0  # seconds a user's factory may take at validate time (building a large dataset)


class _TimedOut(BaseException):  # not an Exception: a factory's own `except Exception` cannot swallow it
    pass


def factory_timeout() -> float:
    """Seconds a user's factory may run at validate time: ``$FORGETBENCH_FACTORY_TIMEOUT``, else
    :data:`DEFAULT_FACTORY_TIMEOUT`; 0 waits for ever."""
    text = os.environ.get(FACTORY_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_FACTORY_TIMEOUT
    except ValueError:
        raise ValueError(f"{FACTORY_TIMEOUT_ENV}={text!r}: seconds (a number >= 0; 0: no limit)") from None
    if not value >= 0:
        raise ValueError(f"{FACTORY_TIMEOUT_ENV}={text!r}: seconds (a number >= 0; 0: no limit)")
    return value


@contextmanager
def user_code(what: str) -> Iterator[None]:
    """Around a call into a user's code (a model or benchmark factory) at validate time: a ``sys.exit()`` in it, or a
    call longer than :func:`factory_timeout`, becomes a ValueError naming ``what`` (a config error: exit 2), instead of
    ending the command with the factory's status or hanging it with no word. The timeout needs the main thread and a
    SIGALRM timer nobody else has armed."""
    timeout = factory_timeout()
    alarm = (
        timeout > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # SIGALRM is not already someone's (pytest-timeout's)
    )

    def expired(signum: int, frame: Any) -> None:
        raise _TimedOut()

    previous = signal.signal(signal.SIGALRM, expired) if alarm else None
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    except SystemExit as exc:
        raise ValueError(
            f"{what} called sys.exit({exc.code!r}) instead of returning; a factory returns its model or benchmark "
            "(raise an exception to report a problem)"
        ) from None
    except _TimedOut:
        raise ValueError(
            f"{what} did not return within {timeout:g} s; if it needs longer (a large dataset), set "
            f"{FACTORY_TIMEOUT_ENV} to more seconds (0: no limit)"
        ) from None
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def searched_folders() -> list[str]:
    """The folders :func:`add_search_folder` added (the config's folder, the working directory)."""
    return list(_SEARCHED)


def import_object(reference: str) -> Callable[..., Any]:
    """The object ``module.path:attribute`` names (attribute may be dotted); ValueError saying what failed."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not a reference of the form {REFERENCE_FORMAT}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        folders = ", ".join(_SEARCHED) or "none besides sys.path"
        raise ValueError(
            f"{reference!r}: cannot import module {module_name!r}: {exc}. Searched the installed packages, "
            f"sys.path and the config's and working folders ({folders}); put {module_name.split('.')[0]}.py "
            "(or its package folder) beside the suite's YAML or in the folder you run forgetbench from, "
            "pip install it, or add its folder to PYTHONPATH"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise ValueError(
            f"{reference!r}: importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{reference!r}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{reference!r} is not callable")
    return obj
