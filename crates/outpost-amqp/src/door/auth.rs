//! Claims-based security of the Event Hubs-compatible endpoint (wire reference §1.1, §1.2, §7.2):
//! a SAS token signed with a key of one of the hub's shared access policies that has
//! `ServiceConnect` (`iothubowner`, `service`). Event Hubs SDKs sign with the key's base64 text
//! itself, IoT Hub SDKs with the decoded key: both are accepted.

use std::sync::Arc;

use outpost_auth::{KeyEncoding, Rights, SasToken, normalise_resource, resource_in_scope};
use outpost_core::access::verify_with_any;
use outpost_core::{AuthFailure, Hubs};
use outpost_model::{Hub, HubName, Timestamp};

/// A verified token: what the connection may access, and until when.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    /// The hub the token is for.
    pub(super) hub: HubName,
    /// The token's resource, without scheme or port (`localhost/myhub`).
    pub(super) scope: String,
    /// When it expires (unix seconds).
    pub(super) expiry: u64,
}

impl Claim {
    /// Returns whether the claim lets the connection access `resource` of `hub` at `now`.
    pub(super) fn covers(&self, hub: &HubName, resource: &str, now: u64) -> bool {
        &self.hub == hub && self.expiry > now && resource_in_scope(&self.scope, resource)
    }
}

/// Why a token was refused. Never carries the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    /// Not a SAS token.
    #[error("the token is not a shared access signature")]
    Malformed,
    /// The token's resource names no hub.
    #[error("the token's resource names no hub")]
    UnknownHub,
    /// The token is for another hub than the connection's.
    #[error("the token is for another hub")]
    WrongHub,
    /// The token does not cover the resource asked for.
    #[error("the token does not cover the requested resource")]
    WrongResource,
    /// No `skn`, or no such policy.
    #[error("unknown shared access policy")]
    UnknownPolicy,
    /// The policy lacks `ServiceConnect`.
    #[error("the policy does not grant ServiceConnect")]
    InsufficientRights,
    /// The token expired.
    #[error("the token expired")]
    Expired,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// Verifies `token` for `audience` (when given, e.g. the CBS `name`): picks the hub by the token's
/// host, which must be `bound` when the connection already has a hub, and checks the policy, its
/// rights, the scope and the signature.
pub(super) fn verify_token(
    hubs: &Hubs,
    token: &str,
    audience: Option<&str>,
    bound: Option<&HubName>,
    now: u64,
) -> Result<(Arc<Hub>, Claim), TokenError> {
    let token = SasToken::parse(token).map_err(|_| TokenError::Malformed)?;
    let scope = normalise_resource(token.resource());
    let host = scope.split('/').next().unwrap_or_default();
    let hub = hubs.by_host(host).ok_or(TokenError::UnknownHub)?;
    if bound.is_some_and(|bound| bound != &hub.name) {
        return Err(TokenError::WrongHub);
    }
    if let Some(audience) = audience
        && !resource_in_scope(&scope, &normalise_resource(audience))
    {
        return Err(TokenError::WrongResource);
    }
    let policy = token
        .key_name()
        .and_then(|name| hub.policy(name))
        .cloned()
        .ok_or(TokenError::UnknownPolicy)?;
    if !policy.rights.grants(Rights::SERVICE_CONNECT) {
        return Err(TokenError::InsufficientRights);
    }
    let now = Timestamp::from_unix_seconds(i64::try_from(now).unwrap_or(i64::MAX));
    let encodings = [KeyEncoding::RawString, KeyEncoding::Base64Decoded];
    match verify_with_any(
        &token,
        [&policy.primary_key, &policy.secondary_key],
        &encodings,
        now,
    ) {
        Ok(()) => {
            let claim = Claim {
                hub: hub.name.clone(),
                scope,
                expiry: token.expiry(),
            };
            Ok((hub, claim))
        }
        Err(AuthFailure::Expired) => Err(TokenError::Expired),
        Err(_) => Err(TokenError::BadSignature),
    }
}
