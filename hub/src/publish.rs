//! Everything the hub sends: signed acks and reports, and MQTT-level acks of what it received.

use crate::clock::now_ms;
use crate::store::Store;
use rumqttc::{AsyncClient, QoS};
use std::sync::Arc;
use tracing::{info, warn};
use yilian_protocol::envelope::{Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{Ack, Lane, Payload, Refusal, Report};
use yilian_protocol::topic::{Channel, Topic};

/// Signs and publishes on behalf of the hub.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    key: Arc<SigningKey>,
    hub_id: String,
    /// The key before the last rotation, while agents follow it.
    previous: Option<Arc<SigningKey>>,
}

impl Publisher {
    /// A publisher signing with `key` as `hub_id`.
    pub fn new(client: AsyncClient, key: Arc<SigningKey>, hub_id: &str) -> Self {
        Self { client, key, hub_id: hub_id.to_string(), previous: None }
    }

    /// Tells agents that still pin `previous` to follow the current key.
    pub fn with_previous_key(mut self, previous: Option<Arc<SigningKey>>) -> Self {
        self.previous = previous;
        self
    }

    /// Sends a device the hub key rotation, if one is being followed: signed by the previous key
    /// (which the agent pins), carrying the current key's proof of possession. An agent that
    /// already follows ignores it. Sent on every birth, before anything signed by the new key.
    pub fn publish_hub_rotation(&self, site: &str, device: &str) {
        let Some(prev) = &self.previous else { return };
        let Ok(topic) = Topic::new(site, device, Channel::Ack) else { return };
        let signer = yilian_protocol::enrol::hub_signer(&self.hub_id);
        let body = yilian_protocol::message::KeyRotation::sign(&signer, &prev.public_key(), &self.key, now_ms());
        let header = Header::new(prev, &self.hub_id, 0, now_ms(), Lane::Stream);
        match seal(prev, header, &topic, &Payload::HubKeyRotation(body)) {
            Ok(bytes) => {
                if let Err(e) = self.client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, bytes) {
                    warn!(error = %e, %topic, "hub key rotation not sent now; it goes again at the next birth");
                }
            }
            Err(e) => warn!(error = %e, "cannot seal the hub key rotation"),
        }
    }

    /// The MQTT client.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The public half of the key the hub signs with (agents pin it).
    pub fn public_key(&self) -> yilian_protocol::keys::PublicKey {
        self.key.public_key()
    }

    /// Seals a report for a device's report topic (used inside the store transaction).
    pub fn seal_report(&self, report: &Report, hub_seq: u64, site: &str, device: &str) -> Result<Vec<u8>, String> {
        let topic = Topic::new(site, device, Channel::Report).map_err(|e| e.to_string())?;
        let header = Header::new(&self.key, &self.hub_id, hub_seq, now_ms(), Lane::Stat);
        seal(&self.key, header, &topic, &Payload::Report(report.clone())).map_err(|e| e.to_string())
    }

    /// Seals `device`'s release assignment for its ack topic: valid for that device only.
    pub fn seal_assignment(
        &self,
        site: &str,
        device: &str,
        assignment: &yilian_protocol::message::UpdateAssignment,
    ) -> Result<Vec<u8>, String> {
        let topic = Topic::new(site, device, Channel::Ack).map_err(|e| e.to_string())?;
        let header = Header::new(&self.key, &self.hub_id, 0, assignment.issued_at_ms, Lane::Stat);
        seal(&self.key, header, &topic, &Payload::UpdateAssignment(assignment.clone())).map_err(|e| e.to_string())
    }

    /// Signs a report's PDF for the device it was made for (kept beside it at the clinic).
    pub fn sign_pdf(
        &self,
        site: &str,
        device: &str,
        report_id: &str,
        pdf: &[u8],
    ) -> yilian_protocol::document::PdfSignature {
        yilian_protocol::document::PdfSignature::sign(&self.key, site, device, report_id, pdf)
    }

    /// Publishes a sealed report.
    pub fn publish_report(&self, site: &str, device: &str, envelope: Vec<u8>) -> bool {
        self.publish_down(site, device, envelope, "report")
    }

    /// Publishes sealed bytes on a device's report topic (QoS 1); false if the broker's queue
    /// could not take them now (the caller's item goes again at the device's next birth).
    fn publish_down(&self, site: &str, device: &str, envelope: Vec<u8>, what: &str) -> bool {
        let Ok(topic) = Topic::new(site, device, Channel::Report) else {
            return false;
        };
        match self.client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, envelope) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, %topic, what, "not published now; it goes again at the device's next birth");
                false
            }
        }
    }

    /// Republishes every report the clinic has not confirmed (for one device or all).
    pub async fn republish_reports(&self, store: &Store, device: Option<String>) {
        let rows = match store.call(move |db| db.unreceipted_reports(device.as_deref())).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "cannot list unconfirmed reports");
                return;
            }
        };
        self.publish_and_mark(store, rows, "report (re)published").await;
    }

    /// Publishes each report of `rows` and marks those the broker took as published; `what` is
    /// the log line for each.
    pub async fn publish_and_mark(&self, store: &Store, rows: Vec<crate::store::ReportRow>, what: &'static str) {
        for r in rows {
            if self.publish_report(&r.site_id, &r.device_id, r.envelope.clone()) {
                info!(report = %r.report_id, device = %r.device_id, "{what}");
                let id = r.report_id;
                let _ = store.call(move |db| db.mark_published(&id, now_ms())).await;
            }
        }
    }

    /// Signs and publishes a notice on a device's report topic (a claim, a critical result).
    /// QoS 1; one the broker could not take now goes again at the device's next birth.
    pub fn publish_notice(&self, site: &str, device: &str, payload: &Payload) -> bool {
        let Ok(topic) = Topic::new(site, device, Channel::Report) else {
            return false;
        };
        let header = Header::new(&self.key, &self.hub_id, 0, now_ms(), Lane::Stat);
        match seal(&self.key, header, &topic, payload) {
            Ok(bytes) => self.publish_down(site, device, bytes, "notice"),
            Err(e) => {
                warn!(error = %e, "cannot seal a notice");
                false
            }
        }
    }

    /// Sends every critical result the clinic has not acknowledged again (for one device or all):
    /// the agent raises each alarm once, however often it hears of it.
    pub async fn republish_critical(&self, store: &Store, device: Option<String>) {
        let rows = match store.call(move |db| db.open_critical_notices(device.as_deref())).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "cannot list unacknowledged critical results");
                return;
            }
        };
        for (row, notice) in rows {
            if self.publish_notice(&row.site_id, &row.device_id, &Payload::CriticalNotice(notice)) {
                info!(report = %row.report_id, device = %row.device_id, "critical result (re)sent to the clinic");
            }
        }
    }

    /// Sends a device the signed application ack of its stored seqs and the refused ones.
    pub fn ack_stored(&self, site: &str, device: &str, epoch: u64, seqs: &[u64], refused: Vec<Refusal>) {
        let Ok(topic) = Topic::new(site, device, Channel::Ack) else {
            return;
        };
        let ack = Payload::Ack(Ack::from_seqs(device, epoch, seqs, refused));
        let header = Header::new(&self.key, &self.hub_id, 0, now_ms(), Lane::Stream);
        match seal(&self.key, header, &topic, &ack) {
            Ok(bytes) => {
                if let Err(e) = self.client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, bytes) {
                    warn!(error = %e, %topic, "ack not sent; the agent will resend and be acked then");
                }
            }
            Err(e) => warn!(error = %e, "cannot seal ack"),
        }
    }
}
