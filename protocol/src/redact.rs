//! Keyed hashes that stand in for patient identifiers in operational logs.
//!
//! Logs go to support staff and log collectors; patient names, identity numbers, birth dates,
//! clinical questions, device output lines and cart file names (carts often name files after the
//! patient) never appear in them. A log line carries `ph:` and the first 12 hex digits of
//! HMAC-SHA256 under a per-installation key instead: the same patient gives the same tag within
//! one installation, so support can follow one study through the logs (and, with the key file and
//! the name, check a guess), while a log alone reveals nothing, and tags from different counties
//! do not match. Study and instance UIDs are random identifiers, not patient data, and stay.
//!
//! The key is installed once per process ([`install`]); until then a random key made at first
//! use stands in, so nothing is ever logged in clear, only correlation across restarts is lost.

use ring::hmac;
use std::fmt;
use std::sync::OnceLock;

/// Bytes of a log key.
pub const KEY_LEN: usize = 32;

static KEY: OnceLock<hmac::Key> = OnceLock::new();

/// Installs this process's log key (from the installation's key file). The first call wins;
/// returns whether this call's key is the one in use.
pub fn install(key: &[u8; KEY_LEN]) -> bool {
    let mut ours = false;
    KEY.get_or_init(|| {
        ours = true;
        hmac::Key::new(hmac::HMAC_SHA256, key)
    });
    ours
}

/// A fresh random log key, for a new installation's key file.
pub fn new_key() -> Result<[u8; KEY_LEN], ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut k = [0u8; KEY_LEN];
    ring::rand::SystemRandom::new().fill(&mut k)?;
    Ok(k)
}

fn key() -> &'static hmac::Key {
    KEY.get_or_init(|| {
        // Not installed: a key no one holds. Should the random source fail, a fixed key still
        // hides the text (only the cross-installation property is lost for this process).
        let k = new_key().unwrap_or([0x5a; KEY_LEN]);
        hmac::Key::new(hmac::HMAC_SHA256, &k)
    })
}

/// A keyed hash of some text, shown as `prefix:hex12`; `-` for empty text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    prefix: &'static str,
    digest: [u8; 6],
    empty: bool,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.empty {
            return f.write_str("-");
        }
        write!(f, "{}:{}", self.prefix, hex::encode(self.digest))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn tag(prefix: &'static str, text: &str) -> Tag {
    let full = hmac::sign(key(), text.as_bytes());
    let mut digest = [0u8; 6];
    digest.copy_from_slice(&full.as_ref()[..6]);
    Tag { prefix, digest, empty: text.is_empty() }
}

/// Stands in for a patient name or identity number: `ph:…`.
pub fn patient(text: &str) -> Tag {
    tag("ph", text)
}

/// Stands in for free text that may name a patient (a clinical question, a line a cart printed,
/// a parser message quoting a field): `th:…`.
pub fn text(text: &str) -> Tag {
    tag("th", text)
}

/// Stands in for a file name that may be a patient's name: `fh:…` plus the extension, so the
/// kind of file stays visible (`fh:1a2b3c4d5e6f.xml`).
pub fn file_name(path: &std::path::Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let t = tag("fh", &name);
    match path.extension().and_then(|e| e.to_str()).filter(|e| e.len() <= 8 && e.is_ascii()) {
        Some(ext) => format!("{t}.{ext}"),
        None => t.to_string(),
    }
}

/// [`file_name`] of each path, for logging a list.
pub fn file_names<P: AsRef<std::path::Path>>(paths: &[P]) -> Vec<String> {
    paths.iter().map(|p| file_name(p.as_ref())).collect()
}

/// `text` with every mention of these files (full path or bare name) replaced by its
/// [`file_name`] tag, so a message that quotes a path keeps its meaning without the name.
pub fn scrub_paths<P: AsRef<std::path::Path>>(text: &str, paths: &[P]) -> String {
    let mut out = text.to_string();
    for p in paths {
        let p = p.as_ref();
        let tag = file_name(p);
        let full = p.display().to_string();
        if !full.is_empty() {
            out = out.replace(&full, &tag);
        }
        if let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()).filter(|n| !n.is_empty()) {
            out = out.replace(&name, &tag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_hide_the_text_and_are_stable_within_the_installation() {
        install(&[7; KEY_LEN]);
        let a = patient("金丝雀测试").to_string();
        assert!(a.starts_with("ph:") && a.len() == 15, "{a}");
        assert!(!a.contains("金丝雀"));
        assert_eq!(a, patient("金丝雀测试").to_string());
        assert_ne!(a, patient("金丝雀测试二").to_string());
        assert_eq!(patient("").to_string(), "-");
        let f = file_name(std::path::Path::new("/inbox/CANARY-ID-7Q3_张三.xml"));
        assert!(f.starts_with("fh:") && f.ends_with(".xml") && !f.contains("CANARY"), "{f}");
        assert!(!format!("{:?}", text("CANARY-ID-7Q3")).contains("CANARY"));
        let p = std::path::Path::new("/inbox/stat/王五.xml");
        let said = scrub_paths("/inbox/stat/王五.xml: larger than 9 bytes; 王五.xml again", &[p]);
        assert!(!said.contains("王五") && said.contains("larger than 9 bytes"), "{said}");
    }
}
