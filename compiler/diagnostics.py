"""Diagnostics are values: the compiler returns them, the CLI renders them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"
    hint: str | None = None
    length: int = 1  # how many columns the caret underlines
    # False when the source line may hold a secret (a credential pasted into Concerto.toml).
    show_source: bool = True

    def header(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"


def render_plain(diag: Diagnostic, source: str | None) -> str:
    """`file:line:col: error: message`, the source line, a caret, and a hint."""
    lines = [diag.header()]
    if source is not None and diag.line >= 1 and diag.show_source:
        src_lines = source.split("\n")
        if diag.line <= len(src_lines):
            text = src_lines[diag.line - 1].rstrip("\r").expandtabs(4)
            gutter = f"{diag.line:>4} | "
            lines.append(gutter + text)
            width = max(1, min(diag.length, max(1, len(text) - diag.col + 1)))
            lines.append(" " * (len(gutter) + max(0, diag.col - 1)) + "^" * width)
    if diag.hint:
        lines.append(f"  = hint: {diag.hint}")
    return "\n".join(lines)


def sort_key(diag: Diagnostic) -> tuple[str, int, int]:
    return (diag.file, diag.line, diag.col)
