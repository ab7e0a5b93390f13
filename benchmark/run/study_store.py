"""Where a tuning study lives and who runs its trials: the Optuna storage (SQLite in the results folder, or a
shared database), the study mirrored for drivers that never call ``optimize``, and the leases by which drivers
on several machines share one study (each trial names its driver, which renews a heartbeat while it runs it)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal


from forgetbench.benchmark.core import migrations, store
from forgetbench.benchmark.core.config import ConfigError


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / store.ResultFolder.TUNING / 'study.db').resolve()}"


DRIVER = "forgetbench:driver"  # a trial's system attr: the driver (host:pid) that runs it


HEARTBEAT = "forgetbench:heartbeat"  # ... the time (epoch seconds) its driver last said it was still running it


LEASE_SECONDS = 120.0  # a RUNNING trial whose driver has not said so for this long has no driver any more


HEARTBEAT_SECONDS = 20.0  # how often a driver renews the lease of the trial it runs


WAIT_POLL_SECONDS = 2.0  # how often a finished driver looks at the trials other drivers still run


DRAWN_FOR = "forgetbench:drawn_for"  # ... the number its point was drawn for, stored with it in one transaction


SUPERSEDED = "forgetbench:superseded"  # ... set on a trial drawn for a number another driver took: never run


def driver_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def superseded(trial: Any) -> bool:
    """A trial whose point was drawn for another number than the one the storage gave it (another driver took that
    one first): decided by what was stored with it, so every driver sees it the moment it exists."""
    return trial.system_attrs.get(DRAWN_FOR, trial.number) != trial.number or bool(trial.system_attrs.get(SUPERSEDED))


def held_elsewhere(trial: Any, now: float | None = None) -> bool:
    """A RUNNING trial another driver still holds: started by a process of this machine that is alive and not this
    one, or on another machine whose driver renewed its lease (:data:`HEARTBEAT`) in the last :data:`LEASE_SECONDS`.
    A trial of a process that died (a killed driver), or whose lease expired, is not: it is run again or failed."""
    import os
    import socket

    host, _, pid = str(trial.system_attrs.get(DRIVER, "")).rpartition(":")
    if migrations.trial_from_before_drivers(str(trial.system_attrs.get(DRIVER, ""))):
        return False
    if host != socket.gethostname():
        beat = trial.system_attrs.get(HEARTBEAT)
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        last = beat if isinstance(beat, (int, float)) else started
        return last is None or (time.time() if now is None else now) - last < LEASE_SECONDS
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class MirroredStudy:
    """An Optuna study in its storage (SQLite under OUT, or ``--storage``) and an in-memory copy its samplers read.

    A sampler reading the storage costs about 20 ms of SQLAlchemy per trial, the copy about 1 ms. A trial is
    written to the storage with its point in one transaction (a kill never leaves one without its point) and its
    end in another. Samplers are never told that a trial ended (``after_trial``): the budget ends a study, and
    Optuna's grid sampler would call ``Study.stop``, which raises outside ``optimize``.
    """

    def __init__(self, storage: Any, name: str, direction: Literal["maximize", "minimize"]):
        import optuna

        optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
        self.storage, self.study_id = storage, storage.get_study_id_from_name(name)
        self.direction = direction
        self._copy()

    def _copy(self) -> None:
        import optuna

        self.memory_storage = optuna.storages.InMemoryStorage()
        self.memory = optuna.create_study(storage=self.memory_storage, direction=self.direction)
        self.ids: dict[int, tuple[int, int]] = {}  # trial number -> (its id in the storage, in the copy)
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=True):
            self.memory.add_trial(trial)
            self.ids[trial.number] = (trial._trial_id, self.memory.get_trials(deepcopy=False)[-1]._trial_id)

    def trials(self, states: tuple | None = None) -> list[Any]:
        return self.memory.get_trials(deepcopy=False, states=states)

    def stored_trials(self) -> list[Any]:
        """The trials as the storage holds them (its clock's start and end times)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def ask(self, sampler_for: Callable[[int], Any], space: dict[str, Any], budget: int) -> Any:
        """A new trial's point, stored RUNNING with it in one transaction and marked with this driver; returns the
        trial (frozen). ``sampler_for(index)`` is the sampler of the trial that is the index-th of the study (its
        number among the trials not superseded).

        Two drivers sharing a study (``--storage``) may draw for the same number at once; the storage gives the
        second one the next number. That trial was drawn for a number it did not get, so it is never run: it is
        marked superseded (FAIL, with :data:`SUPERSEDED`), counts for nothing, and the driver draws again for the
        number it can have, unless the study has its ``budget`` of trials by then: None."""
        from optuna.trial import TrialState

        while True:
            index = sum(not superseded(t) for t in self.trials())
            if index >= budget:  # the other drivers took the rest of the budget
                return None
            self.memory.sampler = sampler_for(index)
            number = self.memory.ask(fixed_distributions=space).number
            memory_id = self.memory.get_trials(deepcopy=False)[number]._trial_id
            self.memory_storage.set_trial_system_attr(memory_id, DRIVER, driver_id())
            self.memory_storage.set_trial_system_attr(memory_id, DRAWN_FOR, number)
            frozen = self.memory.get_trials(deepcopy=False)[number]
            stored_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
            if self.storage.get_trial_number_from_id(stored_id) == number:
                self.ids[number] = (stored_id, memory_id)
                return frozen
            self.storage.set_trial_system_attr(stored_id, SUPERSEDED, True)
            self.storage.set_trial_state_values(stored_id, TrialState.FAIL)
            self._copy()

    def refresh(self) -> None:
        """Read the storage again (what other drivers did since)."""
        self._copy()

    @contextlib.contextmanager
    def lease(self, number: int) -> Iterator[None]:
        """Renew trial ``number``'s lease (:data:`HEARTBEAT`) while the block runs it: the other drivers sharing the
        study know it is still being run, and that it is not once the renewals stop."""
        stored_id = self.ids[number][0]
        done = threading.Event()

        def beat() -> None:
            while True:
                try:
                    self.storage.set_trial_system_attr(stored_id, HEARTBEAT, time.time())
                except Exception:  # noqa: BLE001 - the trial ended meanwhile (its attrs are then frozen), or the
                    return  # storage is gone: the run itself will say so
                if done.wait(HEARTBEAT_SECONDS):
                    return

        thread = threading.Thread(target=beat, name=f"lease-{number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def finish(self, number: int, state: Any, value: float | None, intermediate: dict[int, float]) -> None:
        for storage, trial_id in zip((self.storage, self.memory_storage), self.ids[number]):
            for step, reported in intermediate.items():
                storage.set_trial_intermediate_value(trial_id, step, reported)
            storage.set_trial_state_values(trial_id, state, None if value is None else [value])


DRIVERS = {  # URL scheme -> the package its SQLAlchemy driver comes from
    "postgresql": "psycopg2-binary",
    "postgres": "psycopg2-binary",
    "mysql": "PyMySQL (and the URL mysql+pymysql://...)",
    "mariadb": "PyMySQL (and the URL mariadb+pymysql://...)",
    "oracle": "oracledb",
    "mssql": "pyodbc",
}


def _get_storage(url: str, attempts: int = 6) -> Any:
    """Optuna's storage at ``url``; two drivers creating one new database at once race on its schema (one of them
    meets a unique-constraint or lock error), so creation is tried again after a short wait."""
    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.get_storage(url)
        except Exception as exc:  # noqa: BLE001 - only the schema race is retried; the caller names the others
            text = str(exc)
            racing = "alembic_version" in text or "database is locked" in text or "already exists" in text
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(out: Path, storage: str | None) -> Any:
    """The Optuna storage of the suite's studies, opened once (each opening checks the database's schema) and before
    any run: what is wrong with it is a :class:`ConfigError` naming the flag or the file and what to do."""

    url = storage_url(out, storage)
    flag = "--storage" if storage else f"the study file {Path(out) / store.ResultFolder.TUNING / 'study.db'}"
    if storage is None:
        (Path(out) / store.ResultFolder.TUNING).mkdir(parents=True, exist_ok=True)
    try:
        return _get_storage(url)
    except ImportError:
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        package = DRIVERS.get(scheme, f"the SQLAlchemy driver for {scheme!r}")
        raise ConfigError(f"--storage {storage}: its database driver is not installed; pip install {package}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors, named by what they mean here
        text = str(exc).splitlines()[0]
        kind = type(exc).__name__
        if kind == "ArgumentError":
            raise ConfigError(
                f"--storage {storage!r}: not a database URL (e.g. sqlite:///path/study.db, "
                "postgresql://user@host/db): " + text
            ) from None
        if "malformed" in text or "not a database" in text or kind == "DatabaseError":
            where = storage if storage else str(Path(out) / store.ResultFolder.TUNING / "study.db")
            raise ConfigError(
                f"{flag}: the study database {where} is corrupt ({text}). Either move it aside (the study is "
                "rebuilt from the trials' runs already recorded under OUT/tuning/runs/, none of which trains "
                "again), or rerun with --fresh to run every trial again"
            ) from None
        if "unable to open database file" in text:
            raise ConfigError(
                f"--storage {storage!r}: the database file cannot be created there (its folder is missing or not "
                "writable)"
            ) from None
        raise ConfigError(f"{flag}: Optuna cannot open {url} ({kind}: {text})") from None
