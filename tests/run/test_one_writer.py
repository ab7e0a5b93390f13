"""Issue 81: one writer per results folder, whatever the caller. Two ``run_suite`` calls from two threads of one
interpreter on one folder: the second is refused, naming the thread that holds it, and the first's records are an
uninterrupted run's; on two folders both run, with the registries complete (never "unknown scenario ...; allowed: "
with nothing allowed)."""

from __future__ import annotations

import threading

import forgetbench
from forgetbench.benchmark.core.lock import OutputLockedError
from forgetbench.benchmark.core.registry import Registry
from conftest import tiny_suite


def _in_threads(*calls) -> list[object]:
    """Run each call in its own thread, started together; each one's result or exception."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def target(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,), name=f"writer-{i}") for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_two_threads_on_one_folder_one_is_refused_naming_the_holder(tmp_path):
    suite = tiny_suite(seeds=[0, 1])
    out = tmp_path / "out"
    results = _in_threads(*(lambda: forgetbench.run_suite(suite, out=out, progress=False) for _ in range(2)))
    refused = [r for r in results if isinstance(r, OutputLockedError)]
    ran = [r for r in results if isinstance(r, forgetbench.Results)]
    assert len(refused) == 1 and len(ran) == 1, results
    assert "another forgetbench suite of this process is writing there (thread 'writer-" in str(refused[0])
    alone = forgetbench.run_suite(suite, out=tmp_path / "alone", progress=False)
    by_id = {r.run_id: r.accuracy_matrix for r in alone.records}
    assert {r.run_id: r.accuracy_matrix for r in ran[0].records} == by_id  # the one writer's numbers
    again = forgetbench.run_suite(suite, out=out, progress=False)  # the folder is free again once it finished
    assert len(again.skipped) == 2


def test_two_threads_on_two_folders_both_run(tmp_path):
    suite = tiny_suite()
    results = _in_threads(
        lambda: forgetbench.run_suite(suite, out=tmp_path / "a", progress=False),
        lambda: forgetbench.run_suite(suite, out=tmp_path / "b", progress=False),
    )
    assert all(isinstance(r, forgetbench.Results) for r in results), results


def test_a_registry_read_while_another_thread_loads_it_is_never_half_filled(tmp_path, monkeypatch):
    """The loading flag was set before the imports ran: a second thread saw a registry with nothing in it."""
    import sys
    import time

    module = tmp_path / "slow_builtins.py"
    module.write_text(
        "import time\nfrom registry_under_test import REGISTRY\ntime.sleep(0.5)\n"
        "REGISTRY.register('late')(lambda: None)\n"
    )
    holder = tmp_path / "registry_under_test.py"
    holder.write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = Registry("scenario", builtin_modules=("slow_builtins",))
    sys.modules["registry_under_test"] = type(sys)("registry_under_test")
    sys.modules["registry_under_test"].REGISTRY = registry  # type: ignore[attr-defined]
    seen = _in_threads(lambda: registry.names(), lambda: (time.sleep(0.1), registry.names())[1])
    assert seen == [["late"], ["late"]]
    monkeypatch.delitem(sys.modules, "slow_builtins")
    monkeypatch.delitem(sys.modules, "registry_under_test")
