//! Code 128 barcodes (ISO/IEC 15417) in code sets B and C.
//!
//! Set B encodes printable ASCII one character per symbol; set C encodes two digits per symbol.
//! The encoder picks, by dynamic programming over (position, current set), the sequence of sets
//! with the fewest symbols, so digit runs go into set C exactly when that makes the barcode
//! shorter (e.g. `3300912347` is Start C and five digit pairs). Set A (control characters) and
//! the FNC characters are not used, so only printable ASCII (0x20–0x7E) can be encoded.

use crate::{RenderError, svg};

/// Bar and space widths, in modules, of symbol values 0–105 (value 103–105 are Start A, B, C),
/// bar first. Source: ISO/IEC 15417:2007, table 1 "Code 128 character set", as reproduced in the
/// Wikipedia article "Code 128" (table "Bar/space weights"). Every symbol is 11 modules wide.
const PATTERNS: [&[u8; 6]; 106] = [
    // values 0–9
    b"212222", b"222122", b"222221", b"121223", b"121322", b"131222", b"122213", b"122312", b"132212", b"221213",
    // values 10–19
    b"221312", b"231212", b"112232", b"122132", b"122231", b"113222", b"123122", b"123221", b"223211", b"221132",
    // values 20–29
    b"221231", b"213212", b"223112", b"312131", b"311222", b"321122", b"321221", b"312212", b"322112", b"322211",
    // values 30–39
    b"212123", b"212321", b"232121", b"111323", b"131123", b"131321", b"112313", b"132113", b"132311", b"211313",
    // values 40–49
    b"231113", b"231311", b"112133", b"112331", b"132131", b"113123", b"113321", b"133121", b"313121", b"211331",
    // values 50–59
    b"231131", b"213113", b"213311", b"213131", b"311123", b"311321", b"331121", b"312113", b"312311", b"332111",
    // values 60–69
    b"314111", b"221411", b"431111", b"111224", b"111422", b"121124", b"121421", b"141122", b"141221", b"112214",
    // values 70–79
    b"112412", b"122114", b"122411", b"142112", b"142211", b"241211", b"221114", b"413111", b"241112", b"134111",
    // values 80–89
    b"111242", b"121142", b"121241", b"114212", b"124112", b"124211", b"411212", b"421112", b"421211", b"212141",
    // values 90–99
    b"214121", b"412121", b"111143", b"111341", b"131141", b"114113", b"114311", b"411113", b"411311", b"113141",
    // values 100–105
    b"114131", b"311141", b"411131", b"211412", b"211214", b"211232",
];
/// The stop symbol: 13 modules, ending with the termination bar.
const STOP_PATTERN: &[u8; 7] = b"2331112";

const CODE_C: u8 = 99;
const CODE_B: u8 = 100;
const START_B: u8 = 104;
const START_C: u8 = 105;
const STOP: u8 = 106;

/// Quiet zone on each side, in modules (the standard asks for at least 10).
const QUIET_ZONE: usize = 10;
/// Bar height in modules.
const BAR_HEIGHT: usize = 50;
/// Pixels per module in the `width`/`height` of the SVG (it scales freely).
const SVG_MODULE_PIXELS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    B,
    C,
}

/// The symbol values for `data`: start symbol, data (with set changes), check symbol, stop.
pub(crate) fn encode(data: &str) -> Result<Vec<u8>, RenderError> {
    let bytes = validate(data)?;
    let plan = plan(bytes);
    let mut symbols = Vec::with_capacity(bytes.len() + 4);
    let mut set = plan[0];
    symbols.push(if set == Set::C { START_C } else { START_B });
    let mut at = 0;
    while at < bytes.len() {
        if plan[at] != set {
            set = plan[at];
            symbols.push(if set == Set::C { CODE_C } else { CODE_B });
        }
        match set {
            Set::B => {
                symbols.push(bytes[at] - b' ');
                at += 1;
            }
            Set::C => {
                symbols.push((bytes[at] - b'0') * 10 + (bytes[at + 1] - b'0'));
                at += 2;
            }
        }
    }
    symbols.push(check_symbol(&symbols));
    symbols.push(STOP);
    Ok(symbols)
}

/// The ASCII bytes of `data`, or the first character that sets B and C cannot encode.
fn validate(data: &str) -> Result<&[u8], RenderError> {
    if data.is_empty() {
        return Err(RenderError::EmptyBarcode);
    }
    match data.chars().enumerate().find(|(_, character)| !matches!(character, ' '..='~')) {
        Some((position, character)) => Err(RenderError::UnencodableBarcodeCharacter { character, position }),
        None => Ok(data.as_bytes()),
    }
}

/// The set each position is encoded in (only positions where a symbol starts matter), chosen to
/// minimise the number of symbols. `cost[i][s]` is the fewest symbols that encode `bytes[i..]`
/// when set `s` is active at `i`; ties keep the current set, and prefer set B at the start.
fn plan(bytes: &[u8]) -> Vec<Set> {
    let n = bytes.len();
    let pair = |i: usize| i + 1 < n && bytes[i].is_ascii_digit() && bytes[i + 1].is_ascii_digit();
    // cost[i] = [in B, in C]; a set change costs one symbol and is followed by a symbol in the new set.
    let mut cost = vec![[0usize; 2]; n + 1];
    for i in (0..n).rev() {
        let in_b = 1 + cost[i + 1][0];
        let to_c = if pair(i) { 2 + cost[i + 2][1] } else { usize::MAX };
        let in_c = if pair(i) { 1 + cost[i + 2][1] } else { usize::MAX };
        let to_b = 2 + cost[i + 1][0];
        cost[i] = [in_b.min(to_c), in_c.min(to_b)];
    }
    let mut plan = vec![Set::B; n];
    let mut set = if pair(0) && cost[0][1] < cost[0][0] { Set::C } else { Set::B };
    let mut i = 0;
    while i < n {
        let stay = match set {
            Set::B => 1 + cost[i + 1][0],
            Set::C if pair(i) => 1 + cost[i + 2][1],
            Set::C => usize::MAX,
        };
        if stay > cost[i][set as usize] {
            set = if set == Set::B { Set::C } else { Set::B };
        }
        plan[i] = set;
        i += if set == Set::C { 2 } else { 1 };
    }
    plan
}

/// (Start value + Σ position × value) mod 103, positions counted from 1 after the start symbol.
fn check_symbol(symbols: &[u8]) -> u8 {
    let sum: usize = symbols.iter().enumerate().map(|(position, &value)| position.max(1) * usize::from(value)).sum();
    u8::try_from(sum % 103).unwrap_or(0) // < 103
}

/// The modules of `symbols`, `true` for a bar, without quiet zones.
pub(crate) fn modules(symbols: &[u8]) -> Vec<bool> {
    let mut modules = Vec::with_capacity(symbols.len() * 11 + 2);
    for &symbol in symbols {
        let widths: &[u8] = match PATTERNS.get(usize::from(symbol)) {
            Some(pattern) => *pattern,
            None => STOP_PATTERN,
        };
        for (index, width) in widths.iter().enumerate() {
            let bar = index % 2 == 0;
            modules.extend(std::iter::repeat_n(bar, usize::from(width - b'0')));
        }
    }
    modules
}

/// A Code 128 barcode of `data` as a standalone SVG document: white background, 10-module quiet
/// zones, bars 50 modules high and the data in monospace text below. One user unit is one module,
/// and it is 2 pixels per module by default.
pub fn code128_svg(data: &str) -> Result<String, RenderError> {
    let modules = modules(&encode(data)?);
    let width = modules.len() + 2 * QUIET_ZONE;
    let height = BAR_HEIGHT + 14;
    let mut path = String::new();
    let mut x = 0;
    while x < modules.len() {
        let bar = modules[x..].iter().take_while(|&&bar| bar).count();
        if bar > 0 {
            path.push_str(&format!("M{} 0h{bar}v{BAR_HEIGHT}h-{bar}z", x + QUIET_ZONE));
        }
        x += bar + 1;
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {width} {height}\">\
         <rect width=\"{width}\" height=\"{height}\" fill=\"#fff\"/>\
         <path fill=\"#000\" shape-rendering=\"crispEdges\" d=\"{path}\"/>\
         <text x=\"{}\" y=\"{}\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"10\" text-anchor=\"middle\" \
         xml:space=\"preserve\">{}</text></svg>\n",
        width * SVG_MODULE_PIXELS,
        height * SVG_MODULE_PIXELS,
        width / 2,
        BAR_HEIGHT + 11,
        svg::escape(data),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn bits(modules: &[bool]) -> String {
        modules.iter().map(|&bar| if bar { '1' } else { '0' }).collect()
    }

    #[test]
    fn pattern_table_is_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for (value, pattern) in PATTERNS.iter().enumerate() {
            let widths: Vec<u32> = pattern.iter().map(|&digit| u32::from(digit - b'0')).collect();
            assert!(widths.iter().all(|&w| (1..=4).contains(&w)), "value {value}");
            assert_eq!(widths.iter().sum::<u32>(), 11, "value {value} is not 11 modules wide");
            // Bars always add up to an even number of modules (ISO/IEC 15417, 4.1 "parity").
            assert_eq!((widths[0] + widths[2] + widths[4]) % 2, 0, "value {value} has odd bar parity");
            assert!(seen.insert(pattern), "value {value} repeats a pattern");
        }
        assert_eq!(STOP_PATTERN.iter().map(|&d| u32::from(d - b'0')).sum::<u32>(), 13);
    }

    #[test]
    fn well_known_patterns() {
        // Module strings as printed in the Code 128 tables.
        assert_eq!(bits(&modules(&[0])), "11011001100");
        assert_eq!(bits(&modules(&[START_B])), "11010010000");
        assert_eq!(bits(&modules(&[START_C])), "11010011100");
        assert_eq!(bits(&modules(&[STOP])), "1100011101011");
    }

    #[test]
    fn check_symbol_by_hand() {
        // Start B 104 + P 48·1 + J 42·2 + J 42·3 + 1 17·4 + 2 18·5 + 3 19·6 + C 35·7 = 879 = 8·103 + 55.
        assert_eq!(encode("PJJ123C").expect("encodes"), [START_B, 48, 42, 42, 17, 18, 19, 35, 55, STOP]);
        // Start C 105 + 33·1 + 00·2 + 91·3 + 23·4 + 47·5 = 738 = 7·103 + 17.
        assert_eq!(encode("3300912347").expect("encodes"), [START_C, 33, 0, 91, 23, 47, 17, STOP]);
    }

    #[test]
    fn sets_are_chosen_for_fewest_symbols() {
        // 104 + 33 + 34·2 + 99·3 + 12·4 + 34·5 + 56·6 + 78·7 = 1602 = 15·103 + 57.
        assert_eq!(encode("AB12345678").expect("encodes"), [START_B, 33, 34, CODE_C, 12, 34, 56, 78, 57, STOP]);
        // Odd digit run at the start: pairs in C, then the last digit in B.
        let symbols = encode("12345X").expect("encodes");
        assert_eq!(symbols[..6], [START_C, 12, 34, CODE_B, 21, 56]);
        // Short digit runs stay in B; one digit alone is B.
        assert_eq!(encode("A12B").expect("encodes")[..5], [START_B, 33, 17, 18, 34]);
        assert_eq!(encode("7").expect("encodes")[..2], [START_B, 23]);
        assert_eq!(encode("12").expect("encodes")[..2], [START_C, 12]);
    }

    #[test]
    fn bar_pattern_of_a_short_input_by_hand() {
        // "12": Start C, 12, check (105 + 12) mod 103 = 14, Stop.
        // Start C 211232, 12 = 112232, 14 = 122231, Stop 2331112.
        let expected = ["11010011100", "10110011100", "10011001110", "1100011101011"].concat();
        assert_eq!(bits(&modules(&encode("12").expect("encodes"))), expected);
    }

    #[test]
    fn invalid_data_is_an_error() {
        assert!(matches!(encode(""), Err(RenderError::EmptyBarcode)));
        assert!(matches!(encode("AБ"), Err(RenderError::UnencodableBarcodeCharacter { character: 'Б', position: 1 })));
        assert!(matches!(
            code128_svg("a\tb"),
            Err(RenderError::UnencodableBarcodeCharacter { character: '\t', position: 1 })
        ));
        assert!(matches!(encode("\u{7f}"), Err(RenderError::UnencodableBarcodeCharacter { .. })));
    }

    /// Rasterises `data` (3 pixels per module) and reads it back with `zbarimg`.
    fn zbar_decode(data: &str) -> String {
        use std::process::Command;
        let modules = modules(&encode(data).expect("encodes"));
        let width = u32::try_from((modules.len() + 2 * QUIET_ZONE) * 3).expect("fits");
        let png = crate::png::bilevel(width, 90, |x, _| {
            let module = usize::try_from(x / 3).expect("fits").checked_sub(QUIET_ZONE);
            module.and_then(|module| modules.get(module)).copied().unwrap_or(false)
        });
        let path =
            std::env::temp_dir().join(format!("esocial-render-{}-code128-{}.png", std::process::id(), data.len()));
        std::fs::write(&path, png).expect("writes");
        let output = Command::new("zbarimg").args(["-q", "--raw"]).arg(&path).output().expect("zbarimg runs");
        std::fs::remove_file(&path).ok();
        String::from_utf8(output.stdout).expect("UTF-8").trim_end_matches('\n').to_string()
    }

    #[test]
    fn zbarimg_reads_every_symbol_of_sets_b_and_c() {
        let printable: String = (' '..='~').collect();
        let pairs: String = (0..100).map(|n| format!("{n:02}")).collect();
        if std::process::Command::new("zbarimg").arg("-v").output().is_err() {
            eprintln!(
                "note: `zbarimg` is not installed; skipping the Code 128 decoding check (apt-get install zbar-tools)"
            );
            return;
        }
        for data in [printable.as_str(), &pairs, "3300912347", "AB12345678", "12345X", "PJJ123C"] {
            assert_eq!(zbar_decode(data), data);
        }
    }

    #[test]
    fn every_printable_character_encodes() {
        let all: String = (' '..='~').collect();
        let symbols = encode(&all).expect("encodes");
        // Start, 85 characters in B, Code C, 5 digit pairs, Code B, check, stop.
        assert_eq!(symbols.len(), 1 + 85 + 1 + 5 + 1 + 2);
        assert_eq!(modules(&symbols).len(), (symbols.len() - 1) * 11 + 13);
    }
}
