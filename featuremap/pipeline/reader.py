"""Reading a pipeline's YAML safely and within bounds, before anything is built from it.

A hostile file is refused in one line, within seconds and a few megabytes: at most
:data:`MAX_PIPELINE_BYTES` of text, :data:`MAX_YAML_NODES` YAML nodes with every alias counted
as the node it repeats (an alias bomb is never expanded), :data:`MAX_YAML_ALIASES` aliases, no
recursive alias, :data:`MAX_YAML_DEPTH` levels of nesting and integers of at most
:data:`MAX_YAML_INT_CHARS` characters. Only YAML's safe types are constructed.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from featuremap._files import read_document
from featuremap.errors import InputError, describe

__all__ = [
    "MAX_PIPELINE_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_INT_CHARS",
    "MAX_YAML_NODES",
    "parse_yaml",
    "read_yaml_text",
]

#: The largest pipeline file read, in bytes (pipelines are a few kilobytes).
MAX_PIPELINE_BYTES = 1 << 20
#: The most YAML nodes a pipeline may hold, an alias counted as the whole node it repeats.
MAX_YAML_NODES = 100_000
#: The most aliases (``*name``) a pipeline may use.
MAX_YAML_ALIASES = 1_000
#: The deepest nesting of YAML nodes (a pipeline is about 6 deep).
MAX_YAML_DEPTH = 100
#: The longest integer scalar, in characters (YAML's base 60 and hexadecimal integers grow fast).
MAX_YAML_INT_CHARS = 100
#: The longest piece of a YAML parser message kept in an error.
_MAX_PROBLEM_CHARS = 200


def _line(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}" if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (a silent overwrite hides a typo) and bounded
    while it composes: nesting depth (checked before Python's recursion limit), the number of
    nodes with every alias expanded (counted from per-node sizes, never materialised: a
    400-byte alias bomb expands to billions), alias uses and recursive aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # nodes composed so far, each alias counted as the node it repeats
        self._aliases = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def _count(self, size: int, mark: yaml.Mark) -> None:
        self._nodes += size
        if self._nodes > MAX_YAML_NODES:
            raise InputError(
                f"YAML document has more than {MAX_YAML_NODES} nodes, counting each alias as the "
                f"node it repeats (reached{_line(mark)}); a pipeline has a few hundred"
            )

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark: yaml.Mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)  # refuses an undefined alias
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise InputError(
                    f"YAML document uses more than {MAX_YAML_ALIASES} aliases (reached"
                    f"{_line(mark)}); a pipeline needs a few"
                )
            size = self._sizes.get(id(node))
            if size is None:  # the anchored node is still being composed: it contains itself
                raise InputError(
                    f"YAML alias{_line(mark)} refers to a node that contains it; "
                    "recursive structures are not allowed"
                )
            self._count(size, mark)
            return node
        if self._depth >= MAX_YAML_DEPTH:  # 3 Python frames a level: far below the recursion limit
            raise InputError(
                f"YAML nesting{_line(mark)} is deeper than {MAX_YAML_DEPTH} levels; "
                "a pipeline is a few levels deep"
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, mark)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise InputError(
                    f"YAML mapping key{_line(key_node.start_mark)} must be a string or a number, "
                    f"not a {type(key).__name__}"
                )
            if key in seen:
                raise InputError(
                    f"duplicate key {describe(key)} at line {key_node.start_mark.line + 1}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        if len(str(node.value)) > MAX_YAML_INT_CHARS:
            raise InputError(
                f"YAML integer{_line(node.start_mark)} has more than {MAX_YAML_INT_CHARS} "
                f"characters, got {describe(node.value)}"
            )
        number: int = self.construct_yaml_int(node)
        return number


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_bounded_int)


_PIPELINE_FIX = "give a YAML file (a pipeline is a few kilobytes)"


def read_yaml_text(path: Path) -> str:
    """The pipeline file's text, refused past :data:`MAX_PIPELINE_BYTES` before it is all read
    (``/dev/zero`` never ends)."""
    try:
        data = read_document(
            path, "pipeline file", _PIPELINE_FIX, limit=MAX_PIPELINE_BYTES, unit="1 MiB"
        )
    except FileNotFoundError:
        raise InputError(f"pipeline file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise InputError(f"pipeline {str(path)!r} is a directory; give a YAML file") from None
    except OSError as error:
        raise InputError(f"cannot read pipeline file {str(path)!r}: {error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"cannot read pipeline file {str(path)!r}: {error}") from None


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_PROBLEM_CHARS else text[: _MAX_PROBLEM_CHARS - 3] + "..."


def parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        problem = _clip(error.problem or "")
        if "constructor for the tag" not in problem:
            raise InputError(f"invalid YAML{where}: {problem}") from None
        raise InputError(
            f"YAML tag{where} is not allowed: {problem} (pipelines are read with a safe loader; "
            f"use plain mappings, lists, strings and numbers)"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"invalid YAML{where}: {_clip(problem)}") from None
    except InputError:
        raise
    except (ValueError, TypeError, OverflowError) as error:  # a constructor's, e.g. 2020-02-31
        raise InputError(f"invalid YAML value: {_clip(str(error))}") from None
