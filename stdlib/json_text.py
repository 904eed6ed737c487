"""JSON text of plain data (values.to_json's output), built in steps.

json.dumps of ten million items is one C call of about a second, which no
deadline can interrupt. Here a list or object holding more than STEP nodes
is encoded a slice of its items at a time (each slice by json.dumps, a poll
between slices), and the slices' text is joined with the separators and
indentation json.dumps puts between items, so the text is the same. Items
too heavy for one call are encoded the same way, one level down.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

from concerto.vm.interrupts import poll
from concerto.vm.values import chunked

# Nodes (items of lists and objects, at any depth) one json.dumps call may
# encode: a few milliseconds of C.
STEP = 1 << 16


def dumps(data: Any, indent: int | None, allow_nan: bool) -> str:
    """json.dumps(data, indent=indent, allow_nan=allow_nan, ensure_ascii=False),
    with json.dumps' separators for that indent."""
    return _Encoder(indent, allow_nan).text(data, 0)


_CONTAINERS = frozenset({list, dict})


def _weight(node: Any) -> int:
    """The nodes inside `node` (a list or dict), counted until past STEP.
    Level by level, so that most of the work is C (map, sum, set)."""
    total = len(node)
    level = [node]
    kinds = {type(node)}  # of the containers in `level`
    while total <= STEP:
        found = set(map(type, _items(level, kinds)))
        if found.isdisjoint(_CONTAINERS):
            break
        if found <= _CONTAINERS:
            level = list(_items(level, kinds))
        else:
            level = [x for x in _items(level, kinds) if type(x) is list or type(x) is dict]
        kinds = found & _CONTAINERS
        total += sum(map(len, level))
    return total


def _items(level: list, kinds: set) -> Any:
    """Every item (a dict's values) of the containers in `level`."""
    if dict not in kinds:
        return chain.from_iterable(level)
    if list not in kinds:
        return chain.from_iterable(map(dict.values, level))
    return chain(chain.from_iterable([c for c in level if type(c) is list]),
                 chain.from_iterable([c.values() for c in level if type(c) is dict]))


class _Encoder:
    def __init__(self, indent: int | None, allow_nan: bool) -> None:
        self.indent = indent
        self.allow_nan = allow_nan
        self.separators = (",", ":") if indent is None else (",", ": ")

    def dump(self, data: Any, depth: int) -> str:
        """json.dumps' text of `data` as it reads `depth` levels down."""
        text = json.dumps(data, separators=self.separators, indent=self.indent, ensure_ascii=False,
                          allow_nan=self.allow_nan)
        if self.indent and depth:
            # JSON text holds no raw newline but those between items.
            text = text.replace("\n", "\n" + " " * (self.indent * depth))
        return text

    def text(self, data: Any, depth: int) -> str:
        t = type(data)
        if (t is not list and t is not dict) or _weight(data) <= STEP:
            return self.dump(data, depth)
        if t is dict and set(map(type, data)) != {str}:
            return self.dump(data, depth)  # json.dumps' own key conversions
        items = data if t is list else list(data.items())
        runs: list[str] = []
        for part in chunked(items):
            whole = part if t is list else dict(part)
            if _weight(whole) <= STEP:
                runs.append(self.run(whole, depth))
            else:
                runs += self.split(part, t, depth)
        return self.wrap(runs, t, depth)

    def split(self, part: list, t: type, depth: int) -> list[str]:
        """Runs for a slice of items: light items grouped, heavy ones alone."""
        runs: list[str] = []
        group: list = []
        weight = 0
        for item in part:
            value = item if t is list else item[1]
            w = _weight(value) if type(value) is list or type(value) is dict else 0
            if w > STEP:
                if group:
                    runs.append(self.run(group if t is list else dict(group), depth))
                    group, weight = [], 0
                text = self.text(value, depth + 1)
                runs.append(text if t is list else json.dumps(item[0], ensure_ascii=False) + self.separators[1] + text)
                continue
            if group and weight + w + 1 > STEP:
                runs.append(self.run(group if t is list else dict(group), depth))
                group, weight = [], 0
            group.append(item)
            weight += w + 1
        if group:
            runs.append(self.run(group if t is list else dict(group), depth))
        return runs

    def run(self, data: list | dict, depth: int) -> str:
        """The items of non-empty `data` as they read inside a container at `depth`."""
        poll()  # between two json.dumps calls of up to STEP nodes each
        text = self.dump(data, depth)
        if self.indent is None:
            return text[1:-1]
        # "[" newline, indentation at depth + 1 ... newline, indentation at depth, "]"
        return text[2 + self.indent * (depth + 1):-(2 + self.indent * depth)]

    def wrap(self, runs: list[str], t: type, depth: int) -> str:
        opening, closing = ("[", "]") if t is list else ("{", "}")
        if self.indent is None:
            return opening + ",".join(runs) + closing
        inner = "\n" + " " * (self.indent * (depth + 1))
        return opening + inner + ("," + inner).join(runs) + "\n" + " " * (self.indent * depth) + closing
