//! Shared access policy rights, in Azure's `"RegistryRead, ServiceConnect"` notation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuthError;

bitflags::bitflags! {
    /// The rights a shared access policy grants.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Rights: u8 {
        /// Reads the identity registry (devices, modules, twins).
        const REGISTRY_READ = 1;
        /// Writes the identity registry; implies [`Rights::REGISTRY_READ`] in [`Rights::grants`].
        const REGISTRY_WRITE = 1 << 1;
        /// Uses the service endpoints (C2D send, feedback, methods, events).
        const SERVICE_CONNECT = 1 << 2;
        /// Uses the device endpoints on behalf of any device.
        const DEVICE_CONNECT = 1 << 3;
    }
}

/// Azure's names, in the canonical order.
const NAMES: [(&str, Rights); 4] = [
    ("RegistryRead", Rights::REGISTRY_READ),
    ("RegistryWrite", Rights::REGISTRY_WRITE),
    ("ServiceConnect", Rights::SERVICE_CONNECT),
    ("DeviceConnect", Rights::DEVICE_CONNECT),
];

impl Rights {
    /// Parses Azure's comma-separated rights (`"RegistryRead, RegistryWrite"`), ignoring case and
    /// whitespace. Empty items are skipped, so `""` is no rights.
    ///
    /// # Errors
    ///
    /// [`AuthError::UnknownRight`] for a name Azure does not define.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut rights = Rights::empty();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (_, right) = NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(item))
                .ok_or_else(|| AuthError::UnknownRight {
                    name: item.to_owned(),
                })?;
            rights |= *right;
        }
        Ok(rights)
    }

    /// Returns whether these rights allow everything in `needed`, counting
    /// [`Rights::REGISTRY_WRITE`] as also granting [`Rights::REGISTRY_READ`] (Azure's RegistryReadWrite).
    pub fn grants(self, needed: Rights) -> bool {
        let effective = if self.contains(Rights::REGISTRY_WRITE) {
            self | Rights::REGISTRY_READ
        } else {
            self
        };
        effective.contains(needed)
    }
}

impl fmt::Display for Rights {
    /// Writes the canonical form: `RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = NAMES
            .iter()
            .filter(|(_, right)| self.contains(*right))
            .map(|(name, _)| name);
        if let Some(first) = names.next() {
            f.write_str(first)?;
            for name in names {
                write!(f, ", {name}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Rights {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Rights {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_names_parse_ignoring_case_and_whitespace() {
        assert_eq!(
            Rights::parse("RegistryRead, RegistryWrite").unwrap(),
            Rights::REGISTRY_READ | Rights::REGISTRY_WRITE
        );
        assert_eq!(
            Rights::parse("  serviceconnect,DEVICECONNECT ,\tregistryread ").unwrap(),
            Rights::SERVICE_CONNECT | Rights::DEVICE_CONNECT | Rights::REGISTRY_READ
        );
        assert_eq!(Rights::parse("").unwrap(), Rights::empty());
        assert_eq!(
            Rights::parse("ServiceConnect,,").unwrap(),
            Rights::SERVICE_CONNECT
        );
    }

    #[test]
    fn unknown_right_is_rejected_by_name() {
        assert_eq!(
            Rights::parse("RegistryRead, RegistryReadWrite"),
            Err(AuthError::UnknownRight {
                name: "RegistryReadWrite".to_owned()
            })
        );
        assert!(Rights::parse("RegistryRead ServiceConnect").is_err());
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        assert_eq!(
            Rights::all().to_string(),
            "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
        );
        assert_eq!(
            Rights::parse("deviceconnect, registryread").unwrap().to_string(),
            "RegistryRead, DeviceConnect"
        );
        assert_eq!(Rights::empty().to_string(), "");
        for bits in 0..=Rights::all().bits() {
            let rights = Rights::from_bits_truncate(bits);
            assert_eq!(Rights::parse(&rights.to_string()).unwrap(), rights);
        }
    }

    #[test]
    fn registry_write_also_grants_registry_read() {
        assert!(Rights::REGISTRY_WRITE.grants(Rights::REGISTRY_READ));
        assert!(Rights::REGISTRY_WRITE.grants(Rights::REGISTRY_READ | Rights::REGISTRY_WRITE));
        assert!(!Rights::REGISTRY_READ.grants(Rights::REGISTRY_WRITE));
        assert!(!Rights::REGISTRY_WRITE.grants(Rights::SERVICE_CONNECT));
        assert!(Rights::SERVICE_CONNECT.grants(Rights::empty()));
        assert!(!(Rights::REGISTRY_WRITE | Rights::SERVICE_CONNECT).grants(Rights::DEVICE_CONNECT));
    }

    #[test]
    fn serde_uses_the_azure_string() {
        let rights = Rights::REGISTRY_READ | Rights::SERVICE_CONNECT;
        assert_eq!(
            serde_json::to_string(&rights).unwrap(),
            "\"RegistryRead, ServiceConnect\""
        );
        assert_eq!(
            serde_json::from_str::<Rights>("\"serviceconnect, registryread\"").unwrap(),
            rights
        );
        assert!(serde_json::from_str::<Rights>("\"Everything\"").is_err());
    }
}
