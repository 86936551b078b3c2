//! Device and module link addresses (wire reference §3): `/devices/<d>[/modules/<m>]/<endpoint>`,
//! relative or as a full `amqps://<host>/…` URI.

use outpost_model::{DeviceId, ModuleId};

use crate::definitions::Role;

/// The endpoint an address names below the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::door) enum Endpoint {
    /// `…/messages/events`: telemetry (the peer sends), or a module's input messages (the peer
    /// receives: the Node SDK reuses the events path for module inputs, wire reference §3).
    Events,
    /// `/devices/<d>/messages/devicebound`: cloud-to-device messages (the peer receives).
    DeviceBound,
    /// `…/twin`: twin requests (the peer sends) and their answers (the peer receives).
    Twin,
    /// `…/methods/devicebound`: method calls (the peer receives) and their answers (the peer sends).
    Methods,
}

/// A device or module address a link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::door) struct DeviceAddress {
    /// The host of a full URI.
    pub(in crate::door) host: Option<String>,
    /// The device.
    pub(in crate::door) device: DeviceId,
    /// The module, for module addresses.
    pub(in crate::door) module: Option<ModuleId>,
    /// What the link is for.
    pub(in crate::door) endpoint: Endpoint,
}

/// What a link on a device address does, by endpoint and the peer's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The device sends telemetry.
    Telemetry,
    /// The hub sends cloud-to-device (or module input) messages.
    CloudToDevice,
    /// The device sends twin requests.
    TwinRequests,
    /// The hub sends twin answers and desired-property notifications.
    TwinReplies,
    /// The hub sends method calls.
    MethodRequests,
    /// The device sends method answers.
    MethodAnswers,
}

impl DeviceAddress {
    /// The address `address` names (relative, or a full `amqp[s]://<host>/…` URI), if a device or
    /// module address. Path keywords match ASCII-case-insensitively; ids are taken as they are
    /// (the device SDKs do not encode them, wire reference §3).
    pub(in crate::door) fn parse(address: &str) -> Option<Self> {
        let address = address.split('?').next().unwrap_or_default();
        let (host, path) = match strip_scheme(address) {
            Some(rest) => {
                let (host, path) = rest.split_once('/')?;
                (Some(host.to_owned()), path)
            }
            None => (None, address),
        };
        let path = path.trim_matches('/');
        let mut segments = path.split('/');
        if !segments.next()?.eq_ignore_ascii_case("devices") {
            return None;
        }
        let device = DeviceId::new(segments.next()?).ok()?;
        let mut rest: Vec<&str> = segments.collect();
        let module = match rest.as_slice() {
            [keyword, module, ..] if keyword.eq_ignore_ascii_case("modules") => {
                let module = ModuleId::new(module).ok()?;
                rest.drain(..2);
                Some(module)
            }
            _ => None,
        };
        let is = |segment: &str, keyword: &str| segment.eq_ignore_ascii_case(keyword);
        let endpoint = match rest.as_slice() {
            [a, b] if is(a, "messages") && is(b, "events") => Endpoint::Events,
            [a, b] if is(a, "messages") && is(b, "devicebound") && module.is_none() => Endpoint::DeviceBound,
            [a] if is(a, "twin") => Endpoint::Twin,
            [a, b] if is(a, "methods") && is(b, "devicebound") => Endpoint::Methods,
            _ => return None,
        };
        Some(Self {
            host,
            device,
            module,
            endpoint,
        })
    }

    /// The resource a token must cover for this address: `<host>/devices/<d>[/modules/<m>]`.
    pub(super) fn resource(&self, host: &str) -> String {
        identity_resource(host, &self.device, self.module.as_ref())
    }

    /// What a link on this address does when the peer has `role`; `None` when the endpoint does
    /// not go that way (e.g. a device receiving from its own events).
    pub(super) fn purpose(&self, role: Role) -> Option<Purpose> {
        let module = self.module.is_some();
        Some(match (self.endpoint, role) {
            (Endpoint::Events, Role::Sender) => Purpose::Telemetry,
            (Endpoint::Events, Role::Receiver) if module => Purpose::CloudToDevice,
            (Endpoint::DeviceBound, Role::Receiver) => Purpose::CloudToDevice,
            (Endpoint::Twin, Role::Sender) => Purpose::TwinRequests,
            (Endpoint::Twin, Role::Receiver) => Purpose::TwinReplies,
            (Endpoint::Methods, Role::Sender) => Purpose::MethodAnswers,
            (Endpoint::Methods, Role::Receiver) => Purpose::MethodRequests,
            _ => return None,
        })
    }
}

/// The resource a token must cover for an identity: `<host>/devices/<d>[/modules/<m>]`.
pub(super) fn identity_resource(host: &str, device: &DeviceId, module: Option<&ModuleId>) -> String {
    match module {
        Some(module) => format!("{host}/devices/{device}/modules/{module}"),
        None => format!("{host}/devices/{device}"),
    }
}

fn strip_scheme(address: &str) -> Option<&str> {
    ["amqps://", "amqp://"].iter().find_map(|scheme| {
        let head = address.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &address[scheme.len()..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(address: &str) -> Option<(Option<String>, String, Option<String>, Endpoint)> {
        DeviceAddress::parse(address).map(|a| {
            (
                a.host,
                a.device.to_string(),
                a.module.map(|m| m.to_string()),
                a.endpoint,
            )
        })
    }

    #[test]
    fn relative_device_addresses() {
        let device = |endpoint| Some((None, "dev1".to_owned(), None, endpoint));
        assert_eq!(parse("/devices/dev1/messages/events"), device(Endpoint::Events));
        assert_eq!(
            parse("/devices/dev1/messages/devicebound"),
            device(Endpoint::DeviceBound)
        );
        assert_eq!(
            parse("/devices/dev1/messages/deviceBound"),
            device(Endpoint::DeviceBound)
        );
        assert_eq!(parse("/devices/dev1/twin"), device(Endpoint::Twin));
        assert_eq!(
            parse("/devices/dev1/methods/devicebound"),
            device(Endpoint::Methods)
        );
        assert_eq!(parse("devices/dev1/twin/"), device(Endpoint::Twin));
        assert_eq!(
            parse("/devices/dev1/messages/events?api-version=2021-04-12"),
            device(Endpoint::Events)
        );
    }

    #[test]
    fn module_and_absolute_addresses() {
        assert_eq!(
            parse("/devices/d/modules/m/messages/events"),
            Some((None, "d".into(), Some("m".into()), Endpoint::Events))
        );
        assert_eq!(
            parse("/devices/d/modules/m/twin"),
            Some((None, "d".into(), Some("m".into()), Endpoint::Twin))
        );
        assert_eq!(
            parse("AMQPS://localhost:5671/devices/d/modules/m/methods/devicebound"),
            Some((
                Some("localhost:5671".into()),
                "d".into(),
                Some("m".into()),
                Endpoint::Methods
            ))
        );
        assert_eq!(
            parse("amqps://hub.example/devices/d/messages/events"),
            Some((Some("hub.example".into()), "d".into(), None, Endpoint::Events))
        );
    }

    #[test]
    fn other_addresses_are_not_device_addresses() {
        for address in [
            "$cbs",
            "$management",
            "/messages/devicebound",
            "/messages/serviceBound/feedback",
            "myhub/ConsumerGroups/$Default/Partitions/0",
            "/devices/dev1",
            "/devices/dev1/messages",
            "/devices/dev1/messages/events/extra",
            "/devices/d/modules/m/messages/devicebound",
            "/devices//twin",
            "/devices/bad id/twin",
            "amqps://localhost",
        ] {
            assert_eq!(DeviceAddress::parse(address), None, "{address}");
        }
    }

    #[test]
    fn purposes_follow_the_peer_role() {
        let purpose = |address: &str, role| DeviceAddress::parse(address).and_then(|a| a.purpose(role));
        assert_eq!(
            purpose("/devices/d/messages/events", Role::Sender),
            Some(Purpose::Telemetry)
        );
        assert_eq!(purpose("/devices/d/messages/events", Role::Receiver), None);
        assert_eq!(
            purpose("/devices/d/modules/m/messages/events", Role::Receiver),
            Some(Purpose::CloudToDevice)
        );
        assert_eq!(
            purpose("/devices/d/messages/devicebound", Role::Receiver),
            Some(Purpose::CloudToDevice)
        );
        assert_eq!(purpose("/devices/d/messages/devicebound", Role::Sender), None);
        assert_eq!(
            purpose("/devices/d/twin", Role::Sender),
            Some(Purpose::TwinRequests)
        );
        assert_eq!(
            purpose("/devices/d/twin", Role::Receiver),
            Some(Purpose::TwinReplies)
        );
        assert_eq!(
            purpose("/devices/d/methods/devicebound", Role::Sender),
            Some(Purpose::MethodAnswers)
        );
        assert_eq!(
            purpose("/devices/d/methods/devicebound", Role::Receiver),
            Some(Purpose::MethodRequests)
        );
        let address = DeviceAddress::parse("/devices/d/modules/m/twin");
        assert_eq!(
            address.map(|a| a.resource("localhost")),
            Some("localhost/devices/d/modules/m".to_owned())
        );
    }
}
