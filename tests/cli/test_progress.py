"""Progress on stderr: plain lines for a log (every ~10 % or ~2 s, and at the end)."""

from __future__ import annotations

from featuremap.cli import _progress
from featuremap.cli._progress import progress_reporter


def test_disabled_progress_is_none():
    with progress_reporter(enabled=False) as report:
        assert report is None


def test_plain_lines_every_tenth_and_at_the_end(capsys, monkeypatch):
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr(_progress.time, "monotonic", lambda: next(clock) * 0.01)
    with progress_reporter() as report:  # stderr is captured: not a terminal
        assert report is not None
        for done in range(101):
            report(done, 100)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("featuremap: 9/100 blocks (9%)")  # the first tenth done
    assert lines[-1].startswith("featuremap: 100/100 blocks (100%)")
    assert "ETA" not in lines[-1]
    assert 10 <= len(lines) <= 12  # ~every 10 %, never one per block
    assert all("blocks/s" in line for line in lines)


def test_a_repeated_count_prints_once(capsys):
    with progress_reporter() as report:
        assert report is not None
        report(5, 5)
        report(5, 5)
    assert len(capsys.readouterr().err.splitlines()) == 1
