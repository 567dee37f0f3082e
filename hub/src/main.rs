//! `yilian-hub`: the county hub's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use yilian_hub::store::Db;
use yilian_hub::{BrokerMode, HubConfig};
use yilian_protocol::keys::PublicKey;

#[derive(Parser)]
#[command(name = "yilian-hub", version, about = "Yilian county hub: verify, store, queue, report")]
struct Cli {
    /// Data folder (database, hub key).
    #[arg(long, global = true, default_value = "yilian-data", env = "YILIAN_DATA")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Run {
        /// Use an external broker (mqtts://host:port) instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// Listen address of the embedded broker (MQTT over TLS).
        #[arg(long, default_value = "0.0.0.0:8883")]
        mqtt_listen: SocketAddr,
        /// Host name or address clinics and browsers use for this hub (repeatable); the server
        /// certificate is issued for these besides localhost and 127.0.0.1.
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// Run MQTT and HTTP WITHOUT TLS. For debugging only: patient data crosses the network
        /// in the clear.
        #[arg(long)]
        insecure_plaintext: bool,
        /// Listen address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Minutes a specialist's claim lasts.
        #[arg(long, default_value_t = 15)]
        claim_minutes: u64,
        /// Messages per second one device may send, sustained (more are dropped unacknowledged,
        /// and the agent sends them again later).
        #[arg(long, default_value_t = 200.0)]
        device_msgs_per_s: f64,
        /// Messages one device may send in a burst.
        #[arg(long, default_value_t = 2000.0)]
        device_burst: f64,
        /// Minutes a STAT study may wait before the worklist marks it overdue.
        #[arg(long, default_value_t = 10)]
        stat_target_minutes: u64,
        /// Minutes an urgent study may wait.
        #[arg(long, default_value_t = 30)]
        urgent_target_minutes: u64,
        /// Minutes a routine study may wait.
        #[arg(long, default_value_t = 1440)]
        routine_target_minutes: u64,
    },
    /// Enrol a device with its public key (hex file from `yilian-agent keygen`).
    Enroll {
        /// Site (clinic) id.
        #[arg(long)]
        site: String,
        /// Device id.
        #[arg(long)]
        device: String,
        /// The device's `.pub` file.
        #[arg(long)]
        public_key: PathBuf,
        /// Replace a different key already enrolled for this device.
        #[arg(long)]
        replace: bool,
        /// Also write the device's credentials here: `ca.pem`, `<device>.crt`, `hub.pub`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The county CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Write an external broker's configuration from the county CA.
    BrokerConfig {
        #[command(subcommand)]
        command: BrokerConfigCommand,
    },
    /// Manage specialists.
    Specialist {
        #[command(subcommand)]
        command: SpecialistCommand,
    },
    /// Print the hub's public key (give `hub.pub` to every agent).
    Key,
    /// Manage console users (specialists and county IT admins).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum BrokerConfigCommand {
    /// Mosquitto: TLS listener requiring county-CA client certificates (CN = device id = username
    /// = client id) and an ACL confining each device to its own topics. Start it with
    /// `mosquitto -c DIR/mosquitto.conf` and run the hub with `--broker mqtts://HOST:PORT`.
    Mosquitto {
        /// Folder for mosquitto.conf, acl, ca.pem, broker.pem and broker.key.
        #[arg(long)]
        out: PathBuf,
        /// Listener: `host:port`, or a port alone for every interface.
        #[arg(long, default_value = "8883")]
        listen: String,
        /// Host names or addresses clinics use for the broker (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// The user Mosquitto runs as when started as root (it must be able to read broker.key);
        /// default: Mosquitto's own (`mosquitto`).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the county CA and the hub's server certificate in the data folder (`run` does this
    /// on first start too); prints where they are and how to trust the CA in a browser.
    Init {
        /// Host names or addresses for the server certificate besides localhost (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a console user, or set a new password; the password is read from standard input.
    Add {
        /// Sign-in id, e.g. "li.na".
        #[arg(long)]
        id: String,
        /// Display name, e.g. "李娜".
        #[arg(long)]
        name: String,
        /// `specialist` or `admin` (county IT).
        #[arg(long, default_value = "specialist")]
        role: String,
    },
}

#[derive(Subcommand)]
enum SpecialistCommand {
    /// Add a specialist (or issue a new token) and print the API token once.
    Add {
        /// Id, e.g. "li.na".
        #[arg(long)]
        id: String,
        /// Display name, e.g. "李娜".
        #[arg(long)]
        name: String,
    },
}

fn now_ms() -> i64 {
    yilian_hub::clock::now_ms()
}

fn open_db(data: &std::path::Path) -> anyhow::Result<Db> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    Ok(Db::open(&data.join("yilian.db"))?)
}

fn main() -> anyhow::Result<()> {
    // rumqttd logs every ordinary client disconnect at ERROR; the hub logs device connections
    // itself, so the broker is quiet unless RUST_LOG asks for it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            broker,
            mqtt_listen,
            tls_names,
            insecure_plaintext,
            http,
            claim_minutes,
            device_msgs_per_s,
            device_burst,
            stat_target_minutes,
            urgent_target_minutes,
            routine_target_minutes,
        } => {
            let mode = broker.map_or(BrokerMode::Embedded(mqtt_listen), BrokerMode::External);
            let mut cfg = HubConfig::new(cli.data, mode);
            cfg.tls_names = tls_names;
            cfg.insecure_plaintext = insecure_plaintext;
            cfg.claim_ttl = Duration::from_secs(claim_minutes.max(1) * 60);
            cfg.limits.msgs_per_s = device_msgs_per_s.max(1.0);
            cfg.limits.msg_burst = device_burst.max(1.0);
            cfg.wait_targets = [stat_target_minutes, urgent_target_minutes, routine_target_minutes]
                .map(|m| Duration::from_secs(m.max(1) * 60));
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("binding {http}"))?;
                let shutdown = tokio_util::sync::CancellationToken::new();
                let s = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    s.cancel();
                });
                yilian_hub::run(cfg, listener, shutdown).await?;
                anyhow::Ok(())
            })
        }
        Command::Enroll { site, device, public_key, replace, out } => {
            yilian_protocol::topic::Topic::new(&site, &device, yilian_protocol::topic::Channel::Up)?;
            let text =
                std::fs::read_to_string(&public_key).with_context(|| format!("reading {}", public_key.display()))?;
            let key = PublicKey::from_hex(&text).with_context(|| format!("{}", public_key.display()))?;
            open_db(&cli.data)?.enroll(&site, &device, &key, replace, now_ms())?;
            println!("enrolled {device} at {site}, key id {}", key.id());
            if let Some(out) = out {
                let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
                let hub = yilian_hub::keys::load_or_create(&cli.data)?;
                let files = yilian_hub::ca::write_credentials(&ca, &out, &site, &device, &key, &hub.public_key())?;
                println!(
                    "credentials for the agent: ca_certificate = {}, certificate = {}, hub_public_key = {}",
                    files.ca.display(),
                    files.certificate.display(),
                    files.hub_public_key.display()
                );
            }
            Ok(())
        }
        Command::BrokerConfig { command: BrokerConfigCommand::Mosquitto { out, listen, tls_names, user } } => {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
            let files = yilian_hub::mosquitto::write_config(&ca, &out, &listen, &tls_names, true, user.as_deref())?;
            println!("mosquitto configuration: {} (ACL {})", files.conf.display(), files.acl.display());
            println!("start it with: mosquitto -c {}", files.conf.display());
            Ok(())
        }
        Command::Ca { command: CaCommand::Init { tls_names } } => {
            let ca = yilian_hub::ca::CountyCa::load_or_create(&cli.data)?;
            let server = ca.server_cert(&tls_names)?;
            println!("county CA: {}", ca.ca_pem_path().display());
            println!("hub server certificate: {} (key {})", server.cert.display(), server.key.display());
            println!("{}", yilian_hub::ca::trust_hint(&ca.ca_pem_path()));
            Ok(())
        }
        Command::Specialist { command: SpecialistCommand::Add { id, name } } => {
            let token = yilian_hub::http::auth::new_token().map_err(|_| anyhow::anyhow!("random generator failed"))?;
            open_db(&cli.data)?.add_specialist(&id, &name, &yilian_hub::http::auth::token_hash(&token))?;
            println!("specialist {id} ({name}) token (shown once):\n{token}");
            Ok(())
        }
        Command::User { command: UserCommand::Add { id, name, role } } => {
            anyhow::ensure!(matches!(role.as_str(), "specialist" | "admin"), "--role must be specialist or admin");
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(password.chars().count() >= 8, "the password must have at least 8 characters");
            let hash = yilian_hub::http::session::hash_password(password).map_err(|e| anyhow::anyhow!(e))?;
            open_db(&cli.data)?.add_user(&id, &name, &role, &hash, now_ms())?;
            println!("user {id} ({name}) is a {role}");
            Ok(())
        }
        Command::Key => {
            let key = yilian_hub::keys::load_or_create(&cli.data)?;
            println!("{}\n{}", yilian_hub::keys::public_key_path(&cli.data).display(), key.public_key().to_hex());
            Ok(())
        }
    }
}
