//! A minimal PNG encoder for black-and-white images (ISO/IEC 15948, RFC 1950, RFC 1951).
//!
//! The image is 1-bit greyscale (0 black, 1 white), every scanline has filter type 0 (none) and
//! the scanlines are zlib-compressed with `miniz_oxide`.

/// The eight bytes every PNG starts with.
pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// IDAT data is split into chunks of at most this many bytes.
const MAX_IDAT: usize = 1 << 20;

/// A `width` × `height` 1-bit greyscale PNG; pixel (x, y) is black where `is_dark(x, y)`.
pub(crate) fn bilevel(width: u32, height: u32, is_dark: impl Fn(u32, u32) -> bool) -> Vec<u8> {
    let row_bytes = width.div_ceil(8) as usize;
    let mut raw = Vec::with_capacity((row_bytes + 1) * height as usize);
    for y in 0..height {
        raw.push(0); // filter type None
        let start = raw.len();
        raw.resize(start + row_bytes, 0);
        for x in (0..width).filter(|&x| !is_dark(x, y)) {
            raw[start + (x / 8) as usize] |= 0x80 >> (x % 8);
        }
    }

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 1, colour type 0 (greyscale), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);

    let mut png = SIGNATURE.to_vec();
    write_chunk(&mut png, b"IHDR", &header);
    for data in crate::deflate(&raw).chunks(MAX_IDAT) {
        write_chunk(&mut png, b"IDAT", data);
    }
    write_chunk(&mut png, b"IEND", &[]);
    png
}

/// Length, type, data, CRC-32 of type and data.
fn write_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX); // callers keep chunks far smaller
    png.extend_from_slice(&length.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc32(kind.iter().chain(data)).to_be_bytes());
}

/// CRC-32 as PNG and zlib use it (polynomial 0xEDB88320, reflected).
pub(crate) fn crc32<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u32 {
    !bytes.into_iter().fold(!0u32, |crc, &byte| CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8))
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n: u32 = 0;
    while n < 256 {
        let mut c = n;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n as usize] = c;
        n += 1;
    }
    table
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A decoded chunk: type and data, after checking its CRC.
    pub(crate) fn chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        assert_eq!(png[..8], SIGNATURE, "PNG signature");
        let mut rest = &png[8..];
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let length = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let kind: [u8; 4] = rest[4..8].try_into().expect("4 bytes");
            let data = &rest[8..8 + length];
            let crc = u32::from_be_bytes(rest[8 + length..12 + length].try_into().expect("4 bytes"));
            assert_eq!(crc, crc32(kind.iter().chain(data)), "CRC of {}", String::from_utf8_lossy(&kind));
            chunks.push((kind, data.to_vec()));
            rest = &rest[12 + length..];
        }
        chunks
    }

    /// Width, height and pixels (true = black) of a PNG made by [`bilevel`].
    pub(crate) fn decode_bilevel(png: &[u8]) -> (u32, u32, Vec<bool>) {
        let chunks = chunks(png);
        let (kind, header) = &chunks[0];
        assert_eq!(kind, b"IHDR");
        let width = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
        assert_eq!(header[8..], [1, 0, 0, 0, 0], "1-bit greyscale, no interlace");
        assert_eq!(chunks.last().map(|(kind, data)| (kind, data.len())), Some((b"IEND", 0)));
        let zlib: Vec<u8> =
            chunks.iter().filter(|(kind, _)| kind == b"IDAT").flat_map(|(_, data)| data.iter().copied()).collect();
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&zlib).expect("valid zlib stream");
        let row_bytes = width.div_ceil(8) as usize;
        assert_eq!(raw.len(), (row_bytes + 1) * height as usize);
        let mut pixels = Vec::new();
        for row in raw.chunks(row_bytes + 1) {
            assert_eq!(row[0], 0, "filter type");
            pixels.extend((0..width as usize).map(|x| row[1 + x / 8] & (0x80 >> (x % 8)) == 0));
        }
        (width, height, pixels)
    }

    #[test]
    fn crc32_matches_the_check_value() {
        // The standard check value of CRC-32 ("123456789").
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn bilevel_png_round_trips() {
        let is_dark = |x: u32, y: u32| (x + y).is_multiple_of(3);
        let png = bilevel(11, 5, is_dark);
        let (width, height, pixels) = decode_bilevel(&png);
        assert_eq!((width, height), (11, 5));
        let expected: Vec<bool> = (0..5).flat_map(|y| (0..11).map(move |x| is_dark(x, y))).collect();
        assert_eq!(pixels, expected);
    }
}
