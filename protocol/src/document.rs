//! The printable report (PDF) a clinic fetches from the hub over HTTPS, and the hub's signature
//! over it, which the clinic keeps beside the file so anyone can check it later, offline, with
//! the hub's public key (`yilian-agent verify-report`).
//!
//! Both statements are domain-separated and length-prefixed, like the enrolment statements.

use crate::keys::{PublicKey, SigningKey};
use serde::{Deserialize, Serialize};

const DOMAIN_FETCH: &[u8] = b"yilian/v1/report-pdf-fetch\0";
const DOMAIN_PDF: &[u8] = b"yilian/v1/report-pdf\0";

/// How far a fetch request's time may be from the hub's, ms.
pub const FETCH_SKEW_MS: i64 = 5 * 60 * 1000;

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

fn push_field(m: &mut Vec<u8>, field: &[u8]) {
    m.extend_from_slice(&(field.len() as u32).to_be_bytes());
    m.extend_from_slice(field);
}

/// What a device signs to fetch its report `report_id` at `at_ms`.
pub fn fetch_statement(device: &str, report_id: &str, at_ms: i64) -> Vec<u8> {
    let mut m = DOMAIN_FETCH.to_vec();
    push_field(&mut m, device.as_bytes());
    push_field(&mut m, report_id.as_bytes());
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// What the hub signs for the PDF of `report_id`, made for `device` of `site`.
pub fn pdf_statement(site: &str, device: &str, report_id: &str, sha256: &[u8; 32], length: u64) -> Vec<u8> {
    let mut m = DOMAIN_PDF.to_vec();
    push_field(&mut m, site.as_bytes());
    push_field(&mut m, device.as_bytes());
    push_field(&mut m, report_id.as_bytes());
    m.extend_from_slice(sha256);
    m.extend_from_slice(&length.to_be_bytes());
    m
}

/// Why a report PDF did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The file is not the one the hub signed.
    #[error("the file does not match what the hub signed (length {got} B, signed {signed} B, or another SHA-256)")]
    Altered {
        /// The file's length.
        got: u64,
        /// The signed length.
        signed: u64,
    },
    /// Signed by another key, or the signature is damaged.
    #[error("the signature is not the hub's (key {0})")]
    BadSignature(String),
    /// The signature file is malformed.
    #[error("the signature file is malformed: {0}")]
    Malformed(String),
}

/// The hub's signature over a report PDF, kept as `<report>.pdf.sig.json` at the clinic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfSignature {
    /// The report.
    pub report_id: String,
    /// The clinic's site.
    pub site: String,
    /// The device it was made for.
    pub device: String,
    /// SHA-256 of the PDF, hex.
    pub sha256: String,
    /// Its length, bytes.
    pub length: u64,
    /// The signing hub key's id.
    pub key_id: String,
    /// Ed25519 signature over [`pdf_statement`], hex.
    pub signature: String,
}

impl PdfSignature {
    /// Signs `pdf` for `device` of `site`.
    pub fn sign(key: &SigningKey, site: &str, device: &str, report_id: &str, pdf: &[u8]) -> Self {
        let sha = sha256(pdf);
        let length = pdf.len() as u64;
        let signature = key.sign(&pdf_statement(site, device, report_id, &sha, length));
        Self {
            report_id: report_id.into(),
            site: site.into(),
            device: device.into(),
            sha256: hex::encode(sha),
            length,
            key_id: key.key_id().to_string(),
            signature: hex::encode(signature),
        }
    }

    /// Checks that `pdf` is the file `key` signed.
    pub fn verify(&self, key: &PublicKey, pdf: &[u8]) -> Result<(), DocumentError> {
        let signed: [u8; 32] = hex::decode(&self.sha256)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| DocumentError::Malformed("sha256 is not 32 bytes of hex".into()))?;
        let sig = hex::decode(&self.signature).map_err(|_| DocumentError::Malformed("signature is not hex".into()))?;
        if !key.verify(&pdf_statement(&self.site, &self.device, &self.report_id, &signed, self.length), &sig) {
            return Err(DocumentError::BadSignature(self.key_id.clone()));
        }
        let got = sha256(pdf);
        if got != signed || pdf.len() as u64 != self.length {
            return Err(DocumentError::Altered { got: pdf.len() as u64, signed: self.length });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_pdf_verifies_and_any_change_does_not() {
        let hub = SigningKey::generate().expect("key");
        let pdf = b"%PDF-1.7 report".to_vec();
        let sig = PdfSignature::sign(&hub, "xz", "cart-1", "R000001", &pdf);
        assert_eq!(sig.verify(&hub.public_key(), &pdf), Ok(()));
        let mut altered = pdf.clone();
        altered[3] ^= 1;
        assert!(matches!(sig.verify(&hub.public_key(), &altered), Err(DocumentError::Altered { .. })));
        let other = SigningKey::generate().expect("key");
        assert!(matches!(sig.verify(&other.public_key(), &pdf), Err(DocumentError::BadSignature(_))));
        let moved = PdfSignature { report_id: "R000002".into(), ..sig.clone() };
        assert!(matches!(moved.verify(&hub.public_key(), &pdf), Err(DocumentError::BadSignature(_))));
        assert_ne!(fetch_statement("a", "R1", 5), fetch_statement("a", "R2", 5));
    }
}
