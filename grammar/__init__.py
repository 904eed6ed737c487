"""The Concerto grammar, shipped as package data (concerto.lark)."""

from importlib import resources


def grammar_text() -> str:
    return resources.files(__name__).joinpath("concerto.lark").read_text(encoding="utf-8")
