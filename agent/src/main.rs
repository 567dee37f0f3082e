//! `yilian-agent`: the clinic agent's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use yilian_agent::{AgentConfig, AgentStats};

#[derive(Parser)]
#[command(name = "yilian-agent", version, about = "Yilian clinic agent: ECG cart → signed MQTT → county hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a device key: writes PREFIX.pk8 (private, mode 0600) and PREFIX.pub (hex, for enrolment).
    Keygen {
        /// Path prefix, e.g. keys/cart-01.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the agent.
    Run {
        /// Configuration file (see agent.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Keygen { out } => {
            let (pk8, public) = yilian_agent::run::keygen(&out)?;
            println!(
                "private key: {}\npublic key:  {}\nenrol with:  yilian-hub enroll --site SITE --device DEVICE --public-key {}",
                pk8.display(),
                public.display(),
                public.display()
            );
            Ok(())
        }
        Command::Run { config } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let s = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    s.cancel();
                });
                yilian_agent::run(cfg, Arc::new(AgentStats::default()), shutdown).await
            })?;
            Ok(())
        }
    }
}
