//! Claims-based security of the AMQP door (wire reference §1.1, §1.2, §3, §7.2): a SAS token
//! signed with a key of one of the hub's shared access policies that has `ServiceConnect`
//! (`iothubowner`, `service`) opens the service-side nodes. Event Hubs SDKs sign with the key's
//! base64 text itself, IoT Hub SDKs with the decoded key: both are accepted.
//!
//! Device-side tokens (no `skn` and scoped to `<host>/devices/…`, or a policy with only
//! `DeviceConnect`) open device links only. A device's own key lives in the registry, which is
//! async while `put-token` is answered synchronously, so the signature of a token without `skn`
//! is checked by the registry when a device link attaches (`Registry::authenticate_device`, like
//! the MQTT door); `put-token` checks its form, hub, audience and expiry.

use std::sync::Arc;

use outpost_auth::{KeyEncoding, Rights, SasToken, normalise_resource, resource_in_scope};
use outpost_core::access::verify_with_any;
use outpost_core::{AuthFailure, Hubs};
use outpost_model::{Hub, HubName, PolicyName, Timestamp};

use super::text::percent_decode;

/// A verified token: what the connection may access, and until when.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    /// The hub the token is for.
    pub(super) hub: HubName,
    /// The token's resource, without scheme or port (`localhost/myhub`).
    pub(super) scope: String,
    /// When it expires (unix seconds).
    pub(super) expiry: u64,
    /// Signed with a policy key that grants `ServiceConnect`: opens the service-side nodes.
    pub(super) service: bool,
    /// The policy whose key signed it (none for a device's own key).
    pub(super) policy: Option<PolicyName>,
    /// The token itself, for device links: the registry checks it against the identity's keys
    /// (or a `DeviceConnect` policy) when one attaches (wire reference §3).
    pub(super) token: Arc<str>,
}

impl Claim {
    /// Returns whether the claim lets the connection access the service-side `resource` of `hub`
    /// at `now` (partitions, `$management`, service links).
    pub(super) fn covers(&self, hub: &HubName, resource: &str, now: u64) -> bool {
        self.service && self.in_scope(hub, resource, now)
    }

    /// The token to authenticate a device link on `resource` (`<host>/devices/<d>[/modules/<m>]`)
    /// of `hub` with, if the claim covers it at `now`; the registry verifies it.
    pub(super) fn device_token(&self, hub: &HubName, resource: &str, now: u64) -> Option<&Arc<str>> {
        self.in_scope(hub, resource, now).then_some(&self.token)
    }

    fn in_scope(&self, hub: &HubName, resource: &str, now: u64) -> bool {
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

/// Verifies `token` for `audience` (when given, e.g. the CBS `name`, percent-encoded by the device
/// SDKs: `localhost%2Fdevices%2Fdev1`, wire reference §3): picks the hub by the token's host, which
/// must be `bound` when the connection already has a hub, and checks the policy, its rights, the
/// scope and the signature. A device token without `skn` is checked up to its signature, which
/// the registry verifies when a device link attaches (see the module comment).
pub(super) fn verify_token(
    hubs: &Hubs,
    text: &str,
    audience: Option<&str>,
    bound: Option<&HubName>,
    now: u64,
) -> Result<(Arc<Hub>, Claim), TokenError> {
    let token = SasToken::parse(text).map_err(|_| TokenError::Malformed)?;
    let scope = normalise_resource(token.resource());
    let host = scope.split('/').next().unwrap_or_default();
    let hub = hubs.by_host(host).ok_or(TokenError::UnknownHub)?;
    if bound.is_some_and(|bound| bound != &hub.name) {
        return Err(TokenError::WrongHub);
    }
    if let Some(audience) = audience
        && !resource_in_scope(
            &scope,
            &normalise_resource(&percent_decode(audience).unwrap_or_else(|| audience.to_owned())),
        )
    {
        return Err(TokenError::WrongResource);
    }
    let claim = |service, policy| Claim {
        hub: hub.name.clone(),
        scope: scope.clone(),
        expiry: token.expiry(),
        service,
        policy,
        token: Arc::from(text),
    };
    let Some(name) = token.key_name() else {
        if !is_device_scope(&scope) {
            return Err(TokenError::UnknownPolicy);
        }
        if token.expiry() <= now {
            return Err(TokenError::Expired);
        }
        let claim = claim(false, None);
        return Ok((hub, claim));
    };
    let policy = hub.policy(name).cloned().ok_or(TokenError::UnknownPolicy)?;
    let service = policy.rights.grants(Rights::SERVICE_CONNECT);
    if !service && !policy.rights.grants(Rights::DEVICE_CONNECT) {
        return Err(TokenError::InsufficientRights);
    }
    let now = Timestamp::from_unix_seconds(i64::try_from(now).unwrap_or(i64::MAX));
    // Device SDKs sign with the decoded key only (§1.1).
    let encodings: &[KeyEncoding] = if service {
        &[KeyEncoding::RawString, KeyEncoding::Base64Decoded]
    } else {
        &[KeyEncoding::Base64Decoded]
    };
    match verify_with_any(
        &token,
        [&policy.primary_key, &policy.secondary_key],
        encodings,
        now,
    ) {
        Ok(()) => {
            let claim = claim(service, Some(policy.key_name.clone()));
            Ok((hub, claim))
        }
        Err(AuthFailure::Expired) => Err(TokenError::Expired),
        Err(_) => Err(TokenError::BadSignature),
    }
}

/// Whether a token scope names a device or module (`<host>/devices/<id>[/…]`).
fn is_device_scope(scope: &str) -> bool {
    let mut parts = scope.split('/').skip(1);
    parts
        .next()
        .is_some_and(|segment| segment.eq_ignore_ascii_case("devices"))
        && parts.next().is_some_and(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_scopes_name_a_device() {
        assert!(is_device_scope("localhost/devices/dev1"));
        assert!(is_device_scope("localhost/Devices/dev1/modules/m"));
        assert!(!is_device_scope("localhost"));
        assert!(!is_device_scope("localhost/devices"));
        assert!(!is_device_scope("localhost/devices/"));
        assert!(!is_device_scope("localhost/myhub/$management"));
    }
}
