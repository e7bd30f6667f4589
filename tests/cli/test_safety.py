"""The hostile-world guarantees of the command line (README "Safety"), each on the case that once
broke it, with real processes and real files.

* nothing featuremap did not make is deleted or replaced (``demo``, ``--overwrite``);
* damaged bookkeeping is one line naming the file and the fix, and ``--overwrite`` recovers any
  store featuremap can prove it made;
* ``--resume`` refuses an input whose content changed since the job started;
* absurd geometry is refused before anything is created, fast and in little memory;
* bad paths and URLs (symlink loops, dangling links, ``file://``, ``memory://``, ``s3://``
  without its filesystem or credentials), ``preview`` targets and damaged chunks: one line;
* a full disk: one line and where the full log is; the store is left ``interrupted``, never torn;
* user strings are escaped before they reach a terminal; counts are pluralised.

Hostile pipelines, banks and weight files (alias bombs, huge kernels, forged headers) are in
``jobs/test_limits.py``; fencing with stopped processes in ``jobs/test_fencing.py``; SIGTERM in
``cli/test_signals.py``.

Commands run in process (:func:`support.cli.run_cli`) unless the case needs a process of its own:
an address-space limit, a mount or network namespace, an environment that the S3 libraries read.
Such a process runs all the commands of its test (or module) in turn
(:mod:`support.limited`: the interpreter's start-up paid once, a hang still a failure).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import Result, run_cli
from support.limited import LimitedRunner, limited_runner
from support.procs import ENV, free_port, tree_digest
from support.stores import marker_chunk, random_input, unmark

from featuremap.io import OutputStore
from featuremap.jobs import state

#: Most tests use the `world` fixture, a store made by a run on a local cluster; those that run
#: jobs or processes of their own are also ``slow``.
pytestmark = pytest.mark.cluster

#: Dask's connect timeout where nothing listens: Dask retries a refused connection until then, and
#: the refusal, not the retrying, is what the test is about.
REFUSED_TIMEOUT = "0.2s"


PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"


def _one_error_line(result: Result | subprocess.CompletedProcess, code: int = 2) -> str:
    """The single ``featuremap: error:`` line of a refused command (no traceback, exit ``code``)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("featuremap: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in errors[0]
    return errors[0]


def _refused(*args: object, cwd: Path, runner: LimitedRunner | None = None) -> str:
    """Run a command that must be refused (exit 2, one line, nothing on stdout): in this
    process, or in ``runner``, a process of its own."""
    result = run_cli(*args, cwd=cwd) if runner is None else runner.run(*args, cwd=cwd)
    line = _one_error_line(result)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
    return line


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """An input (64 x 64 in 32 x 32 chunks), a pipeline and its complete store ``done.zarr``."""
    root = tmp_path_factory.mktemp("safety")
    random_input(root / "in.zarr", (64, 64), (32, 32), seed=12)
    (root / "p.yaml").write_text(PIPELINE)
    done = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", "done.zarr", "--workers", "1", cwd=root
    )
    assert done.returncode == 0, done.stderr
    return root


def _copy(world: Path, tmp_path: Path, name: str = "copy.zarr") -> Path:
    store = tmp_path / name
    shutil.copytree(world / "done.zarr", store)
    return store


# -- nothing featuremap did not make is touched --------------------------------------------------


@pytest.mark.parametrize(
    "foreign", [("images.zarr",), ("features.zarr",), ("images.zarr", "features.zarr")]
)
def test_demo_never_deletes_what_it_did_not_make(tmp_path, foreign):
    folder = tmp_path / "D"
    for name in foreign:
        (folder / name).mkdir(parents=True)
        (folder / name / "precious.txt").write_text("a user's data")
    before = tree_digest(folder)
    line = _refused("demo", "--output", folder, "--size", "64", "--images", "1", cwd=tmp_path)
    assert "never replaced" in line
    assert tree_digest(folder) == before


def test_overwrite_never_replaces_a_foreign_zarr_store(world, tmp_path):
    foreign = tmp_path / "theirs.zarr"
    group = zarr.open_group(str(foreign), mode="w")
    group.attrs["author"] = "another tool"
    group.create_array("data", data=np.arange(6.0).reshape(2, 3))
    before = tree_digest(foreign)
    line = _refused(
        "run", "p.yaml", "--input", "in.zarr", "--output", foreign, "--overwrite", cwd=world
    )
    assert "is not a featuremap store; it is never replaced" in line
    assert tree_digest(foreign) == before


# -- broken bookkeeping ---------------------------------------------------------------------------


def _tear(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _root_attribute_not_a_record(store: Path) -> None:
    document = json.loads((store / "zarr.json").read_text())
    document["attributes"]["featuremap"] = "x"
    (store / "zarr.json").write_text(json.dumps(document))


DAMAGE = {
    "features/zarr.json torn": (
        lambda s: _tear(s / "features" / "zarr.json"),
        "features/zarr.json",
    ),
    "_job/zarr.json torn": (lambda s: _tear(s / "_job" / "zarr.json"), "_job/zarr.json"),
    "_job/done/zarr.json torn": (
        lambda s: _tear(s / "_job" / "done" / "zarr.json"),
        "_job/done/zarr.json",
    ),
    "root zarr.json torn": (lambda s: _tear(s / "zarr.json"), "zarr.json"),
    "root attribute not a record": (_root_attribute_not_a_record, "'featuremap'"),
    "_job deleted": (lambda s: shutil.rmtree(s / "_job"), "_job/"),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_broken_bookkeeping_is_one_line_and_overwrite_recovers(world, tmp_path, damage):
    store = _copy(world, tmp_path)
    harm, named = DAMAGE[damage]
    harm(store)
    before = tree_digest(store)
    for command in (["status", store], ["verify", store], ["inspect", store]):
        line = _refused(*command, cwd=world)
        assert named in line, line
        assert "--overwrite" in line, line
    resume = ["run", "p.yaml", "--input", "in.zarr", "--output", store, "--resume"]
    assert named in _refused(*resume, cwd=world)
    assert tree_digest(store) == before  # refusing changed nothing

    recovered = run_cli(*resume[:-1], "--overwrite", "--workers", "1", "--json", cwd=world)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout)["status"] == "complete"
    assert run_cli("verify", store).returncode == 0


def test_unreadable_marker_is_reported_not_counted(world, tmp_path):
    store = _copy(world, tmp_path)
    marker_chunk(store).write_bytes(b"\x00not a chunk")
    status = run_cli("status", store)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "complete, 0 of 4 blocks done" in lines[0]
    assert "no readable done-marker for 4 blocks" in lines[1]
    assert "featuremap verify" in lines[1]
    verify = run_cli("verify", store)
    assert verify.returncode == 1
    assert "unreadable done-markers" in verify.stdout


# -- a changed input is never mixed into a resumed result -----------------------------------------


def _interrupt(store: Path, blocks: list[tuple[int, int]]) -> None:
    """Leave a complete store as a killed job would: blocks unmarked, status interrupted."""
    unmark(store, blocks)
    state.finish_job(
        OutputStore.open(str(store), "r+"), "interrupted", blocks_done=4 - len(blocks), owner=None
    )


@pytest.mark.slow
def test_resume_refuses_an_input_changed_in_place(world, tmp_path):
    source = tmp_path / "in.zarr"
    shutil.copytree(world / "in.zarr", source)
    store = tmp_path / "out.zarr"
    run = ["run", world / "p.yaml", "--input", source, "--output", store, "--workers", "1"]
    assert run_cli(*run, cwd=world).returncode == 0
    _interrupt(store, [(0, 1)])
    # same metadata, same chunk sizes, other pixels: only the content identity tells
    time.sleep(0.01)
    array = zarr.open_array(str(source), mode="r+")
    array[:32, :32] = 1.0 - array[:32, :32]
    before = tree_digest(store)
    line = _refused(*run, "--resume", cwd=world)
    assert "input changed since the job started" in line
    assert tree_digest(store) == before


@pytest.mark.slow
def test_resume_with_the_same_input_finishes_the_job(world, tmp_path):
    store = _copy(world, tmp_path)
    _interrupt(store, [(1, 1)])
    resumed = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", store, "--resume", "--workers", "1",
        "--json", cwd=world,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["blocks_computed"], summary["blocks_skipped"]) == (1, 3)
    original = zarr.open_group(str(world / "done.zarr"), mode="r")["features"][...]
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["features"][...], original)


# -- absurd geometry --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[LimitedRunner]:
    """A process under :data:`support.limited.MEMORY_LIMIT` (1.5 GiB of address space) that runs
    the module's memory-bounded commands in turn."""
    with limited_runner() as runner:
        yield runner


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ("[{conv: {bank: {type: box}, padding: 1000000}}]", "--allow-large"),
        (
            (
                "[{conv: {bank: {type: box}, stride: 1099511627776}},"
                " {conv: {bank: {type: box, size: 1}, stride: 1099511627776}}]"
            ),
            "2**53",
        ),
        (
            "[{pool: {type: max, kernel_size: 2, padding: 1}}, {conv: {bank: {type: box}, padding: 400000}}]",
            "--allow-large",
        ),
    ],
    ids=["padding 10^6 (16 TB)", "strides 2^40 twice", "padding after a pool"],
)
def test_absurd_geometry_is_refused_fast_and_writes_nothing(
    limited, world, tmp_path, layers, expected
):
    store = _copy(world, tmp_path)
    (tmp_path / "absurd.yaml").write_text(f"layers: {layers}\n")
    before = tree_digest(store)
    result = limited.run(
        "run", tmp_path / "absurd.yaml", "--input", world / "in.zarr", "--output", store,
        "--overwrite", cwd=world, timeout=120,
    )  # fmt: skip
    assert result.seconds < 30
    assert expected in _one_error_line(result)
    assert tree_digest(store) == before  # the complete store it would have replaced is intact


@pytest.mark.slow
def test_allow_large_lets_a_large_output_through_the_soft_limit(world, tmp_path):
    (tmp_path / "large.yaml").write_text(
        "layers: [{conv: {bank: {type: box}, padding: 300000}}]\noutput: {chunks: [4096, 4096]}\n"
    )
    command = ["explain", tmp_path / "large.yaml", "--input", world / "in.zarr"]
    plain = [
        "run",
        tmp_path / "large.yaml",
        "--input",
        world / "in.zarr",
        "--output",
        tmp_path / "l.zarr",
    ]
    assert "--allow-large" in _refused(*plain, cwd=world)
    assert not (tmp_path / "l.zarr").exists()
    # --allow-large passes the 1 TiB check: the plan is then refused only by what follows it
    allowed = run_cli(
        *plain,
        "--allow-large",
        "--scheduler",
        f"tcp://127.0.0.1:{free_port()}",
        cwd=world,
        connect_timeout=REFUSED_TIMEOUT,
    )
    assert "--allow-large" not in allowed.stderr
    assert allowed.returncode == 1  # it went as far as connecting to the (absent) scheduler
    assert run_cli(*command, cwd=world).returncode == 0  # explain sizes nothing


# -- paths and URLs ---------------------------------------------------------------------------------


@pytest.fixture
def links(tmp_path) -> Path:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling.zarr").symlink_to(tmp_path / "nowhere" / "x.zarr")
    return tmp_path


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["run", "p.yaml", "--input", "LINKS/loop", "--output", "LINKS/o.zarr"],
            "symbolic link loop",
        ),
        (["run", "p.yaml", "--input", "in.zarr", "--output", "LINKS/loop"], "loop"),
        (["status", "LINKS/loop"], "symbolic link loop"),
        (["verify", "LINKS/loop"], "symbolic link loop"),
        (
            ["run", "p.yaml", "--input", "in.zarr", "--output", "LINKS/dangling.zarr"],
            "does not exist",
        ),
        (["run", "p.yaml", "--input", "in.zarr", "--output", "memory://x"], "in-memory store"),
    ],
    ids=[
        "input loop",
        "output loop",
        "status loop",
        "verify loop",
        "dangling output",
        "memory output",
    ],
)
def test_bad_paths_are_one_line(world, links, arguments, expected):
    before = tree_digest(links)
    arguments = [str(a).replace("LINKS", str(links)) for a in arguments]
    line = _refused(*arguments, cwd=world)
    assert expected in line
    assert tree_digest(links) == before
    assert not (links / "nowhere").exists()  # no stray folders for a dangling link


@pytest.mark.slow
def test_file_url_output_works_like_a_path(world, tmp_path):
    store = tmp_path / "url.zarr"
    result = run_cli(
        "run", "p.yaml", "--input", f"file://{world / 'in.zarr'}", "--output", f"file://{store}",
        "--workers", "1", cwd=world,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = zarr.open_group(str(world / "done.zarr"), mode="r")["features"][...]
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["features"][...], expected)


@pytest.mark.slow
def test_s3_without_its_filesystem_names_the_extra(world, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "s3fs.py").write_text("raise ImportError('No module named s3fs')\n")
    env = {**ENV, "PYTHONPATH": f"{shim}{os.pathsep}{ENV['PYTHONPATH']}"}
    with limited_runner(env=env) as runner:  # one process for both: s3fs cannot be imported
        for store in ("--input", "--output"):
            arguments = {"--input": "in.zarr", "--output": "o.zarr", store: "s3://bucket/x.zarr"}
            pairs = [x for pair in arguments.items() for x in pair]
            line = _refused("run", "p.yaml", *pairs, cwd=world, runner=runner)
            assert "featuremap[s3]" in line


@pytest.mark.slow
def test_s3_without_credentials_says_so(world, tmp_path):
    pytest.importorskip("s3fs")
    env = {key: value for key, value in ENV.items() if not key.startswith("AWS_")} | {
        # nothing may leave this machine: no instance metadata, an endpoint on loopback
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    with limited_runner(env=env) as runner:  # one process for both, with no credentials at all
        for arguments in (
            ["--input", "s3://bucket/x.zarr", "--output", "o.zarr"],
            ["--input", "in.zarr", "--output", "s3://bucket/o.zarr"],
        ):
            line = _refused("run", "p.yaml", *arguments, cwd=world, runner=runner)
            assert "AWS_ACCESS_KEY_ID" in line


# -- preview ----------------------------------------------------------------------------------------


def test_preview_targets_and_damaged_chunks_are_one_line(world, tmp_path):
    (tmp_path / "folder").mkdir()
    assert "is a folder" in _refused(
        "preview", world / "done.zarr", "-o", tmp_path / "folder", cwd=world
    )
    store = _copy(world, tmp_path)
    chunk = next((store / "features" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 1
    chunk.write_bytes(bytes(raw))
    line = _refused("preview", store, "-o", tmp_path / "p.png", cwd=world)
    assert "damaged chunk" in line
    assert "featuremap verify" in line
    assert len(line) < 400


def _mount_namespaces() -> bool:
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def mounts(tmp_path_factory) -> Iterator[tuple[LimitedRunner, Path, Path]]:
    """``(runner, read_only, disk)``: a process in a mount namespace of its own, where the folder
    ``read_only`` is mounted read-only and ``disk`` is a 1 MB tmpfs (elsewhere both are plain
    folders: what a command wrote there through the mount would show)."""
    if not _mount_namespaces():
        pytest.skip("no mount namespace (unshare --mount)")
    root = tmp_path_factory.mktemp("mounts")
    read_only, disk = root / "ro", root / "disk"
    read_only.mkdir()
    disk.mkdir()
    ro, tmpfs = shlex.quote(str(read_only)), shlex.quote(str(disk))
    script = (
        f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && "
        f'mount -t tmpfs -o size=1m tmpfs {tmpfs} && exec "$@"'
    )
    # no address-space limit: a run on a local cluster (its workers threads of this process) is
    # the point of the full-disk case, not a bomb
    prefix = ["unshare", "--mount", "sh", "-c", script, "sh"]
    with limited_runner(resource.RLIM_INFINITY, prefix) as runner:
        yield runner, read_only, disk


@pytest.mark.slow
def test_preview_to_a_read_only_filesystem(mounts, world):
    runner, target, _ = mounts
    line = _one_error_line(
        runner.run("preview", world / "done.zarr", "-o", target / "p.png", cwd=world)
    )
    assert "cannot write preview" in line
    assert "Read-only file system" in line
    assert list(target.iterdir()) == []


# -- a full disk ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_disk_is_one_line_with_the_log_and_the_store_is_not_torn(mounts, world, tmp_path):
    runner, _, disk = mounts  # the only test that fills `disk`
    logs = tmp_path / "logs"
    random_input(tmp_path / "big.zarr", (512, 512), (64, 64), seed=2)
    (tmp_path / "g.yaml").write_text(
        "layers: [{conv: {bank: {type: gabor, orientations: 4}}}]\noutput: {chunks: [32, 32]}\n"
    )
    store = disk / "out.zarr"
    env = {**ENV, "FEATUREMAP_LOG_DIR": str(logs)}
    result = runner.run(
        "run", tmp_path / "g.yaml", "--input", tmp_path / "big.zarr", "--output", store,
        "--workers", "2", cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    status_json = runner.run("status", store, "--json", cwd=tmp_path, env=env).stdout
    verify_json = runner.run("verify", store, "--json", cwd=tmp_path, env=env).stdout
    line = _one_error_line(result, code=1)
    assert "No space left on device" in line
    log = line.rsplit("(full log: ", 1)[1].rstrip(")")
    assert Path(log).parent == logs
    assert "Traceback" in Path(log).read_text()
    assert "Compute Failed" not in result.stderr  # no worker tracebacks on the terminal
    status = json.loads(status_json)
    # resumable once there is room: "failed" with the error when its status still fit on the
    # disk (one-feature chunks leave a few bytes), else "interrupted" (its owner is gone)
    assert status["status"] in ("failed", "interrupted")
    if status["status"] == "failed":
        assert "No space left on device" in json.dumps(status)
    report = json.loads(verify_json)
    assert report["documents"] == {}  # not one metadata document torn


# -- what reaches the terminal ----------------------------------------------------------------------


def _run_pipeline(world: Path, folder: Path, text: str) -> tuple[Path, str]:
    """Run a pipeline of ``text`` on the world's input into ``folder``: its store and stdout."""
    (folder / "p.yaml").write_text(text)
    store = folder / "out.zarr"
    ran = run_cli(
        "run", folder / "p.yaml", "--input", "in.zarr", "--output", store, "--workers", "1",
        cwd=world,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert not re.search(
        r"(?<![\d.])1 blocks", ran.stdout + ran.stderr
    )  # "1 block", not "7.1 blocks/s"
    return store, ran.stdout


@pytest.mark.slow
def test_user_strings_are_escaped_before_the_terminal(world, tmp_path):
    store, _ = _run_pipeline(world, tmp_path, 'name: "evil\\e]0;pwned\\a\\e[31mred"\n' + PIPELINE)
    for command in (["status", store], ["inspect", store], ["verify", store]):
        shown = run_cli(*command, cwd=world)
        assert shown.returncode == 0, shown.stderr
        output = shown.stdout + shown.stderr
        assert "\x1b" not in output, command
        assert "\x07" not in output, command
    assert "\\x1b" in run_cli("status", store, cwd=world).stdout  # shown, but inert


@pytest.mark.slow
def test_counts_are_pluralised(world, tmp_path):
    store, stdout = _run_pipeline(world, tmp_path, "layers: [{conv: {bank: {type: box}}}]\n")
    assert "1 block " in stdout
    status = run_cli("status", store, cwd=world).stdout
    assert "1 of 1 block done" in status


# -- plain text to another host -------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_hosts() -> Iterator[LimitedRunner]:
    """A process in a network namespace of its own whose loopback device also holds 10.77.0.1,
    "another host" that refuses every connection (nothing leaves this machine)."""
    if not _network_namespaces():
        pytest.skip("no network namespace (unshare --net, ip)")
    script = 'ip link set lo up && ip addr add 10.77.0.1/32 dev lo && exec "$@"'
    with limited_runner(prefix=["unshare", "--net", "sh", "-c", script, "sh"]) as runner:
        yield runner


def _network_namespaces() -> bool:
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return probe.returncode == 0 and shutil.which("ip") is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheme", "warns"), [("tcp://", True), ("ws://", True), ("", True), ("tcp://127.1", False)]
)
def test_plaintext_scheduler_on_another_host_warns(other_hosts, world, scheme, warns):
    """Another host stood in by an address on the loopback device of a network namespace this
    module makes: nothing listens there, so the run fails to connect (exit 1) -- after the warning
    for every plain-text scheme, and none for an address in 127.0.0.0/8."""
    address = f"{scheme}10.77.0.1:8786" if scheme != "tcp://127.1" else "tcp://127.1:9"
    result = other_hosts.run(
        "run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--scheduler", address,
        cwd=world, connect_timeout=REFUSED_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert ("unauthenticated and unencrypted" in result.stderr) == warns, result.stderr
    assert "cannot connect to the scheduler" in result.stderr
    assert not (world / "out.zarr").exists()
