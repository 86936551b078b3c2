//! Authentication and authorization of service-side callers (SAS tokens signed with a shared
//! access policy key, wire contract §1) and of the operator.

use std::sync::Arc;

use outpost_auth::{KeyEncoding, Rights, SasToken, SymmetricKey, resource_in_scope};
use outpost_model::{Hub, PolicyName, SharedAccessPolicy, Timestamp};

use crate::{AuthFailure, CoreError, Hubs};

/// What an operation needs. Checked by the use cases, so every front door enforces the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read identities and registry statistics.
    RegistryRead,
    /// Create, update and delete identities.
    RegistryWrite,
    /// Read twins: RegistryRead or ServiceConnect.
    TwinRead,
    /// Update twins: RegistryWrite or ServiceConnect.
    TwinWrite,
    /// Service-facing endpoints (statistics of the service, later methods and C2D).
    ServiceConnect,
}

impl Permission {
    /// Returns whether `rights` allow this operation.
    pub fn allowed_by(self, rights: Rights) -> bool {
        match self {
            Self::RegistryRead => rights.grants(Rights::REGISTRY_READ),
            Self::RegistryWrite => rights.grants(Rights::REGISTRY_WRITE),
            Self::TwinRead => rights.grants(Rights::REGISTRY_READ) || rights.grants(Rights::SERVICE_CONNECT),
            Self::TwinWrite => {
                rights.grants(Rights::REGISTRY_WRITE) || rights.grants(Rights::SERVICE_CONNECT)
            }
            Self::ServiceConnect => rights.grants(Rights::SERVICE_CONNECT),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The server's operator (operator API token): every right on every hub.
    Operator,
    /// A holder of a shared access policy key.
    Policy(PolicyName),
}

/// An authenticated caller, bound to one hub.
#[derive(Debug, Clone)]
pub struct Caller {
    hub: Arc<Hub>,
    principal: Principal,
    rights: Rights,
}

impl Caller {
    /// Returns the operator acting on `hub`.
    pub fn operator(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            principal: Principal::Operator,
            rights: Rights::all(),
        }
    }

    /// Returns the holder of `policy` of `hub`, for a front door that verified a token signed
    /// with the policy's key itself (the AMQP door's CBS claims, wire reference §6).
    pub fn policy_holder(hub: Arc<Hub>, policy: &SharedAccessPolicy) -> Self {
        Self {
            principal: Principal::Policy(policy.key_name.clone()),
            rights: policy.rights,
            hub,
        }
    }

    /// Returns the hub the caller is bound to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Returns who is calling.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Checks that the caller may perform an operation.
    ///
    /// # Errors
    /// [`CoreError::Unauthorized`] when it may not.
    pub fn require(&self, permission: Permission) -> Result<(), CoreError> {
        if permission.allowed_by(self.rights) {
            Ok(())
        } else {
            Err(CoreError::Unauthorized(AuthFailure::InsufficientRights))
        }
    }
}

impl Hubs {
    /// Authenticates a service-side request: `host` is the request's host (the `Host` header),
    /// `authorization` the SAS token. The hub is the one `host` names, or else the one the
    /// token's resource names; the token must be scoped to that hub and signed with one of the
    /// named policy's keys (base64-decoded key, the IoT Hub convention).
    ///
    /// # Errors
    /// [`CoreError::HubNotFound`] when no hub matches; [`CoreError::Unauthorized`] otherwise.
    pub fn authenticate_service(
        &self,
        host: Option<&str>,
        authorization: Option<&str>,
        now: Timestamp,
    ) -> Result<Caller, CoreError> {
        let unauthorized = CoreError::Unauthorized;
        let authorization = authorization.ok_or(unauthorized(AuthFailure::Missing))?;
        let token = SasToken::parse(authorization).map_err(|_| unauthorized(AuthFailure::Malformed))?;
        let token_host = token.resource().split('/').next().unwrap_or_default().to_owned();
        let hub = host
            .and_then(|host| self.by_host(host))
            .or_else(|| self.by_host(&token_host))
            .ok_or_else(|| CoreError::HubNotFound(host.unwrap_or(&token_host).to_owned()))?;
        let scope = scope_without_port(&token);
        if !resource_in_scope(&scope, &hub.host_name) {
            return Err(unauthorized(AuthFailure::WrongResource));
        }
        let key_name = token
            .key_name()
            .ok_or(unauthorized(AuthFailure::UnknownPrincipal))?;
        let policy = hub
            .policy(key_name)
            .ok_or(unauthorized(AuthFailure::UnknownPrincipal))?;
        verify_with_any(
            &token,
            [&policy.primary_key, &policy.secondary_key],
            &[KeyEncoding::Base64Decoded],
            now,
        )
        .map_err(unauthorized)?;
        let principal = Principal::Policy(policy.key_name.clone());
        Ok(Caller {
            rights: policy.rights,
            principal,
            hub: hub.clone(),
        })
    }
}

/// Returns the token's resource with a `:port` after its host removed: a port in the connection
/// string's HostName reaches the token (wire contract §1.2), hubs are named without it.
pub(crate) fn scope_without_port(token: &SasToken) -> String {
    outpost_auth::normalise_resource(token.resource())
}

/// Verifies a token against each of `keys`, signed under each of `encodings` (IoT Hub SDKs sign
/// with the base64-decoded key, Event Hubs SDKs with the key's text), until one verifies. An
/// expired token reports `Expired`, any other failure `BadSignature`. Every front door checks
/// signatures here.
///
/// # Errors
/// [`AuthFailure::Expired`] or [`AuthFailure::BadSignature`].
pub fn verify_with_any<'a>(
    token: &SasToken,
    keys: impl IntoIterator<Item = &'a SymmetricKey>,
    encodings: &[KeyEncoding],
    now: Timestamp,
) -> Result<(), AuthFailure> {
    let now = now.unix_seconds().unwrap_or_default().max(0) as u64;
    let mut failure = AuthFailure::BadSignature;
    for key in keys {
        for encoding in encodings {
            match token.verify(key, *encoding, now) {
                Ok(()) => return Ok(()),
                Err(outpost_auth::AuthError::Expired { .. }) => failure = AuthFailure::Expired,
                Err(_) => {}
            }
        }
    }
    Err(failure)
}
