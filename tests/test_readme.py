"""Every command in README.md runs as written: its ``bash`` and ``console`` blocks' commands as
real shell processes and its ``python`` blocks as real interpreters, in order, in a fresh folder
holding a copy of ``pipelines/`` and the three inputs the README names but does not make
(``cells.ome.zarr``, ``s2-scene.zarr``, ``batch.zarr``, built as the README describes them).

Only the installation and the test suite itself are not run (:data:`NOT_RUN`, with the reason).

A plain ``featuremap ...`` line (no shell syntax: :func:`_in_process_argv`) after the first runs in
this process, through the console script's own ``main(argv)`` with the words the shell would pass
it (``shlex``), in the same folder and environment (:func:`support.cli.run_cli`): the same command,
without the second of interpreter start-up each. The first runs as a real shell process, so the
``featuremap`` console script itself is still run as the README writes it; every other line (shell
syntax, any other program) and every ``python`` block runs as a real process.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import REPO
from support.cli import run_cli
from support.procs import ENV
from support.stores import write_ome_image

#: Commands not run, by prefix: they change the environment the tests run in, or are the tests.
NOT_RUN = {
    "pip install": "installs into the running environment",
    "python -m pytest": "is the test suite itself",
}
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Command:
    """One README command: ``kind`` is ``shell`` or ``python``; ``line`` is where it starts."""

    kind: str
    text: str
    line: int


#: Characters that make a line more than a program and its words for the shell: operators,
#: redirections, expansions, globs, escapes, comments.
_SHELL_SYNTAX = set("|&;<>()$`\\*?[]{}~!#")


def _in_process_argv(command: Command) -> list[str] | None:
    """The arguments after ``featuremap`` of a shell command that is only ``featuremap`` and its
    words, as the shell would pass them; ``None`` for anything else (run as a real shell)."""
    if command.kind != "shell" or _SHELL_SYNTAX & set(command.text):
        return None
    words = shlex.split(command.text)
    return words[1:] if words[0] == "featuremap" else None


def _shell_commands(language: str, body: str) -> list[str]:
    """A ``bash`` block's lines, or a ``console`` block's ``$`` lines (``\\`` continued)."""
    commands: list[str] = []
    continued = False
    for raw in body.splitlines():
        line = raw.strip()
        if continued:
            commands[-1] += " " + line.rstrip("\\").strip()
        elif language == "bash" and line and not line.startswith("#"):
            commands.append(line.rstrip("\\").strip())
        elif language == "console" and line.startswith("$ "):
            commands.append(line[2:].rstrip("\\").strip())
        else:
            continue
        continued = line.endswith("\\")
    return commands


def _python_code(body: str) -> str:
    """A ``python`` block as code: a doctest-style block's ``>>>`` / ``...`` lines, else all."""
    lines = body.splitlines()
    if not any(line.startswith(">>> ") for line in lines):
        return body
    return "\n".join(line[4:] for line in lines if line.startswith((">>> ", "... ")))


def readme_commands(text: str) -> list[Command]:
    """The commands of README ``text`` in order (:data:`NOT_RUN` left out)."""
    commands = []
    for block in _FENCE.finditer(text):
        language, body = block.group(1), block.group(2)
        line = text.count("\n", 0, block.start()) + 1
        if language in ("bash", "console"):
            commands += [
                Command("shell", command, line)
                for command in _shell_commands(language, body)
                if not command.startswith(tuple(NOT_RUN))
            ]
        elif language == "python":
            commands.append(Command("python", _python_code(body), line))
    return commands


def test_readme_commands_are_found():
    """The extraction sees what a reader sees: continued lines joined, outputs left out."""
    commands = readme_commands((REPO / "README.md").read_text())
    shell = [command.text for command in commands if command.kind == "shell"]
    assert shell[0] == "featuremap demo --output demo-output"
    assert (
        "featuremap run pipelines/gabor-texture.yaml --input cells.ome.zarr --level 0 "
        "--region z=10:20 --output cells-gabor.zarr" in shell
    )
    assert not any(text.startswith(("pip", "python -m pytest", "featuremap:")) for text in shell)
    assert sum(command.kind == "python" for command in commands) >= 5


def test_only_plain_featuremap_lines_run_in_process():
    """A line with shell syntax, or of another program, is left to a real shell."""
    assert _in_process_argv(Command("shell", "featuremap run 'a b.yaml' --region z=1:2", 1)) == [
        "run",
        "a b.yaml",
        "--region",
        "z=1:2",
    ]
    for text in ("featuremap run p.yaml | tee log", "featuremap run $P", "ls *.zarr", "cd out"):
        assert _in_process_argv(Command("shell", text, 1)) is None, text
    assert _in_process_argv(Command("python", "featuremap", 1)) is None


# --- the inputs the README names ------------------------------------------------------------


def _cells(path: Path) -> None:
    """NGFF 0.5 ``(c, z, y, x)``: one channel, 24 planes of 1 µm, 0.25 µm pixels."""
    data = np.random.default_rng(1).random((1, 24, 64, 64), dtype=np.float32)
    write_ome_image(
        path, data, "czyx", {"z": 1.0, "y": 0.25, "x": 0.25}, dict.fromkeys("zyx", "micrometer")
    )


def _scene(path: Path) -> None:
    """``reflectance`` ``(time, band, y, x)`` in UTM 33N, 10 m pixels, as rioxarray writes it
    (coordinates without units, the CRS in ``spatial_ref``)."""
    import pandas as pd
    import rioxarray  # noqa: F401 -- the .rio accessor
    import xarray as xr

    scene = xr.DataArray(
        np.random.default_rng(2).random((2, 3, 96, 96), dtype=np.float32),
        dims=("time", "band", "y", "x"),
        coords={
            "time": pd.date_range("2024-06-01", periods=2, freq="5D"),
            "band": ["B04", "B03", "B08"],
            "y": 5_000_005.0 - 10.0 * np.arange(96),
            "x": 500_005.0 + 10.0 * np.arange(96),
        },
        name="reflectance",
    ).rio.write_crs("EPSG:32633")
    scene.to_dataset().to_zarr(path, mode="w", consolidated=False)


def _batch(path: Path) -> None:
    """``(6, 384, 128, 3)`` uint8 with ``dimension_names`` ``[n, y, x, c]``."""
    data = np.random.default_rng(3).integers(0, 255, (6, 384, 128, 3), dtype=np.uint8)
    zarr.create_array(
        str(path), data=data, chunks=(1, 128, 128, 3), dimension_names=["n", "y", "x", "c"]
    )


@pytest.mark.slow
@pytest.mark.cluster
def test_every_readme_command_runs(tmp_path):
    pytest.importorskip("rasterio")
    pytest.importorskip("sklearn")
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    _cells(tmp_path / "cells.ome.zarr")
    _scene(tmp_path / "s2-scene.zarr")
    _batch(tmp_path / "batch.zarr")
    bin_dir = str(Path(sys.executable).parent)  # the environment's `featuremap` command
    env = {**ENV, "PATH": bin_dir + os.pathsep + ENV.get("PATH", "")}
    console_script_ran = False
    for command in readme_commands((REPO / "README.md").read_text()):
        words = _in_process_argv(command)
        if words is not None and console_script_ran:
            done = run_cli(*words, cwd=tmp_path, env=env)
        else:
            argv = (
                ["bash", "-c", command.text]
                if command.kind == "shell"
                else [sys.executable, "-c", command.text]
            )
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540
            )
            console_script_ran |= words is not None
        assert done.returncode == 0, (
            f"README.md line {command.line}: {command.text[:200]!r} exited {done.returncode}\n"
            f"{done.stderr[-3000:]}"
        )
