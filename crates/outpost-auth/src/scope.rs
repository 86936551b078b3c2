//! Whether a token's resource (`sr`) covers the resource being accessed (wire reference §1.2).

/// Schemes clients put in front of an audience; they do not change what it names.
const SCHEMES: [&str; 4] = ["https://", "sb://", "amqps://", "amqp://"];

/// Returns `resource` without a scheme, without a `:port` after its host and without trailing
/// `/` (`sb://localhost:5671/myhub/` → `localhost/myhub`): a port in a connection string's
/// HostName or Endpoint reaches tokens and audiences (wire reference §1.2), hubs are named
/// without it.
pub fn normalise_resource(resource: &str) -> String {
    let resource = normalise(resource);
    let host = resource.split('/').next().unwrap_or_default();
    format!("{}{}", strip_port(host), &resource[host.len()..])
}

/// Drops a `:port` suffix from a host (`localhost:443` → `localhost`), leaving IPv6 literals alone.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| h.trim_start_matches('['));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Returns whether a token scoped to `scope` may access `requested`: Azure's rule that the token's
/// `sr` is a prefix of the requested resource, compared ASCII-case-insensitively and only on `/`
/// boundaries.
///
/// Both arguments are percent-decoded resources (`localhost/devices/d1`, see
/// [`SasToken::resource`](crate::SasToken::resource)). A leading `https://`, `sb://` or `amqps://` and
/// `amqp://`, and trailing `/` are ignored on either. An empty scope covers nothing.
pub fn resource_in_scope(scope: &str, requested: &str) -> bool {
    let scope = normalise(scope);
    let requested = normalise(requested);
    if scope.is_empty() || requested.len() < scope.len() {
        return false;
    }
    let (head, rest) = requested.as_bytes().split_at(scope.len());
    head.eq_ignore_ascii_case(scope.as_bytes()) && (rest.is_empty() || rest[0] == b'/')
}

fn normalise(resource: &str) -> &str {
    let without_scheme = SCHEMES
        .iter()
        .find_map(|scheme| {
            let head = resource.get(..scheme.len())?;
            head.eq_ignore_ascii_case(scheme)
                .then(|| &resource[scheme.len()..])
        })
        .unwrap_or(resource);
    without_scheme.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_handles_names_ipv4_and_ipv6() {
        assert_eq!(strip_port("localhost:443"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:443"), "::1");
    }

    #[test]
    fn resources_lose_scheme_port_and_trailing_slash() {
        assert_eq!(normalise_resource("sb://localhost:5671/myhub"), "localhost/myhub");
        assert_eq!(
            normalise_resource("amqps://Localhost/myhub/ConsumerGroups/$Default"),
            "Localhost/myhub/ConsumerGroups/$Default"
        );
        assert_eq!(
            normalise_resource("localhost:443/devices/d1/"),
            "localhost/devices/d1"
        );
        assert_eq!(normalise_resource("localhost"), "localhost");
    }

    #[test]
    fn hub_scope_covers_the_hub_and_everything_below_it() {
        assert!(resource_in_scope("localhost", "localhost"));
        assert!(resource_in_scope("localhost", "localhost/devices/d1"));
        assert!(resource_in_scope(
            "localhost/devices/d1",
            "localhost/devices/d1/modules/m1"
        ));
    }

    #[test]
    fn scope_only_matches_on_segment_boundaries() {
        assert!(!resource_in_scope("localhost", "localhost2/devices/d1"));
        assert!(!resource_in_scope(
            "localhost/devices/d1",
            "localhost/devices/d10"
        ));
        assert!(!resource_in_scope("localhost/devices/d1", "localhost/devices"));
    }

    #[test]
    fn scope_match_ignores_ascii_case() {
        assert!(resource_in_scope(
            "LocalHost/Devices/D1",
            "localhost/devices/d1/messages/events"
        ));
        assert!(resource_in_scope(
            "sb://localhost/myhub/consumergroups/$Default",
            "localhost/myhub/ConsumerGroups/$default"
        ));
    }

    #[test]
    fn trailing_slashes_and_schemes_are_ignored_on_either_side() {
        assert!(resource_in_scope("localhost/", "localhost"));
        assert!(resource_in_scope("localhost", "localhost/devices/d1/"));
        assert!(resource_in_scope("https://localhost", "localhost/devices/d1"));
        assert!(resource_in_scope(
            "localhost/myhub",
            "SB://localhost/myhub/$management"
        ));
        assert!(resource_in_scope(
            "amqps://localhost/",
            "https://localhost/devices/d1"
        ));
        assert!(!resource_in_scope("https://localhost", "https://localhost2"));
    }

    #[test]
    fn empty_scope_covers_nothing() {
        for scope in ["", "/", "https://", "sb:///"] {
            assert!(!resource_in_scope(scope, "localhost"), "{scope:?}");
            assert!(!resource_in_scope(scope, "/devices/d1"), "{scope:?}");
        }
    }

    #[test]
    fn port_is_part_of_the_host() {
        assert!(resource_in_scope(
            "localhost:8443/devices/d1",
            "localhost:8443/devices/d1"
        ));
        assert!(!resource_in_scope("localhost", "localhost:8443/devices/d1"));
    }

    #[test]
    fn non_ascii_input_does_not_panic() {
        assert!(!resource_in_scope("é", "e"));
        assert!(!resource_in_scope("hé", "h\u{e9}x"));
        assert!(resource_in_scope("hé", "hé/x"));
        assert!(!resource_in_scope("sb:/é", "sb:/"));
        assert!(!resource_in_scope("https:/", "é"));
    }
}
