"""The one error of the IR contract."""

from __future__ import annotations


class IRLoadError(Exception):
    """The IR cannot be run. `where` names the section, function and instruction."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.where = where
