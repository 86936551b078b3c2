//! The core's errors and the storage errors backends report.

use outpost_model::{DeviceId, ErrorCode, HasErrorCode, ModelError, ModuleId};

/// Errors a storage backend reports through the ports. Backend-specific errors (redb, SQL) are
/// translated into these at the backend boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("record not found")]
    NotFound,
    /// The record exists, or exists at another revision than expected.
    #[error("record exists or changed concurrently")]
    Conflict,
    /// The parent record (a module's device) does not exist.
    #[error("parent record not found")]
    ParentMissing,
    /// The backend cannot be reached or is shutting down.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("storage failure: {0}")]
    Backend(String),
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::DeviceNotFound,
            Self::Conflict => ErrorCode::PreconditionFailed,
            Self::ParentMissing => ErrorCode::DeviceNotFound,
            Self::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Corrupt(_) | Self::Backend(_) => ErrorCode::ServerError,
        }
    }
}

/// Why a caller was not authenticated or not authorized. Kept coarse on purpose: the reason is
/// logged, and the client only learns that access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials were presented.
    Missing,
    /// The token does not parse.
    Malformed,
    /// The token has expired.
    Expired,
    /// The token's resource does not cover the requested one (for example another hub's).
    WrongResource,
    /// The named policy, device or module does not exist.
    UnknownPrincipal,
    /// The signature does not verify with any of the principal's keys.
    BadSignature,
    /// The principal lacks a right the operation needs.
    InsufficientRights,
    /// The device or module is disabled.
    Disabled,
}

impl AuthFailure {
    /// Returns a short lowercase description for logs and error bodies.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Missing => "no credentials",
            Self::Malformed => "malformed shared access signature",
            Self::Expired => "expired shared access signature",
            Self::WrongResource => "the token's resource does not cover this hub or entity",
            Self::UnknownPrincipal => "unknown shared access policy or identity",
            Self::BadSignature => "the signature does not verify",
            Self::InsufficientRights => "the policy lacks the rights this operation needs",
            Self::Disabled => "the identity is disabled",
        }
    }
}

/// Errors of the hub's use cases.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No hub has this name or host name.
    #[error("hub '{0}' not found")]
    HubNotFound(String),
    /// A hub with this name or host name exists already.
    #[error("hub '{0}' exists already")]
    HubAlreadyExists(String),
    /// The device does not exist.
    #[error("device '{0}' not found")]
    DeviceNotFound(DeviceId),
    /// The module does not exist.
    #[error("module '{module}' not found on device '{device}'")]
    ModuleNotFound {
        /// The device.
        device: DeviceId,
        /// The module.
        module: ModuleId,
    },
    /// A device with this id exists already.
    #[error("device '{0}' exists already")]
    DeviceAlreadyExists(DeviceId),
    /// A module with this id exists already on the device.
    #[error("module '{module}' exists already on device '{device}'")]
    ModuleAlreadyExists {
        /// The device.
        device: DeviceId,
        /// The module.
        module: ModuleId,
    },
    /// An `If-Match` etag does not match the current one.
    #[error("etag does not match")]
    PreconditionFailed,
    /// Access refused.
    #[error("unauthorized: {}", .0.describe())]
    Unauthorized(AuthFailure),
    /// An argument breaks a rule (not covered by the model's own errors).
    #[error("{0}")]
    InvalidArgument(String),
    /// A request asks for more items than allowed.
    #[error("{0}")]
    TooManyItems(String),
    /// The model rejected a value.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The store failed.
    #[error("storage")]
    Store(#[from] StoreError),
    /// The device is not connected, or not listening for direct methods.
    #[error("device '{0}' is not online")]
    DeviceNotOnline(DeviceId),
    /// The device did not answer a direct method in time.
    #[error("the device did not answer method '{0}' in time")]
    MethodTimeout(String),
    /// The device's cloud-to-device queue is full.
    #[error("the cloud-to-device queue of device '{0}' is full")]
    QueueFull(DeviceId),
    /// A lock token is unknown or its lock lapsed.
    #[error("the message lock is unknown or has lapsed")]
    MessageLockLost,
    /// A message is larger than the hub accepts.
    #[error("the message is {0} bytes; the limit is 262144")]
    MessageTooLarge(usize),
    /// A concurrent writer kept winning; the caller may retry.
    #[error("the record kept changing concurrently")]
    Contention,
    /// The job does not exist.
    #[error("job '{0}' not found")]
    JobNotFound(String),
    /// A query or condition does not parse or type.
    #[error("the query is not valid: {0}")]
    Query(#[from] outpost_query::QueryError),
    /// The configuration does not exist.
    #[error("configuration '{0}' not found")]
    ConfigurationNotFound(String),
    /// A configuration with this id exists already.
    #[error("configuration '{0}' exists already")]
    ConfigurationAlreadyExists(String),
    /// A per-hub quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A required argument is missing.
    #[error("{0}")]
    ArgumentNull(String),
    /// A scheduled job with this id exists already.
    #[error("job '{0}' exists already")]
    JobAlreadyExists(String),
}

impl HasErrorCode for CoreError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::HubNotFound(_) => ErrorCode::IotHubNotFound,
            Self::HubAlreadyExists(_) => ErrorCode::IotHubNameNotAvailable,
            Self::DeviceNotFound(_) => ErrorCode::DeviceNotFound,
            Self::ModuleNotFound { .. } => ErrorCode::ModuleNotFound,
            Self::DeviceAlreadyExists(_) => ErrorCode::DeviceAlreadyExists,
            Self::ModuleAlreadyExists { .. } => ErrorCode::ModuleAlreadyExistsOnDevice,
            Self::PreconditionFailed => ErrorCode::PreconditionFailed,
            Self::Unauthorized(_) => ErrorCode::IotHubUnauthorizedAccess,
            Self::InvalidArgument(_) => ErrorCode::ArgumentInvalid,
            Self::TooManyItems(_) => ErrorCode::TooManyDevices,
            Self::Model(error) => error.code(),
            Self::Store(error) => error.code(),
            Self::MessageTooLarge(_) => ErrorCode::MessageTooLarge,
            Self::DeviceNotOnline(_) => ErrorCode::DeviceNotOnline,
            Self::QueueFull(_) => ErrorCode::DeviceMaximumQueueDepthExceeded,
            Self::MessageLockLost => ErrorCode::DeviceMessageLockLost,
            Self::MethodTimeout(_) => ErrorCode::GatewayTimeout,
            Self::Contention => ErrorCode::ServiceUnavailable,
            Self::Query(_) => ErrorCode::ArgumentInvalid,
            Self::ConfigurationNotFound(_) => ErrorCode::ConfigurationNotFound,
            Self::ConfigurationAlreadyExists(_) => ErrorCode::ConfigurationAlreadyExists,
            Self::QuotaExceeded(_) => ErrorCode::IotHubQuotaExceeded,
            Self::JobNotFound(_) => ErrorCode::JobNotFound,
            Self::ArgumentNull(_) => ErrorCode::ArgumentNull,
            Self::JobAlreadyExists(_) => ErrorCode::JobAlreadyExists,
        }
    }
}
