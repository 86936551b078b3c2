"""Scheduled jobs (wire contract §5.2, §5.3) through the official `IoTHubJobManager`
(azure-iot-hub 2.7.0): `create_scheduled_job` (`PUT /jobs/v2/{id}`), `get_scheduled_job`,
`cancel_scheduled_job` (`POST /jobs/v2/{id}/cancel`) and `query_scheduled_jobs`
(`GET /jobs/v2/query`), with devices connected through the official device SDK (MQTT) receiving
the desired patch of a twin job and answering the method of a method job; per-device records read
back with `SELECT * FROM devices.jobs`.

A method job waits for offline devices until its maxExecutionTimeInSeconds has passed, then fails
them with Azure's `JobRunPreconditionFailed`; the job itself is `completed`.
"""

import datetime
import json
import time
import uuid

import pytest
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from device_support import connect, create_sas_device, wait_until
from sdk_support import new_id, status_of
from test_device_methods import MethodHandler
from test_device_twin import PatchInbox


@pytest.fixture(scope="module")
def jobs(hub) -> IoTHubJobManager:
    return IoTHubJobManager.from_connection_string(hub.owner_cs)


def _job_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _wait_finished(jobs, job_id: str, timeout: float = 30):
    """Polls `get_scheduled_job` until the job is completed, failed or cancelled."""
    seen = {}

    def finished():
        seen["job"] = jobs.get_scheduled_job(job_id)
        return seen["job"].status in ("completed", "failed", "cancelled")

    assert wait_until(finished, timeout, interval=0.25), f"job {job_id} still {seen['job'].status}"
    return seen["job"]


def _device_jobs(registry, job_id: str) -> dict:
    """`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '…'` through the SDK's query client,
    read raw (the SDK would deserialize the items as Twins), by device id."""
    spec = QuerySpecification(query=f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'")
    raw = registry.protocol.query.get_twins(spec, None, None, None, True)
    assert raw.response.headers["x-ms-item-type"] == "DeviceJob"
    return {item["deviceId"]: item for item in raw.response.json()}


def _error_code(exc) -> str:
    body = json.loads(exc.response.text)
    return body["Message"].split(";", 1)[0].removeprefix("ErrorCode:")


def _tagged_devices(registry, count: int, site: str) -> list:
    devices = []
    for _ in range(count):
        device = create_sas_device(registry, "jobdev")
        registry.update_twin(device.device_id, Twin(tags={"site": site}), "*")
        devices.append(device)
    return devices


def test_a_twin_job_patches_tags_and_desired_properties_of_the_matching_devices(registry, clients, jobs):
    site = new_id("site")
    online, offline = _tagged_devices(registry, 2, site)
    bystander = create_sas_device(registry, "jobdev")
    client = clients.device(online.connection_string)
    connect(client)
    inbox = PatchInbox(client)
    version = registry.get_twin(online.device_id).properties.desired["$version"]

    job_id = _job_id("twin")
    request = JobRequest(
        job_id=job_id,
        type="scheduleUpdateTwin",
        update_twin=Twin(etag="*", tags={"floor": 3}, properties=TwinProperties(desired={"fw": "2.0"})),
        query_condition=f"tags.site = '{site}'",
        start_time=_now(),
        max_execution_time_in_seconds=60,
    )
    created = jobs.create_scheduled_job(job_id, request)
    assert created.job_id == job_id
    assert created.type == "scheduleUpdateTwin"
    assert created.status in ("queued", "running", "completed")
    assert created.update_twin.properties.desired == {"fw": "2.0"}

    job = _wait_finished(jobs, job_id)
    assert job.status == "completed", job.as_dict()
    stats = job.device_job_statistics
    assert (stats.device_count, stats.succeeded_count, stats.failed_count) == (2, 2, 0)
    assert (stats.running_count, stats.pending_count) == (0, 0)
    assert job.end_time is not None and job.end_time >= job.start_time

    patch = inbox.wait_version(version + 1)
    assert patch["fw"] == "2.0"
    for device in (online, offline):
        twin = registry.get_twin(device.device_id)
        assert twin.tags == {"site": site, "floor": 3}
        assert twin.properties.desired["fw"] == "2.0"
    assert "fw" not in registry.get_twin(bystander.device_id).properties.desired

    records = _device_jobs(registry, job_id)
    assert sorted(records) == sorted([online.device_id, offline.device_id])
    for record in records.values():
        assert record["status"] == "completed"
        assert record["jobType"] == "scheduleUpdateTwin"
        assert record["jobId"] == job_id
        assert "error" not in record


def test_a_method_job_reaches_the_connected_devices_and_fails_the_offline_one(registry, clients, jobs):
    site = new_id("site")
    first, second, absent = _tagged_devices(registry, 3, site)
    handlers = {}
    for device in (first, second):
        client = clients.device(device.connection_string)
        connect(client)
        handlers[device.device_id] = MethodHandler(
            client, lambda request, name=device.device_id: (201, {"from": name, "got": request.payload}))

    job_id = _job_id("method")
    ids = ", ".join(f"'{device.device_id}'" for device in (first, second, absent))
    request = JobRequest(
        job_id=job_id,
        type="scheduleDeviceMethod",
        cloud_to_device_method=CloudToDeviceMethod(
            method_name="reboot", payload={"delay": 5}, response_timeout_in_seconds=10),
        query_condition=f"deviceId IN [{ids}]",
        start_time=_now(),
        max_execution_time_in_seconds=4,
    )
    created = jobs.create_scheduled_job(job_id, request)
    assert created.cloud_to_device_method.method_name == "reboot"

    for device in (first, second):
        call = handlers[device.device_id].next_request(timeout=10)
        assert (call.name, call.payload) == ("reboot", {"delay": 5})

    job = _wait_finished(jobs, job_id, timeout=30)
    assert job.status == "completed", job.as_dict()
    stats = job.device_job_statistics
    assert (stats.device_count, stats.succeeded_count, stats.failed_count) == (3, 2, 1)
    assert stats.device_count == stats.succeeded_count + stats.failed_count + stats.running_count + stats.pending_count

    records = _device_jobs(registry, job_id)
    for device in (first, second):
        record = records[device.device_id]
        assert record["status"] == "completed"
        assert record["outcome"]["deviceMethodResponse"] == {
            "status": 201, "payload": {"from": device.device_id, "got": {"delay": 5}}}
    failed = records[absent.device_id]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "JobRunPreconditionFailed"
    assert failed["outcome"]["deviceMethodResponse"] is None


def test_a_job_scheduled_in_the_future_is_cancelled_before_it_starts(registry, jobs):
    site = new_id("site")
    (device,) = _tagged_devices(registry, 1, site)
    job_id = _job_id("later")
    request = JobRequest(
        job_id=job_id,
        type="scheduleUpdateTwin",
        update_twin=Twin(etag="*", properties=TwinProperties(desired={"never": True})),
        query_condition=f"tags.site = '{site}'",
        start_time=_now() + datetime.timedelta(seconds=3),
        max_execution_time_in_seconds=60,
    )
    created = jobs.create_scheduled_job(job_id, request)
    assert created.status == "scheduled"
    cancelled = jobs.cancel_scheduled_job(job_id)
    assert cancelled.status == "cancelled"
    assert cancelled.end_time is not None

    time.sleep(4.5)  # past the start time: a cancelled job never starts
    job = jobs.get_scheduled_job(job_id)
    assert job.status == "cancelled"
    assert job.device_job_statistics.device_count == 0
    assert "never" not in registry.get_twin(device.device_id).properties.desired
    assert _device_jobs(registry, job_id) == {}
    # Cancelling again answers the job as it is.
    assert jobs.cancel_scheduled_job(job_id).status == "cancelled"


def test_query_scheduled_jobs_filters_by_type_and_status(registry, jobs):
    site = new_id("site")
    _tagged_devices(registry, 1, site)
    twin_job, scheduled_job = _job_id("qtwin"), _job_id("qlater")
    jobs.create_scheduled_job(twin_job, JobRequest(
        job_id=twin_job, type="scheduleUpdateTwin",
        update_twin=Twin(etag="*", tags={"q": 1}), query_condition=f"tags.site = '{site}'"))
    jobs.create_scheduled_job(scheduled_job, JobRequest(
        job_id=scheduled_job, type="scheduleDeviceMethod",
        cloud_to_device_method=CloudToDeviceMethod(method_name="m"),
        query_condition=f"tags.site = '{site}'",
        start_time=_now() + datetime.timedelta(hours=1)))
    _wait_finished(jobs, twin_job)

    completed = jobs.query_scheduled_jobs("scheduleUpdateTwin", "completed")
    ids = [item["jobId"] for item in completed.items]
    assert twin_job in ids and scheduled_job not in ids
    assert all(item["type"] == "scheduleUpdateTwin" and item["status"] == "completed" for item in completed.items)

    scheduled = jobs.query_scheduled_jobs("scheduleDeviceMethod", "scheduled")
    assert [item["jobId"] for item in scheduled.items if item["jobId"] == scheduled_job] == [scheduled_job]
    everything = jobs.query_scheduled_jobs(None, None)
    assert {twin_job, scheduled_job} <= {item["jobId"] for item in everything.items}
    jobs.cancel_scheduled_job(scheduled_job)


def _refused(call) -> HttpOperationError:
    with pytest.raises(HttpOperationError) as raised:
        call()
    return raised.value


def test_bad_requests_get_azure_errors(registry, jobs):
    unknown = _refused(lambda: jobs.get_scheduled_job(_job_id("nope")))
    assert (status_of(unknown), _error_code(unknown)) == (404, "JobNotFound")
    assert status_of(_refused(lambda: jobs.cancel_scheduled_job(_job_id("nope")))) == 404

    def twin_job(job_id, **fields):
        base = dict(job_id=job_id, type="scheduleUpdateTwin",
                    update_twin=Twin(etag="*", tags={"x": 1}), query_condition="tags.x = 0")
        base.update(fields)
        return JobRequest(**base)

    job_id = _job_id("dup")
    jobs.create_scheduled_job(job_id, twin_job(job_id))
    duplicate = _refused(lambda: jobs.create_scheduled_job(job_id, twin_job(job_id)))
    assert (status_of(duplicate), _error_code(duplicate)) == (409, "JobAlreadyExists")

    missing = _refused(lambda: jobs.create_scheduled_job("m1", twin_job("m1", query_condition=None)))
    assert (status_of(missing), _error_code(missing)) == (400, "ArgumentNull")
    untyped = _refused(lambda: jobs.create_scheduled_job("m2", twin_job("m2", type=None)))
    assert status_of(untyped) == 400
    wrong_type = _refused(lambda: jobs.create_scheduled_job("m3", twin_job("m3", type="export")))
    assert (status_of(wrong_type), _error_code(wrong_type)) == (400, "ArgumentInvalid")
    no_method = _refused(lambda: jobs.create_scheduled_job(
        "m4", twin_job("m4", type="scheduleDeviceMethod", update_twin=None)))
    assert (status_of(no_method), _error_code(no_method)) == (400, "ArgumentNull")

    broken = _refused(lambda: jobs.create_scheduled_job(
        "m5", twin_job("m5", query_condition="tags.x = 'a' AND (")))
    assert (status_of(broken), _error_code(broken)) == (400, "ArgumentInvalid")
    assert "line 1, column" in broken.response.text, broken.response.text

    no_star = _refused(lambda: jobs.create_scheduled_job(
        "m6", twin_job("m6", update_twin=Twin(tags={"x": 2}))))
    assert (status_of(no_star), _error_code(no_star)) == (412, "PreconditionFailed")

    bad_id = _refused(lambda: jobs.create_scheduled_job("bad_id!", twin_job("bad_id!")))
    assert (status_of(bad_id), _error_code(bad_id)) == (400, "ArgumentInvalid")
    for refused_id in ("m1", "m2", "m3", "m4", "m5", "m6"):
        assert status_of(_refused(lambda refused_id=refused_id: jobs.get_scheduled_job(refused_id))) == 404


def test_reading_jobs_needs_registry_read_and_creating_needs_registry_write(hub):
    reader = IoTHubJobManager.from_connection_string(hub.connection_string("registryRead"))
    job_id = _job_id("rights")
    request = JobRequest(job_id=job_id, type="scheduleUpdateTwin",
                         update_twin=Twin(etag="*", tags={"r": 1}), query_condition="tags.r = 0")
    refused = _refused(lambda: reader.create_scheduled_job(job_id, request))
    assert status_of(refused) == 401
    IoTHubJobManager.from_connection_string(hub.owner_cs).create_scheduled_job(job_id, request)
    assert reader.get_scheduled_job(job_id).job_id == job_id
