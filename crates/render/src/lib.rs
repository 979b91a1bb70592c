//! Rendering of official E-SOCIAL documents — extracts from the register, certificates of
//! internally displaced persons — as PDF with Ukrainian text, plus QR codes and Code 128 barcodes.
//!
//! # API
//!
//! - [`pdf`] lays a [`Document`] out on A4 pages and returns the PDF bytes;
//! - [`qr_svg`] and [`qr_png`] draw a QR code (error correction level M, 4-module quiet zone);
//! - [`code128_svg`] draws a Code 128 barcode with its human-readable text below it.
//!
//! Every function returns [`RenderError`] for input it cannot render and never panics.
//!
//! # How the PDF is made
//!
//! Text is set in DejaVu Sans (regular and bold, embedded with `include_bytes!`; see
//! `fonts/LICENSE`). Ukrainian needs no shaping, so layout maps each character to a glyph with the
//! font's `cmap`, measures it with its advance width and wraps greedily at spaces (a word wider
//! than a line is broken between characters). A character the font has no glyph for is an error,
//! not a silent box.
//!
//! After layout each face is *subsetted* to the glyphs the document uses and embedded as a
//! `CIDFontType2` font with `Identity-H` encoding: a text string is the sequence of the subset's
//! 16-bit glyph ids, and a `ToUnicode` CMap maps every glyph id back to its character, so the text
//! can be selected, searched and extracted.
//!
//! The QR code is drawn as filled rectangles, one per horizontal run of dark modules, all in one
//! path (so no seams appear between rows). Streams are zlib-compressed (`FlateDecode`).
//!
//! The output is deterministic: no dates, no random ids, object numbers in a fixed order and the
//! font subset tag derived from the glyph set. The same [`Document`] always gives the same bytes,
//! which is what signing needs (for one build: a new version of `miniz_oxide` or `subsetter` may
//! change the bytes, never the content). The info dictionary names the producer `esocial`.
//!
//! # Limits
//!
//! No kerning, ligatures, hyphenation or justification; no right-to-left text; combining marks
//! are drawn as the font places them, without mark positioning; text is not Unicode-normalised.
//! The PDF is plain PDF 1.7 (not PDF/A, not tagged) with no `/ID`, so that signing tools can add
//! their own.

mod code128;
mod document;
mod fonts;
mod layout;
mod png;
mod qr;
mod svg;

pub use code128::code128_svg;
pub use document::{Document, pdf};
pub use qr::{MAX_MODULE_PIXELS, qr_png, qr_svg};

/// `data` as a zlib stream (RFC 1950), for PDF `FlateDecode` streams and PNG image data.
/// Level 6 of `miniz_oxide` (level 9 saves 0.2 % on a typical extract at 1.5 times the cost); the
/// output depends only on the input and the crate's version.
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Why a document, QR code or barcode could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The text contains a character the embedded font has no glyph for (or a control character).
    #[error("character {character:?} (U+{code:04X}) cannot be printed: the font has no glyph for it", code = u32::from(*character))]
    UnsupportedCharacter {
        /// The offending character.
        character: char,
    },
    /// The footer is too long to repeat at the bottom of every page.
    #[error("the footer takes {lines} lines, at most {max_lines} fit at the bottom of a page")]
    FooterTooLong {
        /// Lines the footer wraps to.
        lines: usize,
        /// Lines allowed.
        max_lines: usize,
    },
    /// The QR payload does not fit into the largest QR code (version 40) at error correction level M.
    #[error("the QR payload of {bytes} bytes does not fit into a QR code")]
    QrPayloadTooLong {
        /// Length of the payload in bytes (UTF-8).
        bytes: usize,
    },
    /// The QR encoder rejected the payload for another reason.
    #[error("the QR payload cannot be encoded: {0}")]
    Qr(String),
    /// A QR PNG was asked for with a module size out of range.
    #[error("a QR module must be 1 to {max} pixels wide, not {module_pixels}")]
    InvalidModuleSize {
        /// The size asked for.
        module_pixels: u32,
        /// The largest size allowed.
        max: u32,
    },
    /// Code 128 data must not be empty.
    #[error("Code 128 data is empty")]
    EmptyBarcode,
    /// Code 128 (sets B and C) encodes printable ASCII only.
    #[error("character {character:?} at position {position} cannot be encoded in Code 128: printable ASCII only")]
    UnencodableBarcodeCharacter {
        /// The offending character.
        character: char,
        /// Its position in the data, counted in characters from 0.
        position: usize,
    },
    /// The embedded font could not be read or subsetted (a bug, not a matter of input).
    #[error("font error: {0}")]
    Font(String),
}
