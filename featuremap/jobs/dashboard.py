"""The jobs page of a cluster's dashboard (DESIGN section 9): ``/featuremap/jobs``.

The scheduler's registry (:mod:`featuremap.jobs.registry`) as a table with progress bars that
updates itself every second, and beside it ``/featuremap/jobs.json`` (``?all=1``: finished jobs
too), whose body is what ``featuremap jobs --json`` (``--all``) prints for the same cluster: both
come from :func:`featuremap.jobs.registry.job_documents`.

The pages run inside the scheduler, which keeps the registry, so they are served by whoever
starts it with this module:

- ``dask scheduler --preload featuremap.jobs.dashboard`` (or Dask's configuration
  ``distributed.scheduler.preload``): :func:`dask_setup` adds the two routes;
- or Dask's ``distributed.scheduler.http.routes`` naming this module (its :data:`routes`), which
  also honours ``--dashboard-prefix``;
- the local cluster of ``featuremap run`` preloads it itself.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from typing import Any

from distributed.http.utils import RequestHandler

from featuremap.jobs.dashboard_page import JSON_PATH, PAGE, PAGE_PATH, SERVED, page_link
from featuremap.jobs.registry import REGISTRY, current, job_documents, records_of

__all__ = [
    "JSON_PATH",
    "PAGE_PATH",
    "SERVED",
    "JobsJson",
    "JobsPage",
    "dask_setup",
    "jobs_json",
    "page_link",
    "routes",
]


def jobs_json(entries: Any, *, finished: bool = False) -> str:
    """The JSON body of ``/featuremap/jobs.json``: the jobs among the registry's metadata
    ``entries``, reconciled with their stores, as ``featuremap jobs --json`` prints them."""
    documents = job_documents(current(records_of(entries), finished=finished))
    return json.dumps(documents, indent=2, default=str)


def _no_cache(handler: RequestHandler, content_type: str) -> None:
    handler.set_header("Content-Type", content_type)
    handler.set_header("Cache-Control", "no-store")


class JobsPage(RequestHandler):  # type: ignore[misc]  # distributed is untyped
    """``GET /featuremap/jobs``: the page; its script reads ``jobs.json`` every second."""

    def get(self) -> None:
        _no_cache(self, "text/html; charset=utf-8")
        self.write(PAGE)


class JobsJson(RequestHandler):  # type: ignore[misc]
    """``GET /featuremap/jobs.json[?all=1]``: the jobs as ``featuremap jobs --json [--all]``."""

    async def get(self) -> None:
        finished = self.get_argument("all", "") not in ("", "0", "false", "no")
        # a copy taken on the event loop, which alone changes the metadata; the stores are
        # then read in a thread, so a slow file system never stalls the scheduler
        entries = copy.deepcopy(self.server.get_metadata(list(REGISTRY), default={}))
        body = await asyncio.to_thread(jobs_json, entries, finished=finished)
        _no_cache(self, "application/json")
        self.write(body)


#: The routes, for Dask's ``distributed.scheduler.http.routes`` (which passes ``dask_server``).
routes: list[tuple[str, type, dict[str, Any]]] = [
    (re.escape(PAGE_PATH), JobsPage, {}),
    (re.escape(JSON_PATH), JobsJson, {}),
]


def dask_setup(scheduler: Any) -> None:
    """Serve the jobs page from ``scheduler``'s dashboard (``dask scheduler --preload
    featuremap.jobs.dashboard``), and note in its metadata that it does."""
    scheduler.http_application.add_handlers(
        r".*$",
        [(f"/{path}", handler, {"dask_server": scheduler}) for path, handler, _ in routes],
    )
    scheduler.set_metadata(keys=list(SERVED), value={"jobs": f"/{PAGE_PATH}"})
