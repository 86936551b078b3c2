//! Topic names and topic filters: validation (§4.7.1, §4.7.3) and matching (§4.7).
//!
//! A topic name is what a PUBLISH is sent to; a topic filter is what a SUBSCRIBE asks for and may contain
//! the wildcards `+` (one level) and `#` (any number of trailing levels). Levels are separated by `/`, and
//! empty levels are allowed (`/a//b` has four levels).

use super::packet::MAX_FIELD_LEN;

/// Says why a string is not a valid topic name or topic filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The string is empty (§4.7.3).
    #[error("topic is empty")]
    Empty,
    /// The string does not fit its two-byte length prefix (§4.7.3).
    #[error("topic is {len} bytes, more than 65535")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// The string contains U+0000 (§1.5.3, §4.7.3).
    #[error("topic contains the null character")]
    NullCharacter,
    /// A topic name contains `+` or `#` (§3.3.2.1, §4.7.1).
    #[error("topic name contains a wildcard")]
    WildcardInTopicName,
    /// A filter's `#` is not the last character, or shares its level with other characters (§4.7.1.2).
    #[error("multi-level wildcard is not alone in the last level")]
    MisplacedMultiLevelWildcard,
    /// A filter's `+` shares its level with other characters (§4.7.1.3).
    #[error("single-level wildcard is not alone in its level")]
    MisplacedSingleLevelWildcard,
}

/// Checks the rules every topic name and filter follows: non-empty, at most 65535 bytes, no U+0000.
fn validate_topic_common(topic: &str) -> Result<(), TopicError> {
    // MQTT 3.1.1 §4.7.3: "All Topic Names and Topic Filters MUST be at least one character long",
    // "MUST NOT include the null character" and "MUST NOT encode to more than 65535 bytes".
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_FIELD_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    if topic.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks that `name` may be published to: non-empty, at most 65535 bytes, no U+0000 and no wildcard.
///
/// # Errors
///
/// Returns the first rule `name` breaks.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    // Every PUBLISH goes through here, so the common case is one branch-free pass over the bytes, which
    // the compiler vectorizes; U+0000, `+` and `#` are single bytes in UTF-8 that occur in no other
    // character's encoding, so a byte scan is exact.
    let suspicious = name
        .bytes()
        .fold(false, |found, byte| found | matches!(byte, 0 | b'+' | b'#'));
    if !suspicious && !name.is_empty() && name.len() <= MAX_FIELD_LEN {
        return Ok(());
    }
    validate_topic_common(name)?;
    // MQTT 3.1.1 §3.3.2.1: "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard characters".
    Err(TopicError::WildcardInTopicName)
}

/// Checks that `filter` may be subscribed to: the rules of [`validate_topic_name`] except that wildcards
/// are allowed where §4.7.1 puts them.
///
/// # Errors
///
/// Returns the first rule `filter` breaks.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_topic_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        // MQTT 3.1.1 §4.7.1.2: "The multi-level wildcard character MUST be specified either on its own or
        // following a topic level separator. In either case it MUST be the last character specified in
        // the Topic Filter".
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        // MQTT 3.1.1 §4.7.1.3: "it MUST occupy an entire level of the filter".
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Returns whether the topic name `name` matches the topic filter `filter` (§4.7).
///
/// `#` matches its parent level and any number of child levels (`sport/#` matches `sport`), `+` matches
/// exactly one level, possibly empty (`sport/+` matches `sport/` but not `sport`). Per §4.7.2 a filter
/// starting with a wildcard does not match a name starting with `$`, so `#` does not see `$iothub/...`.
///
/// Both arguments are expected to be valid (see [`validate_topic_name`] and [`validate_topic_filter`]);
/// for invalid ones the result is unspecified but the function does not panic.
pub fn topic_matches(filter: &str, name: &str) -> bool {
    // MQTT 3.1.1 §4.7.2: "The Server MUST NOT match Topic Filters starting with a wildcard character (# or
    // +) with Topic Names beginning with a $ character".
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_topic_names_are_valid() {
        for name in [
            "devices/dev1/messages/events/%24.mid=mid-1&%24.ct=application%2Fjson",
            "devices/dev1/messages/events/",
            "$iothub/twin/GET/?$rid=2d390d89-f917-4e05-b30a-6414f8b1eedf",
            "$iothub/methods/res/200/?$rid=1",
            "/",
            "a//b",
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn topic_name_with_wildcard_is_rejected() {
        for name in ["a/+", "a/#", "+", "#", "a+b"] {
            assert_eq!(
                validate_topic_name(name),
                Err(TopicError::WildcardInTopicName),
                "{name}"
            );
        }
    }

    #[test]
    fn empty_topic_is_rejected() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn topic_with_null_character_is_rejected() {
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(validate_topic_filter("a/\0"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn topic_longer_than_65535_bytes_is_rejected() {
        let long = "a".repeat(65_536);
        assert_eq!(
            validate_topic_name(&long),
            Err(TopicError::TooLong { len: 65_536 })
        );
        assert_eq!(validate_topic_filter(&long[1..]), Ok(()));
    }

    #[test]
    fn azure_subscription_filters_are_valid() {
        for filter in [
            "devices/dev1/messages/devicebound/#",
            "devices/dev1/modules/m1/inputs/#",
            "$iothub/twin/res/#",
            "$iothub/methods/POST/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "#",
            "+",
            "+/+",
            "/+",
            "sport/+/player1",
            "sport/tennis/#",
            "a//+/#",
        ] {
            assert_eq!(validate_topic_filter(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn multi_level_wildcard_not_last_or_not_alone_is_rejected() {
        for filter in ["sport/tennis#", "sport/tennis/#/ranking", "#/", "a/#b", "##"] {
            assert_eq!(
                validate_topic_filter(filter),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{filter}"
            );
        }
    }

    #[test]
    fn single_level_wildcard_not_alone_in_its_level_is_rejected() {
        for filter in ["sport+", "sport/+tennis", "a/++", "+a/b"] {
            assert_eq!(
                validate_topic_filter(filter),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{filter}"
            );
        }
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_children() {
        // MQTT 3.1.1 §4.7.1.2 non-normative examples.
        let filter = "sport/tennis/player1/#";
        assert!(topic_matches(filter, "sport/tennis/player1"));
        assert!(topic_matches(filter, "sport/tennis/player1/ranking"));
        assert!(topic_matches(filter, "sport/tennis/player1/score/wimbledon"));
        assert!(!topic_matches(filter, "sport/tennis/player2"));
        assert!(topic_matches("sport/#", "sport"));
        assert!(topic_matches("#", "sport/tennis"));
        assert!(topic_matches("#", "/"));
    }

    #[test]
    fn single_level_wildcard_matches_exactly_one_level() {
        // MQTT 3.1.1 §4.7.1.3 non-normative examples.
        assert!(topic_matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(topic_matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!topic_matches("sport/+", "sport"));
        assert!(topic_matches("sport/+", "sport/"));
        assert!(topic_matches("+/+", "/finance"));
        assert!(topic_matches("/+", "/finance"));
        assert!(!topic_matches("+", "/finance"));
        assert!(topic_matches("+/tennis/#", "sport/tennis/player1"));
    }

    #[test]
    fn filter_without_wildcards_matches_only_itself() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/"));
        assert!(!topic_matches("a/b", "a"));
        assert!(!topic_matches("a/b", "A/b"));
    }

    #[test]
    fn leading_wildcard_does_not_match_dollar_topics() {
        // MQTT 3.1.1 §4.7.2 non-normative examples.
        assert!(!topic_matches("#", "$SYS/broker/clients"));
        assert!(!topic_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(topic_matches("$SYS/#", "$SYS/broker/clients"));
        assert!(topic_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!topic_matches("#", "$iothub/twin/res/200/?$rid=1"));
        assert!(topic_matches(
            "$iothub/twin/res/#",
            "$iothub/twin/res/200/?$rid=1"
        ));
    }

    #[test]
    fn azure_c2d_delivery_matches_the_sdk_subscription() {
        let filter = "devices/dev1/messages/devicebound/#";
        assert!(topic_matches(
            filter,
            "devices/dev1/messages/devicebound/%24.mid=1&iothub-ack=full"
        ));
        assert!(topic_matches(filter, "devices/dev1/messages/devicebound/"));
        assert!(!topic_matches(filter, "devices/dev2/messages/devicebound/"));
    }
}
