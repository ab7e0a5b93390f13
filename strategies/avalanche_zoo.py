"""``avalanche.<Method>``: Avalanche's own continual-learning methods, by their class names.

Every supervised strategy class of ``avalanche.training`` (GEM, AGEM, DER, ER_ACE, GDumb, BiC, ...) and
every method plugin that has no strategy class of its own (RWalk, RAR, FeatureDistillation) is registered
as ``avalanche.<ClassName>`` (``avalanche.RWalk`` runs ``RWalkPlugin``), so it runs on every forgetbench
scenario, in the same table as the built-in strategies. The maths of each is Avalanche's: see its class's
docstring and paper (``forgetbench list strategies`` shows the first line).

Params are the class's own keyword arguments, read from its signature: a config gives them as the
strategy's ``params`` (``{name: avalanche.GEM, params: {patterns_per_exp: 256, memory_strength: 0.5}}``)
and they are validated before anything runs: an unknown key, a value of the wrong type (from the
annotation, or from the default's type where Avalanche gives none) and a missing required argument are
config errors naming the argument and the class. The template's own arguments (model, optimizer,
criterion, batch sizes, epochs, device, plugins, evaluator) come from the suite as for every strategy;
an argument a config cannot express (a module, a storage policy object) keeps Avalanche's default.

How it runs:

* a plugin is added to forgetbench's lean template (:class:`FastSupervisedTemplate`), like the
  built-in strategies' plugins;
* a strategy class becomes its own template class with forgetbench's tensor loaders and lean training
  loop mixed in (:func:`fast_template`), except for what the class defines itself (DER's and ER_ACE's
  training epochs, for instance, stay theirs). Such a class keeps its state (buffers, logits) outside the
  plugin protocol, so its runs go without checkpoints and their records say so.

Methods that cannot run on forgetbench's models (they need a model of their own kind, a generator or the
whole stream at once) are listed in :data:`UNAVAILABLE` with the reason, which a config naming one is told.
Methods that need something of the network (one head for every task because they call ``model(x)`` without
task labels, or a head per task) are refused at config time on a scenario whose network lacks it
(:data:`REQUIRES`, checked against the scenario's ``model_traits()``).
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from pydantic import ConfigDict, Field, JsonValue, create_model

from forgetbench.benchmark.train.template import FastLoadersMixin, LeanLoopMixin
from forgetbench.benchmark.core.registry import STRENGTH
from forgetbench.strategies.base import STRATEGIES, StrategyContext, StrategyParams

PREFIX = "avalanche."


# What the suite gives every template (forgetbench's StrategyContext.build), never a config's params.
TEMPLATE_ARGUMENTS = frozenset(
    {
        "self",
        "model",
        "optimizer",
        "criterion",
        "train_mb_size",
        "train_epochs",
        "eval_mb_size",
        "device",
        "plugins",
        "evaluator",
        "eval_every",
        "peval_mode",
        "kwargs",
        "base_kwargs",
    }
)

# Avalanche classes that are not methods forgetbench can run, and why (a config naming one is told this).
UNAVAILABLE: dict[str, str] = {
    "AETraining": "trains an autoencoder (ExpertGate's gate), not a classifier",
    "VAETraining": "trains a variational autoencoder (a generator), not a classifier",
    "AR1": "builds its own MobileNet (it takes no model), so it cannot train a scenario's network",
    "ER_AML": "needs a feature extractor module apart from the model (feature_extractor)",
    "ICaRL": "needs a feature extractor and a classifier apart from the model (feature_extractor, classifier)",
    "ExpertGateStrategy": "needs Avalanche's ExpertGate model (one expert network per task)",
    "FeatureReplay": "replays features of a named last layer of its own model kind",
    "GenerativeReplay": "needs a generator (a VAE) trained beside the model; forgetbench's models have none",
    "JointTraining": "trains on every experience at once (its train() takes the whole stream); "
    "forgetbench's own `joint` is that upper bound",
    "LearningToPrompt": "builds a pretrained ViT by name (needs timm and a download), not a scenario's network",
    "PNNStrategy": "needs Avalanche's PNN model (it grows columns of its own)",
    "PackNet": "needs a PackNetModel (Avalanche's prunable wrapper)",
    "BiC": "asserts that the model is not an Avalanche MultiTaskModule, which forgetbench's networks are",
    "CoPE": "classifies by the nearest prototype in the model's output space, not by the model's outputs, "
    "which forgetbench evaluates",
    "SCR": "needs Avalanche's SCRModel (feature extractor + projection head)",
    "StreamingLDA": "needs a frozen feature extractor and trains a streaming LDA head, not the network",
    "EarlyStoppingPlugin": "a training utility, not a continual-learning method",
    "LRSchedulerPlugin": "a training utility (needs a scheduler object), not a continual-learning method",
    "EvaluationPlugin": "Avalanche's evaluation, not a method (forgetbench evaluates on its own)",
    "GenerativeReplayPlugin": "needs a generator strategy beside the model",
    "TrainGeneratorAfterExpPlugin": "trains a generator; forgetbench's models have none",
    "CurrentDataNCMUpdate": "updates an NCM classifier; forgetbench's models have a linear head",
    "MemoryNCMUpdate": "updates an NCM classifier; forgetbench's models have a linear head",
    "NCMOracle": "updates an NCM classifier; forgetbench's models have a linear head",
    "CurrentDataFeCAMUpdate": "updates a FeCAM classifier; forgetbench's models have a linear head",
    "MemoryFeCAMUpdate": "updates a FeCAM classifier; forgetbench's models have a linear head",
    "FeCAMOracle": "updates a FeCAM classifier; forgetbench's models have a linear head",
}

# What a method needs of the scenario's network (the traits are the scenarios' MODEL_TRAITS): refused at config time
# on a scenario whose network lacks it.
REQUIRES: dict[str, dict[str, str]] = {
    "DER": {
        "single_head": "DER stores logits with model(x), without task labels",
        "unmasked_outputs": "DER regresses stored logits, and a unit held at -1000 when stored is live later "
        "(class-IL: set mask_unseen_classes: false)",
    },
    "MIR": {
        "disjoint_labels": "MIR keys its memory by class label and replays only classes absent from the last "
        "batch; with labels reused by every task that is none, so it would never replay"
    },
    "GSS_greedy": {"single_head": "GSS scores memory samples with model(x), without task labels"},
    "RAR": {
        "single_head": "RAR traces the model with torch.fx to read a layer's features, and a head chosen by "
        "the task label cannot be traced"
    },
    "CWRStar": {"single_head": "CWR* consolidates the weights of one output layer every task uses"},
    "LwF": {
        "task_heads": "Avalanche's LwF distils every head of a multi-task model (forgetbench's own `lwf` "
        "handles one head too)"
    },
}

# Where Avalanche's docstring does not say what the method is (GSS_greedy's copies Replay's; plugins have none).
DESCRIPTIONS: dict[str, str] = {
    "GSS_greedy": "Gradient-based Sample Selection, greedy: a replay memory of gradient-diverse samples (Aljundi et al. 2019).",
    "FeatureDistillation": "Feature distillation: pull the trunk's features towards the previous model's (cosine or MSE).",
    "RWalk": "Riemannian Walk: EWC++ importance plus path-integral scores, quadratic penalty (Chaudhry et al. 2018).",
}

# Plugins that read the trunk's output as `model.features` (forgetbench's MultiHeadNet keeps it on request).
READS_FEATURES = frozenset({"FeatureDistillation"})

# Arguments forgetbench fills from the run for a plugin (besides the template's).
_FROM_RUN = {"model": lambda ctx: ctx.model}

_SCALARS = (bool, int, float, str, type(None))
_COUNT = re.compile(r"size|cnt|count|num|^n_|epochs|patterns|delta_t|classes|_it")


class AvalancheParams(StrategyParams):
    """Params of an Avalanche method: its own keyword arguments (argument names may start with ``model_``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass(frozen=True)
class AvalancheMethod:
    """One Avalanche method as forgetbench registers it."""

    name: str
    cls: type[Any]
    kind: Literal["strategy", "plugin"]
    configurable: tuple[str, ...]  # the class's arguments a config may give
    from_run: tuple[str, ...]  # the class's arguments forgetbench fills from the run (a plugin's model)


def _configurable_type(annotation: Any) -> bool:
    """True when a YAML value can be validated against ``annotation`` (scalars, Literal, Optional, lists)."""
    if annotation in _SCALARS or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType):
        return all(_configurable_type(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, typing.get_origin(Sequence[int])):
        return all(_configurable_type(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return False


def _field(parameter: inspect.Parameter, hints: dict[str, Any]) -> tuple[Any, Any] | None:
    """``(type, default)`` of a pydantic field for ``parameter``, or None when a config cannot give it."""
    annotation = hints.get(parameter.name, parameter.annotation)
    default = parameter.default
    required = default is inspect.Parameter.empty
    if annotation is inspect.Parameter.empty:
        if required:
            return None  # no type, no default: nothing to validate a value against
        if default is None:
            annotation = Any
        elif isinstance(default, bool):
            annotation = bool
        elif isinstance(default, float):
            annotation = float
        elif isinstance(default, int):  # a count stays an integer; a coefficient written `alpha=1` may be 0.5
            annotation = int if _COUNT.search(parameter.name) else int | float
        elif isinstance(default, str):
            annotation = str
        elif isinstance(default, (list, tuple)):
            annotation = list[Any]
        else:
            return None
    elif not _configurable_type(annotation):
        return None
    if not required and default is None and annotation is not Any:
        annotation = annotation | None
    return annotation, (... if required else (list(default) if isinstance(default, tuple) else default))


def describe(name: str, cls: type[Any], kind: Literal["strategy", "plugin"]) -> AvalancheMethod | str:
    """The method's registration, or why it cannot be registered (a required argument no config can give)."""
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation naming something not importable: read the raw ones
        hints = {}
    configurable, from_run = [], []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if kind == "strategy" and parameter.name in TEMPLATE_ARGUMENTS:
            continue
        if kind == "plugin" and parameter.name in _FROM_RUN:
            from_run.append(parameter.name)
            continue
        if parameter.name == "self":
            continue
        if _field(parameter, hints) is not None:
            configurable.append(parameter.name)
        elif parameter.default is inspect.Parameter.empty:
            return f"needs the argument {parameter.name!r}, which a config cannot give"
    return AvalancheMethod(name, cls, kind, tuple(configurable), tuple(from_run))


# Each method's strength (how hard it holds on to earlier experiences), by Avalanche's class name: what
# `forgetbench calibrate` probes and tuning searches on a log scale (forgetbench.strategies.base.strength).
STRENGTH_ARGUMENTS = {
    "EWC": ("ewc_lambda",),
    "SynapticIntelligence": ("si_lambda",),
    "MAS": ("lambda_reg",),
    "LwF": ("alpha",),
    "GEM": ("memory_strength",),
    "LFL": ("lambda_e",),
    "RWalk": ("ewc_lambda",),
    "FeatureDistillation": ("alpha",),
}


def params_model(method: AvalancheMethod) -> type[StrategyParams]:
    """The method's params as a pydantic model generated from its signature (unknown keys are errors)."""
    signature = inspect.signature(method.cls.__init__)
    try:
        hints = typing.get_type_hints(method.cls.__init__)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}  # name -> (annotation, FieldInfo), as create_model takes them
    for name in method.configurable:
        field = _field(signature.parameters[name], hints)
        if field is None:  # describe() keeps only the arguments a config can give
            raise TypeError(f"{method.name}: argument {name!r} cannot be configured")
        annotation, default = field
        marked: dict[str, JsonValue] | None = (
            {STRENGTH: True} if name in STRENGTH_ARGUMENTS.get(method.name, ()) else None
        )
        fields[name] = (annotation, Field(default=default, json_schema_extra=marked))
    return create_model(method.cls.__name__, __base__=AvalancheParams, __module__=__name__, **fields)


# Methods of the mixins that a strategy class may define itself; the class's own definition then wins.
_MIXED_IN = (
    "training_epoch",
    "forward",
    "make_train_dataloader",
    "make_eval_dataloader",
    "_unpack_minibatch",
    "optimizer_step",
)


def own_methods(cls: type) -> dict[str, Any]:
    """Of :data:`_MIXED_IN`, those ``cls`` (or a class between it and SupervisedTemplate) defines itself."""
    from avalanche.training.templates import SupervisedTemplate

    own = {}
    for klass in cls.__mro__:
        if klass is SupervisedTemplate:
            break
        for name in _MIXED_IN:
            if name in klass.__dict__ and name not in own:
                own[name] = klass.__dict__[name]
    return own


def fast_template(cls: type[Any]) -> type[Any]:
    """``cls`` with forgetbench's tensor loaders and lean loop mixed in, its own methods kept."""
    own = own_methods(cls)
    return type(
        f"Fast{cls.__name__}",
        (LeanLoopMixin, FastLoadersMixin, cls),
        {
            **own,
            "undeclared_state": True,  # buffers and logits live on the template, outside the plugin protocol
            "runs_own_training_epoch": "training_epoch" in own,
            "__doc__": f"Avalanche's {cls.__name__}, tensor-sliced (forgetbench.strategies.avalanche_zoo).",
        },
    )


def _builder(method: AvalancheMethod):
    def build(ctx: StrategyContext, params: StrategyParams):
        args = params.model_dump()
        if method.kind == "plugin":
            args.update({name: _FROM_RUN[name](ctx) for name in method.from_run})
            if method.name in READS_FEATURES:
                if not hasattr(ctx.model, "keep_features"):
                    raise ValueError(
                        f"{PREFIX}{method.name} reads `model.features` after each forward pass; this "
                        f"scenario's model ({type(ctx.model).__name__}) does not keep them"
                    )
                ctx.model.keep_features = True
            return ctx.build(plugins=[method.cls(**args)])
        template = fast_template(method.cls)
        if template.runs_own_training_epoch and ctx.training.precision != "fp32":
            raise ValueError(
                f"{PREFIX}{method.name} runs its own training epoch, which forgetbench's bf16 autocast "
                "does not reach; train it in fp32 (training.precision: fp32)"
            )
        return ctx.build(template=template, **args)

    build.__doc__ = (
        DESCRIPTIONS.get(method.name) or _first_line(method.cls.__doc__) or f"Avalanche's {method.cls.__name__}."
    )
    return build


def _first_line(doc: str | None) -> str:
    """The docstring's first sentence or paragraph, on one line (Avalanche wraps some mid-sentence)."""
    words = []
    for line in (doc or "").strip().splitlines():
        if not line.strip() or line.strip().startswith(":"):
            break
        words.append(line.strip())
    text = " ".join(words)
    return text if len(text) <= 110 else text[:107].rsplit(" ", 1)[0] + "..."


def discover() -> dict[str, tuple[type, Literal["strategy", "plugin"]]]:
    """Avalanche's strategy classes and method plugins by the name forgetbench gives them."""
    import avalanche.training as training
    import avalanche.training.plugins as plugins
    from avalanche.core import BasePlugin
    from avalanche.training.templates import SupervisedTemplate

    found: dict[str, tuple[type, Literal["strategy", "plugin"]]] = {}
    for name in sorted(dir(training)):
        obj = getattr(training, name)
        if inspect.isclass(obj) and issubclass(obj, SupervisedTemplate) and obj is not SupervisedTemplate:
            found[name] = (obj, "strategy")
    for name in sorted(dir(plugins)):
        obj = getattr(plugins, name)
        if not (inspect.isclass(obj) and issubclass(obj, BasePlugin)) or name == "SupervisedPlugin":
            continue
        method = name[: -len("Plugin")] if name.endswith("Plugin") else name
        if method in found:
            continue  # the strategy class of the same name runs it (GEM runs GEMPlugin)
        found[name if name in UNAVAILABLE else method] = (obj, "plugin")
    return found


def _register_all() -> None:
    for name, (cls, kind) in discover().items():
        method = UNAVAILABLE.get(name) or UNAVAILABLE.get(cls.__name__) or describe(name, cls, kind)
        if isinstance(method, str):  # why it cannot run
            STRATEGIES.register(PREFIX + name, description=f"(not available: {method})", unavailable=method)(
                _unavailable_builder(name, method)
            )
            continue
        STRATEGIES.register(
            PREFIX + name,
            params=params_model(method),
            requires=REQUIRES.get(name, {}),
            avalanche=cls.__qualname__,
            kind=kind,
        )(_builder(method))


def _unavailable_builder(name: str, reason: str):
    def build(ctx: StrategyContext, params: StrategyParams):
        raise ValueError(f"{PREFIX}{name} cannot run on forgetbench's scenarios: {reason}")

    return build


_register_all()
