//! Configuration bundles: a TOML overlay county IT signs as a `config` release, laid over each
//! agent's own `agent.toml`.
//!
//! An overlay may change how an agent works (broker address, serial ports, intervals, the
//! maintenance window, ...) but never who it is or whom it trusts: identity, keys, certificates,
//! its spool and its update trust anchors stay with the device. Those keys are refused here,
//! when county IT signs the bundle and again when the agent applies it.

/// Keys an overlay may not set: the device's identity, keys and trust anchors, and its spool.
pub const FORBIDDEN: &[&str] = &[
    "site",
    "device",
    "key",
    "hub_public_key",
    "ca_certificate",
    "certificate",
    "spool_dir",
    "spool_key",
    "reports_dir",
    "update.root",
    "update.dir",
];

/// The largest configuration bundle accepted, bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// Parses an overlay and refuses one that is not a TOML table, is too large, or sets a key in
/// [`FORBIDDEN`].
pub fn parse(text: &str) -> Result<toml::Table, String> {
    if text.len() > MAX_BYTES {
        return Err(format!("a configuration bundle of {} bytes is over the {MAX_BYTES}-byte limit", text.len()));
    }
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("not TOML: {}", e.message()))?;
    for key in FORBIDDEN {
        let mut at: Option<&toml::Value> = None;
        let mut parts = key.split('.');
        if let Some(first) = parts.next() {
            at = table.get(first);
        }
        for p in parts {
            at = at.and_then(|v| v.as_table()).and_then(|t| t.get(p));
        }
        if at.is_some() {
            return Err(format!(
                "a configuration bundle may not set {key} (identity, keys and trust stay on the device)"
            ));
        }
    }
    Ok(table)
}

/// Lays `overlay` over `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut toml::Table, overlay: &toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_changes_settings_but_not_identity_or_trust() {
        let mut base: toml::Table =
            "site = \"s\"\ndevice = \"d\"\nheartbeat_secs = 30\n[update]\nhub = \"https://a\"\ndir = \"u\"\n"
                .parse()
                .expect("toml");
        let overlay = parse("heartbeat_secs = 10\n[update]\nmaintenance = \"22:00-06:00\"\n").expect("allowed");
        merge(&mut base, &overlay);
        assert_eq!(base["heartbeat_secs"].as_integer(), Some(10));
        let update = base["update"].as_table().expect("table");
        assert_eq!((update["hub"].as_str(), update["dir"].as_str()), (Some("https://a"), Some("u")));
        assert_eq!(update["maintenance"].as_str(), Some("22:00-06:00"));
        for bad in ["device = \"x\"", "key = \"k.pk8\"", "[update]\nroot = \"evil.json\"", "hub_public_key = \"h\""] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("may not set"), "{bad}: {e}");
        }
        assert!(parse("not = [toml").expect_err("garbage").starts_with("not TOML"));
        assert!(parse(&"#".repeat(MAX_BYTES + 1)).expect_err("large").contains("limit"));
    }
}
