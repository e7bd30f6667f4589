"""A job on a mutual-TLS Dask cluster (certificates made here with ``cryptography``), and the
refusals around it: no certificates, a certificate from another authority, plain TCP to a remote
host (a one-line warning).

The cluster is real ``dask scheduler`` / ``dask worker`` processes; the commands run in this
process (:func:`support.cli.run_cli`), with a 1 s connect timeout where the connection must fail.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.cli import run_cli
from support.procs import ENV, dask_cluster, featuremap

from featuremap.engine.stack import apply_stack
from featuremap.jobs.run import run_layers
from featuremap.pipeline.pipeline import load_pipeline

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _authority(folder: Path) -> dict[str, Path]:
    """A CA and one member certificate (scheduler, workers and client share it) in ``folder``."""
    folder.mkdir()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("featuremap test CA", ca_key, "featuremap test CA", ca_key, ca=True)
    member = _certificate("member", key, "featuremap test CA", ca_key, ca=False)
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(member.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths["key"])
    return paths


def _flags(certs: dict[str, Path]) -> list[str]:
    return [
        "--tls-ca-file",
        str(certs["ca"]),
        "--tls-cert",
        str(certs["cert"]),
        "--tls-key",
        str(certs["key"]),
    ]


def _security(certs: dict[str, Path]):
    from distributed.security import Security

    return Security(
        tls_ca_file=str(certs["ca"]),
        tls_client_cert=str(certs["cert"]),
        tls_client_key=str(certs["key"]),
        require_encryption=True,
    )


def _one_error_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("featuremap: error: "), result.stderr
    return lines[0]


def test_job_on_a_tls_cluster(tmp_path):
    from distributed import Client

    certs, stranger = _authority(tmp_path / "certs"), _authority(tmp_path / "other-ca")
    rng = np.random.default_rng(8)
    data = rng.random((1, 48, 40), dtype=np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(1, 16, 16))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}}}\noutput: {{chunks: [16, 16]}}\n"
        "layers: [{conv: {bank: {type: random, n: 3, size: 5, seed: 2}, padding: same}}]\n"
    )
    expected = apply_stack(load_pipeline(pipeline).build_layers(1), data)
    tls = ["--tls-ca-file", certs["ca"], "--tls-cert", certs["cert"], "--tls-key", certs["key"]]
    with dask_cluster(tmp_path, tls=tls) as (address, _):
        assert address.startswith("tls://")
        with Client(address, security=_security(certs), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)

        out = tmp_path / "out.zarr"
        result = run_cli(
            "run", pipeline, "--output", out, "--scheduler", address, *_flags(certs), "--json"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["blocks_computed"] == 9
        assert "warning" not in result.stderr
        assert "featuremap: dashboard at http" in result.stderr  # the cluster's own dashboard
        np.testing.assert_allclose(
            zarr.open_group(str(out), mode="r")["features"][...], expected, rtol=1e-5, atol=1e-5
        )

        # the Python API takes a distributed Security object
        summary = run_layers(
            load_pipeline(pipeline).build_layers(1),
            input=str(tmp_path / "in.zarr"),
            output=str(tmp_path / "api.zarr"),
            scheduler=address,
            security=_security(certs),
            out_chunks=(16, 16),
        )
        assert summary.status == "complete"
        np.testing.assert_allclose(
            zarr.open_group(str(tmp_path / "api.zarr"), mode="r")["features"][...],
            expected,
            rtol=1e-5,
            atol=1e-5,
        )

        _configured_only(address, certs, pipeline, tmp_path / "submitted.zarr")
        refused = [
            (
                run_cli("run", pipeline, "--output", tmp_path / "a.zarr", "--scheduler", address),
                2,
            ),
            (
                run_cli(
                    "run",
                    pipeline,
                    "--output",
                    tmp_path / "b.zarr",
                    "--scheduler",
                    address.replace("tls://", "tcp://"),
                    connect_timeout="1s",
                ),
                1,
            ),
            (
                run_cli(
                    "run",
                    pipeline,
                    "--output",
                    tmp_path / "c.zarr",
                    "--scheduler",
                    address,
                    *_flags(stranger),
                    connect_timeout="1s",
                ),
                1,
            ),
        ]
    messages = [_one_error_line(result, code) for result, code in refused]
    assert "--tls-ca-file" in messages[0]
    assert all("cannot connect to the scheduler" in message for message in messages[1:])
    assert not any((tmp_path / name).exists() for name in ("a.zarr", "b.zarr", "c.zarr"))


def _configured_only(address: str, certs: dict[str, Path], pipeline: Path, out: Path) -> None:
    """``submit``, ``jobs`` and ``cancel`` over tls:// with Dask's configuration alone, no
    flags: ``submit`` in a new process from its environment variables; ``jobs`` and ``cancel``
    in this one (a process costs seconds) from the configuration those variables set."""
    import dask.config

    env = {
        **ENV,
        "DASK_SCHEDULER_ADDRESS": address,
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs["ca"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs["cert"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs["key"]),
    }
    submitted = featuremap("submit", pipeline, "--output", out, "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)["id"]
    configuration = {
        "scheduler-address": address,
        "distributed.comm.tls.ca-file": str(certs["ca"]),
        "distributed.comm.tls.client.cert": str(certs["cert"]),
        "distributed.comm.tls.client.key": str(certs["key"]),
    }
    with dask.config.set(configuration):
        listed = run_cli("jobs", "--all", "--json")
        assert listed.returncode == 0, listed.stderr
        # the jobs run before through the same scheduler are listed too, ended
        assert job in [record["id"][:12] for record in json.loads(listed.stdout)]
        cancelled = run_cli("cancel", job)  # found through the registry, over TLS
    assert cancelled.returncode == 0 or "is not running" in cancelled.stderr, cancelled.stderr


def test_plain_tcp_to_another_host_warns_in_one_line(tmp_path):
    pipeline = tmp_path / "p.yaml"
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.ones((8, 8), dtype=np.float32))
    pipeline.write_text("layers: [{conv: {bank: {type: box}}}]\n")
    address = "tcp://192.0.2.1:8786"  # TEST-NET-1 (RFC 5737): never routed
    result = run_cli(
        "run",
        pipeline,
        "--input",
        tmp_path / "in.zarr",
        "--output",
        tmp_path / "out.zarr",
        "--scheduler",
        address,
        connect_timeout="1s",
    )
    assert result.returncode == 1, result.stderr
    warning, error = result.stderr.splitlines()
    assert warning.startswith(
        "featuremap: warning: the connection to tcp://192.0.2.1:8786 is unauthenticated"
    )
    assert error.startswith("featuremap: error: cannot connect to the scheduler")
    assert not (tmp_path / "out.zarr").exists()
