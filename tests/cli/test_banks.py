"""``featuremap banks`` (``featuremap.cli.banks``): the list of banks and one bank described."""

from __future__ import annotations

import json

from support.cli import run_cli, run_ok


def test_banks_lists_and_describes():
    from featuremap import banks

    listing = run_ok("banks").stdout
    assert all(name in listing for name in banks.names())
    described = json.loads(run_ok("banks", "gabor", "--json").stdout)
    assert described["name"] == "gabor"
    assert {p["name"] for p in described["parameters"]} >= {
        "size",
        "frequencies",
    }
    assert run_cli("banks", "gabr").returncode == 2
