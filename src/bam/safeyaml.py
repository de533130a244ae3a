"""YAML from anywhere (a config, a custom task someone shared), read safely and within bounds.

``yaml.safe_load`` already refuses tags that build Python objects (``!!python/object``) and any
unknown tag. What it still allows is a small document that expands into a huge one: aliases
(``*a``) may point at anchors holding aliases in turn ("billion laughs"), and thousands of nested
brackets end in a ``RecursionError``. bam's YAML files are small, hand-written mappings, so
aliases are refused outright and documents are capped in nodes and depth; every refusal is a
``yaml.YAMLError`` that carries the line, for the caller's one-line message.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_NODES = 100_000  # bam's largest YAML (a preset) has a few hundred
MAX_DEPTH = 50


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and documents past :data:`MAX_NODES` or :data:`MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in bam's YAML", event.start_mark
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values in one document", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing aliases, unknown tags and oversized documents."""
    return construct(text)[1]


def construct(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree and the values it holds, from one bounded parse."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()
