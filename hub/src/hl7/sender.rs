//! Sends the outbox to the HIS over MLLP: builds each new report's message once, sends what is
//! due over one connection, and retries a refused or unanswered message later with the same
//! bytes and control id, backing off up to [`HisConfig::retry_max`].

use super::message::{self, Charset, Parties};
use super::mllp;
use crate::clock::now_ms;
use crate::store::Store;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where and how the HIS takes results.
#[derive(Debug, Clone)]
pub struct HisConfig {
    /// `host:port` of its MLLP listener.
    pub addr: String,
    /// Its character set.
    pub charset: Charset,
    /// MSH-4, MSH-5, MSH-6.
    pub parties: Parties,
    /// How long to wait for an acknowledgement.
    pub ack_timeout: Duration,
    /// The longest wait between two attempts of one message.
    pub retry_max: Duration,
    /// How often to look for work.
    pub poll: Duration,
    /// The report PDF for the ED segment (none: the message goes without it).
    pub pdf: Option<crate::report_pdf::Printer>,
}

impl HisConfig {
    /// Defaults for a HIS at `addr`: UTF-8, ACK within 30 s, retries up to every 5 min.
    pub fn new(addr: &str, hub_id: &str) -> Self {
        Self {
            addr: addr.to_string(),
            charset: Charset::Utf8,
            parties: Parties {
                sending_facility: hub_id.to_string(),
                receiving_application: "HIS".into(),
                receiving_facility: String::new(),
            },
            ack_timeout: Duration::from_secs(30),
            retry_max: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            pdf: None,
        }
    }
}

/// Builds the messages of reports signed since `since_ms` (when the outbox began), with the
/// report PDF when the hub can print. Returns how many.
async fn enqueue_new(store: &Store, cfg: &HisConfig, since_ms: i64) -> Result<usize, crate::store::StoreError> {
    let items = store.call(move |db| db.hl7_unqueued(since_ms, 20, now_ms())).await??;
    let n = items.len();
    for r in items {
        let pdf = match &cfg.pdf {
            Some(printer) => printer
                .render(r.row.clone(), r.study.clone(), r.report.clone(), r.envelope.clone())
                .await
                .map_err(|e| warn!(error = %e, "no PDF for the HIS message"))
                .ok(),
            None => None,
        };
        let id = message::control_id(&r.report.report_id);
        let msh = message::Envelope { parties: &cfg.parties, charset: cfg.charset, control_id: &id, now_ms: now_ms() };
        let text = message::oru_r01(msh, &r.row, &r.study.measurements, &r.report, pdf.as_deref());
        let wire = cfg.charset.encode(&text);
        let rid = r.report.report_id.clone();
        store.call(move |db| db.hl7_enqueue(&rid, &id, &wire, now_ms())).await??;
    }
    Ok(n)
}

/// Runs until `shutdown`.
pub async fn run(store: Store, cfg: HisConfig, since_ms: i64, shutdown: CancellationToken) {
    info!(his = %cfg.addr, charset = cfg.charset.msh18(), "sending reports to the HIS (HL7 v2.5.1 ORU^R01 over MLLP)");
    let mut conn: Option<TcpStream> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll) => {}
        }
        match enqueue_new(&store, &cfg, since_ms).await {
            Ok(0) => {}
            Ok(n) => info!(messages = n, "HL7 messages queued for the HIS"),
            Err(e) => warn!(error = %e, "cannot build HL7 messages"),
        }
        let due = match store.call(|db| db.hl7_due(now_ms(), 50)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the HL7 outbox");
                continue;
            }
            Err(_) => return,
        };
        for m in due {
            if conn.is_none() {
                match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.addr)).await {
                    Ok(Ok(s)) => conn = Some(s),
                    Ok(Err(e)) => {
                        record(&store, &cfg, &m, Err(format!("cannot connect to {}: {e}", cfg.addr))).await;
                        break;
                    }
                    Err(_) => {
                        record(&store, &cfg, &m, Err(format!("cannot connect to {}: timed out", cfg.addr))).await;
                        break;
                    }
                }
            }
            let Some(stream) = conn.as_mut() else { break };
            match mllp::exchange(stream, &m.message, cfg.charset, &m.control_id, cfg.ack_timeout).await {
                Ok(code) => {
                    info!(report = %m.report_id, control_id = %m.control_id, code, "HIS acknowledged");
                    record(&store, &cfg, &m, Ok(code)).await;
                }
                Err(e) => {
                    warn!(report = %m.report_id, control_id = %m.control_id, error = %e, "HIS did not accept; will retry");
                    // After a refusal the connection is still good; after anything else the
                    // stream may hold a late answer, so it starts over.
                    if !matches!(e, mllp::MllpError::Refused { .. }) {
                        conn = None;
                    }
                    record(&store, &cfg, &m, Err(e.to_string())).await;
                }
            }
        }
    }
}

async fn record(store: &Store, cfg: &HisConfig, m: &crate::store::hl7::Outgoing, result: Result<String, String>) {
    let now = now_ms();
    let retry_at = now + crate::clock::backoff_ms(m.attempts, cfg.retry_max);
    let id = m.report_id.clone();
    let r = store.call(move |db| db.hl7_attempt(&id, result.as_deref().map_err(String::as_str), retry_at, now)).await;
    if let Ok(Err(e)) = r {
        warn!(error = %e, "cannot record an HL7 attempt");
    }
}
