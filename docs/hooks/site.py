"""MkDocs hooks of the docs site (``hooks:`` in mkdocs.yml).

* Maths renders without JavaScript and offline: pymdownx.arithmatex (``generic``) marks ``\\( ... \\)`` and
  ``$$ ... $$``, and each is replaced by the MathML that latex2mathml makes of it (browsers draw MathML
  natively), so a page needs no CDN.
* The reference pages (the CLI, the config keys, the record schema, one page per strategy, scenario and dataset)
  are generated from the code when the site builds (``on_config``: :func:`forgetbench.benchmark.front.docs.write`
  into docs/reference/, a folder git ignores), and the per-component pages join the navigation under Reference in
  the order of their index page: a strategy file added tomorrow gets its page, in the menu, with no edit anywhere.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from latex2mathml.converter import convert

_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)


def _mathml(latex: str, display: str) -> str:
    return convert(html.unescape(latex).strip(), display=display)


def on_page_content(content: str, **kwargs) -> str:
    content = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m.group(1), "block")}</div>', content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), content)


def _listed(index: Path) -> list[tuple[str, str]]:
    """``(title, page)`` of the pages an index links to, in its order (``[`wpl`](wpl.md)`` -> ``("wpl", "wpl.md")``)."""
    return re.findall(r"\[`([^`]+)`\]\(([\w.-]+\.md)\)", index.read_text()) if index.exists() else []


def on_config(config, **kwargs):
    from forgetbench.benchmark.front.docs import write

    docs = Path(config["docs_dir"])
    write(docs / "reference")
    for section in config["nav"]:
        if not isinstance(section, dict) or "Reference" not in section:
            continue
        for item in section["Reference"]:
            for title, folder in (("Strategies", "strategies"), ("Scenarios", "scenarios")):
                if isinstance(item, dict) and item.get(title) == f"reference/{folder}/index.md":
                    pages = _listed(docs / "reference" / folder / "index.md")
                    item[title] = [f"reference/{folder}/index.md"] + [
                        {name: f"reference/{folder}/{page}"} for name, page in pages
                    ]
    return config
