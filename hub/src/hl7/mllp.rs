//! MLLP (the Minimal Lower Layer Protocol HL7 v2 travels on): each message framed as
//! `0x0B message 0x1C 0x0D`, one acknowledgement back per message.

use super::message::Charset;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

/// The largest acknowledgement read.
pub const ACK_MAX: usize = 64 * 1024;

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MllpError {
    /// The connection failed.
    #[error("HIS connection: {0}")]
    Io(#[from] std::io::Error),
    /// The HIS closed the connection before acknowledging.
    #[error("the HIS closed the connection without an acknowledgement")]
    Closed,
    /// No acknowledgement within the time allowed.
    #[error("no acknowledgement within {0} s")]
    Timeout(u64),
    /// The answer is not an MLLP frame or not an HL7 ACK.
    #[error("the HIS's answer is not an HL7 acknowledgement: {0}")]
    BadAck(String),
    /// The HIS acknowledged another message.
    #[error("the acknowledgement is for message {got}, not {sent}")]
    OtherMessage {
        /// MSA-2 of the ACK.
        got: String,
        /// MSH-10 sent.
        sent: String,
    },
    /// The HIS refused it (AE, AR, CE, CR), with its text.
    #[error("the HIS answered {code}: {text}")]
    Refused {
        /// MSA-1.
        code: String,
        /// MSA-3 or ERR text.
        text: String,
    },
}

/// Frames `message` for the wire.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.extend_from_slice(&END);
    out
}

/// Reads one frame (at most `max` bytes of message) and returns the message.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, MllpError> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Bytes before the start block (a stray newline) are skipped.
    loop {
        if r.read(&mut byte).await? == 0 {
            return Err(MllpError::Closed);
        }
        if byte[0] == START {
            break;
        }
    }
    loop {
        if r.read(&mut byte).await? == 0 {
            return Err(MllpError::Closed);
        }
        buf.push(byte[0]);
        if buf.ends_with(&END) {
            buf.truncate(buf.len() - 2);
            return Ok(buf);
        }
        if buf.len() > max + 2 {
            return Err(MllpError::BadAck(format!("an answer over {max} bytes")));
        }
    }
}

/// The acknowledgement code and text of an ACK for `control_id`: `Ok` for AA or CA.
pub fn check_ack(ack: &[u8], charset: Charset, control_id: &str) -> Result<String, MllpError> {
    let text = charset.decode(ack);
    // What the HIS sends is input: a parser panic must not take the sender down with it.
    let parsed = std::panic::catch_unwind(|| -> Result<(String, String, String), MllpError> {
        let msg = hl7_parser::Message::parse_with_lenient_newlines(&text, true)
            .map_err(|e| MllpError::BadAck(e.to_string()))?;
        let msa = msg.segment("MSA").ok_or_else(|| MllpError::BadAck("no MSA segment".into()))?;
        // Raw values, unescaped here: hl7-parser's decoding display panics on multi-byte text.
        let field = |n: usize| msa.field(n).map(|f| super::message::unescape(f.raw_value())).unwrap_or_default();
        let mut why = field(3);
        if why.is_empty()
            && let Some(err) = msg.segment("ERR")
        {
            why = super::message::unescape(err.raw_value());
        }
        Ok((field(1), field(2), why))
    })
    .map_err(|_| MllpError::BadAck("the acknowledgement could not be parsed".into()))?;
    let (code, acked, why) = parsed?;
    if acked != control_id {
        return Err(MllpError::OtherMessage { got: acked, sent: control_id.to_string() });
    }
    match code.as_str() {
        "AA" | "CA" => Ok(code),
        "AE" | "AR" | "CE" | "CR" => Err(MllpError::Refused { code, text: why }),
        other => Err(MllpError::BadAck(format!("MSA-1 {other:?}"))),
    }
}

/// Sends one message and waits up to `timeout` for its acknowledgement.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
    charset: Charset,
    control_id: &str,
    timeout: std::time::Duration,
) -> Result<String, MllpError> {
    stream.write_all(&frame(message)).await?;
    stream.flush().await?;
    let ack = tokio::time::timeout(timeout, read_frame(stream, ACK_MAX))
        .await
        .map_err(|_| MllpError::Timeout(timeout.as_secs()))??;
    check_ack(&ack, charset, control_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_acks_are_checked() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"\n").await.expect("stray");
        a.write_all(&frame(b"MSH|^~\\&|X\rMSA|AA|YL1\r")).await.expect("write");
        let got = read_frame(&mut b, ACK_MAX).await.expect("frame");
        assert_eq!(got, b"MSH|^~\\&|X\rMSA|AA|YL1\r");
        assert_eq!(check_ack(&got, Charset::Utf8, "YL1").expect("AA"), "AA");
        let other = check_ack(b"MSH|^~\\&|X\rMSA|AA|YL2\r", Charset::Utf8, "YL1");
        assert!(matches!(other, Err(MllpError::OtherMessage { .. })), "{other:?}");
        let refused = check_ack(b"MSH|^~\\&|X\rMSA|AE|YL1|PID-3 unknown\r", Charset::Utf8, "YL1");
        assert!(
            matches!(refused, Err(MllpError::Refused { ref code, ref text }) if code == "AE" && text == "PID-3 unknown")
        );
        assert!(matches!(check_ack(b"garbage", Charset::Utf8, "YL1"), Err(MllpError::BadAck(_))));
        // Chinese text with escapes, in GB 18030, as a Chinese HIS answers.
        let ack = Charset::Gb18030.encode("MSH|^~\\&|HIS\rMSA|AE|YL1|患者编号\\F\\不存在\r");
        let refused = check_ack(&ack, Charset::Gb18030, "YL1");
        assert!(
            matches!(refused, Err(MllpError::Refused { ref text, .. }) if text == "患者编号|不存在"),
            "{refused:?}"
        );
        drop(a);
        assert!(matches!(read_frame(&mut b, ACK_MAX).await, Err(MllpError::Closed)));
    }
}
