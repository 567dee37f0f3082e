//! The serial port task: open by path, read, feed the driver, forward events; reopen with
//! backoff when the port vanishes (cable pulled, USB adapter re-enumerated).

use crate::config::SerialConfig;
use crate::driver::{DeviceEvent, new_driver};
use crate::stats::AgentStats;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a port task reports.
#[derive(Debug)]
pub enum PortEvent {
    /// A decoded event from the port named.
    Device(String, DeviceEvent),
    /// The port closed (its partial stream data should be flushed).
    Closed(String),
}

/// Reads one port until `shutdown`.
pub async fn run_port(
    cfg: SerialConfig,
    tx: mpsc::Sender<PortEvent>,
    stats: Arc<AgentStats>,
    shutdown: CancellationToken,
) {
    let encoding = encoding_rs::Encoding::for_label(cfg.encoding.as_bytes()).unwrap_or(encoding_rs::UTF_8);
    let mut driver = new_driver(cfg.driver, encoding);
    let mut backoff = Duration::from_millis(100);
    let mut buf = vec![0u8; 16 * 1024];
    let path = cfg.path.to_string_lossy().into_owned();
    while !shutdown.is_cancelled() {
        match tokio_serial::new(&path, cfg.baud).open_native_async() {
            Ok(mut port) => {
                info!(port = %cfg.name, %path, baud = cfg.baud, "serial port open");
                AgentStats::add(&stats.port_opens, 1);
                backoff = Duration::from_millis(100);
                let reason = loop {
                    let n = tokio::select! {
                        _ = shutdown.cancelled() => break "agent stopping".to_string(),
                        r = port.read(&mut buf) => match r {
                            Ok(0) => break "end of file (cable pulled?)".to_string(),
                            Ok(n) => n,
                            Err(e) => break format!("read error: {e} (cable pulled?)"),
                        },
                    };
                    driver.push(&buf[..n]);
                    while let Some(ev) = driver.poll_event() {
                        match &ev {
                            DeviceEvent::Skipped { bytes, reason } => {
                                warn!(port = %cfg.name, bytes, %reason, "skipped bytes on the serial line");
                                AgentStats::add(&stats.bytes_skipped, *bytes as u64);
                            }
                            DeviceEvent::LinkGap { expected, got } => {
                                warn!(port = %cfg.name, expected, got, "frames lost on the serial line");
                                AgentStats::add(&stats.link_gaps, 1);
                            }
                            _ => AgentStats::add(&stats.device_events, 1),
                        }
                        if tx.send(PortEvent::Device(cfg.name.clone(), ev)).await.is_err() {
                            return;
                        }
                    }
                };
                driver.reset();
                while let Some(ev) = driver.poll_event() {
                    let _ = tx.send(PortEvent::Device(cfg.name.clone(), ev)).await;
                }
                let _ = tx.send(PortEvent::Closed(cfg.name.clone())).await;
                if shutdown.is_cancelled() {
                    return;
                }
                warn!(port = %cfg.name, %path, %reason, "serial port closed; will reopen");
            }
            Err(e) => {
                warn!(port = %cfg.name, %path, error = %e, retry_ms = backoff.as_millis() as u64, "cannot open serial port");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
