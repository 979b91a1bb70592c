//! QR codes (SVG, PNG) and Code 128 (SVG) through the public API: the drawings are decoded back
//! and compared with the `qrcode` crate's module matrix or with a hand-computed bar pattern;
//! `zbarimg` also reads the PNG when it is installed.

mod support;

use esocial_render::{MAX_MODULE_PIXELS, RenderError, code128_svg, qr_png, qr_svg};
use qrcode::{Color, EcLevel, QrCode};
use support::{have_tool, temp_path, zbarimg};

const PAYLOAD: &str = "https://esocial.gov.ua/v/ВПО-2025-000123?h=9f2c";

/// The reference matrix: dark modules of the same payload at level M, from the `qrcode` crate.
fn reference(payload: &str) -> (usize, Vec<bool>) {
    let code = QrCode::with_error_correction_level(payload, EcLevel::M).expect("encodes");
    (code.width(), code.to_colors().into_iter().map(|color| color == Color::Dark).collect())
}

/// The value of attribute `name` in `svg`.
fn attribute<'a>(svg: &'a str, name: &str) -> &'a str {
    svg.split(&format!(" {name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).expect("attribute")
}

/// Numbers in a path made of `M x y h w v h h -w z` commands, four per subpath: x, y, w, h.
fn subpaths(d: &str) -> Vec<[usize; 4]> {
    d.split('z')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let numbers: Vec<usize> = part
                .split(|c: char| c.is_ascii_alphabetic() || c == ' ' || c == '-')
                .filter(|number| !number.is_empty())
                .map(|number| number.parse().expect("number"))
                .collect();
            assert_eq!(numbers.len(), 5, "{part}");
            assert_eq!(numbers[2], numbers[4], "closed rectangle: {part}");
            [numbers[0], numbers[1], numbers[2], numbers[3]]
        })
        .collect()
}

#[test]
fn qr_svg_draws_the_reference_matrix_with_a_quiet_zone() {
    let svg = qr_svg(PAYLOAD).expect("encodes");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let (width, expected) = reference(PAYLOAD);
    let side = width + 8;
    assert_eq!(attribute(&svg, "viewBox"), format!("0 0 {side} {side}"));
    let mut drawn = vec![false; width * width];
    for [x, y, length, height] in subpaths(attribute(&svg, "d")) {
        assert_eq!(height, 1);
        assert!(x >= 4 && y >= 4 && x + length <= side - 4 && y < side - 4, "inside the quiet zone");
        for column in x - 4..x - 4 + length {
            drawn[(y - 4) * width + column] = true;
        }
    }
    assert_eq!(drawn, expected);
}

/// Width, height and black pixels of a 1-bit greyscale PNG, checking signature, chunk CRCs and zlib.
fn decode_png(png: &[u8]) -> (usize, usize, Vec<bool>) {
    assert_eq!(png[..8], [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'], "signature");
    let mut rest = &png[8..];
    let (mut header, mut data, mut ended) = (Vec::new(), Vec::new(), false);
    while !rest.is_empty() {
        let length = usize::try_from(u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"))).expect("length");
        let (kind, body) = (&rest[4..8], &rest[8..8 + length]);
        let crc = u32::from_be_bytes(rest[8 + length..12 + length].try_into().expect("4 bytes"));
        assert_eq!(crc, crc32(&rest[4..8 + length]), "CRC of {}", String::from_utf8_lossy(kind));
        match kind {
            b"IHDR" => header = body.to_vec(),
            b"IDAT" => data.extend_from_slice(body),
            b"IEND" => ended = true,
            other => panic!("unexpected chunk {other:?}"),
        }
        rest = &rest[12 + length..];
    }
    assert!(ended, "IEND");
    let width = usize::try_from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes"))).expect("width");
    let height = usize::try_from(u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"))).expect("height");
    assert_eq!(header[8..], [1, 0, 0, 0, 0], "1-bit greyscale, deflate, no interlace");
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&data).expect("zlib");
    let row = width.div_ceil(8) + 1;
    assert_eq!(raw.len(), row * height);
    let pixels = raw
        .chunks(row)
        .flat_map(|line| {
            assert_eq!(line[0], 0, "filter type None");
            (0..width).map(move |x| line[1 + x / 8] & (0x80 >> (x % 8)) == 0)
        })
        .collect();
    (width, height, pixels)
}

/// CRC-32 computed bit by bit (independent of the crate's table-driven one).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn qr_png_draws_the_reference_matrix() {
    let (width, expected) = reference(PAYLOAD);
    for module in [1, 3] {
        let (png_width, png_height, pixels) = decode_png(&qr_png(PAYLOAD, module).expect("encodes"));
        let module = usize::try_from(module).expect("small");
        assert_eq!((png_width, png_height), ((width + 8) * module, (width + 8) * module));
        for (index, &black) in pixels.iter().enumerate() {
            let (x, y) = ((index % png_width) / module, (index / png_width) / module);
            let dark = (4..width + 4).contains(&x) && (4..width + 4).contains(&y) && expected[(y - 4) * width + x - 4];
            assert_eq!(black, dark, "pixel {index}");
        }
    }
}

#[test]
fn zbarimg_reads_the_qr_png() {
    if !have_tool("zbarimg", "decoding the QR PNG with zbarimg") {
        return;
    }
    let path = temp_path("qr.png");
    std::fs::write(&path, qr_png(PAYLOAD, 4).expect("encodes")).expect("writes");
    let decoded = zbarimg(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(decoded, PAYLOAD);
}

#[test]
fn qr_errors() {
    assert!(matches!(qr_svg(&"й".repeat(2000)), Err(RenderError::QrPayloadTooLong { bytes: 4000 })));
    assert!(matches!(qr_png("x", 0), Err(RenderError::InvalidModuleSize { module_pixels: 0, .. })));
    assert!(qr_png("x", MAX_MODULE_PIXELS).is_ok());
}

#[test]
fn code128_svg_draws_the_hand_computed_bars() {
    let svg = code128_svg("12").expect("encodes");
    // Start C 211232, "12" 112232, check (105 + 12) mod 103 = 14: 122231, Stop 2331112.
    let expected = ["11010011100", "10110011100", "10011001110", "1100011101011"].concat();
    let modules = expected.len();
    assert_eq!(attribute(&svg, "viewBox"), format!("0 0 {} 64", modules + 20));
    let mut drawn = vec!['0'; modules];
    for [x, y, width, height] in subpaths(attribute(&svg, "d")) {
        assert_eq!((y, height), (0, 50));
        drawn[x - 10..x - 10 + width].fill('1');
    }
    assert_eq!(drawn.into_iter().collect::<String>(), expected);
    assert!(svg.contains(">12</text>"), "human-readable text: {svg}");
}

#[test]
fn code128_text_is_escaped() {
    let svg = code128_svg("A&B<1>\"'").expect("encodes");
    assert!(svg.contains(">A&amp;B&lt;1&gt;&quot;&apos;</text>"), "{svg}");
}

#[test]
fn code128_errors() {
    assert!(matches!(code128_svg(""), Err(RenderError::EmptyBarcode)));
    assert!(matches!(
        code128_svg("РНОКПП 3300912347"),
        Err(RenderError::UnencodableBarcodeCharacter { character: 'Р', position: 0 })
    ));
}
