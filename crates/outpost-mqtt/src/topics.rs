//! Azure IoT Hub's MQTT topic space (wire contract §2.4–2.7): which topics a device or module
//! may publish to and subscribe to, and the percent-encoded property bags of telemetry topics.

use outpost_model::SystemProperties;

/// Why a topic or property bag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is not one this identity may publish to.
    #[error("topic '{0}' is not a topic this identity may publish to")]
    NotAllowed(String),
    /// A `$rid`/`$version`/status in a `$iothub` topic is missing or malformed.
    #[error("malformed $iothub topic '{0}'")]
    MalformedIotHubTopic(String),
    /// The property bag does not decode.
    #[error("malformed property bag: {0}")]
    MalformedPropertyBag(String),
}

/// What a device's PUBLISH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePublish {
    /// Telemetry (`devices/<d>[/modules/<m>]/messages/events/<bag>`), properties decoded.
    Telemetry {
        /// System properties from the bag (boxed: the other variants are small).
        properties: Box<SystemProperties>,
        /// Application properties from the bag, in order.
        application_properties: Vec<(String, String)>,
    },
    /// `$iothub/twin/GET/?$rid=<rid>`.
    TwinGet {
        /// The request id to echo.
        rid: String,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=<rid>`.
    TwinPatchReported {
        /// The request id to echo.
        rid: String,
    },
    /// `$iothub/methods/res/<status>/?$rid=<rid>`.
    MethodResponse {
        /// The status the device returned.
        status: i32,
        /// The request id of the method call.
        rid: String,
    },
}

/// The identity a connection authenticated as, for topic checks.
#[derive(Debug, Clone, Copy)]
pub struct TopicOwner<'a> {
    /// The device id.
    pub device: &'a str,
    /// The module id, for module connections.
    pub module: Option<&'a str>,
}

impl TopicOwner<'_> {
    fn prefix(&self) -> String {
        match self.module {
            Some(module) => format!("devices/{}/modules/{module}/", self.device),
            None => format!("devices/{}/", self.device),
        }
    }
}

/// Classifies a device's PUBLISH topic.
///
/// # Errors
/// [`TopicError`] for topics outside the identity's space and malformed bags or `$iothub` topics.
pub fn classify_publish(topic: &str, owner: TopicOwner<'_>) -> Result<DevicePublish, TopicError> {
    if let Some(rest) = topic.strip_prefix("$iothub/") {
        return classify_iothub(topic, rest);
    }
    // Matched piece by piece: this runs for every telemetry message, so it allocates nothing.
    let own_events = topic
        .strip_prefix("devices/")
        .and_then(|rest| rest.strip_prefix(owner.device))
        .and_then(|rest| match owner.module {
            Some(module) => rest
                .strip_prefix("/modules/")
                .and_then(|rest| rest.strip_prefix(module)),
            None => Some(rest),
        })
        .and_then(|rest| rest.strip_prefix("/messages/events"));
    let Some(rest) = own_events else {
        return Err(TopicError::NotAllowed(topic.to_owned()));
    };
    let bag = match rest {
        "" => "",
        // Node appends an extra `/` after the bag when output properties exist (§2.4).
        rest => rest
            .strip_prefix('/')
            .ok_or_else(|| TopicError::NotAllowed(topic.to_owned()))?
            .trim_end_matches('/'),
    };
    let (properties, application_properties) = parse_property_bag(bag)?;
    Ok(DevicePublish::Telemetry {
        properties: Box::new(properties),
        application_properties,
    })
}

fn classify_iothub(topic: &str, rest: &str) -> Result<DevicePublish, TopicError> {
    let malformed = || TopicError::MalformedIotHubTopic(topic.to_owned());
    let (path, query) = rest.split_once("/?").ok_or_else(malformed)?;
    let rid = query_value(query, "$rid")
        .filter(|rid| !rid.is_empty())
        .ok_or_else(malformed)?;
    match path {
        "twin/GET" => Ok(DevicePublish::TwinGet { rid }),
        "twin/PATCH/properties/reported" => Ok(DevicePublish::TwinPatchReported { rid }),
        _ => {
            let status = path
                .strip_prefix("methods/res/")
                .ok_or_else(|| TopicError::NotAllowed(topic.to_owned()))?;
            let status = status.parse().map_err(|_| malformed())?;
            Ok(DevicePublish::MethodResponse { status, rid })
        }
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

/// Returns whether a device may subscribe to `filter` (SUBACK fails the others).
pub fn subscription_allowed(filter: &str, owner: TopicOwner<'_>) -> bool {
    let own = match owner.module {
        Some(_) => format!("{}inputs/#", owner.prefix()),
        None => format!("{}messages/devicebound/#", owner.prefix()),
    };
    filter == own
        || matches!(
            filter,
            "$iothub/twin/res/#" | "$iothub/twin/PATCH/properties/desired/#" | "$iothub/methods/POST/#"
        )
}

/// Decodes a telemetry property bag (`k=v&k=v`, percent-encoded, `$` as `%24` or raw) into system
/// and application properties. Keys `$.mid`, `$.cid`, `$.uid`, `$.to`, `$.ct`, `$.ce`, `$.exp`,
/// `$.ifid`, `$.on`, `$.sub` are system properties; everything else is an application property.
///
/// # Errors
/// [`TopicError::MalformedPropertyBag`] for invalid percent-encoding, non-UTF-8 text or empty keys.
pub fn parse_property_bag(bag: &str) -> Result<(SystemProperties, Vec<(String, String)>), TopicError> {
    let mut system = SystemProperties::default();
    let mut application = Vec::new();
    for pair in bag.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        if key.is_empty() {
            return Err(TopicError::MalformedPropertyBag("empty property name".into()));
        }
        let slot = match key.as_str() {
            "$.mid" => &mut system.message_id,
            "$.cid" => &mut system.correlation_id,
            "$.uid" => &mut system.user_id,
            "$.to" => &mut system.to,
            "$.ct" => &mut system.content_type,
            "$.ce" => &mut system.content_encoding,
            "$.exp" => &mut system.expiry_time,
            "$.ifid" => &mut system.interface_id,
            "$.on" => &mut system.output_name,
            "$.sub" => &mut system.subject,
            _ => {
                application.push((key, value));
                continue;
            }
        };
        *slot = Some(value);
    }
    Ok((system, application))
}

/// Encodes a property bag for a devicebound topic: each key and value percent-encoded (all but
/// `A-Z a-z 0-9 - . _ ~`), joined as `k=v&k=v` (wire contract §2.5).
pub fn encode_property_bag<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut bag = String::new();
    for (key, value) in pairs {
        if !bag.is_empty() {
            bag.push('&');
        }
        percent_encode_into(&mut bag, key);
        bag.push('=');
        percent_encode_into(&mut bag, value);
    }
    bag
}

fn percent_encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn percent_decode(text: &str) -> Result<String, TopicError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| TopicError::MalformedPropertyBag(format!("bad percent-escape in '{text}'")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TopicError::MalformedPropertyBag("not utf-8 after decoding".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: TopicOwner<'static> = TopicOwner {
        device: "dev1",
        module: None,
    };

    #[test]
    fn python_and_node_telemetry_bags_decode_alike() {
        // Recorded topics (wire contract §8.1, §8.2).
        let python = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&a%2Fb=x%26y%3Dz&alert=high%20temp";
        let node = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y%3Dz";
        for topic in [python, node] {
            let DevicePublish::Telemetry {
                properties,
                mut application_properties,
            } = classify_publish(topic, DEV).unwrap()
            else {
                panic!("not telemetry")
            };
            assert_eq!(properties.message_id.as_deref(), Some("mid-1"));
            assert_eq!(properties.correlation_id.as_deref(), Some("cid-1"));
            assert_eq!(properties.content_type.as_deref(), Some("application/json"));
            assert_eq!(properties.content_encoding.as_deref(), Some("utf-8"));
            application_properties.sort();
            assert_eq!(
                application_properties,
                [
                    ("a/b".to_owned(), "x&y=z".to_owned()),
                    ("alert".to_owned(), "high temp".to_owned())
                ]
            );
        }
    }

    #[test]
    fn raw_dollar_keys_empty_bags_and_module_outputs_are_accepted() {
        let raw = classify_publish("devices/dev1/messages/events/$.mid=1&k=v", DEV).unwrap();
        assert!(
            matches!(raw, DevicePublish::Telemetry { properties, .. } if properties.message_id.as_deref() == Some("1"))
        );
        for topic in ["devices/dev1/messages/events/", "devices/dev1/messages/events"] {
            assert!(matches!(
                classify_publish(topic, DEV),
                Ok(DevicePublish::Telemetry { .. })
            ));
        }
        let module = TopicOwner {
            device: "dev1",
            module: Some("m1"),
        };
        let output =
            classify_publish("devices/dev1/modules/m1/messages/events/%24.on=out1/", module).unwrap();
        assert!(
            matches!(output, DevicePublish::Telemetry { properties, .. } if properties.output_name.as_deref() == Some("out1"))
        );
    }

    #[test]
    fn foreign_topics_are_refused() {
        for topic in [
            "devices/dev2/messages/events/",
            "devices/dev1/modules/m1/messages/events/",
            "devices/dev1x/messages/events/",
            "devices/dev1/messages/eventsX",
            "devices/dev1/messages/devicebound/",
            "anything",
        ] {
            assert!(
                matches!(classify_publish(topic, DEV), Err(TopicError::NotAllowed(_))),
                "{topic}"
            );
        }
    }

    #[test]
    fn iothub_topics_carry_their_request_ids() {
        assert_eq!(
            classify_publish("$iothub/twin/GET/?$rid=2d39", DEV).unwrap(),
            DevicePublish::TwinGet { rid: "2d39".into() }
        );
        assert_eq!(
            classify_publish("$iothub/twin/PATCH/properties/reported/?$rid=f14f", DEV).unwrap(),
            DevicePublish::TwinPatchReported { rid: "f14f".into() }
        );
        assert_eq!(
            classify_publish("$iothub/methods/res/200/?$rid=1", DEV).unwrap(),
            DevicePublish::MethodResponse {
                status: 200,
                rid: "1".into()
            }
        );
        for bad in [
            "$iothub/twin/GET/",
            "$iothub/twin/GET/?$rid=",
            "$iothub/methods/res/abc/?$rid=1",
        ] {
            assert!(
                matches!(
                    classify_publish(bad, DEV),
                    Err(TopicError::MalformedIotHubTopic(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            classify_publish("$iothub/other/?$rid=1", DEV),
            Err(TopicError::NotAllowed(_))
        ));
    }

    #[test]
    fn devicebound_bags_encode_and_decode_back() {
        let bag = encode_property_bag([
            ("$.mid", "m 1"),
            ("$.to", "/devices/dev1/messages/devicebound"),
            ("k&=", "v/?"),
        ]);
        assert_eq!(
            bag,
            "%24.mid=m%201&%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound&k%26%3D=v%2F%3F"
        );
        let (system, application) = parse_property_bag(&bag).unwrap();
        assert_eq!(system.message_id.as_deref(), Some("m 1"));
        assert_eq!(application, [("k&=".to_owned(), "v/?".to_owned())]);
    }

    #[test]
    fn bad_bags_are_errors() {
        for bag in ["%zz=1", "k=%4", "=v", "k=%ff%fe"] {
            assert!(parse_property_bag(bag).is_err(), "{bag}");
        }
    }

    #[test]
    fn subscriptions_are_limited_to_the_identity() {
        assert!(subscription_allowed("devices/dev1/messages/devicebound/#", DEV));
        assert!(subscription_allowed("$iothub/methods/POST/#", DEV));
        assert!(!subscription_allowed("devices/dev2/messages/devicebound/#", DEV));
        assert!(!subscription_allowed("#", DEV));
        let module = TopicOwner {
            device: "dev1",
            module: Some("m1"),
        };
        assert!(subscription_allowed("devices/dev1/modules/m1/inputs/#", module));
        assert!(!subscription_allowed(
            "devices/dev1/messages/devicebound/#",
            module
        ));
    }
}
