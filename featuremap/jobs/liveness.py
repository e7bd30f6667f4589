"""Whether a job owned by another host still lives: its heartbeat *changes*, timed here.

A heartbeat is a value another host writes every :data:`HEARTBEAT_INTERVAL_S` (its wall time).
That host's clock may be minutes off ours, so its value is never compared with our clock to
decide anything: what counts is whether the value *changes*, measured by this host's monotonic
clock. Each look at a store's heartbeat is remembered locally (:func:`observations_folder`,
one small file per store, keyed by the boot, since the monotonic clock restarts with it); a
value that differs from the one remembered proves the job beat since; a value seen unchanged
for :data:`HEARTBEAT_TIMEOUT_S` of our own time is dead.

:func:`heartbeat_liveness` answers from what is remembered alone (fast, for ``status``);
:func:`watch_heartbeat` also watches the store for up to one heartbeat period when that is not
enough, so that a live job is told from a dead one at the first look.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TIMEOUT_S",
    "Liveness",
    "heartbeat_liveness",
    "observations_folder",
    "remember",
    "watch_heartbeat",
]

#: How often the client refreshes the heartbeat and ``blocks_done`` while it follows a job.
HEARTBEAT_INTERVAL_S = 5.0
#: A job whose heartbeat has not changed for this long (our monotonic clock) is dead: four
#: missed beats, so a client busy for a moment (a slow object store, a GIL-bound callback) is
#: not declared dead.
HEARTBEAT_TIMEOUT_S = 20.0
#: How often :func:`watch_heartbeat` reads the heartbeat again.
_POLL_S = 0.25

#: ``alive``: the heartbeat changed since it was last seen; ``dead``: unchanged for
#: :data:`HEARTBEAT_TIMEOUT_S`; ``unknown``: not watched long enough to tell.
Liveness = Literal["alive", "dead", "unknown"]


def observations_folder() -> Path:
    """Where this host remembers the heartbeats it saw: ``$FEATUREMAP_STATE_DIR/heartbeats``,
    else ``$XDG_STATE_HOME/featuremap/heartbeats`` (``~/.local/state/...``)."""
    configured = os.environ.get("FEATUREMAP_STATE_DIR")
    if configured:
        return Path(configured) / "heartbeats"
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "featuremap" / "heartbeats"


def _boot_id() -> str:
    """This boot's id (the monotonic clock is only comparable within one boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _record_path(store: str) -> Path:
    if "://" not in store:  # one record per store, however its path is spelled
        store = os.path.realpath(store)
    return observations_folder() / f"{hashlib.sha256(store.encode()).hexdigest()[:32]}.json"


def _remembered(store: str) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(store).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("boot") != _boot_id():
        return None
    if not isinstance(record.get("seen"), (int, float)):
        return None
    return record


def remember(store: str, value: Any, seen: float, checked: float | None = None) -> None:
    """Remember ``value`` as first seen at monotonic time ``seen`` and last looked at at
    ``checked`` (default: ``seen``). Best effort: an unwritable state folder only means the
    next look must watch again."""
    path = _record_path(store)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    record = {"value": value, "seen": seen, "checked": seen if checked is None else checked}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({**record, "boot": _boot_id()}))
        temporary.replace(path)
    except (OSError, TypeError, ValueError):
        temporary.unlink(missing_ok=True)


def heartbeat_liveness(
    store: str, value: Any, *, timeout_s: float = HEARTBEAT_TIMEOUT_S
) -> Liveness:
    """What the heartbeat ``value`` read now from ``store`` says, against what this host saw
    before (and remembers it): ``dead`` once seen unchanged for ``timeout_s``; ``alive`` when it
    changed since a look less than ``timeout_s`` ago (a change since a look long ago proves
    only that the job beat at some time since: ``unknown``).

    ``store`` is the store's path or URL (the key of what is remembered); ``value`` is the
    heartbeat exactly as written (JSON), never compared with this host's clock.
    """
    now = time.monotonic()
    record = _remembered(store)
    if record is None:
        remember(store, value, now)
        return "unknown"
    if record.get("value") != value:
        recent = now - float(record.get("checked", record["seen"])) <= timeout_s
        remember(store, value, now)
        return "alive" if recent else "unknown"
    remember(store, value, float(record["seen"]), now)
    return "dead" if now - float(record["seen"]) >= timeout_s else "unknown"


def watch_heartbeat(
    store: str, read: Callable[[], Any], *, patience_s: float = HEARTBEAT_INTERVAL_S + 1.0
) -> Liveness:
    """:func:`heartbeat_liveness`, watching the store for up to ``patience_s`` while the answer
    is ``unknown`` (``read()`` gives the heartbeat as written now): ``alive`` as soon as the
    value changes."""
    deadline = time.monotonic() + patience_s
    liveness = heartbeat_liveness(store, read())
    while liveness == "unknown" and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        liveness = heartbeat_liveness(store, read())
    return liveness
