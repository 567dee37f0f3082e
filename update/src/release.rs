//! A release as its TUF target describes it: the target's `custom` metadata, signed offline with
//! the targets key, and the version order anti-rollback uses.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A release version, `major.minor.patch` (compared numerically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let n = |p: &str| p.parse::<u32>().map_err(|_| format!("version {s:?} is not major.minor.patch"));
        match parts.as_slice() {
            [a, b, c] => Ok(Version(n(a)?, n(b)?, n(c)?)),
            _ => Err(format!("version {s:?} is not major.minor.patch")),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The agent binary for one target triple.
    Agent,
    /// A configuration bundle.
    Config,
    /// A binary patch (bsdiff) from one agent release to another, for devices that have the base.
    Delta,
}

/// A target's custom metadata (all of it signed with the targets key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMeta {
    /// Agent binary or configuration.
    pub kind: Kind,
    /// The release's version.
    pub version: Version,
    /// The lowest installed version this release may be installed over.
    pub min_version: Version,
    /// Installing it over a higher version is allowed (a signed, deliberate downgrade).
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Target triple of an agent binary (`x86_64-unknown-linux-gnu`); empty for configuration.
    #[serde(default)]
    pub triple: String,
    /// A delta's base release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<Version>,
    /// SHA-256 (hex) of the base release's binary the delta applies to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_sha256: String,
    /// The full release (target name) a delta rebuilds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full: String,
}

impl ReleaseMeta {
    /// As a TUF target's `custom` map.
    pub fn to_custom(&self) -> HashMap<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => HashMap::new(),
        }
    }

    /// From a TUF target's `custom` map; `None` if it is not a Yilian release.
    pub fn from_custom(custom: &HashMap<String, serde_json::Value>) -> Option<Self> {
        let map: serde_json::Map<String, serde_json::Value> =
            custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        serde_json::from_value(serde_json::Value::Object(map)).ok()
    }

    /// The target name county IT's tool gives a release: `agent-<triple>-<version>` or
    /// `config-<version>`.
    pub fn target_name(&self) -> String {
        match self.kind {
            Kind::Agent => format!("agent-{}-{}", self.triple, self.version),
            Kind::Config => format!("config-{}", self.version),
            Kind::Delta => format!(
                "agent-{}-{}.from-{}.bsdiff",
                self.triple,
                self.version,
                self.base_version.map(|v| v.to_string()).unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically_and_round_trip_through_custom_metadata() {
        let v = |s: &str| s.parse::<Version>().expect("version");
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert!("1.2".parse::<Version>().is_err() && "1.2.x".parse::<Version>().is_err());
        let m = ReleaseMeta {
            kind: Kind::Agent,
            version: v("1.2.0"),
            min_version: v("1.0.0"),
            allow_downgrade: false,
            triple: "x86_64-unknown-linux-gnu".into(),
            base_version: None,
            base_sha256: String::new(),
            full: String::new(),
        };
        assert_eq!(ReleaseMeta::from_custom(&m.to_custom()), Some(m.clone()));
        assert!(!m.to_custom().contains_key("base_version"), "absent fields stay out of the signed metadata");
        assert_eq!(m.target_name(), "agent-x86_64-unknown-linux-gnu-1.2.0");
        assert_eq!(ReleaseMeta::from_custom(&HashMap::new()), None);
    }
}
