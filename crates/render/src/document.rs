//! The [`Document`] model and the PDF writer: layout (see `layout`) gives pages of positioned
//! items, then every object is written in a fixed order — catalog, page tree, info, each page and
//! its content stream, then each font with its subset — so that equal documents give equal bytes.

use pdf_writer::{Content, Filter, Finish, Pdf, Rect, Ref, Str, TextStr};

use crate::fonts::{FontRefs, Fonts, Style, Subset};
use crate::layout::{self, Item, PAGE_HEIGHT, PAGE_WIDTH, Page, TextRun};
use crate::qr::QrMatrix;
use crate::{RenderError, deflate};

/// A document to render: a title, an optional subtitle, labelled fields, free paragraphs, a
/// footer repeated on every page and, optionally, a QR code.
///
/// Text may contain line breaks (`\n`), which are kept; lines are otherwise wrapped at spaces.
/// Every character must be in DejaVu Sans (all of Ukrainian, Latin, Greek, common punctuation
/// and symbols such as `№`, `₴`, `«»`, `’`, `ʼ`), or [`pdf`] returns
/// [`RenderError::UnsupportedCharacter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// Centred, in bold, at the top of the first page.
    pub title: String,
    /// Centred under the title.
    pub subtitle: Option<String>,
    /// Label–value rows, shown as a two-column table (values in bold).
    pub fields: Vec<(String, String)>,
    /// Free text after the fields, one entry per paragraph.
    pub paragraphs: Vec<String>,
    /// Small print at the bottom of every page, next to "Сторінка N з M"; at most six lines.
    pub footer: String,
    /// Encoded in a QR code (level M) drawn after the paragraphs.
    pub qr_payload: Option<String>,
}

/// Renders `document` as an A4 PDF 1.7: real, extractable text in embedded font subsets, long
/// lines wrapped and as many pages as needed. The output depends on `document` alone, so the
/// same document always gives the same bytes.
pub fn pdf(document: &Document) -> Result<Vec<u8>, RenderError> {
    let fonts = Fonts::load()?;
    let qr = document.qr_payload.as_deref().map(QrMatrix::encode).transpose()?;
    let pages = layout::layout(&fonts, document, qr)?;
    write(&fonts, &document.title, &pages)
}

/// The object numbers of a document, handed out in a fixed order.
struct Objects {
    catalog: Ref,
    tree: Ref,
    info: Ref,
    /// Page and content stream of each page.
    pages: Vec<(Ref, Ref)>,
    fonts: Vec<FontRefs>,
}

impl Objects {
    fn assign(pages: usize, fonts: usize) -> Self {
        let mut last = 0;
        let mut next = || {
            last += 1;
            Ref::new(last)
        };
        Objects {
            catalog: next(),
            tree: next(),
            info: next(),
            pages: (0..pages).map(|_| (next(), next())).collect(),
            fonts: (0..fonts)
                .map(|_| FontRefs {
                    font: next(),
                    cid_font: next(),
                    descriptor: next(),
                    to_unicode: next(),
                    program: next(),
                })
                .collect(),
        }
    }
}

fn write(fonts: &Fonts, title: &str, pages: &[Page]) -> Result<Vec<u8>, RenderError> {
    let subsets = subsets(fonts, pages)?;
    let objects = Objects::assign(pages.len(), subsets.len());
    let mut pdf = Pdf::new();

    pdf.catalog(objects.catalog).pages(objects.tree).lang(TextStr("uk"));
    let mut info = pdf.document_info(objects.info);
    info.producer(TextStr("esocial"));
    if !title.is_empty() {
        info.title(TextStr(title));
    }
    info.finish();
    let count = i32::try_from(pages.len()).unwrap_or(i32::MAX);
    pdf.pages(objects.tree).kids(objects.pages.iter().map(|&(page, _)| page)).count(count);

    for (page, &(page_ref, content_ref)) in pages.iter().zip(&objects.pages) {
        let mut writer = pdf.page(page_ref);
        writer.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT)).parent(objects.tree).contents(content_ref);
        let mut resources = writer.resources();
        let mut font_dict = resources.fonts();
        for (subset, refs) in subsets.iter().zip(&objects.fonts) {
            font_dict.pair(subset.style().resource_name(), refs.font);
        }
        font_dict.finish();
        resources.finish();
        writer.finish();

        let content = deflate(&page_content(page, &subsets)?);
        pdf.stream(content_ref, &content).filter(Filter::FlateDecode);
    }

    for (subset, refs) in subsets.iter().zip(&objects.fonts) {
        subset.write(&mut pdf, refs)?;
    }
    Ok(pdf.finish())
}

/// The subset of each face that the pages use (faces not used at all are left out).
fn subsets<'a>(fonts: &'a Fonts, pages: &[Page]) -> Result<Vec<Subset<'a>>, RenderError> {
    let runs = || {
        pages.iter().flat_map(|page| &page.items).filter_map(|item| match item {
            Item::Text(run) => Some(run),
            _ => None,
        })
    };
    Style::ALL
        .into_iter()
        .filter(|&style| runs().any(|run| run.style == style))
        .map(|style| {
            Subset::new(fonts.get(style), runs().filter(|run| run.style == style).map(|run| run.text.as_str()))
        })
        .collect()
}

/// The content stream of one page; `y` is flipped to PDF's bottom-up coordinates here.
fn page_content(page: &Page, subsets: &[Subset]) -> Result<Vec<u8>, RenderError> {
    let mut content = Content::new();
    for item in &page.items {
        match item {
            Item::Text(run) => text(&mut content, run, subsets)?,
            Item::Rule { x, y, width, gray } => {
                content.set_stroke_gray(*gray).set_line_width(0.5);
                content.move_to(*x, PAGE_HEIGHT - y).line_to(x + width, PAGE_HEIGHT - y).stroke();
            }
            Item::Qr { x, y, module, matrix } => {
                content.set_fill_gray(0.0);
                for run in matrix.runs() {
                    let top = y + run.y as f32 * module;
                    let left = x + run.x as f32 * module;
                    content.rect(left, PAGE_HEIGHT - top - module, run.length as f32 * module, *module);
                }
                content.fill_nonzero();
            }
        }
    }
    Ok(content.finish().into_vec())
}

fn text(content: &mut Content, run: &TextRun, subsets: &[Subset]) -> Result<(), RenderError> {
    let subset = subsets
        .iter()
        .find(|subset| subset.style() == run.style)
        .ok_or_else(|| RenderError::Font(format!("no subset of {:?} was made", run.style)))?;
    let glyphs = subset.encode(&run.text)?;
    content.set_fill_gray(run.gray);
    content.begin_text();
    content.set_font(run.style.resource_name(), run.size);
    content.next_line(run.x, PAGE_HEIGHT - run.baseline);
    content.show(Str(&glyphs));
    content.end_text();
    Ok(())
}
