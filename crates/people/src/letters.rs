//! Character classes shared by transliteration and normalization.

/// The apostrophe as it is typed in Ukrainian text: the ASCII `'`, the
/// typographic `’` (U+2019), the modifier letter `ʼ` (U+02BC) and two common
/// mistypes, `‘` (U+2018) and the grave accent `` ` ``.
pub(crate) fn is_apostrophe(character: char) -> bool {
    matches!(character, '\'' | '’' | 'ʼ' | '‘' | '`')
}

/// A letter of the Cyrillic block (U+0400–U+04FF), Ukrainian or not: all of
/// it but the thousands sign and the combining marks (U+0482–U+0489).
pub(crate) fn is_cyrillic(character: char) -> bool {
    matches!(character, '\u{0400}'..='\u{0481}' | '\u{048A}'..='\u{04FF}')
}

/// `char::is_alphabetic` with ASCII and Cyrillic answered without the
/// Unicode tables (the slow path shows in bulk imports).
pub(crate) fn is_letter(character: char) -> bool {
    character.is_ascii_alphabetic() || is_cyrillic(character) || (!character.is_ascii() && character.is_alphabetic())
}

/// A combining diacritical mark (U+0300–U+036F), as left by decomposed text.
pub(crate) fn is_combining_mark(character: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&character)
}

/// The precomposed letter for a base letter followed by a combining breve or
/// diaeresis, for the letters where that matters here: `й` is `й`, `ї` is
/// `ї`, `ё` is `ё`, and the Latin `ï`, `ë` that look like them.
pub(crate) fn composed(base: char, mark: char) -> Option<char> {
    Some(match (base, mark) {
        ('и', '\u{0306}') => 'й',
        ('И', '\u{0306}') => 'Й',
        ('і', '\u{0308}') => 'ї',
        ('І', '\u{0308}') => 'Ї',
        ('е', '\u{0308}') => 'ё',
        ('Е', '\u{0308}') => 'Ё',
        ('i', '\u{0308}') => 'ï',
        ('I', '\u{0308}') => 'Ï',
        ('e', '\u{0308}') => 'ë',
        ('E', '\u{0308}') => 'Ë',
        _ => return None,
    })
}

/// The characters of `text` with the decomposed letters above joined into
/// their precomposed forms; nothing else changes.
pub(crate) fn composed_chars(text: &str) -> Vec<char> {
    let mut characters: Vec<char> = Vec::with_capacity(text.len());
    for character in text.chars() {
        if let Some(last) = characters.last_mut()
            && let Some(joined) = composed(*last, character)
        {
            *last = joined;
            continue;
        }
        characters.push(character);
    }
    characters
}

/// The lower-case form of a character when it is a single character (every
/// letter this crate maps), the character itself otherwise.
pub(crate) fn lower(character: char) -> char {
    let mut lowered = character.to_lowercase();
    match (lowered.next(), lowered.next()) {
        (Some(single), None) => single,
        _ => character,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposed_letters_are_joined() {
        let text: String = composed_chars("Андріи\u{0306} І\u{0308}жак ї").into_iter().collect();
        assert_eq!(text, "Андрій Їжак ї");
        // A mark after a letter it does not combine with stays.
        let kept: String = composed_chars("о\u{0308}").into_iter().collect();
        assert_eq!(kept, "о\u{0308}");
    }

    #[test]
    fn classes() {
        for apostrophe in ['\'', '’', 'ʼ', '‘', '`'] {
            assert!(is_apostrophe(apostrophe));
        }
        assert!(!is_apostrophe('"'));
        assert!(is_cyrillic('ї') && is_cyrillic('Ґ') && is_cyrillic('ы'));
        assert!(!is_cyrillic('a') && !is_cyrillic('\u{0483}'));
        assert!(is_combining_mark('\u{0306}') && !is_combining_mark('й'));
        assert_eq!(lower('Є'), 'є');
        // 'İ' lowers to two characters: left as it is.
        assert_eq!(lower('İ'), 'İ');
    }
}
