//! QR codes: the module matrix comes from the `qrcode` crate (error correction level M, the
//! smallest version that fits, byte/alphanumeric/numeric segments chosen by the crate); drawing
//! it — as SVG, PNG or PDF rectangles — is done here, one rectangle per horizontal run of dark
//! modules.

use qrcode::types::QrError;
use qrcode::{Color, EcLevel, QrCode};

use crate::{RenderError, png};

/// Light modules around the code, as ISO/IEC 18004 requires.
pub(crate) const QUIET_ZONE: usize = QUIET_ZONE_U32 as usize;
const QUIET_ZONE_U32: u32 = 4;
/// The largest module size [`qr_png`] accepts (a version 40 code is then 5 920 pixels wide).
pub const MAX_MODULE_PIXELS: u32 = 32;
/// Pixels per module in the `width`/`height` of [`qr_svg`]'s output (it scales freely).
const SVG_MODULE_PIXELS: usize = 4;

/// The modules of a QR code, without quiet zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QrMatrix {
    width: usize,
    dark: Vec<bool>,
}

/// `length` dark modules from (`x`, `y`) to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) length: usize,
}

impl QrMatrix {
    pub(crate) fn encode(payload: &str) -> Result<Self, RenderError> {
        let code =
            QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).map_err(|error| match error {
                QrError::DataTooLong => RenderError::QrPayloadTooLong { bytes: payload.len() },
                other => RenderError::Qr(other.to_string()),
            })?;
        let dark = code.to_colors().into_iter().map(|color| color == Color::Dark).collect();
        Ok(QrMatrix { width: code.width(), dark })
    }

    /// Modules per side.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && self.dark.get(y * self.width + x).copied().unwrap_or(false)
    }

    /// Maximal horizontal runs of dark modules, row by row from the top.
    pub(crate) fn runs(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        for (y, row) in self.dark.chunks(self.width.max(1)).enumerate() {
            let mut x = 0;
            while x < row.len() {
                let length = row[x..].iter().take_while(|&&dark| dark).count();
                if length > 0 {
                    runs.push(Run { x, y, length });
                }
                x += length + 1;
            }
        }
        runs
    }
}

/// A QR code (level M) for `payload` as a standalone SVG document with a white background and a
/// 4-module quiet zone; one user unit is one module, and it is 4 pixels per module by default.
pub fn qr_svg(payload: &str) -> Result<String, RenderError> {
    let matrix = QrMatrix::encode(payload)?;
    let side = matrix.width + 2 * QUIET_ZONE;
    let pixels = side * SVG_MODULE_PIXELS;
    let mut path = String::new();
    for run in matrix.runs() {
        let (x, y) = (run.x + QUIET_ZONE, run.y + QUIET_ZONE);
        path.push_str(&format!("M{x} {y}h{}v1h-{}z", run.length, run.length));
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{pixels}\" height=\"{pixels}\" \
         viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>\n"
    ))
}

/// A QR code (level M) for `payload` as a 1-bit greyscale PNG with a 4-module quiet zone,
/// `module_pixels` (1 to [`MAX_MODULE_PIXELS`]) pixels per module.
pub fn qr_png(payload: &str, module_pixels: u32) -> Result<Vec<u8>, RenderError> {
    if !(1..=MAX_MODULE_PIXELS).contains(&module_pixels) {
        return Err(RenderError::InvalidModuleSize { module_pixels, max: MAX_MODULE_PIXELS });
    }
    let matrix = QrMatrix::encode(payload)?;
    let modules =
        u32::try_from(matrix.width + 2 * QUIET_ZONE).map_err(|_| RenderError::Qr("too many modules".into()))?;
    let is_dark = |x: u32, y: u32| {
        let (x, y) =
            ((x / module_pixels).wrapping_sub(QUIET_ZONE_U32), (y / module_pixels).wrapping_sub(QUIET_ZONE_U32));
        (y as usize) < matrix.width && matrix.is_dark(x as usize, y as usize)
    };
    Ok(png::bilevel(modules * module_pixels, modules * module_pixels, is_dark))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_the_qrcode_crate() {
        let payload = "https://esocial.gov.ua/v/0123456789";
        let code = QrCode::with_error_correction_level(payload, EcLevel::M).expect("encodes");
        let matrix = QrMatrix::encode(payload).expect("encodes");
        assert_eq!(matrix.width(), code.width());
        for y in 0..code.width() {
            for x in 0..code.width() {
                assert_eq!(matrix.is_dark(x, y), code[(x, y)] == Color::Dark);
            }
        }
        assert!(!matrix.is_dark(code.width(), 0));
    }

    #[test]
    fn runs_cover_exactly_the_dark_modules() {
        let matrix = QrMatrix::encode("Ґ").expect("encodes");
        let mut covered = vec![false; matrix.width * matrix.width];
        for run in matrix.runs() {
            assert!(run.length > 0);
            for x in run.x..run.x + run.length {
                assert!(!covered[run.y * matrix.width + x], "runs overlap");
                covered[run.y * matrix.width + x] = true;
            }
            // Maximal: no dark module right before or after.
            assert!(run.x == 0 || !matrix.is_dark(run.x - 1, run.y));
            assert!(!matrix.is_dark(run.x + run.length, run.y));
        }
        assert_eq!(covered, matrix.dark);
    }

    #[test]
    fn payload_limits() {
        // Version 40-M holds 2331 bytes in byte mode.
        assert!(QrMatrix::encode(&"ж".repeat(1165)).is_ok());
        assert!(matches!(QrMatrix::encode(&"ж".repeat(1166)), Err(RenderError::QrPayloadTooLong { bytes: 2332 })));
        assert!(matches!(qr_svg(&"x".repeat(100_000)), Err(RenderError::QrPayloadTooLong { bytes: 100_000 })));
        assert_eq!(QrMatrix::encode("").expect("empty payload encodes").width(), 21);
    }

    #[test]
    fn png_module_size_is_checked() {
        for module_pixels in [0, MAX_MODULE_PIXELS + 1, u32::MAX] {
            assert!(matches!(qr_png("x", module_pixels), Err(RenderError::InvalidModuleSize { .. })));
        }
    }
}
