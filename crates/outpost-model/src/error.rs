//! Errors of the model and the error codes every Outpost error is classified into.

/// Azure IoT Hub's error codes (`ErrorCode:<Name>` in REST error bodies, `errorCode` in MQTT twin
/// responses). Every crate's error enum is classified once into one of these; each front door maps
/// the code once into its protocol (HTTP status, CONNACK code, AMQP condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A missing or malformed `api-version`.
    InvalidProtocolVersion,
    /// The request is well-formed but not allowed in this state.
    InvalidOperation,
    /// An argument (id, body field, header) is invalid.
    ArgumentInvalid,
    /// A required argument is missing.
    ArgumentNull,
    /// The request body is not valid JSON or has the wrong shape.
    IotHubFormatError,
    /// At least one operation of a bulk registry request failed.
    BulkRegistryOperationFailure,
    /// The host name or SAS resource names no hub on this server.
    IotHubNotFound,
    /// A hub with this name or host name exists already.
    IotHubNameNotAvailable,
    /// Missing, malformed, expired or wrongly signed credentials, or missing rights.
    IotHubUnauthorizedAccess,
    /// A quota (devices, modules) would be exceeded.
    IotHubQuotaExceeded,
    /// The device does not exist.
    DeviceNotFound,
    /// The module does not exist.
    ModuleNotFound,
    /// The configuration (automatic device management, edge deployment) does not exist.
    ConfigurationNotFound,
    /// A configuration with this id exists already.
    ConfigurationAlreadyExists,
    /// The job does not exist.
    JobNotFound,
    /// A scheduled job with this id exists already.
    JobAlreadyExists,
    /// The device is not connected (or not listening for direct methods).
    DeviceNotOnline,
    /// A device with this id exists already.
    DeviceAlreadyExists,
    /// A module with this id exists already on the device.
    ModuleAlreadyExistsOnDevice,
    /// An `If-Match` ETag does not match.
    PreconditionFailed,
    /// A cloud-to-device lock token is unknown or its lock lapsed.
    DeviceMessageLockLost,
    /// A device's cloud-to-device queue is full.
    DeviceMaximumQueueDepthExceeded,
    /// The request or message is over a size limit.
    MessageTooLarge,
    /// Too many items in one request (bulk registry, batch).
    TooManyDevices,
    /// The hub is throttling this caller.
    ThrottlingException,
    /// An unexpected failure inside Outpost; details are logged, not returned.
    ServerError,
    /// A dependency (storage, cluster) is unavailable.
    ServiceUnavailable,
    /// The operation timed out.
    GatewayTimeout,
}

impl ErrorCode {
    /// Returns Azure's name for the code, as it appears in `ErrorCode:<Name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidProtocolVersion => "InvalidProtocolVersion",
            Self::InvalidOperation => "InvalidOperation",
            Self::ArgumentInvalid => "ArgumentInvalid",
            Self::ArgumentNull => "ArgumentNull",
            Self::IotHubFormatError => "IotHubFormatError",
            Self::BulkRegistryOperationFailure => "BulkRegistryOperationFailure",
            Self::IotHubNotFound => "IotHubNotFound",
            Self::IotHubNameNotAvailable => "IotHubNameNotAvailable",
            Self::IotHubUnauthorizedAccess => "IotHubUnauthorizedAccess",
            Self::IotHubQuotaExceeded => "IotHubQuotaExceeded",
            Self::DeviceNotFound => "DeviceNotFound",
            Self::ModuleNotFound => "ModuleNotFound",
            Self::ConfigurationNotFound => "ConfigurationNotFound",
            Self::ConfigurationAlreadyExists => "ConfigurationAlreadyExists",
            Self::JobNotFound => "JobNotFound",
            Self::JobAlreadyExists => "JobAlreadyExists",
            Self::DeviceNotOnline => "DeviceNotOnline",
            Self::DeviceAlreadyExists => "DeviceAlreadyExists",
            Self::ModuleAlreadyExistsOnDevice => "ModuleAlreadyExistsOnDevice",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::DeviceMessageLockLost => "DeviceMessageLockLost",
            Self::DeviceMaximumQueueDepthExceeded => "DeviceMaximumQueueDepthExceeded",
            Self::MessageTooLarge => "MessageTooLarge",
            Self::TooManyDevices => "TooManyDevices",
            Self::ThrottlingException => "ThrottlingException",
            Self::ServerError => "ServerError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::GatewayTimeout => "GatewayTimeout",
        }
    }

    /// Returns Azure's six-digit numeric code (the `errorCode` of MQTT/AMQP twin error bodies);
    /// its first three digits are the HTTP status class Azure uses for it.
    pub fn numeric(self) -> u32 {
        // Values of Microsoft.Azure.Devices.Common.Exceptions.ErrorCode.
        match self {
            Self::InvalidProtocolVersion => 400_001,
            Self::InvalidOperation => 400_003,
            Self::ArgumentInvalid => 400_004,
            Self::ArgumentNull => 400_005,
            Self::IotHubFormatError => 400_006,
            Self::BulkRegistryOperationFailure => 400_013,
            Self::IotHubNotFound => 404_000,
            Self::IotHubNameNotAvailable => 409_100,
            Self::IotHubUnauthorizedAccess => 401_002,
            Self::IotHubQuotaExceeded => 403_002,
            Self::DeviceNotFound => 404_001,
            Self::ModuleNotFound => 404_010,
            // Not in Azure's published list: Outpost's numbers, in the right status class.
            Self::ConfigurationNotFound => 404_011,
            Self::ConfigurationAlreadyExists => 409_005,
            Self::JobNotFound => 404_002,
            // Not in Azure's published list either: Outpost's number.
            Self::JobAlreadyExists => 409_006,
            Self::DeviceNotOnline => 404_103,
            Self::DeviceAlreadyExists => 409_001,
            Self::ModuleAlreadyExistsOnDevice => 409_301,
            Self::PreconditionFailed => 412_001,
            Self::DeviceMessageLockLost => 412_002,
            Self::DeviceMaximumQueueDepthExceeded => 403_004,
            Self::MessageTooLarge => 413_001,
            Self::TooManyDevices => 413_002,
            Self::ThrottlingException => 429_001,
            Self::ServerError => 500_001,
            Self::ServiceUnavailable => 503_001,
            Self::GatewayTimeout => 504_101,
        }
    }

    /// Returns the HTTP status Azure answers with for this code.
    pub fn http_status(self) -> u16 {
        (self.numeric() / 1000) as u16
    }
}

/// Implemented by every error enum in Outpost: classifies the error once.
pub trait HasErrorCode {
    /// Returns the code this error is reported as.
    fn code(&self) -> ErrorCode;
}

/// Violations of the model's rules: ids, twins, keys, policies.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// An identifier does not follow Azure's syntax.
    #[error("invalid {kind} '{value}': {reason}")]
    InvalidId {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected value (ids are not secrets).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A twin document or patch breaks a rule.
    #[error("invalid twin: {0}")]
    InvalidTwin(String),
    /// A twin section would exceed a limit.
    #[error("twin {section} exceeds its limit: {detail}")]
    TwinLimitExceeded {
        /// `tags`, `desired` or `reported`.
        section: &'static str,
        /// Which limit and by how much.
        detail: String,
    },
    /// A field value is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field's JSON name.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

impl HasErrorCode for ModelError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidId { .. } | Self::InvalidTwin(_) | Self::InvalidField { .. } => {
                ErrorCode::ArgumentInvalid
            }
            Self::TwinLimitExceeded { .. } => ErrorCode::MessageTooLarge,
        }
    }
}
