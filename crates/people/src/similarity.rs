//! How alike two names are: the Sørensen–Dice coefficient of the trigram
//! sets of their [`comparable_key`]s.
//!
//! Each word of a key is padded as PostgreSQL's `pg_trgm` pads it (two spaces
//! before, one after: `"  olena "`), so short words and word starts weigh in,
//! and the trigrams of all words form one set, so the order of the words does
//! not matter (`Коваленко Олена` and `Олена Коваленко` score 1). The score is
//! `2·|A ∩ B| / (|A| + |B|)`, in `0..=1`.

use std::cmp::Ordering;

use crate::normalize::comparable_key;

/// A name prepared for scoring: its comparable key and the key's trigrams.
/// Build it once per name when one name is scored against many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKey {
    key: String,
    trigrams: Vec<[char; 3]>,
}

impl NameKey {
    /// Prepares a name, in any spelling or already as a comparable key.
    pub fn new(name: &str) -> Self {
        let key = comparable_key(name);
        let trigrams = trigrams(&key);
        Self { key, trigrams }
    }

    /// The comparable key.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The similarity of two prepared names, see [`similarity`].
    pub fn similarity(&self, other: &NameKey) -> f64 {
        if self.key == other.key {
            return 1.0;
        }
        let total = self.trigrams.len() + other.trigrams.len();
        if self.trigrams.is_empty() || other.trigrams.is_empty() {
            return 0.0;
        }
        2.0 * as_f64(shared(&self.trigrams, &other.trigrams)) / as_f64(total)
    }
}

/// How alike two names are, from 0 (no trigram in common) to 1 (the same
/// comparable key, or the same words in another order).
///
/// Either argument may be a name in any spelling or a key already made by
/// [`comparable_key`] (a key is its own key), so stored keys can be scored.
/// Two names that both reduce to an empty key (say, two empty strings) are
/// the same, 1; an empty key against a non-empty one scores 0.
///
/// ```
/// use esocial_people::similarity;
/// assert_eq!(similarity("Олена Коваленко", "Olena Kowalenko"), 1.0);
/// assert!(similarity("Коваленко Олена", "Коваленко Олна") > 0.7);
/// assert!(similarity("Коваленко Олена", "Шевчук Ігор") < 0.2);
/// ```
pub fn similarity(first: &str, second: &str) -> f64 {
    NameKey::new(first).similarity(&NameKey::new(second))
}

/// The sorted, distinct trigrams of a key's words, each padded `"  word "`.
fn trigrams(key: &str) -> Vec<[char; 3]> {
    let mut all = Vec::with_capacity(key.len() + 4);
    for word in key.split(' ').filter(|word| !word.is_empty()) {
        let padded: Vec<char> = [' ', ' '].into_iter().chain(word.chars()).chain([' ']).collect();
        all.extend(padded.windows(3).map(|window| [window[0], window[1], window[2]]));
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// How many elements two sorted, distinct lists have in common.
fn shared(first: &[[char; 3]], second: &[[char; 3]]) -> usize {
    let (mut left, mut right, mut count) = (0, 0, 0);
    while let (Some(a), Some(b)) = (first.get(left), second.get(right)) {
        match a.cmp(b) {
            Ordering::Less => left += 1,
            Ordering::Greater => right += 1,
            Ordering::Equal => {
                count += 1;
                left += 1;
                right += 1;
            }
        }
    }
    count
}

/// A count as a float; names never have 2³² trigrams.
fn as_f64(count: usize) -> f64 {
    f64::from(u32::try_from(count).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_names_score_one() {
        for name in ["Олена Коваленко", "Згурський Андрій Петрович", "Olena", "", "Ї"]
        {
            assert_eq!(similarity(name, name), 1.0, "{name}");
        }
    }

    #[test]
    fn spelling_variants_score_at_least_0_9() {
        let name = "Мар’яна Олексіївна Ковальчук";
        for variant in [
            "МАР’ЯНА ОЛЕКСІЇВНА КОВАЛЬЧУК",
            "мар'яна олексіївна ковальчук",
            "Марʼяна Олексіївна Ковальчук",
            "Маряна Олексіївна Ковальчук",
            "Mаp’янa Oлeкciïвнa Koвaльчyк",
            "Mariana Oleksiivna Kovalchuk",
            "Maryana Oleksiyivna Kowalchuk",
            "Ковальчук Мар’яна Олексіївна",
        ] {
            let score = similarity(name, variant);
            assert!(score >= 0.9, "{variant}: {score}");
        }
        // Close but not folded: Evgen/Yevhen.
        assert!(similarity("Євген", "Evgen") > 0.4);
    }

    #[test]
    fn a_one_letter_typo_scores_high_but_below_one() {
        for (name, typo) in [
            ("Коваленко Олена Петрівна", "Коваленко Олена Петрвна"),
            ("Коваленко Олена Петрівна", "Коваленко Олена Пертівна"),
            ("Шевченко Тарас Григорович", "Шевчеко Тарас Григорович"),
            ("Бондаренко Іван", "Бондаренко Іоан"),
        ] {
            let score = similarity(name, typo);
            assert!((0.7..1.0).contains(&score), "{typo}: {score}");
        }
    }

    #[test]
    fn different_names_score_low() {
        for (first, second) in [
            ("Коваленко Олена Петрівна", "Шевчук Ігор Васильович"),
            ("Бондаренко Іван", "Мельник Оксана"),
            ("Петренко Олег", "Ткачук Світлана"),
        ] {
            let score = similarity(first, second);
            assert!(score < 0.25, "{first} / {second}: {score}");
        }
    }

    #[test]
    fn stored_keys_score_as_the_names_do() {
        let pairs = [("Олена Коваленко", "Olena Kowalenko"), ("Коваленко Олена", "Коваленко Олна"), ("Іван", "Оксана")];
        for (first, second) in pairs {
            let from_keys = similarity(&comparable_key(first), &comparable_key(second));
            assert_eq!(from_keys, similarity(first, second));
        }
    }

    #[test]
    fn empty_names() {
        assert_eq!(similarity("", "  - ’"), 1.0);
        assert_eq!(similarity("", "Олена"), 0.0);
    }

    #[test]
    fn name_key_exposes_the_key_and_scores_like_the_function() {
        let olena = NameKey::new("Олена Коваленко");
        assert_eq!(olena.as_str(), "olena kovalenko");
        let other = NameKey::new("Олена Коваленко-Шевчук");
        assert_eq!(olena.similarity(&other), similarity("Олена Коваленко", "Олена Коваленко-Шевчук"));
    }

    #[test]
    fn trigrams_are_padded_per_word() {
        assert_eq!(trigrams("ab"), vec![[' ', ' ', 'a'], [' ', 'a', 'b'], ['a', 'b', ' ']]);
        assert_eq!(trigrams("ab ab"), trigrams("ab"));
        assert!(trigrams("").is_empty());
    }
}
