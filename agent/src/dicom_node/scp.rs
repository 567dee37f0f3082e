//! One association: A-ASSOCIATE negotiation, then C-ECHO and C-STORE over P-DATA, each instance
//! streamed to a temp file as its fragments arrive and answered only once it is safely stored.
//!
//! dicom-ul 0.8 supplies the PDU codec (`read_pdu`/`write_pdu`, bounded by a maximum length).
//! The acceptor's negotiation is done here rather than by `ServerAssociationOptions`, because
//! that one refuses transfer syntaxes whose dataset codec its registry lacks (Deflated Explicit
//! VR LE): the node stores bytes as received and needs no codec to accept them.

use super::part10;
use super::store::{Placed, Received, Store, StoreError};
use crate::config::DicomNodeConfig;
use dicom_core::dictionary::{UidDictionary, UidType};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::StandardSopClassDictionary;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderASCEReason, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, MAXIMUM_PDU_SIZE, PDataValue, PDataValueType,
    PresentationContextResult, PresentationContextResultReason, UserVariableItem,
};
use dicom_ul::{Pdu, read_pdu, write_pdu};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The largest PDU this node accepts (announced in A-ASSOCIATE-AC; larger ones abort the
/// association). 64 KiB keeps per-association memory small while moving big instances quickly.
pub const MAX_PDU: u32 = 65_536;
/// A command set is a handful of small elements; anything larger is not a DIMSE command.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// How long a peer that was refused (too many associations) may take to send its request.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(10);
const VERIFICATION: &str = "1.2.840.10008.1.1";
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
const C_CANCEL_RQ: u16 = 0x0FFF;
const NO_DATASET: u16 = 0x0101;

/// C-STORE status: success.
pub const STATUS_SUCCESS: u16 = 0x0000;
/// C-STORE status: refused, out of resources (disk full, instance too large, I/O error).
pub const STATUS_OUT_OF_RESOURCES: u16 = 0xA700;
/// C-STORE status: error, cannot understand (the dataset does not parse, no Study UID).
pub const STATUS_CANNOT_UNDERSTAND: u16 = 0xC000;

/// What every association shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: Arc<DicomNodeConfig>,
    pub store: Arc<Store>,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(cfg: Arc<DicomNodeConfig>, store: Arc<Store>) -> Self {
        Self { cfg, store, next_id: AtomicU64::new(1) }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection")]
    Closed,
    #[error("malformed PDU: {0}")]
    Pdu(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// The TCP connection with a bounded PDU reader.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    scratch: Box<[u8]>,
    idle: Duration,
    out: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        Self { stream, buf: Vec::new(), scratch: vec![0u8; 64 * 1024].into_boxed_slice(), idle, out: Vec::new() }
    }

    /// The next PDU, at most `max` bytes long (dicom-ul checks the length before buffering it).
    async fn next_pdu(&mut self, max: u32) -> Result<Pdu, ConnError> {
        loop {
            let mut cur = Cursor::new(&self.buf[..]);
            match read_pdu(&mut cur, max, true) {
                Ok(Some(pdu)) => {
                    let used = usize::try_from(cur.position()).unwrap_or(self.buf.len());
                    self.buf.drain(..used);
                    return Ok(pdu);
                }
                Ok(None) => {}
                Err(e) => return Err(ConnError::Pdu(e.to_string())),
            }
            let n = tokio::time::timeout(self.idle, self.stream.read(&mut self.scratch))
                .await
                .map_err(|_| ConnError::Timeout(self.idle))??;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }

    async fn send(&mut self, pdu: &Pdu) -> Result<(), ConnError> {
        self.out.clear();
        write_pdu(&mut self.out, pdu).map_err(|e| ConnError::Pdu(e.to_string()))?;
        tokio::time::timeout(self.idle, self.stream.write_all(&self.out))
            .await
            .map_err(|_| ConnError::Timeout(self.idle))??;
        Ok(())
    }

    async fn abort(&mut self) {
        let pdu =
            Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::ReasonNotSpecified) };
        let _ = self.send(&pdu).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Whether the node accepts this abstract syntax: Verification, or a standard Storage SOP class.
pub(crate) fn is_accepted_abstract_syntax(uid: &str) -> bool {
    if uid == VERIFICATION {
        return true;
    }
    StandardSopClassDictionary.by_uid(uid).is_some_and(|e| {
        e.r#type == UidType::SopClass && e.name.ends_with("Storage") && e.uid.starts_with("1.2.840.10008.5.1.4.")
    })
}

fn trim_uid(s: &str) -> &str {
    s.trim_end_matches(|c: char| c == '\0' || c.is_whitespace()).trim_start()
}

/// The acceptor's answer to an A-ASSOCIATE-RQ: the presentation context results, or why not.
pub(crate) fn negotiate(ae_title: &str, rq: &AssociationRQ) -> Result<Vec<PresentationContextResult>, AssociationRJ> {
    let reject = |source| AssociationRJ { result: AssociationRJResult::Permanent, source };
    if rq.protocol_version & 1 == 0 {
        return Err(reject(AssociationRJSource::ServiceProviderASCE(
            AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
        )));
    }
    if trim_uid(&rq.application_context_name) != APPLICATION_CONTEXT {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
        )));
    }
    if rq.called_ae_title.trim() != ae_title.trim() {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::CalledAETitleNotRecognized,
        )));
    }
    Ok(rq
        .presentation_contexts
        .iter()
        .map(|pc| {
            let refuse =
                |reason| PresentationContextResult { id: pc.id, reason, transfer_syntax: "1.2.840.10008.1.2".into() };
            if !is_accepted_abstract_syntax(trim_uid(&pc.abstract_syntax)) {
                return refuse(PresentationContextResultReason::AbstractSyntaxNotSupported);
            }
            // Any transfer syntax the registry knows, stubs included: bytes are stored as
            // received, never decoded here. The proposer's order is its preference, except that
            // Explicit VR Big Endian (retired, and poorly read downstream) is taken only alone.
            let known: Vec<&str> = pc
                .transfer_syntaxes
                .iter()
                .map(|t| trim_uid(t))
                .filter(|t| TransferSyntaxRegistry.get(t).is_some())
                .collect();
            match known.iter().find(|t| **t != EXPLICIT_VR_BIG_ENDIAN).or(known.first()) {
                Some(ts) => PresentationContextResult {
                    id: pc.id,
                    reason: PresentationContextResultReason::Acceptance,
                    transfer_syntax: ts.to_string(),
                },
                None => refuse(PresentationContextResultReason::TransferSyntaxesNotSupported),
            }
        })
        .collect())
}

/// Serves one connection until release, abort, error or shutdown. `permit` is `None` when the
/// node is at its association limit: the request is then refused as "local limit exceeded".
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let idle = Duration::from_secs(shared.cfg.idle_timeout_secs);
    let mut conn = Conn::new(stream, if permit.is_some() { idle } else { REFUSE_TIMEOUT });
    let rq = match conn.next_pdu(MAXIMUM_PDU_SIZE).await {
        Ok(Pdu::AssociationRQ(rq)) => rq,
        Ok(other) => {
            warn!(%peer, pdu = %other.short_description(), "expected an association request");
            conn.abort().await;
            return;
        }
        Err(e) => {
            info!(%peer, "no association request: {e}");
            return;
        }
    };
    let calling = rq.calling_ae_title.trim().to_string();
    let Some(_permit) = permit else {
        warn!(%peer, calling_ae = %calling, limit = shared.cfg.max_associations, "association refused: too many at once");
        let rj = AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        };
        let _ = conn.send(&Pdu::AssociationRJ(rj)).await;
        return;
    };
    let contexts = match negotiate(&shared.cfg.ae_title, &rq) {
        Ok(c) => c,
        Err(rj) => {
            warn!(%peer, calling_ae = %calling, called_ae = %rq.called_ae_title, reason = ?rj.source, "association rejected");
            let _ = conn.send(&Pdu::AssociationRJ(rj)).await;
            return;
        }
    };
    let requestor_max = rq
        .user_variables
        .iter()
        .find_map(|v| if let UserVariableItem::MaxLength(n) = v { Some(*n) } else { None })
        .filter(|&n| n != 0)
        .unwrap_or(MAXIMUM_PDU_SIZE);
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: contexts.clone(),
        user_variables: vec![
            UserVariableItem::MaxLength(MAX_PDU),
            UserVariableItem::ImplementationClassUID(part10::IMPLEMENTATION_CLASS_UID.into()),
            UserVariableItem::ImplementationVersionName(part10::IMPLEMENTATION_VERSION_NAME.into()),
        ],
    };
    if let Err(e) = conn.send(&Pdu::AssociationAC(ac)).await {
        info!(%peer, "sending the association accept: {e}");
        return;
    }
    let accepted: HashMap<u8, (String, String)> = contexts
        .iter()
        .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
        .filter_map(|c| {
            let pc = rq.presentation_contexts.iter().find(|p| p.id == c.id)?;
            Some((c.id, (trim_uid(&pc.abstract_syntax).to_string(), c.transfer_syntax.clone())))
        })
        .collect();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    info!(%peer, calling_ae = %calling, association = id, contexts = accepted.len(), requestor_max, "association accepted");
    let mut a = Association {
        id,
        peer,
        calling,
        accepted,
        requestor_max,
        conn,
        shared: shared.clone(),
        command: Vec::new(),
        incoming: None,
        temp_seq: 0,
        stored: 0,
    };
    let end = a.run(&shutdown).await;
    if let Some(inc) = a.incoming.take() {
        inc.discard().await;
    }
    shared.store.tracker().ended(id);
    info!(%peer, calling_ae = %a.calling, association = id, stored = a.stored, "association ended: {end}");
}

struct Association {
    id: u64,
    peer: SocketAddr,
    calling: String,
    /// Accepted presentation contexts: id → (abstract syntax, transfer syntax).
    accepted: HashMap<u8, (String, String)>,
    requestor_max: u32,
    conn: Conn,
    shared: Arc<Shared>,
    command: Vec<u8>,
    incoming: Option<Incoming>,
    temp_seq: u64,
    stored: u64,
}

/// A parsed DIMSE command set (the fields this node uses).
#[derive(Debug)]
struct Command {
    field: u16,
    message_id: u16,
    affected_class: String,
    affected_instance: String,
    priority: u16,
    has_dataset: bool,
}

fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts).map_err(|e| e.to_string())?;
    let u16_of = |tag: Tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u16>().ok());
    let str_of = |tag: Tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| trim_uid(&s).to_string())
            .unwrap_or_default()
    };
    Ok(Command {
        field: u16_of(Tag(0x0000, 0x0100)).ok_or("no Command Field")?,
        message_id: u16_of(Tag(0x0000, 0x0110)).unwrap_or(0),
        affected_class: str_of(Tag(0x0000, 0x0002)),
        affected_instance: str_of(Tag(0x0000, 0x1000)),
        priority: u16_of(Tag(0x0000, 0x0700)).unwrap_or(0),
        has_dataset: u16_of(Tag(0x0000, 0x0800)).is_some_and(|t| t != NO_DATASET),
    })
}

/// UIDs are padded to even length with NUL (PS3.5 9.1).
fn uid_value(uid: &str) -> PrimitiveValue {
    let mut s = uid.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    PrimitiveValue::from(s)
}

fn response(field: u16, message_id: u16, class: &str, instance: Option<&str>, status: u16, comment: &str) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(Tag(0x0000, 0x0002), VR::UI, uid_value(class)),
        DataElement::new(Tag(0x0000, 0x0100), VR::US, PrimitiveValue::from(field)),
        DataElement::new(Tag(0x0000, 0x0120), VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(Tag(0x0000, 0x0800), VR::US, PrimitiveValue::from(NO_DATASET)),
        DataElement::new(Tag(0x0000, 0x0900), VR::US, PrimitiveValue::from(status)),
    ];
    if let Some(instance) = instance {
        elements.push(DataElement::new(Tag(0x0000, 0x1000), VR::UI, uid_value(instance)));
    }
    if !comment.is_empty() {
        // Error Comment is LO: at most 64 characters, even length.
        let mut c: String = comment.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(64).collect();
        if c.len() % 2 == 1 {
            c.push(' ');
        }
        elements.push(DataElement::new(Tag(0x0000, 0x0902), VR::LO, PrimitiveValue::from(c)));
    }
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::new();
    // Writing a handful of in-memory elements to a Vec cannot fail short of a bug; an empty
    // response then makes the peer abort, which is the honest outcome.
    if let Err(e) = obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
        warn!("encoding a DIMSE response: {e}");
        out.clear();
    }
    out
}

impl Association {
    async fn run(&mut self, shutdown: &CancellationToken) -> String {
        loop {
            let pdu = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.conn.abort().await;
                    return "aborted: the agent is shutting down".into();
                }
                pdu = self.conn.next_pdu(MAX_PDU) => pdu,
            };
            match pdu {
                Ok(Pdu::PData { data }) => {
                    for pdv in data {
                        if let Err(e) = self.on_pdv(pdv).await {
                            warn!(peer = %self.peer, association = self.id, "{e}; aborting");
                            self.conn.abort().await;
                            return format!("aborted: {e}");
                        }
                    }
                }
                Ok(Pdu::ReleaseRQ) => {
                    if self.incoming.is_some() {
                        warn!(peer = %self.peer, "release requested in the middle of an instance; it is dropped");
                    }
                    let _ = self.conn.send(&Pdu::ReleaseRP).await;
                    return "released".into();
                }
                Ok(Pdu::AbortRQ { source }) => return format!("aborted by the peer ({source:?})"),
                Ok(other) => {
                    warn!(peer = %self.peer, pdu = %other.short_description(), "unexpected PDU; aborting");
                    self.conn.abort().await;
                    return "aborted: unexpected PDU".into();
                }
                Err(e @ ConnError::Closed) => return e.to_string(),
                Err(e) => {
                    warn!(peer = %self.peer, association = self.id, "{e}; aborting");
                    self.conn.abort().await;
                    return format!("aborted: {e}");
                }
            }
        }
    }

    async fn on_pdv(&mut self, pdv: PDataValue) -> Result<(), ConnError> {
        match pdv.value_type {
            PDataValueType::Command => {
                if self.incoming.is_some() {
                    return Err(ConnError::Protocol("a command arrived before the dataset ended".into()));
                }
                if self.command.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                    return Err(ConnError::Protocol(format!("command set over {MAX_COMMAND_BYTES} bytes")));
                }
                self.command.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(&mut self.command);
                    self.on_command(pdv.presentation_context_id, &bytes).await?;
                }
                Ok(())
            }
            PDataValueType::Data => {
                let Some(inc) = self.incoming.as_mut() else {
                    return Err(ConnError::Protocol("a dataset fragment without a C-STORE command".into()));
                };
                if inc.pc_id != pdv.presentation_context_id {
                    return Err(ConnError::Protocol("a dataset fragment on another presentation context".into()));
                }
                inc.write(&pdv.data, self.shared.cfg.max_instance_bytes).await;
                if pdv.is_last
                    && let Some(inc) = self.incoming.take()
                {
                    self.finish(inc).await?;
                }
                Ok(())
            }
        }
    }

    async fn on_command(&mut self, pc_id: u8, bytes: &[u8]) -> Result<(), ConnError> {
        let cmd = parse_command(bytes).map_err(|e| ConnError::Protocol(format!("unreadable command set: {e}")))?;
        let Some((abstract_syntax, ts)) = self.accepted.get(&pc_id).cloned() else {
            return Err(ConnError::Protocol(format!("presentation context {pc_id} was not accepted")));
        };
        match cmd.field {
            C_ECHO_RQ => {
                debug!(peer = %self.peer, "C-ECHO");
                let rsp = response(C_ECHO_RSP, cmd.message_id, VERIFICATION, None, STATUS_SUCCESS, "");
                self.send_command(pc_id, rsp).await
            }
            C_STORE_RQ if cmd.has_dataset => {
                if cmd.affected_class != abstract_syntax {
                    warn!(peer = %self.peer, class = %cmd.affected_class, context = %abstract_syntax,
                        "C-STORE of another SOP class than its presentation context");
                }
                self.temp_seq += 1;
                let temp = self.shared.store.tmp_dir().join(format!("{}-{}.part", self.id, self.temp_seq));
                self.incoming = Some(Incoming::start(pc_id, cmd, ts, temp).await);
                Ok(())
            }
            C_CANCEL_RQ => Ok(()),
            other => Err(ConnError::Protocol(format!("unsupported DIMSE command 0x{other:04X}"))),
        }
    }

    async fn finish(&mut self, inc: Incoming) -> Result<(), ConnError> {
        let (message_id, pc_id, class, instance) =
            (inc.cmd.message_id, inc.pc_id, inc.cmd.affected_class.clone(), inc.cmd.affected_instance.clone());
        let (status, comment) = match inc.finish(&self.calling).await {
            Err(failure) => failure,
            Ok(received) => {
                let (shared, sop) = (self.shared.clone(), received.sop_instance_uid.clone());
                let placed = tokio::task::spawn_blocking(move || shared.store.place(&shared.cfg, received)).await;
                match placed {
                    Ok(Ok(placed)) => {
                        self.stored += 1;
                        match &placed {
                            Placed::Stored(study) => {
                                self.shared.store.tracker().arrived(study, self.id, Instant::now());
                                info!(sop = %sop, study = %study, calling_ae = %self.calling, "instance stored");
                            }
                            Placed::Inbox(path) => info!(sop = %sop, file = %path.display(), "ECG handed to the inbox"),
                            Placed::Duplicate | Placed::Conflict(_) => {}
                        }
                        (STATUS_SUCCESS, String::new())
                    }
                    Ok(Err(StoreError::Header(e))) => {
                        warn!(sop = %sop, calling_ae = %self.calling, "instance refused: {e}");
                        (STATUS_CANNOT_UNDERSTAND, e.to_string())
                    }
                    Ok(Err(e)) => {
                        warn!(sop = %sop, calling_ae = %self.calling, "instance not stored: {e}");
                        (STATUS_OUT_OF_RESOURCES, e.to_string())
                    }
                    Err(e) => {
                        warn!(sop = %sop, "storing task failed: {e}");
                        (STATUS_OUT_OF_RESOURCES, "internal error".into())
                    }
                }
            }
        };
        let rsp = response(C_STORE_RSP, message_id, &class, Some(&instance), status, &comment);
        self.send_command(pc_id, rsp).await
    }

    async fn send_command(&mut self, pc_id: u8, data: Vec<u8>) -> Result<(), ConnError> {
        // A response is a few hundred bytes, far below any peer's maximum PDU length.
        if data.len() + 12 > self.requestor_max as usize {
            return Err(ConnError::Protocol("response larger than the peer's maximum PDU".into()));
        }
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data,
            }],
        };
        self.conn.send(&pdu).await
    }
}

/// One instance being received into a temp file.
struct Incoming {
    pc_id: u8,
    cmd: Command,
    ts: String,
    temp: PathBuf,
    file: Option<BufWriter<tokio::fs::File>>,
    hasher: Sha256,
    dataset_offset: u64,
    dataset_bytes: u64,
    received_at_ms: i64,
    /// Set on the first failure; the rest of the dataset is then read and dropped.
    failure: Option<(u16, String)>,
}

impl Incoming {
    async fn start(pc_id: u8, cmd: Command, ts: String, temp: PathBuf) -> Self {
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut inc = Incoming {
            pc_id,
            cmd,
            ts,
            temp,
            file: None,
            hasher: Sha256::new(),
            dataset_offset: 0,
            dataset_bytes: 0,
            received_at_ms,
            failure: None,
        };
        let header = match part10::file_header(&inc.cmd.affected_class, &inc.cmd.affected_instance, &inc.ts) {
            Ok(h) => h,
            Err(e) => {
                inc.failure = Some((STATUS_CANNOT_UNDERSTAND, e.to_string()));
                return inc;
            }
        };
        let opened = async {
            let f = tokio::fs::File::create(&inc.temp).await?;
            let mut w = BufWriter::with_capacity(256 * 1024, f);
            w.write_all(&header).await?;
            Ok::<_, std::io::Error>(w)
        }
        .await;
        match opened {
            Ok(w) => {
                inc.hasher.update(&header);
                inc.dataset_offset = header.len() as u64;
                inc.file = Some(w);
            }
            Err(e) => inc.fail(STATUS_OUT_OF_RESOURCES, format!("creating {}: {e}", inc.temp.display())).await,
        }
        inc
    }

    async fn write(&mut self, data: &[u8], max: u64) {
        if self.failure.is_some() {
            return;
        }
        self.dataset_bytes += data.len() as u64;
        if self.dataset_bytes > max {
            self.fail(STATUS_OUT_OF_RESOURCES, format!("instance larger than {max} bytes")).await;
            return;
        }
        if let Some(w) = self.file.as_mut() {
            if let Err(e) = w.write_all(data).await {
                self.fail(STATUS_OUT_OF_RESOURCES, format!("writing {}: {e}", self.temp.display())).await;
                return;
            }
            self.hasher.update(data);
        }
    }

    async fn fail(&mut self, status: u16, why: String) {
        warn!(sop = %self.cmd.affected_instance, "receiving the instance failed: {why}");
        self.failure = Some((status, why));
        self.file = None;
        let _ = tokio::fs::remove_file(&self.temp).await;
    }

    /// Flushes and fsyncs the temp file; the failure status if anything went wrong.
    async fn finish(mut self, calling_ae: &str) -> Result<Received, (u16, String)> {
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        let Some(mut w) = self.file.take() else {
            return Err((STATUS_OUT_OF_RESOURCES, "no file".into()));
        };
        let synced = async {
            w.flush().await?;
            w.get_mut().sync_all().await
        }
        .await;
        drop(w);
        if let Err(e) = synced {
            let _ = tokio::fs::remove_file(&self.temp).await;
            return Err((STATUS_OUT_OF_RESOURCES, format!("syncing {}: {e}", self.temp.display())));
        }
        Ok(Received {
            temp: self.temp,
            sop_class_uid: self.cmd.affected_class,
            sop_instance_uid: self.cmd.affected_instance,
            transfer_syntax: self.ts,
            dataset_offset: self.dataset_offset,
            size: self.dataset_offset + self.dataset_bytes,
            sha256: hex::encode(self.hasher.finalize()),
            calling_ae: calling_ae.into(),
            dimse_priority: self.cmd.priority,
            received_at_ms: self.received_at_ms,
        })
    }

    async fn discard(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    fn rq(called: &str, pcs: Vec<(&str, Vec<&str>)>) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "MODALITY".into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: pcs
                .into_iter()
                .enumerate()
                .map(|(i, (a, ts))| PresentationContextProposed {
                    id: (i * 2 + 1) as u8,
                    abstract_syntax: a.into(),
                    transfer_syntaxes: ts.into_iter().map(String::from).collect(),
                })
                .collect(),
            user_variables: vec![],
        }
    }

    #[test]
    fn storage_classes_and_verification_are_accepted_in_any_known_syntax() {
        let r = negotiate(
            "YILIAN",
            &rq(
                "YILIAN",
                vec![
                    ("1.2.840.10008.5.1.4.1.1.2", vec!["1.2.840.10008.1.2.4.80"]),
                    ("1.2.840.10008.5.1.4.1.1.7", vec!["1.2.840.10008.1.2.1.99"]),
                    ("1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"]),
                    ("1.2.840.10008.5.1.4.1.2.1.1", vec!["1.2.840.10008.1.2"]),
                    ("1.2.840.10008.5.1.4.1.1.104.1", vec!["1.9.9.9", "1.2.840.10008.1.2.1"]),
                    ("1.2.840.10008.5.1.4.1.1.4", vec!["1.9.9.9"]),
                ],
            ),
        )
        .expect("accepted");
        let reasons: Vec<_> = r.iter().map(|c| (c.reason.clone(), c.transfer_syntax.as_str())).collect();
        use PresentationContextResultReason::*;
        assert_eq!(
            reasons,
            vec![
                (Acceptance, "1.2.840.10008.1.2.4.80"),
                (Acceptance, "1.2.840.10008.1.2.1.99"),
                (Acceptance, "1.2.840.10008.1.2"),
                (AbstractSyntaxNotSupported, "1.2.840.10008.1.2"),
                (Acceptance, "1.2.840.10008.1.2.1"),
                (TransferSyntaxesNotSupported, "1.2.840.10008.1.2"),
            ]
        );
    }

    #[test]
    fn a_wrong_called_ae_title_is_rejected_permanently() {
        let rj = negotiate("YILIAN", &rq("ANY-SCP", vec![])).expect_err("rejected");
        assert_eq!(rj.result, AssociationRJResult::Permanent);
        assert_eq!(
            rj.source,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
    }

    #[test]
    fn store_response_round_trips_through_the_command_parser() {
        let rsp =
            response(C_STORE_RSP, 7, "1.2.840.10008.5.1.4.1.1.2", Some("1.2.3"), STATUS_OUT_OF_RESOURCES, "disk full");
        let cmd = parse_command(&rsp).expect("parses");
        assert_eq!(
            (cmd.field, cmd.affected_class.as_str(), cmd.affected_instance.as_str()),
            (C_STORE_RSP, "1.2.840.10008.5.1.4.1.1.2", "1.2.3")
        );
        assert!(!cmd.has_dataset);
        // Group length first, and it counts the bytes after it.
        assert_eq!(&rsp[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]) as usize, rsp.len() - 12);
    }
}
