//! Names of storage-endpoint files: Azure's file name format (`{iothub}/{partition}/{YYYY}/…`)
//! and container names.

use outpost_model::Timestamp;

/// The tokens every file name format must contain (Azure's rule), in their default order.
const TOKENS: [&str; 7] = [
    "{iothub}",
    "{partition}",
    "{YYYY}",
    "{MM}",
    "{DD}",
    "{HH}",
    "{mm}",
];

/// A checked file name format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNameFormat(String);

impl FileNameFormat {
    /// Checks `format`: every token exactly once, no other `{…}`, no empty, `.` or `..` path
    /// segment, no `\`.
    ///
    /// # Errors
    /// Why the format is refused.
    pub fn parse(format: &str) -> Result<Self, String> {
        for token in TOKENS {
            match format.matches(token).count() {
                1 => {}
                0 => return Err(format!("the file name format must contain {token}")),
                _ => return Err(format!("the file name format contains {token} twice")),
            }
        }
        let mut rest = format.to_owned();
        for token in TOKENS {
            rest = rest.replace(token, "x");
        }
        if rest.contains(['{', '}', '\\']) {
            return Err("the file name format has an unknown {token} or a backslash".into());
        }
        if rest
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err("the file name format has an empty, . or .. path segment".into());
        }
        if format.len() > 512 {
            return Err("the file name format is longer than 512 characters".into());
        }
        Ok(Self(format.to_owned()))
    }

    /// Returns the file name of a batch of `hub`'s `partition` written at `time` (UTC).
    pub fn render(&self, hub: &str, partition: u32, time: Timestamp) -> String {
        let (year, month, day, hour, minute) = time.datetime().map_or((1970, 1, 1, 0, 0), |t| {
            (t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        });
        self.0
            .replace("{iothub}", hub)
            .replace("{partition}", &partition.to_string())
            .replace("{YYYY}", &format!("{year:04}"))
            .replace("{MM}", &format!("{month:02}"))
            .replace("{DD}", &format!("{day:02}"))
            .replace("{HH}", &format!("{hour:02}"))
            .replace("{mm}", &format!("{minute:02}"))
    }
}

/// Checks a blob container name (Azure Storage's rule: 3 to 63 lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit).
///
/// # Errors
/// Why the name is refused.
pub fn check_container(name: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the container name '{name}' is invalid: 3 to 63 lowercase letters, digits and single hyphens"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_format_renders_azure_names() {
        let format = FileNameFormat::parse(super::super::model::DEFAULT_FILE_NAME_FORMAT).unwrap();
        let time: Timestamp = "2026-11-26T08:05:09.123Z".parse().unwrap();
        assert_eq!(format.render("plant", 3, time), "plant/3/2026/11/26/08/05");
        let custom = FileNameFormat::parse("{YYYY}-{MM}-{DD}/{HH}{mm}/{iothub}-{partition}.avro").unwrap();
        assert_eq!(custom.render("plant", 0, time), "2026-11-26/0805/plant-0.avro");
    }

    #[test]
    fn formats_missing_tokens_or_escaping_are_refused() {
        for bad in [
            "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}",
            "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{mm}",
            "../{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}",
            "{iothub}//{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}",
            "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{ss}",
            "/{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}",
        ] {
            assert!(FileNameFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_names_follow_azure_storage() {
        assert!(check_container("routed-1").is_ok());
        for bad in ["ab", "Upper", "a--b", "-ab", "ab-", "a_b"] {
            assert!(check_container(bad).is_err(), "{bad}");
        }
    }
}
