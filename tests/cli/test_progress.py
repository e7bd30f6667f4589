"""Progress on stderr: plain lines for a log (every ~10 % or ~2 s, and at the end); each report
is also where a signal whose exception a finalizer dropped stops the run."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from featuremap.cli import _progress
from featuremap.cli._progress import progress_reporter
from featuremap.cli._signals import Interrupted, clear_pending, install_handlers


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


class _Finalized:
    """An object whose finalizer runs while a signal arrives: Python prints the handler's
    exception ("Exception ignored in ...") and drops it, as it did in a Dask ``Future.__del__``
    under a signalled ``featuremap run`` that then went on to ``complete``."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_dropped_by_a_finalizer_stops_the_run_at_its_next_progress_report():
    previous, previous_hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    try:
        install_handlers()
        with progress_reporter() as report:
            assert report is not None
            report(1, 10)
            _Finalized()  # collected at once: the handler's Interrupted is dropped
            with pytest.raises(Interrupted) as stopped:
                report(2, 10)
        assert stopped.value.signum == signal.SIGTERM
        clear_pending()
        report(3, 10)  # acted on: no longer raised
    finally:
        clear_pending()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def test_an_interrupt_a_finalizer_dropped_is_not_printed():
    # Python reports an exception raised in a finalizer ("Exception ignored in ...") on
    # stderr: an interrupt is pending instead, said in the command's one line when it stops
    code = (
        "import signal, sys\n"
        "from featuremap.cli._signals import Interrupted, install_handlers, raise_pending\n"
        "install_handlers()\n"
        "class Finalized:\n"
        "    def __del__(self): signal.raise_signal(signal.SIGINT)\n"
        "Finalized()\n"
        "class Broken:\n"
        "    def __del__(self): raise ValueError('a real error')\n"
        "Broken()\n"
        "try:\n"
        "    raise_pending()\n"
        "except Interrupted as stopped:\n"
        "    print('pending', stopped)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == "pending SIGINT\n"
    assert "Interrupted" not in result.stderr
    assert "ValueError: a real error" in result.stderr  # other errors are still reported
