//! Server-side rendering: a frame decoded by `dicom-pixeldata`, the Modality LUT (rescale)
//! applied, windowed to 8 bits (MONOCHROME1 shown inverted, as it is meant to be read), colour
//! (RGB, YBR, PALETTE COLOR) turned into RGB, then PNG.

use super::read::{self, DEFLATED, int};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::ImageEncoder;

/// Largest frame rendered, in samples (rows × columns × samples per pixel).
pub const MAX_FRAME_SAMPLES: u64 = 64 << 20;

/// A frame could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// No decoder for this transfer syntax is built into the hub (JPEG-LS needs CharLS, a C++
    /// library the hub does not link).
    #[error("transfer syntax {name} ({transfer_syntax}) cannot be decoded by this hub")]
    Unsupported {
        /// The transfer syntax UID.
        transfer_syntax: String,
        /// Its name.
        name: String,
    },
    /// The codec is there but failed on this file (for example 12-bit JPEG, which the JPEG
    /// decoder does not implement, or damaged data).
    #[error("pixel data in {name} ({transfer_syntax}) could not be decoded: {reason}")]
    Decode {
        /// The transfer syntax UID.
        transfer_syntax: String,
        /// Its name.
        name: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The instance has no image (an Encapsulated PDF, a waveform).
    #[error("the instance has no pixel data")]
    NoPixelData,
    /// Frame index past the last frame.
    #[error("frame {frame} does not exist (the instance has {frames})")]
    FrameOutOfRange {
        /// The frame asked for, 0-based.
        frame: u32,
        /// How many there are.
        frames: u32,
    },
    /// A photometric interpretation or sample layout this renderer does not draw.
    #[error("cannot draw {0}")]
    Layout(String),
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] read::ReadError),
    /// PNG encoding failed.
    #[error("PNG encoding: {0}")]
    Encode(String),
}

/// A window (VOI LUT linear function), in rescaled units (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Window Center.
    pub center: f64,
    /// Window Width.
    pub width: f64,
}

/// What to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Frame index, 0-based.
    pub frame: u32,
    /// The window; `None`: the file's first window, else the frame's value range.
    pub window: Option<Window>,
    /// Invert the displayed grey levels (or colours).
    pub invert: bool,
    /// Shrink so neither side exceeds this (thumbnails).
    pub max_side: Option<u32>,
}

/// A rendered frame.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// Width and height of the PNG.
    pub size: (u32, u32),
    /// The window used (for greyscale frames).
    pub window: Option<Window>,
}

/// A decoded frame's stored values, before any LUT.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Samples per pixel (1 or 3).
    pub samples_per_pixel: u16,
    /// Photometric interpretation of `values` (encapsulated colour is RGB once decoded).
    pub photometric: String,
    /// Colour planes one after the other (Planar Configuration 1); codecs always interleave.
    pub planar: bool,
    /// Stored values (sign-extended, masked to Bits Stored), samples interleaved.
    pub values: Vec<i32>,
}

/// The name of a transfer syntax, or its UID when unknown.
pub fn transfer_syntax_name(uid: &str) -> String {
    if uid == DEFLATED {
        return "Deflated Explicit VR Little Endian".into();
    }
    TransferSyntaxRegistry.get(uid).map(|t| t.name().to_string()).unwrap_or_else(|| uid.to_string())
}

/// Whether this hub can decode pixel data in this transfer syntax.
pub fn can_decode(uid: &str) -> bool {
    uid == DEFLATED || TransferSyntaxRegistry.get(uid).is_some_and(|t| t.can_decode_all())
}

fn number_of_frames(obj: &InMemDicomObject) -> u32 {
    u32::try_from(int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1)).unwrap_or(1)
}

/// Decodes one frame of a parsed file (`ts` is the transfer syntax of the file as stored).
pub fn decode_frame(obj: &DefaultDicomObject, ts: &str, frame: u32) -> Result<Frame, RenderError> {
    let unsupported = || RenderError::Unsupported { transfer_syntax: ts.to_string(), name: transfer_syntax_name(ts) };
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(RenderError::NoPixelData);
    }
    let frames = number_of_frames(obj);
    if frame >= frames {
        return Err(RenderError::FrameOutOfRange { frame, frames });
    }
    if !can_decode(ts) {
        return Err(unsupported());
    }
    let rows = int(obj, tags::ROWS).unwrap_or(0).max(0) as u64;
    let cols = int(obj, tags::COLUMNS).unwrap_or(0).max(0) as u64;
    let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u64;
    if rows * cols * spp > MAX_FRAME_SAMPLES || rows == 0 || cols == 0 {
        return Err(RenderError::Layout(format!("a {rows}×{cols}×{spp} frame")));
    }
    let px = obj.decode_pixel_data_frame(frame).map_err(|e| {
        let reason = e.to_string();
        if reason.contains("Unsupported TransferSyntax") {
            unsupported()
        } else {
            // The codec's own message (e.g. jpeg-decoder: "unsupported 12-bit") sits in the source.
            let mut full = reason;
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                full.push_str(": ");
                full.push_str(&s.to_string());
                src = s.source();
            }
            RenderError::Decode { transfer_syntax: ts.to_string(), name: transfer_syntax_name(ts), reason: full }
        }
    })?;
    let n = (rows * cols * spp) as usize;
    let bits = px.bits_allocated();
    let stored = px.bits_stored().clamp(1, 32);
    let signed = px.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
    let data = px.data();
    let short = || RenderError::Decode {
        transfer_syntax: ts.to_string(),
        name: transfer_syntax_name(ts),
        reason: format!("decoded {} bytes, too few for {n} samples of {bits} bits", data.len()),
    };
    let raw: Vec<u32> = match bits {
        1 => data.get(..n).ok_or_else(short)?.iter().map(|b| u32::from(*b != 0)).collect(),
        8 => data.get(..n).ok_or_else(short)?.iter().map(|b| u32::from(*b)).collect(),
        16 => data
            .get(..n * 2)
            .ok_or_else(short)?
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        32 => data
            .get(..n * 4)
            .ok_or_else(short)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        b => return Err(RenderError::Layout(format!("{b} bits allocated"))),
    };
    let shift = u32::from(px.high_bit().saturating_add(1).saturating_sub(stored).min(31));
    let stored = if bits == 1 { 1 } else { u32::from(stored) };
    let mask = if stored >= 32 { u32::MAX } else { (1u32 << stored) - 1 };
    let values = raw
        .into_iter()
        .map(|v| {
            let v = (v >> shift) & mask;
            if signed && stored < 32 && v & (1 << (stored - 1)) != 0 { (v | !mask) as i32 } else { v as i32 }
        })
        .collect();
    let photometric = px.photometric_interpretation().to_string();
    Ok(Frame {
        rows: rows as u32,
        columns: cols as u32,
        samples_per_pixel: spp as u16,
        photometric: photometric.trim().to_string(),
        planar: px.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst,
        values,
    })
}

/// The window in the file (first of Window Center/Width), if any.
pub fn file_window(obj: &InMemDicomObject) -> Option<Window> {
    let c = read::floats(obj, tags::WINDOW_CENTER)?;
    let w = read::floats(obj, tags::WINDOW_WIDTH)?;
    Some(Window { center: *c.first()?, width: *w.first()? }).filter(|w| w.width > 0.0)
}

/// Rescale slope and intercept (the Modality LUT), identity when absent.
pub fn rescale(obj: &InMemDicomObject) -> (f64, f64) {
    let slope = read::floats(obj, tags::RESCALE_SLOPE).and_then(|v| v.first().copied()).unwrap_or(1.0);
    let intercept = read::floats(obj, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied()).unwrap_or(0.0);
    (if slope == 0.0 { 1.0 } else { slope }, intercept)
}

/// Renders a frame of the file at `path` to PNG.
pub fn render_file(path: &std::path::Path, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    let parsed = read::read(path, true)?;
    render(&parsed.obj, &parsed.transfer_syntax, opts)
}

/// Renders a frame of a parsed file to PNG.
pub fn render(obj: &DefaultDicomObject, ts: &str, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    let f = decode_frame(obj, ts, opts.frame)?;
    let (w, h) = (f.columns, f.rows);
    let (mut pixels, channels, window) = match (f.photometric.as_str(), f.samples_per_pixel) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let (slope, intercept) = rescale(obj);
            let vals: Vec<f64> = f.values.iter().map(|v| f64::from(*v) * slope + intercept).collect();
            let window = opts.window.or_else(|| file_window(obj)).unwrap_or_else(|| {
                let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
                Window { center: (lo + hi) / 2.0, width: (hi - lo + 1.0).max(1.0) }
            });
            let invert = f.photometric == "MONOCHROME1";
            let out = vals
                .iter()
                .map(|v| {
                    let g = apply_window(*v, window);
                    if invert { 255 - g } else { g }
                })
                .collect();
            (out, 1, Some(window))
        }
        ("PALETTE COLOR", 1) => (palette(obj, &f.values)?, 3, None),
        ("RGB", 3) => (to_rgb8(obj, &f, |p| p), 3, None),
        ("YBR_FULL", 3) => (to_rgb8(obj, &f, ybr_to_rgb), 3, None),
        (pi, spp) => return Err(RenderError::Layout(format!("{pi} with {spp} samples per pixel"))),
    };
    if opts.invert {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    let (pixels, size) = match opts.max_side {
        Some(m) if m > 0 && (w > m || h > m) => shrink(pixels, channels, w, h, m)?,
        _ => (pixels, (w, h)),
    };
    let mut png = Vec::new();
    let color = if channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, size.0, size.1, color)
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(Rendered { png, size, window })
}

/// The DICOM linear VOI function (PS3.3 C.11.2.1.2.1) onto 0..=255.
fn apply_window(v: f64, w: Window) -> u8 {
    let width = w.width.max(1.0);
    let lo = w.center - 0.5 - (width - 1.0) / 2.0;
    let hi = w.center - 0.5 + (width - 1.0) / 2.0;
    if v <= lo {
        0
    } else if v > hi {
        255
    } else {
        (((v - (w.center - 0.5)) / (width - 1.0).max(1.0) + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
    }
}

/// Interleaved 8-bit samples of a 3-sample frame (planar configuration 1 re-interleaved),
/// each pixel mapped through `convert`.
fn to_rgb8(obj: &InMemDicomObject, f: &Frame, convert: fn([u8; 3]) -> [u8; 3]) -> Vec<u8> {
    let planar = f.planar;
    let bits = int(obj, tags::BITS_STORED).unwrap_or(8).clamp(8, 16) as u32;
    let to8 = |v: i32| (v.max(0) as u32 >> (bits - 8)).min(255) as u8;
    let n = f.rows as usize * f.columns as usize;
    let mut out = Vec::with_capacity(n * 3);
    for i in 0..n {
        let at = |c: usize| if planar { c * n + i } else { i * 3 + c };
        let p = [0, 1, 2].map(|c| f.values.get(at(c)).copied().map(to8).unwrap_or(0));
        out.extend_from_slice(&convert(p));
    }
    out
}

/// YCbCr (full range, PS3.3 C.7.6.3.1.2) to RGB.
fn ybr_to_rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [c(y + 1.402 * cr), c(y - 0.344136 * cb - 0.714136 * cr), c(y + 1.772 * cb)]
}

/// PALETTE COLOR: stored values index the red, green and blue LUTs.
fn palette(obj: &InMemDicomObject, values: &[i32]) -> Result<Vec<u8>, RenderError> {
    let lut = |desc, data| -> Result<(i64, Vec<u8>), RenderError> {
        let d = obj
            .get(desc)
            .and_then(|e| e.value().to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or_else(|| RenderError::Layout("PALETTE COLOR without a palette descriptor".into()))?;
        let first = d[1];
        let entries = if d[0] <= 0 { 65536 } else { d[0] } as usize;
        let bytes = obj.get(data).and_then(|e| e.value().to_bytes().ok().map(|b| b.into_owned())).ok_or_else(|| {
            RenderError::Layout("PALETTE COLOR without palette data (segmented palettes are not drawn)".into())
        })?;
        // 16-bit entries keep their high byte; 8-bit entries may still be stored one per word.
        let table: Vec<u8> = if d[2] == 16 || bytes.len() >= entries * 2 {
            bytes.chunks_exact(2).take(entries).map(|c| (u16::from_le_bytes([c[0], c[1]]) >> 8) as u8).collect()
        } else {
            bytes.into_iter().take(entries).collect()
        };
        if table.is_empty() {
            return Err(RenderError::Layout("an empty palette".into()));
        }
        Ok((first, table))
    };
    let r = lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let g = lut(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let b = lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let look = |(first, t): &(i64, Vec<u8>), v: i32| {
        let i = (i64::from(v) - first).clamp(0, t.len() as i64 - 1) as usize;
        t.get(i).copied().unwrap_or(0)
    };
    Ok(values.iter().flat_map(|v| [look(&r, *v), look(&g, *v), look(&b, *v)]).collect())
}

fn shrink(pixels: Vec<u8>, channels: u8, w: u32, h: u32, max: u32) -> Result<(Vec<u8>, (u32, u32)), RenderError> {
    let scale = f64::from(max) / f64::from(w.max(h));
    let (nw, nh) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
    let bad = || RenderError::Encode("pixel buffer size".into());
    if channels == 1 {
        let img = image::GrayImage::from_raw(w, h, pixels).ok_or_else(bad)?;
        Ok((image::imageops::thumbnail(&img, nw, nh).into_raw(), (nw, nh)))
    } else {
        let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(bad)?;
        Ok((image::imageops::thumbnail(&img, nw, nh).into_raw(), (nw, nh)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_maps_the_edges_to_black_and_white() {
        let w = Window { center: 40.0, width: 400.0 };
        assert_eq!(apply_window(-160.0, w), 0);
        assert_eq!(apply_window(240.0, w), 255);
        assert_eq!(apply_window(40.0, w), 128);
    }

    #[test]
    fn ybr_grey_stays_grey() {
        assert_eq!(ybr_to_rgb([100, 128, 128]), [100, 100, 100]);
    }
}
