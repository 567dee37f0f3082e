//! `yilian-agent raw-capture`: records every byte an undocumented cart sends, with the time it
//! arrived, so county IT can bring the protocol to the developers. Nothing is decoded or sent.
//!
//! The file is text: `#` header lines, then one line per read, `<ms since start> <hex bytes>`.
//! Each line is flushed as it is written, so a capture cut short by a pulled cable is still usable.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

/// What a capture recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Captured {
    /// Bytes recorded.
    pub bytes: u64,
    /// Reads (lines) recorded.
    pub reads: u64,
}

/// Records `port` at `baud` into `out` until `duration` passes, the port closes, or `shutdown`.
pub async fn capture(
    port: &str,
    baud: u32,
    out: &Path,
    duration: Option<Duration>,
    shutdown: CancellationToken,
) -> std::io::Result<Captured> {
    let mut serial = tokio_serial::new(port, baud).open_native_async().map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(out)?;
    writeln!(file, "# yilian raw capture v1")?;
    writeln!(file, "# port {port} baud {baud} started {}", jiff::Timestamp::now())?;
    writeln!(file, "# each line: milliseconds since start, then the bytes of one read in hex")?;
    let start = Instant::now();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut buf = vec![0u8; 4096];
    let mut got = Captured::default();
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            r = serial.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        writeln!(file, "{ms:.3} {}", hex::encode(&buf[..n]))?;
        file.flush()?;
        got.bytes += n as u64;
        got.reads += 1;
    }
    writeln!(file, "# end: {} bytes in {} reads", got.bytes, got.reads)?;
    file.sync_all()?;
    Ok(got)
}

/// Reads a capture file back into (ms, bytes) records (for tests and for replaying into a pty).
pub fn parse(text: &str) -> Result<Vec<(f64, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (t, h) = line.split_once(' ').ok_or_else(|| format!("line {}: no bytes", i + 1))?;
        let ms: f64 = t.parse().map_err(|_| format!("line {}: bad time {t:?}", i + 1))?;
        let bytes = hex::decode(h.trim()).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push((ms, bytes));
    }
    Ok(out)
}
