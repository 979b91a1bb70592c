//! Test helpers: a small PDF reader (enough for the files `esocial_render::pdf` writes) and
//! access to optional external tools.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// A parsed PDF: its bytes and the byte offset of every object, read from the xref table.
pub struct PdfFile {
    pub bytes: Vec<u8>,
    pub offsets: BTreeMap<u32, usize>,
    pub trailer: String,
}

impl PdfFile {
    /// Checks header, `%%EOF`, `startxref`, the xref table and that every entry points at its
    /// object, then returns the file.
    pub fn parse(bytes: Vec<u8>) -> PdfFile {
        assert!(bytes.starts_with(b"%PDF-1."), "header");
        assert!(bytes.ends_with(b"%%EOF"), "end of file marker");
        let tail = text(&bytes[bytes.len().saturating_sub(64)..]);
        let startxref: usize = tail
            .rsplit("startxref")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .expect("startxref offset");
        assert!(bytes[startxref..].starts_with(b"xref\n"), "startxref points at the xref table");
        let table = text(&bytes[startxref..]);
        let mut lines = table.lines().skip(1);
        let subsection = lines.next().expect("subsection header");
        let (first, count) = subsection.split_once(' ').expect("first and count");
        assert_eq!(first, "0", "one subsection starting at 0");
        let count: u32 = count.parse().expect("count");
        let mut offsets = BTreeMap::new();
        for number in 0..count {
            let entry = lines.next().expect("xref entry");
            let fields: Vec<&str> = entry.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "entry {number}: {entry:?}");
            let offset: usize = fields[0].parse().expect("offset");
            if number == 0 {
                assert_eq!(fields[1..], ["65535", "f"], "entry 0 heads the free list");
                continue;
            }
            assert_eq!(fields[1..], ["00000", "n"], "entry {number} is in use");
            let header = format!("{number} 0 obj");
            assert!(bytes[offset..].starts_with(header.as_bytes()), "xref entry {number} points at {header:?}");
            offsets.insert(number, offset);
        }
        let trailer = lines.skip_while(|line| *line != "trailer").collect::<Vec<_>>().join("\n");
        assert!(trailer.contains(&format!("/Size {count}")), "trailer /Size: {trailer}");
        PdfFile { bytes, offsets, trailer }
    }

    /// The text of object `number` from `N 0 obj` to `endobj`, with stream data left out.
    pub fn object(&self, number: u32) -> String {
        let start = self.offsets[&number];
        let end = find(&self.bytes[start..], b"endobj").expect("endobj") + start;
        let object = &self.bytes[start..end];
        match find(object, b"stream\n") {
            Some(at) => text(&object[..at]),
            None => text(object),
        }
    }

    /// The decoded data of stream object `number`, after checking `/Length` and `endstream`.
    pub fn stream(&self, number: u32) -> Vec<u8> {
        let dictionary = self.object(number);
        let length: usize = value_after(&dictionary, "/Length ").parse().expect("stream /Length");
        let start =
            self.offsets[&number] + find(&self.bytes[self.offsets[&number]..], b"stream\n").expect("stream") + 7;
        let data = &self.bytes[start..start + length];
        assert!(self.bytes[start + length..].starts_with(b"\nendstream"), "object {number}: /Length matches the data");
        if dictionary.contains("/Filter /FlateDecode") {
            miniz_oxide::inflate::decompress_to_vec_zlib(data).expect("valid zlib data")
        } else {
            data.to_vec()
        }
    }

    /// The object a key like `/Contents` refers to (`/Contents 5 0 R`) in object `number`.
    pub fn reference(&self, number: u32, key: &str) -> u32 {
        let object = self.object(number);
        value_after(&object, &format!("{key} ")).parse().expect("object reference")
    }

    /// Object numbers of the pages, in order.
    pub fn pages(&self) -> Vec<u32> {
        let root: u32 = value_after(&self.trailer, "/Root ").parse().expect("/Root");
        let tree = self.reference(root, "/Pages");
        let tree = self.object(tree);
        let kids = tree.split("/Kids [").nth(1).and_then(|rest| rest.split(']').next()).expect("/Kids");
        let numbers: Vec<u32> = kids.split(" 0 R").filter_map(|kid| kid.trim().parse().ok()).collect();
        assert_eq!(value_after(&tree, "/Count "), numbers.len().to_string(), "/Count of the page tree");
        numbers
    }

    /// The text of page `page`, line by line, decoded through the fonts' `ToUnicode` CMaps.
    pub fn page_text(&self, page: u32) -> Vec<String> {
        let content = self.stream(self.reference(page, "/Contents"));
        let page_object = self.object(page);
        let mut lines = Vec::new();
        let mut font = String::new();
        let mut cmaps = BTreeMap::new();
        let mut operands: Vec<Token> = Vec::new();
        for token in tokens(&content) {
            match token {
                Token::Operator(operator) if operator == "Tf" => {
                    if let Some(Token::Name(name)) = operands.first() {
                        font = name.clone();
                    }
                    operands.clear();
                }
                Token::Operator(operator) if operator == "Tj" => {
                    if let Some(Token::String(glyphs)) = operands.first() {
                        let cmap = cmaps.entry(font.clone()).or_insert_with(|| {
                            let font_object =
                                value_after(&page_object, &format!("/{font} ")).parse().expect("font ref");
                            self.to_unicode(font_object)
                        });
                        let line = glyphs
                            .chunks(2)
                            .map(|pair| {
                                cmap.get(&u16::from_be_bytes([pair[0], pair[1]])).cloned().expect("mapped glyph")
                            })
                            .collect();
                        lines.push(line);
                    }
                    operands.clear();
                }
                Token::Operator(_) => operands.clear(),
                operand => operands.push(operand),
            }
        }
        lines
    }

    /// Glyph id → text, from the `ToUnicode` CMap of the `Type0` font `font`.
    pub fn to_unicode(&self, font: u32) -> BTreeMap<u16, String> {
        let cmap = text(&self.stream(self.reference(font, "/ToUnicode")));
        let mut map = BTreeMap::new();
        for section in cmap.split("beginbfchar").skip(1) {
            let section = section.split("endbfchar").next().expect("endbfchar");
            for line in section.lines().filter(|line| !line.trim().is_empty()) {
                let parts: Vec<&str> = line.split(['<', '>']).filter(|part| !part.trim().is_empty()).collect();
                let glyph = u16::from_str_radix(parts[0], 16).expect("glyph id");
                let units: Vec<u16> = parts[1]
                    .as_bytes()
                    .chunks(4)
                    .map(|unit| u16::from_str_radix(&text(unit), 16).expect("UTF-16 unit"))
                    .collect();
                map.insert(glyph, String::from_utf16(&units).expect("UTF-16"));
            }
        }
        map
    }

    /// Numbers of all objects whose dictionary contains `needle`.
    pub fn objects_with(&self, needle: &str) -> Vec<u32> {
        self.offsets.keys().copied().filter(|&number| self.object(number).contains(needle)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    String(Vec<u8>),
    Operator(String),
    Other,
}

/// Tokens of a content stream (names, strings, operators; numbers and arrays as `Other`).
fn tokens(content: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < content.len() {
        let byte = content[at];
        if byte.is_ascii_whitespace() {
            at += 1;
        } else if byte == b'(' {
            let (string, end) = literal_string(content, at);
            tokens.push(Token::String(string));
            at = end;
        } else if byte == b'<' {
            let end = at + content[at..].iter().position(|&b| b == b'>').expect("end of hex string");
            let hex: Vec<u8> = content[at + 1..end].iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            let bytes = hex.chunks(2).map(|pair| u8::from_str_radix(&text(pair), 16).expect("hex")).collect();
            tokens.push(Token::String(bytes));
            at = end + 1;
        } else {
            let end = at + content[at..].iter().position(|b| b.is_ascii_whitespace()).unwrap_or(content.len() - at);
            let word = text(&content[at..end]);
            tokens.push(if let Some(name) = word.strip_prefix('/') {
                Token::Name(name.to_string())
            } else if word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '\'' || c == '"') {
                Token::Operator(word)
            } else {
                Token::Other
            });
            at = end;
        }
    }
    tokens
}

/// A literal string starting at `start` (an opening parenthesis): its bytes and the index after it.
fn literal_string(content: &[u8], start: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut depth = 0;
    let mut at = start;
    loop {
        let byte = content[at];
        at += 1;
        match byte {
            b'(' if depth == 0 => depth = 1,
            b'(' => {
                depth += 1;
                bytes.push(byte);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (bytes, at);
                }
                bytes.push(byte);
            }
            b'\\' => {
                let escaped = content[at];
                at += 1;
                match escaped {
                    b'n' => bytes.push(b'\n'),
                    b'r' => bytes.push(b'\r'),
                    b't' => bytes.push(b'\t'),
                    b'b' => bytes.push(8),
                    b'f' => bytes.push(12),
                    b'0'..=b'7' => {
                        let digits = content[at - 1..].iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
                        let value = u32::from_str_radix(&text(&content[at - 1..at - 1 + digits]), 8).expect("octal");
                        bytes.push(u8::try_from(value & 0xff).expect("byte"));
                        at += digits - 1;
                    }
                    other => bytes.push(other),
                }
            }
            other => bytes.push(other),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first word after `key` in `text`.
fn value_after(text: &str, key: &str) -> String {
    text.split(key).nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default().to_string()
}

/// Whether `name` can be run here (it answers `-v`); prints a note when it cannot.
pub fn have_tool(name: &str, purpose: &str) -> bool {
    let found = Command::new(name).arg("-v").output().is_ok();
    if !found {
        eprintln!("note: `{name}` is not installed; skipping {purpose} (apt-get install poppler-utils zbar-tools)");
    }
    found
}

/// A fresh path in the temporary directory.
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("esocial-render-{}-{name}", std::process::id()))
}

/// What `zbarimg` reads from the image at `path` (`TYPE:data` lines).
pub fn zbarimg(path: &std::path::Path) -> String {
    let output = Command::new("zbarimg").args(["-q", "--raw"]).arg(path).output().expect("zbarimg runs");
    String::from_utf8(output.stdout).expect("UTF-8").trim_end().to_string()
}
