//! Results to the hospital HIS as HL7 v2: the ORU^R01 message ([`message`]), its MLLP transport
//! ([`mllp`]) and the sender that works through the store's outbox ([`sender`]).

pub mod message;
pub mod mllp;
pub mod sender;
