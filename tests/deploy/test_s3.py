"""Object storage as documented in deploy/README.md: Zarr stores at s3:// URLs (issue 7).

A real S3-compatible HTTP server (moto's server mode) listens on 127.0.0.1; stores are written
and read through s3fs, configured the two documented ways: explicit ``storage_options`` and the
``AWS_*`` environment variables every featuremap process (client and workers) inherits. The last
test runs a featuremap pipeline from s3:// to s3://.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support import REPO

BUCKET = "featuremap-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

pytest.importorskip("s3fs", reason="pip install s3fs")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on a free local port, with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_environment(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS_* variables deploy/README.md documents, set for this process and its children."""
    environment = dict(CREDENTIALS, AWS_ENDPOINT_URL=s3_endpoint)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()  # s3fs caches clients per configuration
    return environment


def storage_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def test_zarr_round_trip_with_storage_options(s3_endpoint: str) -> None:
    import zarr

    rng = np.random.default_rng(3)
    data = rng.standard_normal((3, 50, 70)).astype(np.float32)
    url = f"s3://{BUCKET}/options/images.zarr"
    group = zarr.open_group(
        url, mode="w", zarr_format=3, storage_options=storage_options(s3_endpoint)
    )
    written = group.create_array(
        "images",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(1, 32, 32),
        dimension_names=("c", "y", "x"),
    )
    written[...] = data
    group.attrs["origin"] = "test_deploy_s3"

    reopened = zarr.open_group(url, mode="r", storage_options=storage_options(s3_endpoint))
    np.testing.assert_array_equal(reopened["images"][...], data)
    assert reopened.attrs["origin"] == "test_deploy_s3"
    assert reopened["images"].metadata.dimension_names == ("c", "y", "x")


def test_zarr_sees_s3_through_environment(s3_environment: dict[str, str]) -> None:
    """No storage_options at all: what a worker without featuremap-specific setup does."""
    import s3fs
    import zarr

    data = np.arange(24 * 24, dtype=np.uint16).reshape(24, 24)
    url = f"s3://{BUCKET}/environment/plain.zarr"
    zarr.create_array(url, shape=data.shape, dtype=data.dtype, chunks=(8, 8), overwrite=True)[
        ...
    ] = data
    np.testing.assert_array_equal(zarr.open_array(url, mode="r")[...], data)
    # The chunks are objects in the bucket, not files on this machine.
    listing = s3fs.S3FileSystem().find(f"{BUCKET}/environment/plain.zarr")
    assert sum("/c/" in key for key in listing) == 9


def test_zarr_v2_output_keeps_its_consolidated_root_in_step(
    s3_environment: dict[str, str],
) -> None:
    """An ``ngff-0.4`` store on S3: the status written after consolidating reaches the copy of
    the root attributes in ``.zmetadata``, which xarray reads."""
    from dataclasses import replace

    import s3fs
    from support.stores import small_layout

    from featuremap.io import consolidate, create_output
    from featuremap.io.formats import StoreFormat

    url = f"s3://{BUCKET}/v2/features.zarr"
    layout = replace(small_layout(()), store_format=StoreFormat.of("ngff-0.4"))
    create_output(
        url,
        layout=layout,
        geometry_attrs={},
        weights=[],
        root_attrs={"status": "running"},
        job_attrs={},
        overwrite=True,
    )
    consolidate(url).update_root(status="complete")
    listing = s3fs.S3FileSystem().find(f"{BUCKET}/v2/features.zarr")
    assert not [key for key in listing if key.endswith("zarr.json")]
    content = json.loads(s3fs.S3FileSystem().cat_file(f"{BUCKET}/v2/features.zarr/.zmetadata"))
    assert content["metadata"][".zattrs"]["featuremap"]["status"] == "complete"


@pytest.mark.slow
def test_featuremap_runs_from_s3_to_s3(s3_environment: dict[str, str], tmp_path: Path) -> None:
    if not (REPO / "featuremap" / "cli" / "main.py").exists():
        pytest.skip("featuremap CLI (featuremap/cli/main.py) not written yet")
    torch = pytest.importorskip("torch")
    import zarr

    rng = np.random.default_rng(11)
    images = rng.standard_normal((2, 32, 40)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    source = zarr.open_group(f"s3://{BUCKET}/job/images.zarr", mode="w", zarr_format=3)
    source.create_array("images", data=images, chunks=(2, 16, 16))
    np.save(tmp_path / "weight.npy", weight)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "name": "deploy-s3",
                "input": {"store": f"s3://{BUCKET}/job/images.zarr", "array": "images"},
                "output": {"store": f"s3://{BUCKET}/job/features.zarr"},
                "layers": [
                    {"conv": {"bank": {"type": "file", "path": "weight.npy"}, "padding": 1}}
                ],
            },
            sort_keys=False,
        )
    )

    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from featuremap.cli.main import main; sys.exit(main())",
            "run",
            str(pipeline),
            "--workers",
            "1",
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "complete"
    features = zarr.open_group(f"s3://{BUCKET}/job/features.zarr", mode="r")["features"][...]
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(images[None].astype(np.float64)),
        torch.from_numpy(weight.astype(np.float64)),
        padding=1,
    )
    np.testing.assert_allclose(features, expected.numpy()[0], rtol=1e-5, atol=1e-5)
