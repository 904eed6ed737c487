"""How `concerto run` answers awaited emits: from a JSON file (`--answers`),
else by asking the person at the terminal.

The file is either an object, one constant answer per channel pattern:

    {"approval:request": "approved", "tool:*": {"ok": true}}

or a list of {"channel": ..., "answer": ...} entries, used in order (each
entry once) when the same channel is asked more than once:

    [{"channel": "ask", "answer": "first"}, {"channel": "ask", "answer": "second"}]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concerto.vm.emit import NoReply, pattern_matches, pattern_specificity


class AnswersError(Exception):
    """The answers file is unreadable or malformed (message names the file and the problem)."""


NoAnswer = NoReply


def load_answers(path: Path) -> Callable[[str, Any], Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnswersError(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"{e.lineno}:{e.colno}: " if isinstance(e, json.JSONDecodeError) else ""
        raise AnswersError(f"{path}:{where}invalid JSON: {getattr(e, 'msg', e)}") from None
    if isinstance(data, dict):
        constant: dict[str, Any] = {str(k): v for k, v in data.items()}
        queued: list[tuple[str, Any]] = []
    elif isinstance(data, list):
        constant = {}
        queued = []
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "channel" not in entry or "answer" not in entry \
                    or not isinstance(entry["channel"], str):
                raise AnswersError(f'{path}: entry {i}: expected {{"channel": "...", "answer": ...}}')
            queued.append((entry["channel"], entry["answer"]))
    else:
        raise AnswersError(f"{path}: expected a JSON object (channel -> answer) or a list of entries")

    def answer(channel: str, payload: Any) -> Any:
        for i, (pattern, value) in enumerate(queued):
            if pattern_matches(pattern, channel):
                del queued[i]
                return value
        matching = [p for p in constant if pattern_matches(p, channel)]
        if matching:
            return constant[max(matching, key=pattern_specificity)]
        raise NoAnswer(f"{path} has no answer for channel `{channel}`")

    return answer


def ask_person(channel: str, payload: Any) -> Any:
    """Show the question on stderr and read one line; JSON if it parses, else the text."""
    shown = json.dumps(payload, ensure_ascii=False)
    sys.stderr.write(f"? {channel} {shown}\n> ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise NoAnswer(f"no answer for `{channel}`: standard input is closed")
    text = line.rstrip("\n")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
