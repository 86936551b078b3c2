//! The service REST API of Azure IoT Hub (wire contract §5): devices, modules, twins, bulk
//! registry operations and statistics, with Azure's paths, shapes and status codes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use outpost_core::{BulkItem, DeviceSpec, MethodCall, ModuleSpec, TwinWrite};
use outpost_model::{DeviceId, Etag, ModuleId, TwinUpdate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::{AzureJson, ServiceCaller, if_match};

/// Returns the service routes. Authentication happens per handler through [`ServiceCaller`].
pub fn routes() -> Router<ServiceState> {
    Router::new()
        .route("/devices", get(list_devices).post(bulk))
        // The Node SDK's `Registry.list` asks for `/devices/` (`endpoint.devicePath('')`).
        .route("/devices/", get(list_devices).post(bulk))
        .route(
            "/devices/{id}",
            get(get_device)
                .put(put_device)
                .delete(delete_device)
                .post(crate::query::post_on_device),
        )
        .route("/devices/{id}/modules", get(list_modules))
        .route("/devices/{id}/commands", axum::routing::delete(crate::c2d::purge))
        .route(
            "/devices/{id}/modules/{mid}",
            get(get_module).put(put_module).delete(delete_module),
        )
        .route("/twins/{id}", get(get_twin).put(replace_twin).patch(patch_twin))
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_module_twin)
                .put(replace_module_twin)
                .patch(patch_module_twin),
        )
        .route("/twins/{id}/methods", post(invoke_method))
        .route("/twins/{id}/modules/{mid}/methods", post(invoke_module_method))
        .route("/jobs/create", post(crate::registry_jobs::create))
        .route("/jobs", get(crate::registry_jobs::list))
        .route(
            "/jobs/{id}",
            get(crate::registry_jobs::get).delete(crate::registry_jobs::cancel),
        )
        .route("/statistics/devices", get(device_statistics))
        .route("/statistics/service", get(service_statistics))
        // Scheduled jobs: /jobs/v2/query, /jobs/v2/{id}, /jobs/v2/{id}/cancel.
        .merge(crate::jobs::routes())
}

#[derive(Debug, Deserialize)]
struct DevicePath {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ModulePath {
    id: String,
    mid: String,
}

impl DevicePath {
    fn device(&self) -> Result<DeviceId, ApiError> {
        Ok(DeviceId::new(&self.id)?)
    }
}

impl ModulePath {
    fn ids(&self) -> Result<(DeviceId, ModuleId), ApiError> {
        Ok((DeviceId::new(&self.id)?, ModuleId::new(&self.mid)?))
    }
}

/// A JSON response carrying a quoted `ETag` header.
fn with_etag(body: impl Serialize, etag: &Etag) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn twin_response(twin: Value) -> Response {
    let etag = twin.get("etag").and_then(Value::as_str).map(Etag::new);
    match etag {
        Some(etag) => with_etag(twin, &etag),
        None => Json(twin).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    top: Option<usize>,
}

async fn list_devices(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let devices = state
        .outpost
        .registry
        .list_devices(&caller, query.top.unwrap_or(1000))
        .await?;
    Ok(Json(devices).into_response())
}

async fn get_device(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
) -> Result<Response, ApiError> {
    let device = state.outpost.registry.device(&caller, &path.device()?).await?;
    let etag = device.etag.clone();
    Ok(with_etag(device, &etag))
}

async fn put_device(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
    headers: HeaderMap,
    AzureJson(spec): AzureJson<DeviceSpec>,
) -> Result<Response, ApiError> {
    let id = path.device()?;
    let device = state
        .outpost
        .registry
        .put_device(&caller, &id, spec, if_match(&headers))
        .await?;
    let etag = device.etag.clone();
    // The Python service SDK accepts only 200 here, for create and update alike (§5.1).
    Ok(with_etag(device, &etag))
}

async fn delete_device(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state
        .outpost
        .registry
        .delete_device(&caller, &path.device()?, if_match(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    AzureJson(items): AzureJson<Vec<BulkItem>>,
) -> Result<Response, ApiError> {
    let outcome = state.outpost.registry.bulk(&caller, items).await?;
    let status = if outcome.is_successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(outcome)).into_response())
}

async fn list_modules(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
) -> Result<Response, ApiError> {
    let modules = state
        .outpost
        .registry
        .list_modules(&caller, &path.device()?)
        .await?;
    Ok(Json(modules).into_response())
}

async fn get_module(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
) -> Result<Response, ApiError> {
    let (device, module) = path.ids()?;
    let module = state.outpost.registry.module(&caller, &device, &module).await?;
    let etag = module.etag.clone();
    Ok(with_etag(module, &etag))
}

async fn put_module(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
    headers: HeaderMap,
    AzureJson(spec): AzureJson<ModuleSpec>,
) -> Result<Response, ApiError> {
    let (device, module) = path.ids()?;
    let module = state
        .outpost
        .registry
        .put_module(&caller, &device, &module, spec, if_match(&headers))
        .await?;
    let etag = module.etag.clone();
    Ok(with_etag(module, &etag))
}

async fn delete_module(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (device, module) = path.ids()?;
    state
        .outpost
        .registry
        .delete_module(&caller, &device, &module, if_match(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
) -> Result<Response, ApiError> {
    Ok(twin_response(
        state
            .outpost
            .registry
            .device_twin(&caller, &path.device()?)
            .await?,
    ))
}

async fn write_twin(
    state: &ServiceState,
    caller: &outpost_core::Caller,
    path: &DevicePath,
    headers: &HeaderMap,
    body: &Value,
    mode: TwinWrite,
) -> Result<Response, ApiError> {
    let update = TwinUpdate::from_twin_json(body)?;
    let twin = state
        .outpost
        .registry
        .write_device_twin(caller, &path.device()?, &update, mode, if_match(headers))
        .await?;
    Ok(twin_response(twin))
}

async fn patch_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
    headers: HeaderMap,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    write_twin(&state, &caller, &path, &headers, &body, TwinWrite::Patch).await
}

async fn replace_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
    headers: HeaderMap,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    write_twin(&state, &caller, &path, &headers, &body, TwinWrite::Replace).await
}

async fn get_module_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
) -> Result<Response, ApiError> {
    let (device, module) = path.ids()?;
    Ok(twin_response(
        state
            .outpost
            .registry
            .module_twin(&caller, &device, &module)
            .await?,
    ))
}

async fn write_module_twin(
    state: &ServiceState,
    caller: &outpost_core::Caller,
    path: &ModulePath,
    headers: &HeaderMap,
    body: &Value,
    mode: TwinWrite,
) -> Result<Response, ApiError> {
    let (device, module) = path.ids()?;
    let update = TwinUpdate::from_twin_json(body)?;
    let registry = &state.outpost.registry;
    let twin = registry
        .write_module_twin(caller, &device, &module, &update, mode, if_match(headers))
        .await?;
    Ok(twin_response(twin))
}

async fn patch_module_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
    headers: HeaderMap,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    write_module_twin(&state, &caller, &path, &headers, &body, TwinWrite::Patch).await
}

async fn replace_module_twin(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
    headers: HeaderMap,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    write_module_twin(&state, &caller, &path, &headers, &body, TwinWrite::Replace).await
}

async fn invoke_method(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
    AzureJson(call): AzureJson<MethodCall>,
) -> Result<Response, ApiError> {
    let result = state
        .outpost
        .registry
        .invoke_method(&caller, &path.device()?, None, call)
        .await?;
    Ok(Json(result).into_response())
}

async fn invoke_module_method(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<ModulePath>,
    AzureJson(call): AzureJson<MethodCall>,
) -> Result<Response, ApiError> {
    let (device, module) = path.ids()?;
    let result = state
        .outpost
        .registry
        .invoke_method(&caller, &device, Some(&module), call)
        .await?;
    Ok(Json(result).into_response())
}

async fn device_statistics(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
) -> Result<Response, ApiError> {
    let counts = state.outpost.registry.device_counts(&caller).await?;
    Ok(Json(json!({
        "totalDeviceCount": counts.total,
        "enabledDeviceCount": counts.enabled,
        "disabledDeviceCount": counts.disabled,
    }))
    .into_response())
}

async fn service_statistics(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
) -> Result<Response, ApiError> {
    let connected = state.outpost.registry.connected_device_count(&caller)?;
    Ok(Json(json!({ "connectedDeviceCount": connected })).into_response())
}
