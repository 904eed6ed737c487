"""The Concerto compiler: `.conc` source -> `.conc-ir` Program.

    compile_source(text, file, manifest=None, mock=False) -> CompileResult
    compile_file(path, manifest=None, mock=False)         -> CompileResult

The work happens in concerto.compiler.driver; these wrappers import it on
first use so that `concerto.compiler.diagnostics` stays cheap to import.
"""

from __future__ import annotations

from typing import Any


def compile_source(text: str, file: str, **options: Any) -> Any:
    from concerto.compiler.driver import compile_source as _compile_source

    return _compile_source(text, file, **options)


def compile_file(path: Any, **options: Any) -> Any:
    from concerto.compiler.driver import compile_file as _compile_file

    return _compile_file(path, **options)


def __getattr__(name: str) -> Any:
    if name == "CompileResult":
        from concerto.compiler.driver import CompileResult

        return CompileResult
    raise AttributeError(name)
