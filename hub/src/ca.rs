//! The county CA: one certificate authority per county hub, made on first start.
//!
//! Files in `<data>/ca/`: `ca.key` (ECDSA P-256, PKCS#8 PEM, mode 0600) and `ca.pem`, the hub's
//! server certificate `server.pem` with its key `server.key` (0600, kept across restarts so a
//! pinned key stays valid; the certificate is re-issued at each start with the current names),
//! and `hub-client.pem`, the client certificate of the hub's own MQTT connection.
//!
//! The CA and server keys are P-256 because browsers do not accept Ed25519 in TLS. A device's
//! certificate certifies the Ed25519 key it already enrolled with (its `.pk8` is also its TLS
//! client key), so the certificate identity is the enrolled key; the hub issues it from the
//! public key alone and never sees a device's private key.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use std::path::{Path, PathBuf};
use yilian_protocol::keys::PublicKey;

/// The certificate identity (CN) of the hub's own MQTT connection.
pub const HUB_IDENTITY: &str = "yilian-hub";

/// The broker identity (certificate CN, user name, client id) of hub process `instance` among
/// several sharing one store; a lone hub is [`HUB_IDENTITY`].
pub fn hub_identity(instance: Option<&str>) -> String {
    instance.map_or_else(|| HUB_IDENTITY.to_string(), |i| format!("{HUB_IDENTITY}-{i}"))
}

/// The CA could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// File trouble.
    #[error("county CA {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// rcgen refused a key or certificate.
    #[error("county CA: {what}: {source}")]
    Cert {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: rcgen::Error,
    },
    /// A name is not usable in a certificate.
    #[error("county CA: {0:?} is not a valid certificate name")]
    BadName(String),
}

/// The county CA, loaded with its key.
pub struct CountyCa {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CountyCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountyCa({})", self.dir.display())
    }
}

/// Where the hub's TLS server certificate and key are.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// Base64 SHA-256 of the certificate's public key (what Chromium's
    /// `--ignore-certificate-errors-spki-list` and HPKP-style pins take).
    pub spki_sha256_base64: String,
}

/// The files written for one device by [`write_credentials`].
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The county CA certificate the agent pins (`ca.pem`).
    pub ca: PathBuf,
    /// The device's certificate (`<device>.crt`).
    pub certificate: PathBuf,
    /// The hub's signing key (`hub.pub`).
    pub hub_public_key: PathBuf,
}

/// `<data>/ca/ca.pem`: the file to hand to agents and to import into browsers.
pub fn ca_pem_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ca").join("ca.pem")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io { path: path.to_path_buf(), source }
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CaError {
    move |source| CaError::Cert { what, source }
}

/// An Ed25519 public key as rcgen wants it (the raw 32 bytes).
struct Ed25519Public<'a>(&'a [u8; 32]);

impl PublicKeyData for Ed25519Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Yilian county CA");
    dn.push(DnType::OrganizationName, "Yilian");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    // Fixed validity, so that rebuilding these parameters at each start describes the stored CA.
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    p
}

/// A time as rcgen wants it, from milliseconds since the epoch.
fn at_ms(ms: i64) -> time::OffsetDateTime {
    rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The serial number of every certificate issued for `device`'s enrolled `key`.
///
/// It is derived from the pair rather than drawn at random so that the CRL can name every
/// certificate of a revoked or retired key without a register of what was issued: the hub
/// re-issues a device's certificate whenever its agent asks (enrolment polls), and all those
/// copies certify the same subject and key and differ only in validity. RFC 5280 wants a serial
/// per certificate; one per (device, key) is the trade made for a CRL that can be rebuilt from
/// the enrolment record alone.
pub fn device_serial(device: &str, key: &PublicKey) -> [u8; 16] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(b"yilian device certificate serial\0");
    h.update(device.as_bytes());
    h.update(b"\0");
    h.update(&key.0);
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&h.finish().as_ref()[..16]);
    // Positive, and no leading zero octet to be stripped from the DER integer.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

/// A key the broker must no longer accept: the certificates of `device` for `key` go in the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedKey {
    /// Device id (the certificate's CN).
    pub device: String,
    /// The key the certificates certify.
    pub key: PublicKey,
    /// When it stopped being valid (revocation, or the end of a rotation's overlap).
    pub since_ms: i64,
    /// The device was revoked (key compromise), rather than its key superseded by a rotation.
    pub compromised: bool,
}

/// How long a CRL the hub writes stays valid. The hub rewrites it daily and at every change; a
/// broker left with an expired CRL refuses every client, so the margin is generous.
pub const CRL_VALID_DAYS: u32 = 30;

/// Leaf parameters valid from yesterday (clinic clocks run behind) for `days`.
fn leaf_params(cn: &str, ou: Option<&str>, days: u32) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    // The site goes in OU, not O: rumqttd treats a subject O as a tenant id and refuses any that
    // is not alphanumeric (rumqttd 0.20 src/server/tls.rs extract_tenant_id), and site ids have
    // dashes.
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    p.distinguished_name = dn;
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let day = std::time::Duration::from_secs(24 * 3600);
    p.not_before = now - day;
    p.not_after = now + day * days;
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| CaError::BadName("random serial".into()))?;
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn load_or_make_key(path: &Path) -> Result<KeyPair, CaError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(cert_err("reading a key")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err("making a key"))?;
            write_private(path, &key.serialize_pem())?;
            Ok(key)
        }
        Err(e) => Err(CaError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Writes `text` to `path` through a temporary file and a rename (readers never see half).
fn write_public(path: &Path, text: &str) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl CountyCa {
    /// Loads the CA from `<data>/ca/`, making it on first use (secure by default: the first
    /// `yilian-hub run` has TLS without any step by hand).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CaError> {
        let dir = data_dir.join("ca");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key_path = dir.join("ca.key");
        let pem_path = dir.join("ca.pem");
        let fresh = !key_path.exists();
        let key = load_or_make_key(&key_path)?;
        let ca_pem = if fresh || !pem_path.exists() {
            let cert = ca_params().self_signed(&key).map_err(cert_err("making the CA certificate"))?;
            write_public(&pem_path, &cert.pem())?;
            cert.pem()
        } else {
            std::fs::read_to_string(&pem_path).map_err(io(&pem_path))?
        };
        Ok(Self { dir, ca_pem, issuer: Issuer::new(ca_params(), key) })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Path of the CA certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a client certificate for a device's enrolled Ed25519 key: CN = device id,
    /// OU = site, valid ten years, serial [`device_serial`]. Revocation is the hub's enrolment
    /// record, checked at every connection to the embedded broker and published to an external
    /// one as a CRL ([`CountyCa::crl_pem`]), not the certificate's expiry.
    pub fn issue_device(&self, site: &str, device: &str, key: &PublicKey) -> Result<String, CaError> {
        yilian_protocol::topic::check_slug("device", device).map_err(|_| CaError::BadName(device.into()))?;
        yilian_protocol::topic::check_slug("site", site).map_err(|_| CaError::BadName(site.into()))?;
        // The hubs' names: a device holding one would get the hubs' rights at the broker.
        if device == HUB_IDENTITY || device.starts_with(&format!("{HUB_IDENTITY}-")) {
            return Err(CaError::BadName(device.into()));
        }
        let mut p = leaf_params(device, Some(site), 3650)?;
        p.serial_number = Some(SerialNumber::from_slice(&device_serial(device, key)));
        self.issue_client(p, key)
    }

    /// Issues the client certificate of the hub's own MQTT connection (CN `identity`, see
    /// [`hub_identity`]).
    pub fn issue_hub_client(&self, hub_key: &PublicKey, identity: &str) -> Result<String, CaError> {
        self.issue_client(leaf_params(identity, None, 3650)?, hub_key)
    }

    /// A certificate with CN = `device` for the hub's own key, valid ten minutes: with it the hub
    /// connects to an external broker under the device's client id (Mosquitto takes the client
    /// id from the CN) and so drops a revoked device's live connection. The hub holds the CA key
    /// and could always do this; the short life keeps the certificate from being worth stealing.
    pub fn issue_takeover(&self, device: &str, hub_key: &PublicKey) -> Result<String, CaError> {
        yilian_protocol::topic::check_slug("device", device).map_err(|_| CaError::BadName(device.into()))?;
        let mut p = leaf_params(device, None, 1)?;
        let now = at_ms(crate::clock::now_ms());
        p.not_before = now - std::time::Duration::from_secs(5 * 60);
        p.not_after = now + std::time::Duration::from_secs(10 * 60);
        self.issue_client(p, hub_key)
    }

    /// The county CRL (PEM): every certificate of each key in `revoked`, signed by the CA,
    /// valid [`CRL_VALID_DAYS`] from `now_ms`.
    pub fn crl_pem(&self, revoked: &[RevokedKey], now_ms: i64) -> Result<String, CaError> {
        use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams};
        let now = at_ms(now_ms);
        let params = CertificateRevocationListParams {
            // An hour back, so a broker whose clock is a little behind does not see a CRL from
            // the future.
            this_update: now - std::time::Duration::from_secs(3600),
            next_update: now + std::time::Duration::from_secs(u64::from(CRL_VALID_DAYS) * 24 * 3600),
            crl_number: SerialNumber::from_slice(&u64::try_from(now_ms).unwrap_or(0).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&device_serial(&r.device, &r.key)),
                    revocation_time: at_ms(r.since_ms.min(now_ms)),
                    reason_code: Some(if r.compromised {
                        RevocationReason::KeyCompromise
                    } else {
                        RevocationReason::Superseded
                    }),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(cert_err("signing the CRL"))?;
        crl.pem().map_err(cert_err("encoding the CRL"))
    }

    /// Writes [`CountyCa::crl_pem`] to `path` (through a rename: a broker reloading never reads
    /// half a file).
    pub fn write_crl(&self, path: &Path, revoked: &[RevokedKey], now_ms: i64) -> Result<(), CaError> {
        write_public(path, &self.crl_pem(revoked, now_ms)?)
    }

    fn issue_client(&self, mut p: CertificateParams, key: &PublicKey) -> Result<String, CaError> {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert =
            p.signed_by(&Ed25519Public(&key.0), &self.issuer).map_err(cert_err("issuing a client certificate"))?;
        Ok(cert.pem())
    }

    /// (Re)issues the hub's server certificate for `localhost`, `127.0.0.1`, `::1` and `names`
    /// (the host names or addresses clinics and browsers use), keeping its key.
    pub fn server_cert(&self, names: &[String]) -> Result<ServerCert, CaError> {
        let key_path = self.dir.join("server.key");
        let key = load_or_make_key(&key_path)?;
        let mut p = leaf_params(HUB_IDENTITY, Some("hub"), 730)?;
        let mut all = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        all.extend(names.iter().filter(|n| !n.is_empty()).cloned());
        all.dedup();
        for n in &all {
            let san = match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(|_| CaError::BadName(n.clone()))?),
            };
            p.subject_alt_names.push(san);
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).map_err(cert_err("issuing the server certificate"))?;
        let cert_path = self.dir.join("server.pem");
        // The chain (server, CA) so clients that only know the CA by name can build it.
        write_public(&cert_path, &format!("{}{}", cert.pem(), self.ca_pem))?;
        Ok(ServerCert { cert: cert_path, key: key_path, spki_sha256_base64: spki_b64(&key) })
    }
}

/// Base64 SHA-256 of the hub server key's SubjectPublicKeyInfo in `<data>/ca/server.key` (for
/// Chromium's `--ignore-certificate-errors-spki-list`, which trusts exactly that key).
pub fn server_spki_sha256_base64(data_dir: &Path) -> Result<String, CaError> {
    let path = data_dir.join("ca").join("server.key");
    let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
    let key = KeyPair::from_pem(&pem).map_err(cert_err("reading the server key"))?;
    Ok(spki_b64(&key))
}

fn spki_b64(key: &KeyPair) -> String {
    let spki = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, spki.as_ref())
}

/// How to make a browser trust the county CA at `ca_pem`, in one line per system.
pub fn trust_hint(ca_pem: &Path) -> String {
    let p = ca_pem.display();
    format!(
        "trust the county CA in browsers: Linux (Chrome/Chromium) certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n yilian-county -i {p}; \
         Windows certutil -addstore Root {p}; macOS security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db {p}"
    )
}

/// Writes what a device needs to connect into `out`: `ca.pem`, `<device>.crt` (its certificate
/// for `key`) and `hub.pub` (the hub's signing key). Used by `yilian-hub enroll --out` and by
/// token enrolment.
pub fn write_credentials(
    ca: &CountyCa,
    out: &Path,
    site: &str,
    device: &str,
    key: &PublicKey,
    hub_key: &PublicKey,
) -> Result<Credentials, CaError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let cert = ca.issue_device(site, device, key)?;
    let files = Credentials {
        ca: out.join("ca.pem"),
        certificate: out.join(format!("{device}.crt")),
        hub_public_key: out.join("hub.pub"),
    };
    write_public(&files.ca, ca.ca_pem())?;
    write_public(&files.certificate, &cert)?;
    write_public(&files.hub_public_key, &format!("{}\n", hub_key.to_hex()))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::keys::SigningKey;

    #[test]
    fn the_ca_is_made_once_and_reloaded_with_the_same_certificate_and_key_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let a = CountyCa::load_or_create(tmp.path()).expect("create");
        let b = CountyCa::load_or_create(tmp.path()).expect("load");
        assert_eq!(a.ca_pem(), b.ca_pem());
        let mode = std::fs::metadata(tmp.path().join("ca/ca.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = a.server_cert(&["hub.county".into()]).expect("server");
        let again = b.server_cert(&[]).expect("server again");
        assert_eq!(first.spki_sha256_base64, again.spki_sha256_base64, "the server key is kept");
    }

    #[test]
    fn a_device_certificate_certifies_the_enrolled_key_without_its_private_half() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = CountyCa::load_or_create(tmp.path()).expect("ca");
        let device = SigningKey::generate().expect("rng");
        let pem = ca.issue_device("xz-1", "cart-1", &device.public_key()).expect("issue");
        let der = pem_body(&pem);
        // The raw Ed25519 key appears in the certificate's SubjectPublicKeyInfo.
        assert!(der.windows(32).any(|w| w == device.public_key().0), "the certificate holds the device's key");
        assert!(der.windows(6).any(|w| w == b"cart-1"), "CN is the device id");
        assert!(ca.issue_device("xz 1", "cart-1", &device.public_key()).is_err());
        let hub = SigningKey::generate().expect("rng");
        let files =
            write_credentials(&ca, &tmp.path().join("out"), "xz-1", "cart-1", &device.public_key(), &hub.public_key())
                .expect("bundle");
        assert_eq!(std::fs::read_to_string(files.ca).expect("ca"), ca.ca_pem());
        assert!(std::fs::read_to_string(files.certificate).expect("crt").starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(std::fs::read_to_string(files.hub_public_key).expect("pub").trim(), hub.public_key().to_hex());
    }

    #[test]
    fn no_device_gets_a_hubs_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = CountyCa::load_or_create(tmp.path()).expect("ca");
        let key = yilian_protocol::keys::SigningKey::generate().expect("key").public_key();
        for name in ["yilian-hub", "yilian-hub-a", "yilian-hub-2"] {
            assert!(matches!(ca.issue_device("s1", name, &key), Err(CaError::BadName(_))), "{name}");
        }
        assert!(ca.issue_device("s1", "yilian-hubcart", &key).is_ok(), "only the hubs' own names are kept back");
        assert_eq!(hub_identity(Some("b")), "yilian-hub-b");
        assert_eq!(hub_identity(None), HUB_IDENTITY);
    }

    #[test]
    fn the_crl_names_the_certificates_of_revoked_keys_and_only_those() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = CountyCa::load_or_create(tmp.path()).expect("ca");
        let (gone, kept) = (SigningKey::generate().expect("rng"), SigningKey::generate().expect("rng"));
        let serial = device_serial("cart-1", &gone.public_key());
        assert_ne!(serial, device_serial("cart-1", &kept.public_key()));
        assert_ne!(serial, device_serial("cart-2", &gone.public_key()));
        // Every certificate issued for the pair carries its serial, whenever it was issued.
        for _ in 0..2 {
            let cert = pem_body(&ca.issue_device("xz-1", "cart-1", &gone.public_key()).expect("issue"));
            assert!(cert.windows(16).any(|w| w == serial));
        }
        let revoked =
            [RevokedKey { device: "cart-1".into(), key: gone.public_key(), since_ms: 1_000, compromised: true }];
        let crl = ca.crl_pem(&revoked, 1_700_000_000_000).expect("crl");
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
        let der = pem_body(&crl);
        assert!(der.windows(16).any(|w| w == serial), "the revoked key's serial is listed");
        let other = device_serial("cart-1", &kept.public_key());
        assert!(!der.windows(16).any(|w| w == other), "a valid key's is not");
    }

    fn pem_body(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64")
    }
}
