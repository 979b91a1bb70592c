//! The embedded DejaVu Sans faces: glyph lookup and metrics for layout, then subsetting and the
//! PDF objects of an embedded `CIDFontType2` font with a `ToUnicode` CMap.
//!
//! Widths are measured in *em*: 1.0 is the font size, so a width in points is `em * size`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Filter, Finish, Name, Pdf, Rect, Ref, Str};
use subsetter::GlyphRemapper;
use ttf_parser::{Face, GlyphId};

use crate::{RenderError, deflate};

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// The two faces a document is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Style {
    Regular,
    Bold,
}

impl Style {
    pub(crate) const ALL: [Style; 2] = [Style::Regular, Style::Bold];

    fn data(self) -> &'static [u8] {
        match self {
            Style::Regular => REGULAR,
            Style::Bold => BOLD,
        }
    }

    fn postscript_name(self) -> &'static str {
        match self {
            Style::Regular => "DejaVuSans",
            Style::Bold => "DejaVuSans-Bold",
        }
    }

    /// The name of the font in a page's resource dictionary.
    pub(crate) fn resource_name(self) -> Name<'static> {
        match self {
            Style::Regular => Name(b"F1"),
            Style::Bold => Name(b"F2"),
        }
    }
}

/// A parsed face.
#[derive(Debug)]
pub(crate) struct Font {
    style: Style,
    face: Face<'static>,
    units_per_em: f32,
    /// Glyph lookups made so far (a `cmap` lookup costs far more than a hash lookup).
    glyphs: RefCell<HashMap<char, Option<u16>>>,
}

impl Font {
    pub(crate) fn load(style: Style) -> Result<Self, RenderError> {
        let face = Face::parse(style.data(), 0).map_err(|error| RenderError::Font(error.to_string()))?;
        let units_per_em = f32::from(face.units_per_em());
        Ok(Font { style, face, units_per_em, glyphs: RefCell::default() })
    }

    /// The glyph of `character`; control characters and characters the face lacks are errors.
    pub(crate) fn glyph(&self, character: char) -> Result<u16, RenderError> {
        let glyph = *self.glyphs.borrow_mut().entry(character).or_insert_with(|| self.lookup(character));
        glyph.ok_or(RenderError::UnsupportedCharacter { character })
    }

    fn lookup(&self, character: char) -> Option<u16> {
        let GlyphId(id) = self.face.glyph_index(character)?;
        (id != 0 && !character.is_control()).then_some(id)
    }

    /// The advance width of `character`, in em.
    pub(crate) fn advance(&self, character: char) -> Result<f32, RenderError> {
        let glyph = self.glyph(character)?;
        Ok(self.glyph_advance(glyph))
    }

    /// The width of `text` set in one line without kerning, in em.
    pub(crate) fn width(&self, text: &str) -> Result<f32, RenderError> {
        text.chars().map(|character| self.advance(character)).sum()
    }

    /// Distance from the baseline to the top of the line box, in em.
    pub(crate) fn ascent(&self) -> f32 {
        self.to_em(self.face.ascender())
    }

    /// Distance from the baseline to the bottom of the line box (negative), in em.
    pub(crate) fn descent(&self) -> f32 {
        self.to_em(self.face.descender())
    }

    fn glyph_advance(&self, glyph: u16) -> f32 {
        f32::from(self.face.glyph_hor_advance(GlyphId(glyph)).unwrap_or(0)) / self.units_per_em
    }

    fn to_em(&self, units: i16) -> f32 {
        f32::from(units) / self.units_per_em
    }
}

/// Both faces, parsed.
#[derive(Debug)]
pub(crate) struct Fonts {
    regular: Font,
    bold: Font,
}

impl Fonts {
    pub(crate) fn load() -> Result<Self, RenderError> {
        Ok(Fonts { regular: Font::load(Style::Regular)?, bold: Font::load(Style::Bold)? })
    }

    pub(crate) fn get(&self, style: Style) -> &Font {
        match style {
            Style::Regular => &self.regular,
            Style::Bold => &self.bold,
        }
    }
}

/// The glyphs of one face that a document uses, renumbered for the subset.
///
/// Old glyph ids are renumbered in ascending order (after `.notdef`, which stays 0); the new id
/// is both the glyph id in the subset font and the CID in content streams (`CIDToGIDMap Identity`).
#[derive(Debug)]
pub(crate) struct Subset<'a> {
    font: &'a Font,
    remapper: GlyphRemapper,
    /// New glyph id → the character it stands for (the first one met, if several share a glyph).
    characters: BTreeMap<u16, char>,
}

impl<'a> Subset<'a> {
    /// The subset of `font` covering every character of `texts`.
    pub(crate) fn new<'t>(font: &'a Font, texts: impl IntoIterator<Item = &'t str>) -> Result<Self, RenderError> {
        let mut used = BTreeMap::new();
        for character in texts.into_iter().flat_map(str::chars) {
            used.entry(font.glyph(character)?).or_insert(character);
        }
        let mut remapper = GlyphRemapper::new();
        let characters = used.into_iter().map(|(old, character)| (remapper.remap(old), character)).collect();
        Ok(Subset { font, remapper, characters })
    }

    pub(crate) fn style(&self) -> Style {
        self.font.style
    }

    /// `text` as a PDF string for `Identity-H`: big-endian 16-bit glyph ids of the subset.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u8>, RenderError> {
        let mut bytes = Vec::with_capacity(text.len() * 2);
        for character in text.chars() {
            let old = self.font.glyph(character)?;
            let new = self
                .remapper
                .get(old)
                .ok_or_else(|| RenderError::Font(format!("glyph of {character:?} was left out of the font subset")))?;
            bytes.extend_from_slice(&new.to_be_bytes());
        }
        Ok(bytes)
    }

    /// Six capital letters naming this subset (`ABCDEF+DejaVuSans`), derived from the glyph set so
    /// that the same document always gets the same name.
    fn tag(&self) -> String {
        // FNV-1a, 64 bit.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes =
            self.font.style.postscript_name().bytes().chain(self.remapper.remapped_gids().flat_map(u16::to_be_bytes));
        for byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (0..6)
            .map(|_| {
                let letter = b'A' + u8::try_from(hash % 26).unwrap_or(0);
                hash /= 26;
                char::from(letter)
            })
            .collect()
    }

    /// Writes the `Type0` font at `refs.font` and the objects it needs: the `CIDFontType2` font
    /// with the advance widths, its descriptor, the subset font program and the `ToUnicode` CMap.
    pub(crate) fn write(&self, pdf: &mut Pdf, refs: &FontRefs) -> Result<(), RenderError> {
        let font = self.font;
        let program = subsetter::subset(font.style.data(), 0, &self.remapper)
            .map_err(|error| RenderError::Font(format!("subsetting {}: {error}", font.style.postscript_name())))?;
        let base_name = format!("{}+{}", self.tag(), font.style.postscript_name());
        let base_name = Name(base_name.as_bytes());
        let system_info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };

        pdf.type0_font(refs.font)
            .base_font(base_name)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(refs.cid_font)
            .to_unicode(refs.to_unicode);

        let mut cid_font = pdf.cid_font(refs.cid_font);
        cid_font
            .subtype(CidFontType::Type2)
            .base_font(base_name)
            .system_info(system_info)
            .font_descriptor(refs.descriptor)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let widths = self.remapper.remapped_gids().map(|old| font.glyph_advance(old) * 1000.0);
        cid_font.widths().consecutive(0, widths);
        cid_font.finish();

        self.write_descriptor(pdf, refs, base_name);

        let length1 = i32::try_from(program.len()).map_err(|_| RenderError::Font("font subset too large".into()))?;
        let compressed = deflate(&program);
        pdf.stream(refs.program, &compressed).filter(Filter::FlateDecode).pair(Name(b"Length1"), length1);

        let mut cmap = UnicodeCmap::new(Name(b"Adobe-Identity-UCS"), system_info);
        for (&glyph, &character) in &self.characters {
            cmap.pair(glyph, character);
        }
        let cmap = deflate(&cmap.finish());
        pdf.cmap(refs.to_unicode, &cmap).filter(Filter::FlateDecode);
        Ok(())
    }

    fn write_descriptor(&self, pdf: &mut Pdf, refs: &FontRefs, base_name: Name) {
        let face = &self.font.face;
        let per_mille = |units: i16| f32::from(units) * 1000.0 / self.font.units_per_em;
        let bbox = face.global_bounding_box();
        let cap_height = face.capital_height().unwrap_or_else(|| face.ascender());
        // The usual estimate of the dominant stem width from the weight class.
        let stem_v = 10.0 + 0.244 * (f32::from(face.weight().to_number()) - 50.0);
        pdf.font_descriptor(refs.descriptor)
            .name(base_name)
            .flags(FontFlags::SYMBOLIC)
            .bbox(Rect::new(per_mille(bbox.x_min), per_mille(bbox.y_min), per_mille(bbox.x_max), per_mille(bbox.y_max)))
            .italic_angle(face.italic_angle())
            .ascent(per_mille(face.ascender()))
            .descent(per_mille(face.descender()))
            .cap_height(per_mille(cap_height))
            .stem_v(stem_v)
            .font_file2(refs.program);
    }
}

/// Object numbers of one embedded font.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FontRefs {
    pub(crate) font: Ref,
    pub(crate) cid_font: Ref,
    pub(crate) descriptor: Ref,
    pub(crate) to_unicode: Ref,
    pub(crate) program: Ref,
}

#[cfg(test)]
mod tests {
    use super::*;

    const UKRAINIAN: &str = "АБВГҐДЕЄЖЗИІЇЙКЛМНОПРСТУФХЦЧШЩЬЮЯабвгґдеєжзиіїйклмнопрстуфхцчшщьюя’ʼ«»№₴";

    #[test]
    fn both_faces_cover_ukrainian() {
        let fonts = Fonts::load().expect("fonts load");
        for style in Style::ALL {
            for character in UKRAINIAN.chars() {
                assert!(fonts.get(style).glyph(character).is_ok(), "{style:?} lacks {character:?}");
            }
        }
    }

    #[test]
    fn missing_and_control_characters_are_errors() {
        let font = Font::load(Style::Regular).expect("font loads");
        for character in ['中', '\u{0}', '\u{7}', '\n', '\u{85}'] {
            assert!(
                matches!(font.glyph(character), Err(RenderError::UnsupportedCharacter { character: c }) if c == character)
            );
        }
    }

    #[test]
    fn subset_renumbers_glyphs_in_ascending_order() {
        let font = Font::load(Style::Regular).expect("font loads");
        let subset = Subset::new(&font, ["ба", "аб"]).expect("subset");
        let (a, b) = (font.glyph('а').expect("а"), font.glyph('б').expect("б"));
        assert!(a < b);
        assert_eq!(subset.encode("аб").expect("encode"), vec![0, 1, 0, 2]);
        assert_eq!(subset.characters, BTreeMap::from([(1, 'а'), (2, 'б')]));
        assert!(matches!(subset.encode("в"), Err(RenderError::Font(_))));
    }

    #[test]
    fn subset_font_is_a_small_valid_font() {
        let font = Font::load(Style::Bold).expect("font loads");
        let subset = Subset::new(&font, [UKRAINIAN]).expect("subset");
        let program = subsetter::subset(Style::Bold.data(), 0, &subset.remapper).expect("subsets");
        let parsed = Face::parse(&program, 0).expect("subset parses");
        assert!(parsed.number_of_glyphs() >= subset.remapper.num_gids());
        assert!(program.len() < BOLD.len() / 10, "subset is {} bytes", program.len());
    }

    #[test]
    fn tag_is_six_capitals_and_depends_on_glyphs() {
        let font = Font::load(Style::Regular).expect("font loads");
        let first = Subset::new(&font, ["Київ"]).expect("subset").tag();
        assert_eq!(first, Subset::new(&font, ["Київ"]).expect("subset").tag());
        assert_ne!(first, Subset::new(&font, ["Львів"]).expect("subset").tag());
        assert!(first.len() == 6 && first.bytes().all(|b| b.is_ascii_uppercase()));
    }
}
