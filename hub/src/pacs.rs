//! Results to the hospital PACS: each reported study, written as a DICOM 12-lead (or General)
//! ECG waveform object, is sent by C-STORE. The object's UIDs are derived from its content, so a
//! retry stores the same instance again rather than a second one.

use crate::clock::now_ms;
use crate::store::Store;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where the PACS listens and who we are to it.
#[derive(Debug, Clone)]
pub struct PacsConfig {
    /// `host:port`.
    pub addr: String,
    /// Its AE title.
    pub called_ae: String,
    /// Ours.
    pub calling_ae: String,
    /// Network timeout for each step of an association.
    pub timeout: Duration,
    /// The longest wait between two attempts of one study.
    pub retry_max: Duration,
    /// How often to look for work.
    pub poll: Duration,
    /// Also send each signed report, as an Encapsulated PDF in the same study.
    pub report_pdf: bool,
    /// What renders that PDF (the hub sets it when it has a CJK font).
    pub printer: Option<crate::report_pdf::Printer>,
}

impl PacsConfig {
    /// Defaults for a PACS at `addr` with AE title `called_ae`.
    pub fn new(addr: &str, called_ae: &str) -> Self {
        Self {
            addr: addr.to_string(),
            called_ae: called_ae.to_string(),
            calling_ae: "YILIAN".into(),
            timeout: Duration::from_secs(30),
            retry_max: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            report_pdf: false,
            printer: None,
        }
    }
}

/// Why a C-STORE did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PacsError {
    /// The object could not be made or read back.
    #[error("the DICOM object: {0}")]
    Object(String),
    /// The association failed (connection, negotiation, network).
    #[error("association with {addr}: {reason}")]
    Association {
        /// PACS address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The PACS took no presentation context for the object's SOP class.
    #[error("the PACS does not accept {0}")]
    NotAccepted(String),
    /// The PACS answered with a failure status.
    #[error("the PACS answered status {0:04X}H")]
    Status(u16),
}

/// Sends one Part 10 `file` by C-STORE; returns the instance UID stored and the status (0, or a
/// warning B000-BFFF). Blocking: run it off the async workers.
pub fn c_store(cfg: &PacsConfig, file: &[u8]) -> Result<(String, u16), PacsError> {
    let obj_err = |e: &dyn std::fmt::Display| PacsError::Object(e.to_string());
    let body = if file.get(128..132) == Some(b"DICM") { &file[128..] } else { file };
    let obj = OpenFileOptions::new().read_preamble(ReadPreamble::Never).from_reader(body).map_err(|e| obj_err(&e))?;
    let meta = obj.meta();
    let sop_class = meta.media_storage_sop_class_uid.trim_end_matches('\0').to_string();
    let sop_instance = meta.media_storage_sop_instance_uid.trim_end_matches('\0').to_string();
    let assoc_err =
        |e: &dyn std::fmt::Display| PacsError::Association { addr: cfg.addr.clone(), reason: e.to_string() };
    let mut scu = ClientAssociationOptions::new()
        .calling_ae_title(cfg.calling_ae.as_str())
        .called_ae_title(cfg.called_ae.as_str())
        .with_presentation_context(
            sop_class.as_str(),
            vec![EXPLICIT_VR_LITTLE_ENDIAN.uid(), IMPLICIT_VR_LITTLE_ENDIAN.uid()],
        )
        .connection_timeout(cfg.timeout)
        .read_timeout(cfg.timeout)
        .write_timeout(cfg.timeout)
        .establish(cfg.addr.as_str())
        .map_err(|e| assoc_err(&e))?;
    let result = (|| {
        let pc = scu
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .cloned()
            .ok_or_else(|| PacsError::NotAccepted(sop_class.clone()))?;
        let ts = TransferSyntaxRegistry
            .get(pc.transfer_syntax.trim_end_matches('\0'))
            .ok_or_else(|| PacsError::NotAccepted(format!("{sop_class} in {}", pc.transfer_syntax)))?;
        let mut data = Vec::new();
        obj.write_dataset_with_ts(&mut data, ts).map_err(|e| obj_err(&e))?;
        let cmd = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class.as_str())),
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001_u16)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1_u16)),
            DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0_u16)),
            DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0_u16)),
            DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop_instance.as_str())),
        ]);
        let mut cmd_data = Vec::new();
        cmd.write_dataset_with_ts(&mut cmd_data, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).map_err(|e| obj_err(&e))?;
        let command = PDataValue {
            presentation_context_id: pc.id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: cmd_data,
        };
        scu.send(&Pdu::PData { data: vec![command] }).map_err(|e| assoc_err(&e))?;
        {
            let mut w = scu.send_pdata(pc.id);
            w.write_all(&data).map_err(|e| assoc_err(&e))?;
        }
        let status = match scu.receive().map_err(|e| assoc_err(&e))? {
            Pdu::PData { data } => {
                let first = data.first().ok_or_else(|| assoc_err(&"an empty response"))?;
                let rsp = InMemDicomObject::read_dataset_with_ts(&first.data[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                    .map_err(|e| assoc_err(&e))?;
                rsp.element(tags::STATUS)
                    .ok()
                    .and_then(|e| e.to_int::<u16>().ok())
                    .ok_or_else(|| assoc_err(&"a response without a status"))?
            }
            other => return Err(assoc_err(&format!("unexpected {other:?}"))),
        };
        match status {
            0 | 0xB000..=0xBFFF => Ok((sop_instance.clone(), status)),
            s => Err(PacsError::Status(s)),
        }
    })();
    match &result {
        Ok(_) | Err(PacsError::Status(_)) => {
            let _ = scu.release();
        }
        Err(_) => {
            let _ = scu.abort();
        }
    }
    result
}

/// The study of a report as a DICOM waveform object (Part 10 bytes).
fn object_of(study: &yilian_protocol::message::Study) -> Result<Vec<u8>, PacsError> {
    let rec = crate::export::to_recording(study).map_err(|e| PacsError::Object(e.to_string()))?;
    yilian_formats::dicom::write(&rec).map_err(|e| PacsError::Object(e.to_string()))
}

/// The signed report on `study` as an Encapsulated PDF in the study's DICOM study.
async fn report_object(
    store: &Store,
    printer: &crate::report_pdf::Printer,
    row: crate::store::StudyRow,
    study: yilian_protocol::message::Study,
) -> Result<Vec<u8>, PacsError> {
    let uid = row.study_uid.clone();
    let (report, envelope) = match store.call(move |db| db.signed_report_of(&uid)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return Err(PacsError::Object("the study has no signed report".into())),
        Ok(Err(e)) | Err(e) => return Err(PacsError::Object(e.to_string())),
    };
    let signed_at = crate::export::local_time(report.reported_at_ms);
    let pdf = printer
        .render(row, study.clone(), report, envelope)
        .await
        .map_err(|e| PacsError::Object(format!("report PDF: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let rec = crate::export::to_recording(&study).map_err(|e| PacsError::Object(e.to_string()))?;
        yilian_formats::dicom::encapsulated_pdf(&rec, &pdf, "心电图诊断报告 ECG report", signed_at)
            .map_err(|e| PacsError::Object(e.to_string()))
    })
    .await
    .unwrap_or_else(|e| Err(PacsError::Object(format!("the PDF task failed: {e}"))))
}

/// Sends studies reported since `since_ms` (when the outbox began) to the PACS until `shutdown`.
pub async fn run(store: Store, cfg: PacsConfig, since_ms: i64, shutdown: CancellationToken) {
    info!(pacs = %cfg.addr, ae = %cfg.called_ae, "sending reported studies to the PACS (DICOM C-STORE)");
    let printer = match (cfg.report_pdf, &cfg.printer) {
        (true, None) => {
            warn!("the PACS gets no report PDFs: this hub has no font to print them (see --report-font)");
            None
        }
        (true, Some(p)) => Some(p.clone()),
        (false, _) => None,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll) => {}
        }
        let due = match store
            .call(move |db| {
                let now = now_ms();
                db.pacs_enqueue_new(since_ms, now)?;
                db.pacs_due(now, 20)
            })
            .await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the PACS outbox");
                continue;
            }
            Err(_) => return,
        };
        for (uid, attempts) in due {
            let u = uid.clone();
            let (row, study) = match store.call(move |db| db.study(&u, now_ms())).await {
                Ok(Ok(Some(found))) => found,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    warn!(error = %e, study = %uid, "cannot read a study for the PACS");
                    continue;
                }
                Err(_) => return,
            };
            // The report first, when asked for: the study counts as stored only with both, and
            // both objects have UIDs from their content, so a retry sends the same instances.
            let report = match &printer {
                Some(p) => Some(report_object(&store, p, row, study.clone()).await),
                None => None,
            };
            let c = cfg.clone();
            let sent = tokio::task::spawn_blocking(move || {
                if let Some(doc) = report {
                    let (instance, _) = c_store(&c, &doc?)?;
                    info!(report_instance = %instance, "report PDF stored at the PACS");
                }
                object_of(&study).and_then(|file| c_store(&c, &file))
            })
            .await
            .unwrap_or_else(|e| Err(PacsError::Object(format!("the sender task failed: {e}"))));
            let now = now_ms();
            let result = match sent {
                Ok((instance, status)) => {
                    info!(study = %uid, instance, status, "stored at the PACS");
                    Ok((instance, status))
                }
                Err(e) => {
                    warn!(study = %uid, error = %e, "PACS did not store the study; will retry");
                    Err(e.to_string())
                }
            };
            let backoff = crate::clock::backoff_ms(attempts, cfg.retry_max);
            let r = store.call(move |db| db.pacs_attempt(&uid, result, now + backoff, now)).await;
            if let Ok(Err(e)) = r {
                warn!(error = %e, "cannot record a PACS attempt");
            }
        }
    }
}
