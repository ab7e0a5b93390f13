"""A suite file read as YAML, safely: duplicate keys refused, aliases that expand past a bound refused (a
billion laughs), nesting bounded, each error a :class:`~forgetbench.benchmark.core.suite_model.ConfigError`
naming the file and line."""

from __future__ import annotations

import re
from typing import Any

import yaml

from forgetbench.benchmark.core.suite_model import ConfigError


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as the float it means (YAML 1.1 wants ``1.0e-3``), and refusing a key
    given twice in one mapping (PyYAML keeps the last one silently: ``seeds: [0, 1]`` then ``seeds: {start: 3}``
    ran the second).

    Config numbers are validated strictly (a string is never converted), so without this a
    plain ``lr: 1e-3`` would be refused as a string.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here, by design
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:  # an unhashable key: the base loader says what is wrong with it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {first} and {line}); only one can be meant: "
                    "remove the other",
                    key_node.start_mark,
                )
        return dict(super().construct_mapping(node, deep=deep))


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# A suite config is a few hundred nodes; these bounds refuse an alias bomb (nested anchors that expand
# exponentially: `b: &b [*a, *a, ...]`) or absurd nesting in well under a second, before anything walks it.
MAX_CONFIG_NODES = 100_000


MAX_CONFIG_DEPTH = 64


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Nodes of the document with every alias expanded, counted without expanding anything
    (an alias is the same node object: its size is computed once)."""
    sizes: dict[int, int] = {}
    # iterative post-order walk: the composer shares nodes for aliases, so the graph is a DAG
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{source}: the config nests deeper than {MAX_CONFIG_DEPTH} levels; "
                "a suite config is a few levels of mappings and lists"
            )
        children = _children(node)
        if expanded or not children:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{source}: the config expands to more than {MAX_CONFIG_NODES:,} values once its anchors and "
                    "aliases (&name / *name) are expanded; a suite config needs a few hundred, so this is refused "
                    "(an alias bomb?)"
                )
            sizes[id(node)] = total
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(data: bytes, source: str) -> Any:
    """The YAML document in ``data`` (UTF-8), or :class:`ConfigError` saying what is wrong with it.

    Documents that expand (aliases included) to more than :data:`MAX_CONFIG_NODES` values or nest
    deeper than :data:`MAX_CONFIG_DEPTH` levels are refused before any Python object is built."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the config as UTF-8"
        ) from None
    loader = _YamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{source}: the config nests deeper than {MAX_CONFIG_DEPTH} levels; "
            "a suite config is a few levels of mappings and lists"
        ) from None
    finally:
        loader.dispose()
