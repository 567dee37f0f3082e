//! Image studies on the link: a signed manifest (what the study holds, each instance's size and
//! SHA-256) and the instances' bytes in chunks that fit an MQTT packet, each with its own SHA-256.
//! The hub stores chunks as they come, acks them once durable, and rebuilds each instance only
//! when every chunk is there and the whole matches the manifest's hash.

use crate::limits;
use crate::message::Priority;
use serde::{Deserialize, Serialize};

/// One DICOM instance of an image study.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInstance {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Series Instance UID.
    pub series_uid: String,
    /// Transfer syntax as received (never transcoded).
    pub transfer_syntax: String,
    /// Size of the Part-10 file in bytes.
    pub size: u64,
    /// SHA-256 of the Part-10 file.
    pub sha256: [u8; 32],
    /// Number of chunks it is sent in ([`limits::BLOB_CHUNK_PAYLOAD`] bytes each, the last shorter).
    pub chunks: u32,
}

/// The signed list of what an image study holds; large studies send it in several parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Study Instance UID.
    pub study_uid: String,
    /// Urgency chosen at the clinic (C-STORE priority, modality rule, or the clinic page).
    pub priority: Priority,
    /// Modality of the study (e.g. "CT", "CR").
    pub modality: String,
    /// Patient name (UTF-8).
    pub patient_name: String,
    /// Patient id.
    pub patient_id: String,
    /// The sending modality's AE title.
    pub calling_ae: String,
    /// When the node had the whole study, Unix ms.
    pub received_at_ms: i64,
    /// This part's index, from 0.
    pub part: u32,
    /// Number of parts.
    pub parts: u32,
    /// Instances listed in this part.
    pub instances: Vec<ManifestInstance>,
}

/// A piece of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunk {
    /// Study Instance UID.
    pub study_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Chunk index within the instance.
    pub index: u32,
    /// SHA-256 of `bytes`.
    pub sha256: [u8; 32],
    /// The bytes at `index × BLOB_CHUNK_PAYLOAD`.
    pub bytes: Vec<u8>,
}

/// Instances listed per manifest part (keeps a part well inside its size limit).
pub const INSTANCES_PER_PART: usize = 200;

impl ManifestInstance {
    /// The chunk count a file of `size` bytes needs.
    pub fn chunks_for(size: u64) -> u32 {
        size.div_ceil(limits::BLOB_CHUNK_PAYLOAD as u64).max(1) as u32
    }
}

impl ImageManifest {
    /// Checks what the wire format cannot: part numbering, counts, chunk arithmetic.
    pub fn validate(&self) -> Result<(), String> {
        if self.parts == 0 || self.part >= self.parts {
            return Err(format!("part {} of {}", self.part, self.parts));
        }
        if self.instances.len() > INSTANCES_PER_PART {
            return Err(format!("{} instances in one part", self.instances.len()));
        }
        for i in &self.instances {
            if i.size > limits::IMAGE_INSTANCE_MAX {
                return Err(format!("instance {}: {} bytes is over the limit", i.sop_instance_uid, i.size));
            }
            if i.chunks != ManifestInstance::chunks_for(i.size) {
                return Err(format!("instance {}: {} chunks for {} bytes", i.sop_instance_uid, i.chunks, i.size));
            }
        }
        Ok(())
    }
}

impl BlobChunk {
    /// Checks the chunk's own hash and size.
    pub fn validate(&self) -> Result<(), String> {
        if self.bytes.is_empty() || self.bytes.len() > limits::BLOB_CHUNK_PAYLOAD {
            return Err(format!("chunk of {} bytes", self.bytes.len()));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        if digest.as_ref() != self.sha256 {
            return Err("chunk does not match its SHA-256".into());
        }
        Ok(())
    }
}
