"""Options the commands share, and how they become the library's arguments."""

from __future__ import annotations

import click
import pytest

from featuremap.cli._options import make_security, prepare_job, refuse_together
from featuremap.errors import InputError


def test_refuse_together_names_both_flags():
    refuse_together(overwrite=True, resume=False)
    with pytest.raises(click.UsageError, match="--overwrite and --resume cannot be used together"):
        refuse_together(overwrite=True, resume=True)


def test_security_needs_all_three_tls_files(tmp_path):
    assert make_security(None, None, None, None) is None
    assert make_security("tcp://127.0.0.1:8786", None, None, None) is None
    with pytest.raises(InputError, match="uses TLS: give --tls-ca-file, --tls-cert and --tls-key"):
        make_security("tls://127.0.0.1:8786", None, None, None)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(InputError, match="missing --tls-cert, --tls-key"):
        make_security("tls://127.0.0.1:8786", str(ca), None, None)


def test_prepare_job_applies_the_command_lines_overrides(tmp_path, monkeypatch):
    (tmp_path / "p.yaml").write_text(
        "input: {store: in.zarr}\noutput: {store: out.zarr}\nlayers: [{conv: {bank: {type: box}}}]\n"
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipeline, arguments = prepare_job(
        str(tmp_path / "p.yaml"),
        None,
        input_store=None,
        array="images",
        output_store="new.zarr",
        device="cpu",
        overwrite=True,
        resume=False,
        allow_large=False,
        tls_ca_file=None,
        tls_cert=None,
        tls_key=None,
        region="y=0:8",
    )
    assert pipeline.input.store == str(tmp_path / "in.zarr")  # the file's own folder
    assert pipeline.output.store == str(elsewhere / "new.zarr")  # the command line's cwd
    assert pipeline.input.array == "images"
    assert pipeline.input.region == {"y": (0, 8)}
    assert arguments == {
        "scheduler": None,
        "security": None,
        "device": "cpu",
        "overwrite": True,
        "resume": False,
        "allow_large": False,
        "priority": 0,
    }
