"""The jobs page of a cluster's dashboard (``featuremap.jobs.dashboard``) in a real browser.

An operator's ``dask scheduler --preload featuremap.jobs.dashboard`` with a ``dask worker``
process on 127.0.0.1 (one: the test shares two cores); two jobs submitted to it; the page at
``/featuremap/jobs`` opened in Chromium (the OS package, driven by Playwright; ``.ci/run``
installs it) lists them with their progress, which moves while the page is open; a screenshot
is kept in the test's folder; the JSON endpoint beside the page equals ``featuremap jobs
--json`` for the same cluster, and ``featuremap jobs`` names the page.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import dask_cluster

from featuremap.apps.jobs import cancel
from featuremap.errors import InputError
from featuremap.jobs.dashboard_page import page_link
from featuremap.jobs.run import DASHBOARD_PRELOAD, run, submit
from featuremap.jobs.state import read_status

#: 384 x 384 output in 8 x 8 blocks, a chunk per feature: 2304 small blocks a job, many seconds
#: on one worker, so the jobs are seen running (they are cancelled once seen).
PIPELINE = """\
name: {name}
input: {{store: {input}}}
output: {{chunks: [1, 8, 8]}}
layers:
  - conv: {{bank: {{type: file, path: w.npy}}, padding: same, activation: relu}}
"""
NAMES = ("texture", "edges")
BLOCKS_Y = 48


def _chromium() -> str:
    """The system's Chromium, or skip (CI installs it: ``.ci/run``)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")


def _pipelines(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    zarr.create_array(
        str(folder / "in.zarr"),
        data=rng.random((1, BLOCKS_Y * 8, BLOCKS_Y * 8), dtype=np.float32),
        chunks=(1, 64, 64),
    )
    np.save(folder / "w.npy", rng.standard_normal((8, 1, 7, 7)).astype(np.float32))
    paths = []
    for name in NAMES:
        path = folder / f"{name}.yaml"
        path.write_text(PIPELINE.format(name=name, input=folder / "in.zarr"))
        paths.append(path)
    return paths


def _get(url: str) -> list[dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.read())


def _cli_jobs(address: str, *flags: str) -> list[dict]:
    result = run_cli("jobs", "--scheduler", address, "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


#: The page's progress column, every row's, as one string.
COUNTS = "() => [...document.querySelectorAll('.count')].map(c => c.textContent).join(' ')"


def _blocks_done(counts: str) -> int:
    """The blocks done of every row, from the page's progress texts ``"12/2304 (0%)"``."""
    return sum(int(count.split("/")[0]) for count in counts.split(" ") if "/" in count)


def _assert_json_equals_cli(page_url: str, address: str, *flags: str) -> None:
    """The endpoint's body, parsed, equals ``featuremap jobs --json FLAGS``: read between two
    reads of the endpoint that agree (the registry changes while jobs wind down)."""
    query = "?all=1" if "--all" in flags else ""
    for _ in range(20):
        before = _get(f"{page_url}.json{query}")
        listed = _cli_jobs(address, *flags)
        if before == _get(f"{page_url}.json{query}"):
            assert listed == before
            return
        time.sleep(0.3)
    raise AssertionError("the jobs never held still for a comparison")


@pytest.mark.cluster
@pytest.mark.slow
def test_jobs_page_lists_jobs_live_in_chromium(tmp_path, record_property):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    pipelines = _pipelines(tmp_path)
    preload = ("--preload", DASHBOARD_PRELOAD)
    with dask_cluster(tmp_path, workers=1, scheduler_args=preload) as (address, _):
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            page_url = page_link(client.dashboard_link)
        stores = [str(tmp_path / f"{path.stem}.zarr") for path in pipelines]
        for priority, (path, store) in enumerate(zip(pipelines, stores, strict=True)):
            submit(str(path), scheduler=address, output=store, priority=priority)
        ids = {job["store"]: job["id"] for job in _get(f"{page_url}.json")}
        assert sorted(ids) == sorted(stores)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 420})
                page.goto(f"{page_url}?all=1")  # finished jobs too: none vanishes
                for store, name in zip(stores, NAMES, strict=True):
                    row = page.locator(f'tr[data-job="{ids[store]}"]')
                    row.wait_for(timeout=10_000)
                    cells = row.locator("td").all_inner_texts()
                    assert cells[0] == ids[store][:12]
                    assert cells[1] == name
                    assert cells[2] in ("running", "queued", "complete")
                    assert cells[8].replace("\n", "") == store
                    assert f"/{BLOCKS_Y**2} (" in cells[3]
                first = page.evaluate(COUNTS)
                page.wait_for_function(  # the table follows the jobs without a reload
                    f"(first) => ({COUNTS})() !== first", arg=first, timeout=30_000
                )
                assert _blocks_done(page.evaluate(COUNTS)) > _blocks_done(first)
                screenshot = tmp_path / "jobs-page.png"
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
        print(f"jobs page screenshot: {screenshot}")
        record_property("screenshot", str(screenshot))
        for store in stores:  # enough seen: free the workers
            if read_status(store)["status"] == "running":
                with suppress(InputError):  # it completed meanwhile
                    cancel(store)
        _assert_json_equals_cli(page_url, address, "--all")
        _assert_json_equals_cli(page_url, address)
        table = run_cli("jobs", "--scheduler", address, "--all")
        assert f"featuremap: jobs page at {page_url}\n" in table.stderr
    assert screenshot.stat().st_size > 10_000


@pytest.mark.cluster
@pytest.mark.slow
def test_featuremaps_own_cluster_serves_the_page(tmp_path):
    """``featuremap run``'s local cluster lists its job on the page while it runs (threads with
    their scheduler: a small job left to itself runs without one, and has no page)."""
    rng = np.random.default_rng(4)
    zarr.create_array(str(tmp_path / "in.zarr"), data=rng.random((1, 32, 32), dtype=np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        PIPELINE.format(name="small", input=tmp_path / "in.zarr").replace("8, 8", "16, 16")
    )
    links: list[str] = []
    seen: list[list[dict]] = []

    def progress(done: int, total: int) -> None:
        if not seen:  # once, while the cluster and the job are up
            seen.append(_get(f"{page_link(links[0])}.json"))
            with urllib.request.urlopen(page_link(links[0]), timeout=10) as page:
                assert b"<title>featuremap jobs</title>" in page.read()

    out = str(tmp_path / "out.zarr")
    run(
        str(pipeline),
        output=out,
        workers=1,
        processes=False,
        on_dashboard=links.append,
        progress=progress,
    )
    assert [(job["store"], job["pipeline"]) for job in seen[0]] == [(out, "small")]


def test_page_link_is_beside_the_dashboard():
    assert page_link("http://127.0.0.1:8787/status") == "http://127.0.0.1:8787/featuremap/jobs"
    assert page_link("https://host:9/prefix/status") == "https://host:9/featuremap/jobs"
