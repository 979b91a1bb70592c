//! Ukrainian → Latin by the table of the Cabinet of Ministers of Ukraine
//! resolution No. 55 of 27 January 2010 «Про впорядкування транслітерації
//! українського алфавіту латиницею» (as amended in 2013; the table has not
//! changed since).
//!
//! Every letter is reproduced by its Latin letter or letters:
//!
//! | а | б | в | г | ґ | д | е | є | ж | з | и | і | ї | й | к | л | м |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | a | b | v | h | g | d | e | ye, ie | zh | z | y | i | yi, i | y, i | k | l | m |
//!
//! | н | о | п | р | с | т | у | ф | х | ц | ч | ш | щ | ь | ю | я | ’ |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | n | o | p | r | s | t | u | f | kh | ts | ch | sh | shch | — | yu, iu | ya, ia | — |
//!
//! The first form of є, ї, й, ю, я is used at the beginning of a word, the
//! second elsewhere; «зг» is «zgh» (to tell it from «ж», «zh»); the soft sign
//! and the apostrophe are not reproduced.
//!
//! What the resolution leaves open is decided here as follows:
//! - A word is a run of letters and apostrophes, so a hyphen or a space
//!   starts a new word (`Ярошенко-Яковенко` → `Yaroshenko-Yakovenko`) and an
//!   apostrophe does not (`Мар’їне` → `Marine`).
//! - Case: a lower-case letter gives lower case; a capital gives a
//!   capitalised group (`Щ` → `Shch`) unless the whole word is in capitals
//!   (two or more capitals and no small letter), which gives capitals
//!   (`ЩУКА` → `SHCHUKA`).
//! - The apostrophe variants `'` `’` `ʼ` `‘` `` ` `` are dropped next to a
//!   Cyrillic letter; elsewhere (`O’Neil`) they become the ASCII `'`.
//! - Decomposed `й`/`ї` (a base letter and a combining mark) are read as the
//!   letters. Any other character, ASCII or not (Russian ы э ъ ё, Latin with
//!   diacritics, digits, punctuation), is copied unchanged; so the result is
//!   ASCII whenever the input is made of Ukrainian letters, apostrophes and
//!   ASCII.

use crate::letters::{composed_chars, is_apostrophe, is_cyrillic, is_letter, lower};

/// The Latin form of a lower-case Ukrainian letter, `None` for any other
/// character. `word_start` tells whether no letter precedes it in its word;
/// `after_z` whether the letter just before it is `з`.
fn latin_for(letter: char, word_start: bool, after_z: bool) -> Option<&'static str> {
    let initial_or_not = |initial, other| Some(if word_start { initial } else { other });
    match letter {
        'а' => Some("a"),
        'б' => Some("b"),
        'в' => Some("v"),
        'г' => Some(if after_z { "gh" } else { "h" }),
        'ґ' => Some("g"),
        'д' => Some("d"),
        'е' => Some("e"),
        'є' => initial_or_not("ye", "ie"),
        'ж' => Some("zh"),
        'з' => Some("z"),
        'и' => Some("y"),
        'і' => Some("i"),
        'ї' => initial_or_not("yi", "i"),
        'й' => initial_or_not("y", "i"),
        'к' => Some("k"),
        'л' => Some("l"),
        'м' => Some("m"),
        'н' => Some("n"),
        'о' => Some("o"),
        'п' => Some("p"),
        'р' => Some("r"),
        'с' => Some("s"),
        'т' => Some("t"),
        'у' => Some("u"),
        'ф' => Some("f"),
        'х' => Some("kh"),
        'ц' => Some("ts"),
        'ч' => Some("ch"),
        'ш' => Some("sh"),
        'щ' => Some("shch"),
        'ь' => Some(""),
        'ю' => initial_or_not("yu", "iu"),
        'я' => initial_or_not("ya", "ia"),
        _ => None,
    }
}

/// Transliterates Ukrainian text to Latin letters by CMU resolution No. 55
/// (see the module documentation for the table and the details).
///
/// ```
/// use esocial_people::transliterate;
/// assert_eq!(transliterate("Згурський Андрій"), "Zghurskyi Andrii");
/// assert_eq!(transliterate("Знам’янка"), "Znamianka");
/// assert_eq!(transliterate("ЮЩЕНКО"), "YUSHCHENKO");
/// ```
pub fn transliterate(text: &str) -> String {
    let characters = composed_chars(text);
    let mut latin = String::with_capacity(text.len() + text.len() / 2);
    let mut start = 0;
    while start < characters.len() {
        let is_word_character = |character: &char| is_letter(*character) || is_apostrophe(*character);
        let length = characters[start..].iter().take_while(|character| is_word_character(character)).count();
        if length == 0 {
            latin.push(characters[start]);
            start += 1;
        } else {
            transliterate_word(&characters[start..start + length], &mut latin);
            start += length;
        }
    }
    latin
}

/// True when the word is written in capitals: two or more upper-case letters
/// and no lower-case one.
fn is_all_capitals(word: &[char]) -> bool {
    let capitals = word.iter().filter(|character| character.is_uppercase()).count();
    capitals >= 2 && !word.iter().any(|character| character.is_lowercase())
}

/// Appends one word (letters and apostrophes only).
fn transliterate_word(word: &[char], latin: &mut String) {
    let all_capitals = is_all_capitals(word);
    let mut word_start = true;
    let mut previous: Option<char> = None;
    for (index, &character) in word.iter().enumerate() {
        if is_apostrophe(character) {
            let next_to_cyrillic =
                index.checked_sub(1).and_then(|before| word.get(before)).is_some_and(|&c| is_cyrillic(c))
                    || word.get(index + 1).is_some_and(|&c| is_cyrillic(c));
            if !next_to_cyrillic {
                latin.push('\'');
            }
            previous = Some(character);
            continue;
        }
        let small = lower(character);
        match latin_for(small, word_start, previous == Some('з')) {
            Some(letters) => push_in_case(latin, letters, character != small, all_capitals),
            None => latin.push(character),
        }
        word_start = false;
        previous = Some(small);
    }
}

/// Appends `letters` (lower-case ASCII) in the case of the source letter.
fn push_in_case(latin: &mut String, letters: &str, capital: bool, all_capitals: bool) {
    if !capital {
        latin.push_str(letters);
        return;
    }
    for (index, letter) in letters.chars().enumerate() {
        latin.push(if all_capitals || index == 0 { letter.to_ascii_uppercase() } else { letter });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples printed in the table of resolution No. 55, letter by
    /// letter, in the order of the table.
    const RESOLUTION_EXAMPLES: &[(&str, &str)] = &[
        ("Алушта", "Alushta"),
        ("Андрій", "Andrii"),
        ("Борщагівка", "Borshchahivka"),
        ("Борисенко", "Borysenko"),
        ("Вінниця", "Vinnytsia"),
        ("Володимир", "Volodymyr"),
        ("Гадяч", "Hadiach"),
        ("Богдан", "Bohdan"),
        ("Згурський", "Zghurskyi"),
        ("Ґалаґан", "Galagan"),
        ("Ґорґани", "Gorgany"),
        ("Донецьк", "Donetsk"),
        ("Дмитро", "Dmytro"),
        ("Рівне", "Rivne"),
        ("Олег", "Oleh"),
        ("Есмань", "Esman"),
        ("Єнакієве", "Yenakiieve"),
        ("Гаєвич", "Haievych"),
        ("Короп’є", "Koropie"),
        ("Житомир", "Zhytomyr"),
        ("Жанна", "Zhanna"),
        ("Жежелів", "Zhezheliv"),
        ("Закарпаття", "Zakarpattia"),
        ("Казимирчук", "Kazymyrchuk"),
        ("Медвин", "Medvyn"),
        ("Михайленко", "Mykhailenko"),
        ("Іванків", "Ivankiv"),
        ("Іващенко", "Ivashchenko"),
        ("Їжакевич", "Yizhakevych"),
        ("Кадиївка", "Kadyivka"),
        ("Мар’їне", "Marine"),
        ("Йосипівка", "Yosypivka"),
        ("Стрий", "Stryi"),
        ("Олексій", "Oleksii"),
        ("Київ", "Kyiv"),
        ("Коваленко", "Kovalenko"),
        ("Лебедин", "Lebedyn"),
        ("Леонід", "Leonid"),
        ("Миколаїв", "Mykolaiv"),
        ("Маринич", "Marynych"),
        ("Ніжин", "Nizhyn"),
        ("Наталія", "Nataliia"),
        ("Одеса", "Odesa"),
        ("Онищенко", "Onyshchenko"),
        ("Полтава", "Poltava"),
        ("Петро", "Petro"),
        ("Решетилівка", "Reshetylivka"),
        ("Рибчинський", "Rybchynskyi"),
        ("Суми", "Sumy"),
        ("Соломія", "Solomiia"),
        ("Тернопіль", "Ternopil"),
        ("Троць", "Trots"),
        ("Ужгород", "Uzhhorod"),
        ("Уляна", "Uliana"),
        ("Фастів", "Fastiv"),
        ("Філіпчук", "Filipchuk"),
        ("Харків", "Kharkiv"),
        ("Христина", "Khrystyna"),
        ("Біла Церква", "Bila Tserkva"),
        ("Стеценко", "Stetsenko"),
        ("Чернівці", "Chernivtsi"),
        ("Шевченко", "Shevchenko"),
        ("Шостка", "Shostka"),
        ("Кишеньки", "Kyshenky"),
        ("Щербухи", "Shcherbukhy"),
        ("Гоща", "Hoshcha"),
        ("Гаращенко", "Harashchenko"),
        ("Юрій", "Yurii"),
        ("Корюківка", "Koriukivka"),
        ("Яготин", "Yahotyn"),
        ("Ярошенко", "Yaroshenko"),
        ("Костянтин", "Kostiantyn"),
        ("Знам’янка", "Znamianka"),
        ("Феодосія", "Feodosiia"),
    ];

    #[test]
    fn every_example_of_the_resolution_table() {
        for (ukrainian, expected) in RESOLUTION_EXAMPLES {
            assert_eq!(transliterate(ukrainian), *expected, "{ukrainian}");
        }
    }

    #[test]
    fn the_examples_of_the_zgh_note() {
        // The note under the table: Згорани — Zghorany, Розгон — Rozghon.
        assert_eq!(transliterate("Згорани"), "Zghorany");
        assert_eq!(transliterate("Розгон"), "Rozghon");
        // Only з directly before г: ж and a plain г are unaffected.
        assert_eq!(transliterate("Жгут Гуз"), "Zhhut Huz");
    }

    #[test]
    fn all_the_examples_in_one_text_keep_their_spaces() {
        let (ukrainian, expected): (Vec<&str>, Vec<&str>) = RESOLUTION_EXAMPLES.iter().copied().unzip();
        assert_eq!(transliterate(&ukrainian.join(" ")), expected.join(" "));
    }

    #[test]
    fn every_apostrophe_variant_is_dropped_inside_a_ukrainian_word() {
        for apostrophe in ['\'', '’', 'ʼ', '‘', '`'] {
            assert_eq!(transliterate(&format!("Знам{apostrophe}янка")), "Znamianka");
            assert_eq!(transliterate(&format!("Лук{apostrophe}ян")), "Lukian");
        }
        // Outside Ukrainian words an apostrophe stays, as ASCII.
        assert_eq!(transliterate("O’Neil D'Arcy"), "O'Neil D'Arcy");
    }

    #[test]
    fn word_starts_after_spaces_hyphens_and_punctuation_but_not_after_apostrophes() {
        assert_eq!(transliterate("Ярошенко-Яковенко"), "Yaroshenko-Yakovenko");
        assert_eq!(transliterate("(Юрій) «Їжак»"), "(Yurii) «Yizhak»");
        assert_eq!(transliterate("в’їзд п’ять сім’я"), "vizd piat simia");
        assert_eq!(transliterate("ієрархія Йосип район"), "iierarkhiia Yosyp raion");
        assert_eq!(transliterate("Ю. Є. Я."), "Yu. Ye. Ya.");
    }

    #[test]
    fn capitals_lower_case_and_mixed() {
        assert_eq!(transliterate("ЩЕРБУХИ"), "SHCHERBUKHY");
        assert_eq!(transliterate("ЗГУРСЬКИЙ ЄВГЕН ЮРІЙОВИЧ"), "ZGHURSKYI YEVHEN YURIIOVYCH");
        assert_eq!(transliterate("ЗНАМ’ЯНКА"), "ZNAMIANKA");
        assert_eq!(transliterate("щербухи"), "shcherbukhy");
        assert_eq!(transliterate("Щ"), "Shch");
        assert_eq!(transliterate("ЯКОВЕНКО Яна"), "YAKOVENKO Yana");
        assert_eq!(transliterate("ЖИТОМИР"), "ZHYTOMYR");
    }

    #[test]
    fn decomposed_letters_are_read_as_the_letters() {
        assert_eq!(transliterate("Андріи\u{0306}"), "Andrii");
        assert_eq!(transliterate("І\u{0308}жакевич"), "Yizhakevych");
    }

    #[test]
    fn other_characters_are_copied() {
        assert_eq!(transliterate("вул. Шевченка, 12-а"), "vul. Shevchenka, 12-a");
        assert_eq!(transliterate("Łukasz ёж"), "Łukasz ёzh");
        assert_eq!(transliterate(""), "");
    }
}
