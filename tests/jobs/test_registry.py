"""Jobs of a shared cluster without a cluster (``featuremap.jobs.registry``, cancelling through the
fencing token, the job's log, the busy-store advice); the cluster itself is ``test_service.py``."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.procs import age_heartbeat

from featuremap.errors import InputError, JobCancelledError, StoreBusyError
from featuremap.io import OutputStore
from featuremap.jobs import state
from featuremap.jobs.joblog import JobLog
from featuremap.jobs.registry import JobRecord, JobTicket, reconcile, submitter


def _running(store, ticket: JobTicket | None = None) -> state.JobOwner:
    """Mark the complete store ``store`` running again, under a new submitted job."""
    owner = state.new_owner(process=False)
    group = OutputStore.open(str(store), "r+")
    ticket = ticket or JobTicket(
        submitter(), scheduler="tcp://127.0.0.1:1", log=str(store) + ".log"
    )
    state.start_job(
        group,
        owner=owner,
        fingerprint=group.root["fingerprint"],
        blocks_total=20,
        ticket=ticket.to_dict(),
    )
    return owner


def _record(owner: state.JobOwner, store, job_state: str = "running") -> JobRecord:
    return JobRecord(owner.id, "p", str(store), "a@b", 0, job_state, 0, 20, "t0", "t0")


def test_records_round_trip():
    record = JobRecord("0123456789abcdef", "p", "out.zarr", "a@b", 3, "queued", 1, 20, "t0", "t1")
    assert JobRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    ticket = JobTicket("a@b", priority=-1, scheduler="tls://s:8786", log="x.log")
    assert JobTicket.from_dict(ticket.to_dict()) == ticket
    with pytest.raises(InputError):
        JobRecord.from_dict(["not", "a", "record"])


def test_cancel_revokes_the_token_and_leaves_a_resumable_store(finished):
    store = finished[0]
    owner = _running(store)
    group = OutputStore.open(str(store), "r+")
    assert reconcile(_record(owner, store, "queued")).state == "queued"
    state.cancel_job(group, owner.id, by="bob@here")
    with pytest.raises(JobCancelledError):
        state.check_token(group, owner)  # every write of the job is refused from now on
    with pytest.raises(JobCancelledError):
        state.adopt_job(group, owner)  # a driver that had not started yet does not start
    info = state.read_status(str(store))
    assert info["status"] == "cancelled"
    assert info["error"] == "cancelled by bob@here"
    assert reconcile(_record(owner, store)).state == "cancelled"
    with pytest.raises(InputError, match="not running"):
        state.cancel_job(group, owner.id, by="bob@here")
    state.check_takeover(group, fingerprint=group.root["fingerprint"])  # --resume may take it


def test_a_store_taken_over_fails_its_old_record(finished):
    store = finished[0]
    old = _running(store)
    _running(store)
    assert reconcile(_record(old, store)).state == "failed"
    assert reconcile(_record(old, store, "complete")).state == "complete"


def test_busy_submitted_store_advises_cancel_not_kill(finished):
    store = finished[0]
    owner = _running(store)
    with pytest.raises(StoreBusyError) as busy:
        state.check_takeover(OutputStore.open(str(store)), fingerprint=None)
    assert f"featuremap cancel {owner.id[:12]}" in str(busy.value)
    assert "process" not in str(busy.value)


def test_cancel_and_logs_by_store_need_no_cluster(finished):
    store = finished[0]
    owner = _running(store)
    JobLog(str(store) + ".log").write("job started\nsecond line")
    result = run_cli("cancel", store, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == owner.id[:12]
    log = run_cli("logs", store)
    assert log.returncode == 0, log.stderr
    lines = log.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == ["job started", "second line"]
    assert lines[2].endswith(f"job {owner.id[:12]} cancelled by {submitter()}")
    status = run_cli("status", store)
    assert status.returncode == 0, status.stderr
    assert f"finish it with: featuremap run PIPELINE --output {store} --resume" in status.stdout
    assert f"log: {store}.log" in status.stdout
    again = run_cli("cancel", store)
    assert again.returncode == 2
    assert again.stderr.startswith("featuremap: error: job ")


@pytest.mark.parametrize("args", [["jobs"], ["cancel", "0123abcd"], ["logs", "0123abcd"]])
def test_a_job_id_without_a_scheduler_is_refused(args, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("featuremap: error: ")
    assert "DASK_SCHEDULER_ADDRESS" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_queued_job_is_not_interrupted_while_it_waits_for_a_worker(finished):
    store = finished[0]
    owner = _running(store)  # submitted: no driver has adopted it yet, nothing renews its beat
    age_heartbeat(store, state.HEARTBEAT_TIMEOUT_S + 5)
    assert state.read_status(str(store))["status"] == "queued"
    assert reconcile(_record(owner, store, "queued")).state == "queued"
    with pytest.raises(StoreBusyError, match="featuremap cancel"):
        state.check_takeover(OutputStore.open(str(store)), fingerprint=None)
    adopted = state.adopt_job(OutputStore.open(str(store), "r+"), owner)  # its driver starts
    assert adopted.pid is not None
    assert state.read_status(str(store))["status"] == "running"
    owner = _running(store)
    age_heartbeat(store, state.QUEUED_TIMEOUT_S + 5)  # its scheduler was lost with it
    assert state.read_status(str(store))["status"] == "interrupted"


def test_status_prints_the_command_that_resumes_the_job(finished):
    store = finished[0]
    command = f"featuremap submit /p/texture.yaml --priority 3 --output {store} --resume"
    ticket = JobTicket(submitter(), scheduler="tcp://127.0.0.1:1", resume=command)
    _running(store, ticket)
    age_heartbeat(store, state.QUEUED_TIMEOUT_S + 5)  # the scheduler restarted under it
    status = run_cli("status", store)
    assert status.returncode == 0, status.stderr
    assert ": interrupted, " in status.stdout
    assert f"finish it with: {command} (its scheduler or driver was lost)" in status.stdout


def test_jobs_all_prints_the_command_that_resumes_an_interrupted_job(finished, client):
    from featuremap.jobs.registry import publish

    store = finished[0]
    command = f"featuremap submit /p/texture.yaml --output {store} --resume"
    owner = _running(store, JobTicket(submitter(), scheduler="tcp://127.0.0.1:1", resume=command))
    age_heartbeat(store, state.QUEUED_TIMEOUT_S + 5)  # its scheduler was restarted
    # what the new scheduler heard of: the job, as its driver last published it
    publish(client, JobRecord.from_dict({**_record(owner, store).to_dict(), "resume": command}))
    listed = run_cli("jobs", "--all", "--scheduler", client.scheduler.address)
    assert listed.returncode == 0, listed.stderr
    assert f"{owner.id[:12]}: interrupted; finish it with: {command}" in listed.stdout
