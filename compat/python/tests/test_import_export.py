"""Import and export jobs through the official IoTHubJobManager (azure-iot-hub 2.7.0):
`create_import_export_job`, `get_import_export_job(s)`, `cancel_import_export_job` against the
hub's own blob endpoint (a container SAS minted with `POST /hubs/{hub}/files/sas`, read and
written here with azure-storage-blob) and against a directory under the data dir (`file://`).
An export writes one ExportImportDevice per line; an import applies every line with its
importMode and logs the failed ones to importErrors.log; bad containers are refused up front.
"""

import json
import time

import pytest
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.models import JobProperties, Twin
from azure.storage.blob import ContainerClient
from msrest.exceptions import HttpOperationError

from sdk_support import describe, new_id, new_key, status_of


@pytest.fixture(scope="module")
def jobs(hub):
    return IoTHubJobManager.from_connection_string(hub.server.connection_string())


def container_url(server, directory: str | None = None) -> str:
    status, body = server.operator_request("POST", "/hubs/localhost/files/sas?permissions=rwl")
    assert status == 200, body
    url = body["url"]
    if directory:
        base, query = url.split("?", 1)
        url = f"{base}/{directory}?{query}"
    return url


def container(server) -> ContainerClient:
    return ContainerClient.from_container_url(container_url(server), connection_verify=str(server.ca_path))


def wait_done(jobs, job_id: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get_import_export_job(job_id)
        if job.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_export_writes_every_device_and_module_with_or_without_keys(hub, registry, jobs):
    device_id = new_id("exp")
    primary, secondary = new_key(), new_key()
    registry.create_device_with_sas(device_id, primary, secondary, "enabled")
    registry.update_twin(device_id, Twin(tags={"site": "export-test"}), "*")
    registry.create_module_with_sas(device_id, "mod1", None, None, None)

    directory = new_id("export")
    job = jobs.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=container_url(hub.server, directory), exclude_keys_in_export=False)
    )
    assert job.job_id and job.status == "enqueued"
    done = wait_done(jobs, job.job_id)
    assert (done.status, done.progress) == ("completed", 100), done.failure_reason
    assert any(j.job_id == job.job_id for j in jobs.get_import_export_jobs())

    text = container(hub.server).download_blob(f"{directory}/devices.txt").readall().decode()
    lines = [json.loads(line) for line in text.splitlines()]
    mine = [line for line in lines if line["id"] == device_id]
    assert [line.get("moduleId") for line in mine] == [None, "mod1"]
    device_line = mine[0]
    assert device_line["authentication"]["symmetricKey"] == {"primaryKey": primary, "secondaryKey": secondary}
    assert device_line["tags"] == {"site": "export-test"}
    assert device_line["status"] == "enabled"
    assert device_line["eTag"] and device_line["twinETag"]

    job = jobs.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=container_url(hub.server, directory + "-nokeys"),
                      exclude_keys_in_export=True)
    )
    assert wait_done(jobs, job.job_id).status == "completed"
    text = container(hub.server).download_blob(f"{directory}-nokeys/devices.txt").readall().decode()
    line = next(json.loads(line) for line in text.splitlines() if json.loads(line)["id"] == device_id)
    assert line["authentication"]["symmetricKey"] == {"primaryKey": None, "secondaryKey": None}


def test_import_applies_each_line_and_logs_the_failed_ones(hub, registry, jobs):
    existing = new_id("imp-old")
    doomed = new_id("imp-del")
    created = new_id("imp-new")
    registry.create_device_with_sas(existing, None, None, "enabled")
    registry.create_device_with_sas(doomed, None, None, "enabled")
    directory = new_id("import")
    lines = [
        {"id": created, "importMode": "create", "status": "enabled", "tags": {"imported": True},
         "authentication": {"type": "sas", "symmetricKey": {"primaryKey": new_key(), "secondaryKey": new_key()}}},
        {"id": existing, "importMode": "updateTwin", "tags": {"zone": "b"}},
        {"id": doomed, "importMode": "delete"},
        {"id": existing, "importMode": "create"},
        {"id": "x", "importMode": "sideways"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nthis is not json\n"
    container(hub.server).upload_blob(f"{directory}/devices.txt", text.encode(), overwrite=True)

    url = container_url(hub.server, directory)
    job = jobs.create_import_export_job(
        JobProperties(type="import", input_blob_container_uri=url, output_blob_container_uri=url)
    )
    done = wait_done(jobs, job.job_id)
    assert done.status == "completed", done.failure_reason
    assert registry.get_twin(created).tags == {"imported": True}
    assert registry.get_twin(existing).tags == {"zone": "b"}
    with pytest.raises(HttpOperationError) as gone:
        registry.get_device(doomed)
    assert status_of(gone.value) == 404

    log = container(hub.server).download_blob(f"{directory}/importErrors.log").readall().decode()
    errors = [json.loads(line) for line in log.splitlines()]
    assert [error["line"] for error in errors] == [4, 5, 6]
    assert errors[0]["errorCode"] == "DeviceAlreadyExists"
    assert all(error["errorStatus"] for error in errors)


def test_a_directory_under_the_data_dir_is_a_container(hub, registry, jobs):
    device_id = new_id("exp-dir")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    target = hub.server.data_dir.resolve() / "import-export" / new_id("out")
    job = jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=f"file://{target}"))
    assert wait_done(jobs, job.job_id).status == "completed"
    exported = (target / "devices.txt").read_text()
    assert any(json.loads(line)["id"] == device_id for line in exported.splitlines())


@pytest.mark.parametrize(
    "properties",
    [
        {"type": "export", "output_blob_container_uri": "https://elsewhere.example/fileuploads?sv=2020-12-06&sr=c&sp=w&se=2099-01-01T00:00:00Z&sig=x"},
        {"type": "export", "output_blob_container_uri": "https://localhost/fileuploads"},
        {"type": "export", "output_blob_container_uri": "file:///etc"},
        {"type": "export"},
        {"type": "teleport", "output_blob_container_uri": "file:///tmp"},
        {"type": "import", "output_blob_container_uri": "file:///tmp"},
    ],
)
def test_bad_job_requests_are_400(jobs, properties):
    with pytest.raises(HttpOperationError) as error:
        jobs.create_import_export_job(JobProperties(**properties))
    assert status_of(error.value) == 400, describe(error.value)


def test_a_read_only_container_sas_cannot_take_an_export(hub, jobs):
    status, body = hub.server.operator_request("POST", "/hubs/localhost/files/sas?permissions=rl")
    assert status == 200
    with pytest.raises(HttpOperationError) as error:
        jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=body["url"]))
    assert status_of(error.value) == 400, describe(error.value)


def test_unknown_jobs_are_404_and_cancelling_a_finished_job_keeps_it(hub, jobs):
    with pytest.raises(HttpOperationError) as error:
        jobs.get_import_export_job("no-such-job")
    assert status_of(error.value) == 404
    job = jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=container_url(hub.server, new_id("c"))))
    assert wait_done(jobs, job.job_id).status == "completed"
    jobs.cancel_import_export_job(job.job_id)
    assert jobs.get_import_export_job(job.job_id).status == "completed"


def test_the_cli_exports_and_imports_like_az_iot_hub_device_identity(hub, registry):
    device_id = new_id("cli-exp")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    target = hub.server.data_dir.resolve() / "import-export" / new_id("cli")
    data_dir = str(hub.server.data_dir)
    out = hub.server.cli("device-identity", "export", "--data-dir", data_dir, "--bcu", f"file://{target}", "--output", "json")
    assert json.loads(out)["status"] == "completed"
    lines = [json.loads(line) for line in (target / "devices.txt").read_text().splitlines()]
    exported = next(line for line in lines if line["id"] == device_id)
    assert exported["authentication"]["symmetricKey"]["primaryKey"] is None, "keys only with --include-keys"

    renamed = new_id("cli-imp")
    (target / "devices.txt").write_text(json.dumps({"id": renamed, "importMode": "create"}) + "\n")
    out = hub.server.cli("device-identity", "import", "--data-dir", data_dir, "--ibcu", f"file://{target}",
                         "--obcu", f"file://{target}", "--output", "json")
    assert json.loads(out)["status"] == "completed"
    assert registry.get_device(renamed).device_id == renamed


def test_a_file_container_cannot_climb_out_of_the_import_export_directory(hub, jobs):
    root = hub.server.data_dir.resolve() / "import-export"
    for uri in (f"file://{root}/../tls", f"file://{root}-other/x", f"file://{root.parent}"):
        with pytest.raises(HttpOperationError) as error:
            jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=uri))
        assert status_of(error.value) == 400, (uri, describe(error.value))


def test_configurations_travel_with_include_configurations(hub, registry, jobs):
    from azure.iot.hub import IoTHubConfigurationManager
    from azure.iot.hub.models import Configuration, ConfigurationContent

    configurations = IoTHubConfigurationManager.from_connection_string(hub.server.connection_string())
    config_id = new_id("cfg-exp")
    configurations.create_configuration(Configuration(
        id=config_id,
        content=ConfigurationContent(device_content={"properties.desired.exported": {"yes": True}}),
        target_condition="tags.exported = true",
        priority=3,
        labels={"kind": "export-test"},
    ))
    directory = new_id("cfg")
    url = container_url(hub.server, directory)
    job = jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=url, include_configurations=True))
    assert wait_done(jobs, job.job_id).status == "completed"
    text = container(hub.server).download_blob(f"{directory}/configurations.txt").readall().decode()
    exported = next(json.loads(line) for line in text.splitlines() if json.loads(line)["id"] == config_id)
    assert exported["priority"] == 3 and exported["labels"] == {"kind": "export-test"}

    # Re-import it under a new id with a new priority, plus a line that cannot apply.
    copy_id = new_id("cfg-imp")
    lines = [dict(exported, id=copy_id, priority=7), {"id": config_id, "importMode": "create", "content": exported["content"]}]
    container(hub.server).upload_blob(f"{directory}/configurations.txt", "\n".join(json.dumps(l) for l in lines).encode(), overwrite=True)
    container(hub.server).upload_blob(f"{directory}/devices.txt", b"", overwrite=True)
    job = jobs.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=url, output_blob_container_uri=url, include_configurations=True))
    assert wait_done(jobs, job.job_id).status == "completed"
    copy = configurations.get_configuration(copy_id)
    assert copy.priority == 7 and copy.target_condition == "tags.exported = true"
    log = container(hub.server).download_blob(f"{directory}/importErrors.log").readall().decode()
    errors = [json.loads(line) for line in log.splitlines()]
    assert [(e["blob"], e["line"], e["configurationId"]) for e in errors] == [("configurations.txt", 2, config_id)]
