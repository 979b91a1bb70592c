//! Normal forms of names for finding duplicates.
//!
//! [`normalize_name`] removes the differences that do not make two spellings
//! different names (case, apostrophes, hyphens and spaces, letters typed on
//! the wrong keyboard layout, Russian letters); [`comparable_key`] goes on to
//! one Latin key for both a Cyrillic name and its transliterations.

use crate::letters::{composed, is_apostrophe, is_combining_mark, is_cyrillic, is_letter};
use crate::translit::transliterate;

/// Characters that separate the words of a name: any white space and the
/// hyphen and dashes (`Ярошенко-Яковенко` is two words).
fn is_separator(character: char) -> bool {
    character.is_whitespace() || matches!(character, '-' | '‐' | '‑' | '‒' | '–' | '—' | '―')
}

/// A lower-cased character of a word and whether its source was a capital
/// (some Latin capitals look like a Cyrillic letter, their small forms not).
#[derive(Clone, Copy)]
struct Letter {
    small: char,
    capital: bool,
}

/// The Cyrillic letter a Latin one is drawn like, for a small letter or a
/// capital: a c e i o p x y k ï ë and the capitals B H M T.
fn cyrillic_twin(letter: Letter) -> Option<char> {
    Some(match letter.small {
        'a' => 'а',
        'c' => 'с',
        'e' => 'е',
        'i' => 'і',
        'o' => 'о',
        'p' => 'р',
        'x' => 'х',
        'y' => 'у',
        'k' => 'к',
        'ï' => 'ї',
        'ë' => 'ё',
        'b' if letter.capital => 'в',
        'h' if letter.capital => 'н',
        'm' if letter.capital => 'м',
        't' if letter.capital => 'т',
        _ => return None,
    })
}

/// The Latin letter a Cyrillic one is drawn like: the inverse of
/// [`cyrillic_twin`].
fn latin_twin(letter: Letter) -> Option<char> {
    Some(match letter.small {
        'а' => 'a',
        'с' => 'c',
        'е' => 'e',
        'і' => 'i',
        'о' => 'o',
        'р' => 'p',
        'х' => 'x',
        'у' => 'y',
        'к' => 'k',
        'ї' => 'ï',
        'ё' => 'ë',
        'в' if letter.capital => 'b',
        'н' if letter.capital => 'h',
        'м' if letter.capital => 'm',
        'т' if letter.capital => 't',
        _ => return None,
    })
}

/// Lower-cases one word, dropping apostrophes and the Russian hard sign,
/// mapping Russian э ы to е и, and joining decomposed letters (a combining
/// mark that joins nothing is dropped).
fn lowered_letters(word: &[char]) -> Vec<Letter> {
    let mut letters: Vec<Letter> = Vec::with_capacity(word.len());
    for &character in word {
        if is_apostrophe(character) || matches!(character, 'ъ' | 'Ъ') {
            continue;
        }
        for small in character.to_lowercase() {
            let small = match small {
                'э' => 'е',
                'ы' => 'и',
                other => other,
            };
            if let Some(last) = letters.last_mut()
                && let Some(joined) = composed(last.small, small)
            {
                last.small = joined;
            } else if !is_combining_mark(small) {
                letters.push(Letter { small, capital: small != character });
            }
        }
    }
    letters
}

/// Puts a word's letters into one script. A word with Cyrillic letters and
/// at least as many of them as Latin letters that look like no Cyrillic one
/// is Cyrillic: its look-alike Latin letters become Cyrillic (`Cергій` typed
/// with a Latin C). Any other word is Latin: its look-alike Cyrillic letters
/// become Latin (`Kovalеnko` with a Cyrillic е). Then ё becomes е.
fn unify_script(letters: &mut [Letter]) {
    let cyrillic = letters.iter().filter(|letter| is_cyrillic(letter.small)).count();
    let other_latin = letters
        .iter()
        .filter(|letter| is_letter(letter.small) && !is_cyrillic(letter.small) && cyrillic_twin(**letter).is_none())
        .count();
    let into_cyrillic = cyrillic > 0 && cyrillic >= other_latin;
    for letter in letters.iter_mut() {
        let twin = if into_cyrillic { cyrillic_twin(*letter) } else { latin_twin(*letter) };
        if let Some(twin) = twin {
            letter.small = twin;
        }
        if letter.small == 'ё' {
            letter.small = 'е';
        }
    }
}

/// The normal form of a name for duplicate detection:
///
/// - lower case;
/// - the apostrophes `'` `’` `ʼ` `‘` `` ` `` removed (they are often left
///   out or typed differently: `Мар’яна`, `Марʼяна`, `Маряна`);
/// - hyphens, dashes and runs of white space become one space, with none at
///   either end;
/// - in a word that is Cyrillic but for Latin letters drawn like Cyrillic
///   ones (a c e i o p x y k ï ë, and the capitals B H M T; a wrong keyboard
///   layout or OCR), those letters become Cyrillic; a Latin word (a
///   transliterated name) stays Latin, and its Cyrillic look-alikes become
///   Latin. The script with more letters that have no twin wins; a tie goes
///   to Cyrillic;
/// - Russian letters, which Ukrainian has not, become the nearest Ukrainian
///   spelling: ы → и, э → е, ё → е (as Russian itself writes ё when it
///   omits the dots, `Семён` = `Семен`), and ъ is removed, like the
///   apostrophe Ukrainian writes in its place (`Подъячев` → `подячев`);
/// - a letter written as a base letter and a combining mark (`и` + U+0306)
///   becomes the precomposed letter (`й`); other combining marks are removed.
///
/// Other characters (digits, dots, commas) are kept. The result is a fixed
/// point: normalizing it again gives it back.
///
/// ```
/// use esocial_people::normalize_name;
/// assert_eq!(normalize_name("  МАР’ЯНА   Петренко-Ковальчук "), "маряна петренко ковальчук");
/// assert_eq!(normalize_name("Kовaленко"), "коваленко"); // Latin K and a
/// assert_eq!(normalize_name("Kovalenko"), "kovalenko");
/// ```
pub fn normalize_name(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut normal = String::with_capacity(text.len());
    for word in characters.split(|&character| is_separator(character)) {
        let mut letters = lowered_letters(word);
        if letters.is_empty() {
            continue;
        }
        unify_script(&mut letters);
        if !normal.is_empty() {
            normal.push(' ');
        }
        normal.extend(letters.iter().map(|letter| letter.small));
    }
    normal
}

/// One Latin key for a name written in Cyrillic or in any of its usual
/// Latin spellings: [`normalize_name`], then [`transliterate`], then these
/// folds of spellings that vary between transliteration systems:
///
/// | folded | into | because of |
/// | --- | --- | --- |
/// | `y`, `j` | `i` | и/і/й written y, i or j: `Mykola`/`Mikola`, `Andriy`/`Andrij`/`Andrii` |
/// | `g` | `h` | г written g: `Sergii`/`Serhii`, `Igor`/`Ihor` (ґ is g too) |
/// | `kh` | `h` | х written h: `Mykhailo`/`Mihailo` |
/// | `shch` | `sch` | щ written sch: `Shcherbak`/`Scherbak` |
/// | `w` | `v` | в written w (Polish, German): `Kowalenko` |
/// | `x` | `ks` | кс written x: `Olexandr`/`Oleksandr` |
/// | doubled letters | one | `Nataliia`/`Natalia`/`Nataliya`, `Hanna`/`Hana` |
///
/// So `ia`/`ya`, `iu`/`yu`, `ie`/`ye`, `yi`/`i` fold too. What is folded
/// together is close, not always the same: г and х (`h`), и and і (`i`),
/// `zgh` (зг) and `zh` (ж) share a key. Not folded: `e`/`ie` (`Evgen` and
/// `Yevhen` stay apart), `ts`/`c`/`tz`, `ch`/`tch`/`cz`, `zh`/`j`/`ż`, `u`/`ou`;
/// such pairs are left to [`similarity`](crate::similarity). Cyrillic letters
/// that are not Ukrainian or Russian (ў, ђ, …) are dropped from the key.
///
/// Words stay in their order, separated by one space. The key is a fixed
/// point (`comparable_key` of a key is the key), so keys can be stored and
/// compared later with [`similarity`](crate::similarity).
///
/// ```
/// use esocial_people::comparable_key;
/// let key = comparable_key("Олена Коваленко");
/// assert_eq!(key, "olena kovalenko");
/// assert_eq!(comparable_key("OLENA KOWALENKO"), key);
/// assert_eq!(comparable_key("Наталія"), comparable_key("Natalya"));
/// ```
pub fn comparable_key(text: &str) -> String {
    let latin = transliterate(&normalize_name(text));
    let mut key = String::with_capacity(latin.len());
    for word in latin.split(' ') {
        let folded = fold_word(word);
        if folded.is_empty() {
            continue;
        }
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(&folded);
    }
    key
}

/// Folds the spelling variants of one transliterated, lower-case word.
fn fold_word(word: &str) -> String {
    let mut folded = String::with_capacity(word.len() + 2);
    for character in word.chars() {
        match character {
            'w' => folded.push('v'),
            'x' => folded.push_str("ks"),
            'g' => folded.push('h'),
            'j' | 'y' => folded.push('i'),
            other if is_cyrillic(other) => {}
            other => folded.push(other),
        }
    }
    // Each round that changes the word shortens it, so this ends.
    loop {
        let next = without_doubles(&folded.replace("shch", "sch").replace("kh", "h"));
        if next == folded {
            return folded;
        }
        folded = next;
    }
}

/// The text with each run of one repeated character written once.
fn without_doubles(text: &str) -> String {
    let mut single = String::with_capacity(text.len());
    let mut previous = None;
    for character in text.chars() {
        if previous != Some(character) {
            single.push(character);
        }
        previous = Some(character);
    }
    single
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_apostrophes_hyphens_and_spaces() {
        assert_eq!(normalize_name("Олена КОВАЛЕНКО"), "олена коваленко");
        for apostrophe in ['\'', '’', 'ʼ', '`', '‘'] {
            assert_eq!(normalize_name(&format!("Мар{apostrophe}яна Лук{apostrophe}ян")), "маряна лукян");
        }
        assert_eq!(normalize_name("\t Ярошенко-Яковенко  Анна—Марія\u{00A0}"), "ярошенко яковенко анна марія");
        assert_eq!(normalize_name(" - ’ "), "");
        assert_eq!(normalize_name(""), "");
    }

    #[test]
    fn latin_look_alikes_in_cyrillic_words_become_cyrillic() {
        // C, a, o, e, i, p, x, y, k typed on a Latin layout.
        assert_eq!(normalize_name("Cергій"), "сергій");
        assert_eq!(normalize_name("Oлeкcaндp"), "олександр");
        assert_eq!(normalize_name("Xpиcтинa"), "христина");
        assert_eq!(normalize_name("Kyзьмeнкo"), "кузьменко");
        assert_eq!(normalize_name("Bipa"), "bipa", "no Cyrillic letter: a Latin word");
        assert_eq!(normalize_name("BiТа"), "віта", "Latin B and i in a Cyrillic word");
        // Capitals only: B H M T look like В Н М Т, their small forms do not.
        assert_eq!(normalize_name("HАТАЛІЯ"), "наталія");
        assert_eq!(normalize_name("MАРТА TАРАС"), "марта тарас");
        // Latin ï typed for ї.
        assert_eq!(normalize_name("Kиïв"), "київ");
    }

    #[test]
    fn latin_words_stay_latin() {
        assert_eq!(normalize_name("Olena Kovalenko"), "olena kovalenko");
        assert_eq!(normalize_name("Marʼiana"), "mariana");
        // A stray Cyrillic letter in a Latin word becomes Latin.
        assert_eq!(normalize_name("Kovalеnko"), "kovalenko");
        assert_eq!(normalize_name("Сhristina"), "christina");
    }

    #[test]
    fn russian_letters_become_ukrainian() {
        assert_eq!(normalize_name("Семён"), "семен");
        assert_eq!(normalize_name("Рыбак Эдуард"), "рибак едуард");
        assert_eq!(normalize_name("Подъячев"), "подячев");
        assert_eq!(normalize_name("ЁЖИК"), "ежик");
    }

    #[test]
    fn decomposed_letters_are_composed_and_stray_marks_dropped() {
        assert_eq!(normalize_name("Андріи\u{0306}"), "андрій");
        assert_eq!(normalize_name("І\u{0308}жакевич"), "їжакевич");
        assert_eq!(normalize_name("Оле\u{0301}на"), "олена");
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for text in ["  МАР’ЯНА   Петренко-Ковальчук ", "Cергій Kovalеnko", "ёЁъЪ", "İа", "K\u{212A}а", "ъъnnа"]
        {
            let once = normalize_name(text);
            assert_eq!(normalize_name(&once), once, "{text}");
        }
    }

    #[test]
    fn one_key_for_the_cyrillic_name_and_its_latin_spellings() {
        let key = comparable_key("Олена Коваленко");
        assert_eq!(key, "olena kovalenko");
        for variant in [
            "олена коваленко",
            "ОЛЕНА КОВАЛЕНКО",
            "Oлeнa Koвaлeнкo",
            "Olena Kovalenko",
            "OLENA KOVALENKO",
            "Olena Kowalenko",
            " Olena  Kovalenko ",
        ] {
            assert_eq!(comparable_key(variant), key, "{variant}");
        }
    }

    #[test]
    fn the_folded_spelling_variants() {
        let same = [
            ("Андрій", "Andriy"),
            ("Андрій", "Andrij"),
            ("Сергій", "Sergiy"),
            ("Ігор", "Igor"),
            ("Юрій", "Yuriy"),
            ("Юрій", "Iurii"),
            ("Юлія", "Julia"),
            ("Наталія", "Natalya"),
            ("Наталія", "Natalia"),
            ("Михайло", "Mihailo"),
            ("Олександр", "Olexandr"),
            ("Щербак", "Scherbak"),
            ("Мар’яна", "Maryana"),
            ("Євген", "Yevgen"),
            ("Ганна", "Hana"),
            ("Згурський", "Zgurskiy"),
            ("Семён", "Семен"),
        ];
        for (cyrillic, latin) in same {
            assert_eq!(comparable_key(cyrillic), comparable_key(latin), "{cyrillic} / {latin}");
        }
        assert_ne!(comparable_key("Євген"), comparable_key("Evgen"));
        assert_ne!(comparable_key("Коваленко"), comparable_key("Коваленка"));
    }

    #[test]
    fn keys_are_fixed_points() {
        for text in ["Олена Коваленко", "Згурський Юрій", "Щ-Ш кх", "Ўладзімір Łukasz", "kkhh xh", "ђa p"]
        {
            let key = comparable_key(text);
            assert_eq!(comparable_key(&key), key, "{text}");
        }
    }

    #[test]
    fn non_ukrainian_cyrillic_is_dropped_from_keys() {
        assert_eq!(comparable_key("Ўладзімір"), "ladzimir");
        assert_eq!(comparable_key("ў ђ"), "");
    }
}
