"""The component registries, in a leaf module: who needs a name looks it up here.

Each registry imports its built-in components on first use (``builtin_modules``) and then the
other distributions' entry points, so validating a config needs no import of the strategies or
scenarios themselves (the one-way flow: config -> scenario -> strategy -> runner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from forgetbench.benchmark.core.registry import Registry, index_rows

# the built-in datasets, scenarios and strategies by name (Registry.listing): `forgetbench list` and a config's
# names answered without importing torch; regenerated with the docs reference (tests/front/test_docs.py checks it)
INDEX = Path(__file__).with_name("components.json")

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
    """The text of :data:`INDEX` from the registries themselves (imports every built-in)."""
    return (
        json.dumps(
            {r.kind: index_rows(r, "forgetbench") for r in (DATASETS, SCENARIOS, STRATEGIES)},
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
