//! Page layout: turns a [`Document`] into pages of positioned text runs, rules and a QR code.
//!
//! Coordinates here are in points with the origin at the *top* left corner of an A4 page and
//! `y` growing downwards; the PDF writer flips them. Margins follow ДСТУ 4163:2020 for
//! official documents (left 30 mm, right 15 mm here, top and bottom at least 20 mm).
//!
//! The page is filled from the top: title and subtitle (centred), a rule, the fields as a
//! two-column table (label on the left, value in bold on the right), the paragraphs, then the QR
//! code. A field row moves to the next page whole if it fits there; paragraphs break between
//! lines. Every page ends with the footer and "Сторінка N з M".

use crate::RenderError;
use crate::document::Document;
use crate::fonts::{Font, Fonts, Style};
use crate::qr::QrMatrix;

pub(crate) const PAGE_WIDTH: f32 = 595.276;
pub(crate) const PAGE_HEIGHT: f32 = 841.89;
const MM: f32 = 72.0 / 25.4;
const LEFT: f32 = 30.0 * MM;
const RIGHT: f32 = 15.0 * MM;
const TOP: f32 = 20.0 * MM;
const BOTTOM: f32 = 15.0 * MM;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - LEFT - RIGHT;

/// A font, size, line height and grey level (0 black, 1 white) for a kind of text.
#[derive(Debug, Clone, Copy)]
struct TextStyle {
    style: Style,
    size: f32,
    line_height: f32,
    gray: f32,
}

const TITLE: TextStyle = TextStyle { style: Style::Bold, size: 14.0, line_height: 18.0, gray: 0.0 };
const SUBTITLE: TextStyle = TextStyle { style: Style::Regular, size: 11.0, line_height: 14.5, gray: 0.2 };
const LABEL: TextStyle = TextStyle { style: Style::Regular, size: 9.5, line_height: 13.0, gray: 0.35 };
const VALUE: TextStyle = TextStyle { style: Style::Bold, size: 10.0, line_height: 13.0, gray: 0.0 };
const BODY: TextStyle = TextStyle { style: Style::Regular, size: 10.5, line_height: 15.0, gray: 0.0 };
const FOOTER: TextStyle = TextStyle { style: Style::Regular, size: 8.0, line_height: 10.5, gray: 0.35 };

const LABEL_WIDTH: f32 = 0.38 * CONTENT_WIDTH;
const COLUMN_GAP: f32 = 12.0;
const VALUE_LEFT: f32 = LEFT + LABEL_WIDTH + COLUMN_GAP;
const VALUE_WIDTH: f32 = CONTENT_WIDTH - LABEL_WIDTH - COLUMN_GAP;
const ROW_PADDING: f32 = 4.0;
const PARAGRAPH_GAP: f32 = 6.0;
const SECTION_GAP: f32 = 14.0;
/// Room kept on the right of the footer for the page number.
const PAGE_NUMBER_WIDTH: f32 = 100.0;
const FOOTER_GAP: f32 = 6.0;
pub(crate) const MAX_FOOTER_LINES: usize = 6;
/// The QR code's side (without quiet zone) unless its modules would get smaller than `QR_MIN_MODULE`.
const QR_SIDE: f32 = 34.0 * MM;
const QR_MIN_MODULE: f32 = 0.4 * MM;
const RULE_GRAY: f32 = 0.6;
const LIGHT_RULE_GRAY: f32 = 0.85;

/// One laid-out page.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub(crate) items: Vec<Item>,
}

/// Something drawn on a page.
#[derive(Debug)]
pub(crate) enum Item {
    Text(TextRun),
    /// A horizontal hairline from `x` to `x + width` at `y`.
    Rule {
        x: f32,
        y: f32,
        width: f32,
        gray: f32,
    },
    /// The QR code's modules, `module` points each, the top left one at (`x`, `y`).
    Qr {
        x: f32,
        y: f32,
        module: f32,
        matrix: QrMatrix,
    },
}

/// One line of text.
#[derive(Debug)]
pub(crate) struct TextRun {
    pub(crate) style: Style,
    pub(crate) size: f32,
    pub(crate) gray: f32,
    pub(crate) x: f32,
    pub(crate) baseline: f32,
    pub(crate) text: String,
}

/// A wrapped line and its width in em.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) width: f32,
}

impl Line {
    fn push(&mut self, text: &str, width: f32) {
        self.text.push_str(text);
        self.width += width;
    }
}

/// Lays `document` out on A4 pages; `qr` is its payload, already encoded.
pub(crate) fn layout(fonts: &Fonts, document: &Document, qr: Option<QrMatrix>) -> Result<Vec<Page>, RenderError> {
    let footer = wrap(fonts.get(FOOTER.style), FOOTER.size, &document.footer, CONTENT_WIDTH - PAGE_NUMBER_WIDTH)?;
    if footer.len() > MAX_FOOTER_LINES {
        return Err(RenderError::FooterTooLong { lines: footer.len(), max_lines: MAX_FOOTER_LINES });
    }
    let footer_top = PAGE_HEIGHT - BOTTOM - footer.len() as f32 * FOOTER.line_height;
    let mut flow = Flow::new(fonts, footer_top - FOOTER_GAP - SECTION_GAP);

    flow.header(document)?;
    for (label, value) in &document.fields {
        flow.field(label, value)?;
    }
    if !document.fields.is_empty() {
        flow.y += SECTION_GAP;
    }
    for paragraph in &document.paragraphs {
        flow.paragraph(paragraph)?;
    }
    if let Some(matrix) = qr {
        flow.qr(matrix);
    }
    let mut pages = flow.finish();
    add_footers(fonts, &mut pages, &footer, footer_top)?;
    Ok(pages)
}

/// Breaks `text`, set in `font` at `size` points, into lines at most `max_width` points wide.
///
/// Lines break at spaces (runs of spaces collapse) and at line breaks in the text, which are kept
/// (an empty line stays an empty line); a word wider than a line is broken between characters.
/// Tabs count as spaces. Characters without a glyph are an error.
pub(crate) fn wrap(font: &Font, size: f32, text: &str, max_width: f32) -> Result<Vec<Line>, RenderError> {
    let max = max_width / size;
    let space = font.advance(' ')?;
    let mut lines = Vec::new();
    for hard_line in normalize(text).split('\n') {
        let mut line = Line::default();
        for word in hard_line.split(' ').filter(|word| !word.is_empty()) {
            let width = font.width(word)?;
            if !line.text.is_empty() {
                if line.width + space + width <= max {
                    line.push(" ", space);
                    line.push(word, width);
                    continue;
                }
                lines.push(std::mem::take(&mut line));
            }
            if width <= max {
                line.push(word, width);
            } else {
                line = break_word(font, word, max, &mut lines)?;
            }
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Line breaks as `\n`, tabs as spaces.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|character| match character {
            '\r' | '\u{2028}' | '\u{2029}' => '\n',
            '\t' => ' ',
            other => other,
        })
        .collect()
}

/// Pushes full lines of `word`'s characters to `lines` and returns the rest (at least one character per line).
fn break_word(font: &Font, word: &str, max: f32, lines: &mut Vec<Line>) -> Result<Line, RenderError> {
    let mut line = Line::default();
    let mut buffer = [0; 4];
    for character in word.chars() {
        let width = font.advance(character)?;
        if !line.text.is_empty() && line.width + width > max {
            lines.push(std::mem::take(&mut line));
        }
        line.push(character.encode_utf8(&mut buffer), width);
    }
    Ok(line)
}

/// Fills pages from top to bottom.
struct Flow<'a> {
    fonts: &'a Fonts,
    pages: Vec<Page>,
    page: Page,
    /// Top of the free space on the current page.
    y: f32,
    /// Where the body ends (the footer is below it).
    bottom: f32,
}

impl<'a> Flow<'a> {
    fn new(fonts: &'a Fonts, bottom: f32) -> Self {
        Flow { fonts, pages: Vec::new(), page: Page::default(), y: TOP, bottom }
    }

    /// Starts a new page unless `height` fits on this one or this one is still empty.
    fn reserve(&mut self, height: f32) {
        if self.y + height > self.bottom && !self.page.items.is_empty() {
            self.pages.push(std::mem::take(&mut self.page));
            self.y = TOP;
        }
    }

    fn finish(mut self) -> Vec<Page> {
        self.pages.push(self.page);
        self.pages
    }

    fn wrap(&self, style: TextStyle, text: &str, width: f32) -> Result<Vec<Line>, RenderError> {
        wrap(self.fonts.get(style.style), style.size, text, width)
    }

    /// The baseline of a line of `style` whose box starts at the current `y`: the font's
    /// ascent-to-descent box is centred in the line box.
    fn baseline(&self, style: TextStyle) -> f32 {
        let font = self.fonts.get(style.style);
        let glyph_box = (font.ascent() - font.descent()) * style.size;
        self.y + (style.line_height - glyph_box) / 2.0 + font.ascent() * style.size
    }

    /// Adds a line whose box starts at the current `y`, without moving `y`.
    fn text(&mut self, style: TextStyle, x: f32, text: String) {
        let baseline = self.baseline(style);
        self.text_at(style, x, baseline, text);
    }

    fn text_at(&mut self, style: TextStyle, x: f32, baseline: f32, text: String) {
        if text.is_empty() {
            return;
        }
        self.page.items.push(Item::Text(TextRun {
            style: style.style,
            size: style.size,
            gray: style.gray,
            x,
            baseline,
            text,
        }));
    }

    fn rule(&mut self, gray: f32) {
        self.page.items.push(Item::Rule { x: LEFT, y: self.y, width: CONTENT_WIDTH, gray });
    }

    /// Centred lines, breaking pages between them.
    fn centred(&mut self, style: TextStyle, text: &str) -> Result<(), RenderError> {
        for line in self.wrap(style, text, CONTENT_WIDTH)? {
            self.reserve(style.line_height);
            let x = LEFT + (CONTENT_WIDTH - line.width * style.size) / 2.0;
            self.text(style, x, line.text);
            self.y += style.line_height;
        }
        Ok(())
    }

    fn header(&mut self, document: &Document) -> Result<(), RenderError> {
        if !document.title.trim().is_empty() {
            self.centred(TITLE, &document.title)?;
        }
        if let Some(subtitle) = document.subtitle.as_ref().filter(|subtitle| !subtitle.trim().is_empty()) {
            self.y += 2.0;
            self.centred(SUBTITLE, subtitle)?;
        }
        self.y += 8.0;
        self.rule(RULE_GRAY);
        self.y += SECTION_GAP;
        Ok(())
    }

    /// A table row; kept on one page when it fits on one.
    fn field(&mut self, label: &str, value: &str) -> Result<(), RenderError> {
        let labels = self.wrap(LABEL, label, LABEL_WIDTH)?;
        let values = self.wrap(VALUE, value, VALUE_WIDTH)?;
        let rows = labels.len().max(values.len());
        self.reserve(rows as f32 * VALUE.line_height + 2.0 * ROW_PADDING);
        self.y += ROW_PADDING;
        let mut labels = labels.into_iter();
        let mut values = values.into_iter();
        for _ in 0..rows {
            self.reserve(VALUE.line_height);
            // Label and value share the baseline.
            let baseline = self.baseline(VALUE);
            if let Some(line) = labels.next() {
                self.text_at(LABEL, LEFT, baseline, line.text);
            }
            if let Some(line) = values.next() {
                self.text_at(VALUE, VALUE_LEFT, baseline, line.text);
            }
            self.y += VALUE.line_height;
        }
        self.y += ROW_PADDING;
        self.rule(LIGHT_RULE_GRAY);
        Ok(())
    }

    fn paragraph(&mut self, text: &str) -> Result<(), RenderError> {
        for line in self.wrap(BODY, text, CONTENT_WIDTH)? {
            self.reserve(BODY.line_height);
            self.text(BODY, LEFT, line.text);
            self.y += BODY.line_height;
        }
        self.y += PARAGRAPH_GAP;
        Ok(())
    }

    /// The QR code at the left margin; the space around it is at least its 4-module quiet zone.
    fn qr(&mut self, matrix: QrMatrix) {
        let modules = matrix.width().max(1) as f32;
        let page_room = self.bottom - TOP;
        let side = (QR_SIDE.max(modules * QR_MIN_MODULE)).min(CONTENT_WIDTH).min(page_room);
        let module = side / modules;
        self.y += (SECTION_GAP - PARAGRAPH_GAP).max(4.0 * module);
        self.reserve(side);
        self.page.items.push(Item::Qr { x: LEFT, y: self.y, module, matrix });
        self.y += side;
    }
}

/// The footer's lines and "Сторінка N з M" at the bottom of every page, under a rule.
fn add_footers(fonts: &Fonts, pages: &mut [Page], footer: &[Line], top: f32) -> Result<(), RenderError> {
    let font = fonts.get(FOOTER.style);
    let count = pages.len();
    for (index, page) in pages.iter_mut().enumerate() {
        let mut flow = Flow::new(fonts, PAGE_HEIGHT);
        flow.y = top - FOOTER_GAP;
        flow.rule(RULE_GRAY);
        flow.y = top;
        let number = format!("Сторінка {} з {count}", index + 1);
        let number_width = font.width(&number)? * FOOTER.size;
        flow.text(FOOTER, LEFT + CONTENT_WIDTH - number_width, number);
        for line in footer {
            flow.text(FOOTER, LEFT, line.text.clone());
            flow.y += FOOTER.line_height;
        }
        page.items.append(&mut flow.page.items);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &[Line]) -> Vec<&str> {
        line.iter().map(|line| line.text.as_str()).collect()
    }

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_line_breaks() {
        let font = Font::load(Style::Regular).expect("font loads");
        let size = 10.0;
        let width = font.width("Київ Харків").expect("width") * size;
        let lines = wrap(&font, size, "Київ  Харків Одеса\nЛьвів\r\n\tУжгород", width).expect("wraps");
        assert_eq!(texts(&lines), ["Київ Харків", "Одеса", "Львів", "Ужгород"]);
        assert!(lines.iter().all(|line| line.width * size <= width + 1e-3));
        assert_eq!(texts(&wrap(&font, size, "a\n\nb", 100.0).expect("wraps")), ["a", "", "b"]);
        assert_eq!(texts(&wrap(&font, size, "", 100.0).expect("wraps")), [""]);
    }

    #[test]
    fn wrap_breaks_long_words_between_characters() {
        let font = Font::load(Style::Regular).expect("font loads");
        let width = font.width("0123").expect("width") * 10.0;
        let lines = wrap(&font, 10.0, "x 0123456789", width).expect("wraps");
        assert_eq!(texts(&lines), ["x", "0123", "4567", "89"]);
        // A line narrower than one character still makes progress.
        assert_eq!(texts(&wrap(&font, 10.0, "Ґєї", 0.1).expect("wraps")), ["Ґ", "є", "ї"]);
    }

    #[test]
    fn wrap_rejects_characters_without_glyphs() {
        let font = Font::load(Style::Regular).expect("font loads");
        assert!(matches!(
            wrap(&font, 10.0, "Київ 北京", 500.0),
            Err(RenderError::UnsupportedCharacter { character: '北' })
        ));
    }

    #[test]
    fn everything_stays_inside_the_margins() {
        let fonts = Fonts::load().expect("fonts load");
        let long = "Соціальна підтримка внутрішньо переміщених осіб ".repeat(40);
        let document = Document {
            title: long.clone(),
            subtitle: Some("Підзаголовок".into()),
            fields: vec![(long.clone(), long.clone()), ("РНОКПП".into(), "3300912347".into())],
            paragraphs: vec![long.clone(), long],
            footer: "Нижній колонтитул".into(),
            qr_payload: None,
        };
        let qr = QrMatrix::encode("https://example.org/").expect("encodes");
        let pages = layout(&fonts, &document, Some(qr)).expect("lays out");
        assert!(pages.len() >= 2);
        for item in pages.iter().flat_map(|page| &page.items) {
            if let Item::Text(run) = item {
                let width = fonts.get(run.style).width(&run.text).expect("width") * run.size;
                assert!(run.x >= LEFT - 1e-3 && run.x + width <= PAGE_WIDTH - RIGHT + 1e-3, "{run:?}");
                assert!(run.baseline >= TOP && run.baseline <= PAGE_HEIGHT - BOTTOM, "{run:?}");
            }
        }
    }

    #[test]
    fn long_footer_is_an_error() {
        let fonts = Fonts::load().expect("fonts load");
        let document = Document { footer: "рядок\n".repeat(MAX_FOOTER_LINES), ..Document::default() };
        assert!(matches!(
            layout(&fonts, &document, None),
            Err(RenderError::FooterTooLong { lines, .. }) if lines == MAX_FOOTER_LINES + 1
        ));
    }
}
