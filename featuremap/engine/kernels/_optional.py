"""An optional accelerator module (torch, numba) imported only once it pays for its import.

Both are found without importing them (:meth:`OptionalModule.available`). Until a process has
imported one, the cost model may take its method only once the time that method would have
saved there adds up to the import's cost (:meth:`OptionalModule.worth_importing`): a small job
never pays the import, a long one pays it once, at most twice the better of the two choices
(the ski-rental bound).
"""

from __future__ import annotations

import importlib.util
import sys
import threading

__all__ = ["OptionalModule"]


class OptionalModule:
    """The import gate of one optional module.

    Parameters
    ----------
    name : str
        The module's import name (``"torch"``, ``"numba"``).
    import_seconds : float
        What importing it costs a process, measured on the development machine kind.
    """

    def __init__(self, name: str, import_seconds: float) -> None:
        self.name = name
        self.import_seconds = import_seconds
        self._found: bool | None = None
        self._forgone_seconds = 0.0  # saved time given up so far in this process
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether the module can be imported (asked once, without importing it)."""
        if self._found is None:
            self._found = importlib.util.find_spec(self.name) is not None
        return self._found

    def worth_importing(self, saving_seconds: float) -> bool:
        """Whether a call that the module would make ``saving_seconds`` faster should use it:
        always once the module is imported in this process, otherwise when the savings given
        up reach the import's cost."""
        if self.name in sys.modules:
            return True
        with self._lock:
            self._forgone_seconds += saving_seconds
            return self._forgone_seconds >= self.import_seconds
