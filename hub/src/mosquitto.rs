//! `yilian-hub broker-config mosquitto`: a Mosquitto configuration for the county, from the
//! county CA.
//!
//! Every client presents a certificate from the county CA (`require_certificate`); its CN becomes
//! its username (`use_identity_as_username`) and its client id (`use_username_as_clientid`), so
//! a device can neither log in as another nor take over another's session by reusing its client
//! id. The ACL uses `%u` (the CN, which is the device id): one static file covers every device,
//! since device ids are unique in a county. A device may publish only to its own `up` and
//! `status`, read only its own `ack` and `report` and the fleet topics; the hub (CN
//! `yilian-hub`) reads every uplink and writes acks, reports and fleet manifests.
//!
//! Because `use_username_as_clientid` makes the client id the CN, two hub processes sharing one
//! Mosquitto need certificates with distinct CNs and a `user` block each in the ACL.

use crate::ca::{CaError, CountyCa, HUB_IDENTITY};
use std::path::{Path, PathBuf};

/// The files written.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    /// `mosquitto.conf`: start the broker with `mosquitto -c` this file.
    pub conf: PathBuf,
    /// `acl`: the topic rules.
    pub acl: PathBuf,
    /// `crl.pem`: the county CRL, which the hub keeps current (`run --broker-crl`).
    pub crl: PathBuf,
}

/// The ACL text (see the module documentation), with the rights of the hub for the lone hub
/// and for each hub process named in `hub_instances` (several hubs sharing one store).
pub fn acl(hub_instances: &[String]) -> String {
    let mut hubs = vec![HUB_IDENTITY.to_string()];
    hubs.extend(hub_instances.iter().map(|i| crate::ca::hub_identity(Some(i))));
    let mut text = format!(
        "# Yilian county broker ACL (written by yilian-hub broker-config mosquitto).\n\
         # %u is the client certificate's CN: the device id, or {HUB_IDENTITY}[-NAME] for a hub.\n\
         \n\
         # Every device: its own topics only.\n\
         pattern write yl/v1/+/%u/up\n\
         pattern write yl/v1/+/%u/status\n\
         pattern read yl/v1/+/%u/ack\n\
         pattern read yl/v1/+/%u/report\n\
         pattern read yl/v1/fleet/#\n"
    );
    for hub in hubs {
        let share = crate::run::SHARE_GROUP;
        text.push_str(&format!(
            "\n\
             # A hub: every uplink in (alone, or its share of it), acks, reports and fleet manifests out.\n\
             user {hub}\n\
             topic read yl/v1/+/+/up\n\
             topic read $share/{share}/yl/v1/+/+/up\n\
             topic readwrite yl/v1/+/+/status\n\
             topic read $share/{share}/yl/v1/+/+/status\n\
             topic write yl/v1/+/+/ack\n\
             topic write yl/v1/+/+/report\n\
             topic readwrite yl/v1/fleet/#\n"
        ));
    }
    text
}

#[allow(clippy::too_many_arguments)]
pub fn write_config(
    ca: &CountyCa,
    out: &Path,
    listen: &str,
    tls_names: &[String],
    persistence: bool,
    run_as: Option<&str>,
    revoked: &[crate::ca::RevokedKey],
    now_ms: i64,
    hub_instances: &[String],
) -> Result<MosquittoFiles, CaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let server = ca.server_cert(tls_names)?;
    let ca_path = out.join("ca.pem");
    let cert_path = out.join("broker.pem");
    let key_path = out.join("broker.key");
    std::fs::write(&ca_path, ca.ca_pem()).map_err(io(&ca_path))?;
    std::fs::copy(&server.cert, &cert_path).map_err(io(&cert_path))?;
    let key = std::fs::read(&server.key).map_err(io(&server.key))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&key_path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        f.write_all(&key).map_err(io(&key_path))?;
    }
    let crl_path = out.join("crl.pem");
    ca.write_crl(&crl_path, revoked, now_ms)?;
    let acl_path = out.join("acl");
    std::fs::write(&acl_path, acl(hub_instances)).map_err(io(&acl_path))?;
    let (port, bind) = match listen.rsplit_once(':') {
        Some((host, port)) => (port.to_string(), format!(" {}", host.trim_start_matches('[').trim_end_matches(']'))),
        None => (listen.to_string(), String::new()),
    };
    let persistence = if persistence {
        format!("persistence true\npersistence_location {}/\n", out.display())
    } else {
        "persistence false\n".to_string()
    };
    let user = run_as.map(|u| format!("user {u}\n")).unwrap_or_default();
    let conf = format!(
        "# Yilian county broker (written by yilian-hub broker-config mosquitto).\n\
         # broker.key (mode 0600) must be readable by the user Mosquitto runs as.\n\
         {user}\
         per_listener_settings false\n\
         allow_anonymous false\n\
         acl_file {acl}\n\
         {persistence}\
         # Yilian's packet limit is 128 KiB; Mosquitto's default inflight window is 20.\n\
         max_packet_size 1048576\n\
         \n\
         listener {port}{bind}\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         # Kept current by the hub (run --broker-crl), which has Mosquitto reload it.\n\
         crlfile {crl}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n",
        acl = acl_path.display(),
        ca = ca_path.display(),
        cert = cert_path.display(),
        key = key_path.display(),
        crl = crl_path.display(),
    );
    let conf_path = out.join("mosquitto.conf");
    std::fs::write(&conf_path, conf).map_err(io(&conf_path))?;
    Ok(MosquittoFiles { conf: conf_path, acl: acl_path, crl: crl_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_requires_client_certificates_and_the_acl_confines_devices_to_their_own_topics() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = CountyCa::load_or_create(tmp.path()).expect("ca");
        let files =
            write_config(&ca, &tmp.path().join("mq"), "127.0.0.1:8883", &[], false, None, &[], 0, &["b".into()])
                .expect("write");
        let conf = std::fs::read_to_string(&files.conf).expect("conf");
        for line in [
            "listener 8883 127.0.0.1",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",
            "allow_anonymous false",
            &format!("crlfile {}", files.crl.display()),
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} in\n{conf}");
        }
        let acl = std::fs::read_to_string(&files.acl).expect("acl");
        assert!(acl.contains("pattern write yl/v1/+/%u/up\n"));
        assert!(!acl.contains("pattern write yl/v1/+/+/"), "no device may write another's topics");
        assert!(acl.contains("user yilian-hub\n") && acl.contains("user yilian-hub-b\n"), "the lone hub and hub b");
        assert!(acl.contains("topic read $share/yilian-hubs/yl/v1/+/+/up\n"), "hubs may share the uplink");
    }
}
