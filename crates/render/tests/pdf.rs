//! The PDF output, read back with the small reader in `support` (no external tools), plus
//! `pdftotext` when it is installed.

mod support;

use std::process::Command;

use esocial_render::{Document, RenderError, pdf};
use support::{PdfFile, have_tool, temp_path};

/// Every letter of the Ukrainian alphabet, both apostrophes, quotes, № and ₴.
const SPECIALS: &str = "ҐґЄєІіЇї’ʼ«»№₴";

fn extract() -> Document {
    Document {
        title: "Витяг з Єдиного державного реєстру соціальної сфери".into(),
        subtitle: Some("№ 2025-000123".into()),
        fields: vec![
            ("Прізвище, ім’я, по батькові".into(), "Коваленко Олена Петрівна".into()),
            ("РНОКПП".into(), "3300912347".into()),
            ("Розмір допомоги".into(), "3 000,00 ₴".into()),
        ],
        paragraphs: vec![
            "Ґанок, єдність, їжак, інформація, пам’ять, сімʼя, «Дія».".into(),
            "АБВГҐДЕЄЖЗИІЇЙКЛМНОПРСТУФХЦЧШЩЬЮЯ абвгґдеєжзиіїйклмнопрстуфхцчшщьюя".into(),
        ],
        footer: "Мінсоцполітики України".into(),
        qr_payload: Some("https://esocial.gov.ua/v/2025-000123".into()),
    }
}

fn render(document: &Document) -> PdfFile {
    PdfFile::parse(pdf(document).expect("renders"))
}

fn all_text(file: &PdfFile) -> Vec<Vec<String>> {
    file.pages().into_iter().map(|page| file.page_text(page)).collect()
}

#[test]
fn structure_and_xref_are_valid() {
    let file = render(&extract());
    assert!(file.trailer.contains("/Root 1 0 R") && file.trailer.contains("/Info 3 0 R"));
    assert_eq!(file.pages().len(), 1);
    // Every stream object has a correct /Length and decodes.
    for number in file.objects_with("/Length ") {
        assert!(!file.stream(number).is_empty(), "stream {number}");
    }
    let page = file.object(file.pages()[0]);
    assert!(page.contains("/MediaBox [0 0 595.276 841.89]"), "A4: {page}");
}

#[test]
fn info_names_the_producer_and_no_date() {
    let file = render(&extract());
    let info = file.object(3);
    assert!(info.contains("/Producer (esocial)"), "{info}");
    assert!(info.contains("/Title <FEFF"), "title as UTF-16: {info}");
    let whole = String::from_utf8_lossy(&file.bytes);
    assert!(!whole.contains("/CreationDate") && !whole.contains("/ModDate") && !whole.contains("/ID"));
}

#[test]
fn text_is_real_text_with_a_to_unicode_map() {
    let file = render(&extract());
    let fonts = file.objects_with("/Subtype /Type0");
    assert_eq!(fonts.len(), 2, "regular and bold");
    let mut mapped = String::new();
    for font in fonts {
        let object = file.object(font);
        assert!(object.contains("/Encoding /Identity-H"), "{object}");
        mapped.extend(file.to_unicode(font).into_values());
    }
    for character in SPECIALS.chars() {
        assert!(mapped.contains(character), "ToUnicode maps {character:?}");
    }

    let text = all_text(&file).concat();
    for expected in [
        "Витяг з Єдиного державного реєстру соціальної сфери",
        "Прізвище, ім’я, по батькові",
        "Коваленко Олена Петрівна",
        "3300912347",
        "3 000,00 ₴",
        "Ґанок, єдність, їжак, інформація, пам’ять, сімʼя, «Дія».",
        "Мінсоцполітики України",
        "Сторінка 1 з 1",
    ] {
        assert!(text.iter().any(|line| line == expected), "{expected:?} not in {text:#?}");
    }
}

#[test]
fn fonts_are_embedded_subsets() {
    let file = render(&extract());
    for descriptor in file.objects_with("/Type /FontDescriptor") {
        let object = file.object(descriptor);
        assert!(object.contains("+DejaVuSans"), "subset tag: {object}");
        let program = file.stream(file.reference(descriptor, "/FontFile2"));
        let face = ttf_parser::Face::parse(&program, 0).expect("the subset is a valid TrueType font");
        assert!(face.number_of_glyphs() < 120, "{} glyphs kept", face.number_of_glyphs());
    }
    // The whole regular face alone is 760 KB.
    assert!(file.bytes.len() < 40_000, "a one-page extract is {} bytes", file.bytes.len());
}

#[test]
fn output_is_deterministic() {
    let document = extract();
    let first = pdf(&document).expect("renders");
    assert_eq!(first, pdf(&document).expect("renders"));
    assert_eq!(first, pdf(&extract()).expect("renders"), "a separately built equal document");
    let mut other = document;
    other.fields[1].1 = "3300912348".into();
    assert_ne!(first, pdf(&other).expect("renders"));
}

#[test]
fn long_paragraph_wraps_onto_a_second_page() {
    let words: Vec<String> = (1..=700).map(|n| format!("слово{n}")).collect();
    let document = Document {
        title: "Довідка".into(),
        paragraphs: vec![words.join(" ")],
        footer: "Примітка".into(),
        ..Document::default()
    };
    let file = render(&document);
    let pages = all_text(&file);
    assert_eq!(pages.len(), 2);
    // Lines break at spaces only and the paragraph goes on where it stopped.
    let body: Vec<&String> = pages.iter().flatten().filter(|line| line.starts_with("слово")).collect();
    let rejoined: Vec<&str> = body.iter().flat_map(|line| line.split(' ')).collect();
    assert_eq!(rejoined, words.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(pages[0].iter().any(|line| line.starts_with("слово1 слово2 ")));
    assert!(pages[1].iter().any(|line| line.ends_with("слово700")));
    assert!(pages[0].contains(&"Сторінка 1 з 2".to_string()) && pages[1].contains(&"Сторінка 2 з 2".to_string()));
    assert!(pages.iter().all(|page| page.contains(&"Примітка".to_string())), "footer on every page");
    assert!(body.len() > 50);
}

#[test]
fn qr_code_is_drawn_as_rectangles() {
    let file = render(&extract());
    let content = file.stream(file.reference(file.pages()[0], "/Contents"));
    let content = String::from_utf8_lossy(&content);
    assert!(content.matches(" re\n").count() > 100, "QR modules as rectangles");
    assert!(!String::from_utf8_lossy(&file.bytes).contains("/Image"), "no raster image");
    let without_qr = render(&Document { qr_payload: None, ..extract() });
    let content = without_qr.stream(without_qr.reference(without_qr.pages()[0], "/Contents"));
    assert_eq!(String::from_utf8_lossy(&content).matches(" re\n").count(), 0);
}

#[test]
fn empty_document_renders() {
    let file = render(&Document::default());
    assert_eq!(all_text(&file), [vec!["Сторінка 1 з 1".to_string()]]);
}

#[test]
fn unprintable_input_is_an_error() {
    let chinese = Document { paragraphs: vec!["中文".into()], ..extract() };
    assert!(matches!(pdf(&chinese), Err(RenderError::UnsupportedCharacter { character: '中' })));
    let control = Document { title: "a\u{7}b".into(), ..Document::default() };
    assert!(matches!(pdf(&control), Err(RenderError::UnsupportedCharacter { character: '\u{7}' })));
    let qr = Document { qr_payload: Some("x".repeat(5000)), ..Document::default() };
    assert!(matches!(pdf(&qr), Err(RenderError::QrPayloadTooLong { bytes: 5000 })));
    let footer = Document { footer: "рядок ".repeat(2000), ..Document::default() };
    assert!(matches!(pdf(&footer), Err(RenderError::FooterTooLong { .. })));
}

#[test]
fn pdftotext_reads_the_text() {
    if !have_tool("pdftotext", "the pdftotext check") {
        return;
    }
    let path = temp_path("extract.pdf");
    std::fs::write(&path, pdf(&extract()).expect("renders")).expect("writes");
    let output = Command::new("pdftotext").args(["-enc", "UTF-8"]).arg(&path).arg("-").output().expect("runs");
    std::fs::remove_file(&path).ok();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    for expected in ["Витяг з Єдиного державного реєстру соціальної сфери", "Коваленко Олена Петрівна", "3300912347"]
    {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    for character in SPECIALS.chars() {
        assert!(text.contains(character), "{character:?} not in {text}");
    }
}

/// A small deterministic pseudo-random generator (xorshift64*), enough to vary test input.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40).expect("24 bits") % bound
    }

    /// Up to `max_length` pieces of text, now and then one that may have no glyph.
    fn text(&mut self, max_length: usize) -> String {
        let length = self.below(max_length + 1);
        (0..length)
            .map(|_| {
                if self.below(500) == 0 {
                    DOUBTFUL[self.below(DOUBTFUL.len())]
                } else {
                    PRINTABLE[self.below(PRINTABLE.len())]
                }
            })
            .collect()
    }
}

/// Pieces every document may contain (line breaks, tabs and combining marks included).
const PRINTABLE: &[&str] = &[
    "а",
    "Ґ",
    "ї",
    "’",
    "ʼ",
    "№",
    "₴",
    "«",
    "»",
    " ",
    " ",
    " ",
    "\n",
    "\t",
    "\r\n",
    "x",
    "0",
    "(",
    ")",
    "\\",
    "\u{301}",
    "\u{a0}",
    "\u{ad}",
    "слово",
    "Київ",
    "Довжелезнеслово_без_пробілів_яке_не_вміщується_в_рядок_і_мусить_бути_розірване",
];
/// Pieces that may have no glyph in DejaVu Sans.
const DOUBTFUL: &[&str] =
    &["中", "\u{0}", "\u{1b}", "\u{7f}", "\u{85}", "\u{200b}", "\u{feff}", "😀", "𝔸", "\u{10ffff}"];

#[test]
fn arbitrary_input_never_panics() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let (mut rendered, mut rejected) = (0, 0);
    for _ in 0..30 {
        let document = Document {
            title: random.text(30),
            subtitle: Some(random.text(10)).filter(|_| random.below(2) == 0),
            fields: (0..random.below(8)).map(|_| (random.text(12), random.text(40))).collect(),
            paragraphs: (0..random.below(4)).map(|_| random.text(120)).collect(),
            footer: random.text(20),
            qr_payload: Some(random.text(40)).filter(|_| random.below(2) == 0),
        };
        match pdf(&document) {
            Ok(bytes) => {
                let file = PdfFile::parse(bytes);
                for page in file.pages() {
                    file.page_text(page);
                }
                rendered += 1;
            }
            Err(RenderError::UnsupportedCharacter { character }) => {
                assert!(DOUBTFUL.iter().any(|doubtful| doubtful.contains(character)), "{character:?} rejected");
                rejected += 1;
            }
            Err(error) => panic!("unexpected error {error}"),
        }
    }
    assert!(rendered > 0 && rejected > 0, "{rendered} rendered, {rejected} rejected");
}
