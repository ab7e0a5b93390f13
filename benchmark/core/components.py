"""The component registries, in a leaf module: who needs a name looks it up here.

Each registry imports its built-in components on first use (``builtin_modules``) and then the
other distributions' entry points, so validating a config needs no import of the strategies or
scenarios themselves (the one-way flow: config -> scenario -> strategy -> runner).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from forgetbench.benchmark.core.registry import Registry, index_rows

# the folder holding benchmark/, strategies/ (the checkout, or site-packages/forgetbench in a wheel)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# where the built-in datasets, scenarios and strategies are defined: a file added or changed there makes a new index
BUILTIN_SOURCES = ("benchmark/data/datasets.py", "benchmark/data/scenarios", "strategies")


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """A digest of the built-in components' source files (their names and bytes): what an index was made from."""
    digest = hashlib.sha256()
    for relative in BUILTIN_SOURCES:
        path = PACKAGE_ROOT / relative
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            if "__pycache__" not in file.parts:
                digest.update(file.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


class ComponentIndex:
    """The built-in datasets, scenarios and strategies by name (Registry.listing): `forgetbench list` and a config's
    names answered without importing torch. Generated, never edited: the first process that has to import the
    built-ins writes it, named by :func:`sources_digest`, so a strategy file added or changed makes the old index
    unread (the next listing imports the built-ins and writes the new one). Beside this module when that folder is
    writable (a checkout, most environments), else in the user's cache folder."""

    def folders(self) -> list[Path]:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "forgetbench"
        return [Path(__file__).parent, cache]

    def path(self) -> Path | None:
        """The index of the built-ins as they are now, where one was written (None: none yet)."""
        name = f"components-{sources_digest()}.json"
        return next((folder / name for folder in self.folders() if (folder / name).is_file()), None)

    def write(self) -> Path | None:
        """Write the index for the built-ins as they are now (imports them all), atomically; earlier indexes of this
        folder are removed. None where no folder is writable (every listing then imports the built-ins)."""
        text = component_index()
        name = f"components-{sources_digest()}.json"
        for folder in self.folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=".components-", suffix=".tmp")
                with os.fdopen(handle, "w") as out:
                    out.write(text)
                os.replace(temporary, folder / name)
            except OSError:
                continue
            for stale in folder.glob("components-*.json"):
                if stale.name != name:
                    stale.unlink(missing_ok=True)
            return folder / name
        return None


INDEX = ComponentIndex()

DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset",
    entry_point_group="forgetbench.datasets",
    builtin_modules=("forgetbench.benchmark.data.datasets",),
    index=INDEX,
)
SCENARIOS: Registry[Callable[..., Any]] = Registry(
    "scenario",
    entry_point_group="forgetbench.scenarios",
    builtin_modules=("forgetbench.benchmark.data.scenarios",),
    index=INDEX,
)
# Text corpora, named like datasets: a classification corpus (documents, labels, a test flag; the `text`
# scenario) and a language-modelling corpus (train / valid / test token streams; `enas_rnn`). An entry
# registered with `argument=True` is a scheme: `folder:/path`, `hf:ag_news` pass what follows the colon.
TEXT_CORPORA: Registry[Callable[..., Any]] = Registry(
    "text corpus", entry_point_group="forgetbench.corpora", builtin_modules=("forgetbench.benchmark.data.text",)
)
LANGUAGE_CORPORA: Registry[Callable[..., Any]] = Registry(
    "language-modelling corpus",
    entry_point_group="forgetbench.corpora",
    builtin_modules=("forgetbench.benchmark.data.language",),
)
STRATEGIES: Registry[Callable[..., Any]] = Registry(
    "strategy",
    entry_point_group="forgetbench.strategies",
    builtin_modules=("forgetbench.strategies",),
    index=INDEX,
    prefixed_modules={"avalanche.": "forgetbench.strategies.avalanche_zoo"},  # registering them reads Avalanche
)

# The decorators a plug-in uses (``forgetbench.register_scenario("name", params=...)``): each registry's own.
register_dataset = DATASETS.register
register_scenario = SCENARIOS.register
register_text_corpus = TEXT_CORPORA.register
register_language_corpus = LANGUAGE_CORPORA.register


def corpus_entry(registry: Registry[Any], name: str) -> tuple[Any, str] | None:
    """``(entry, argument)`` for a corpus name (``austen``, ``folder:/path``); None when none is registered."""
    key, colon, argument = name.partition(":")
    if key not in registry:
        return None
    entry = registry.get(key)
    if bool(colon) != bool(entry.extra.get("argument", False)):
        return None
    return entry, argument


def corpus_names(registry: Registry[Any]) -> str:
    """The allowed spellings, for error messages: ``'austen', 'folder:...'``."""
    return ", ".join(
        f"'{e.name}:{e.extra.get('argument_help', '...')}'" if e.extra.get("argument") else f"'{e.name}'"
        for e in registry
    )


def component_index() -> str:
    """The text of the index (:class:`ComponentIndex`) from the registries themselves (imports every built-in)."""
    return (
        json.dumps(
            {r.kind: index_rows(r, "forgetbench") for r in (DATASETS, SCENARIOS, STRATEGIES)},
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
