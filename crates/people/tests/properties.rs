//! Properties of the name functions on any text and of the generator on any
//! seed.

use std::collections::HashSet;

use esocial_identifiers::{Katottg, PassportNumber, Rnokpp, Unzr};
use esocial_people::names::{patronymic, surname_for};
use esocial_people::{Generator, Person, Sex, comparable_key, normalize_name, similarity, transliterate};
use proptest::prelude::*;

const UKRAINIAN_ALPHABET: &str = "АаБбВвГгҐґДдЕеЄєЖжЗзИиІіЇїЙйКкЛлМмНнОоПпРрСсТтУуФфХхЦцЧчШшЩщЬьЮюЯя";

/// Text made of Ukrainian letters, apostrophes, hyphens and any ASCII.
fn ukrainian_text() -> impl Strategy<Value = String> {
    let letters: Vec<char> = UKRAINIAN_ALPHABET.chars().collect();
    let character = prop_oneof![
        6 => proptest::sample::select(letters),
        1 => proptest::sample::select(vec!['\'', '’', 'ʼ', '‘', '`', '-', ' ']),
        2 => proptest::char::range(' ', '~'),
    ];
    proptest::collection::vec(character, 0..40).prop_map(|characters| characters.into_iter().collect())
}

/// Text mixing everything the normalization treats specially: both scripts,
/// look-alikes in both cases, Russian letters, apostrophes, combining marks,
/// separators, and a little of anything.
fn tricky_text() -> impl Strategy<Value = String> {
    let special: Vec<char> = "AaBbCcEeHhIiKkMmOoPpTtXxYyïÏëËАаВвЕеКкМмНнОоРрСсТтУуХхІіЇїЁёЪъЫыЭэЬьЙйИиЄєҐґ'’ʼ‘`-–— \t\u{0306}\u{0308}\u{0301}\u{0307}İK"
        .chars()
        .collect();
    let character = prop_oneof![
        8 => proptest::sample::select(special),
        1 => any::<char>(),
    ];
    proptest::collection::vec(character, 0..30).prop_map(|characters| characters.into_iter().collect())
}

fn territories() -> Vec<Katottg> {
    ["UA71020010000037786", "UA80000000000093317"].iter().map(|code| code.parse().expect("valid KATOTTG")).collect()
}

fn persons(seed: u64, count: usize) -> Vec<Person> {
    let mut generator = Generator::new(seed, territories()).expect("generator");
    generator.persons().take(count).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn transliteration_of_ukrainian_text_is_ascii(text in ukrainian_text()) {
        let latin = transliterate(&text);
        prop_assert!(latin.is_ascii(), "{text:?} → {latin:?}");
    }

    #[test]
    fn transliteration_keeps_ascii_text_as_it_is(text in "[ -_a-~]{0,40}") {
        // Every printable ASCII character but the grave accent, which is
        // read as an apostrophe and written `'`.
        prop_assert_eq!(transliterate(&text), text);
    }

    #[test]
    fn name_functions_accept_any_text(text in any::<String>()) {
        let _ = transliterate(&text);
        for sex in [Sex::Male, Sex::Female] {
            let _ = patronymic(&text, sex);
            let _ = surname_for(&text, sex);
        }
        let normal = normalize_name(&text);
        prop_assert_eq!(normalize_name(&normal), normal);
        let key = comparable_key(&text);
        prop_assert_eq!(comparable_key(&key), key);
    }

    #[test]
    fn normalize_name_is_idempotent(text in tricky_text()) {
        let once = normalize_name(&text);
        prop_assert_eq!(normalize_name(&once), once.as_str(), "from {:?}", text);
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
        prop_assert_eq!(once.to_lowercase(), once);
    }

    #[test]
    fn comparable_key_is_a_fixed_point(text in tricky_text()) {
        let key = comparable_key(&text);
        prop_assert_eq!(comparable_key(&key), key);
    }

    #[test]
    fn similarity_is_a_symmetric_score_and_one_for_the_same_name(first in tricky_text(), second in ukrainian_text()) {
        let score = similarity(&first, &second);
        prop_assert!((0.0..=1.0).contains(&score), "{score}");
        prop_assert_eq!(score, similarity(&second, &first));
        prop_assert_eq!(similarity(&first, &first), 1.0);
        prop_assert_eq!(similarity(&comparable_key(&first), &comparable_key(&second)), score);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn generated_identifiers_parse_and_agree_with_the_person(seed in any::<u64>()) {
        for person in persons(seed, 1_000) {
            let rnokpp: Rnokpp = person.rnokpp.as_str().parse().expect("RNOKPP parses");
            prop_assert_eq!(rnokpp.birth_date(), person.birth_date);
            prop_assert_eq!(rnokpp.sex(), person.sex);
            let unzr: Unzr = person.unzr.as_str().parse().expect("UNZR parses");
            prop_assert_eq!(unzr.birth_date(), person.birth_date);
            if let Some(passport) = &person.passport {
                let parsed: PassportNumber = passport.as_str().parse().expect("passport parses");
                prop_assert!(parsed.is_id_card());
            }
        }
    }

    #[test]
    fn generated_identifiers_do_not_repeat(seed in any::<u64>()) {
        let mut rnokpps = HashSet::new();
        let mut unzrs = HashSet::new();
        let mut passports = HashSet::new();
        for person in persons(seed, 5_000) {
            prop_assert!(rnokpps.insert(person.rnokpp));
            prop_assert!(unzrs.insert(person.unzr));
            if let Some(passport) = person.passport {
                prop_assert!(passports.insert(passport));
            }
        }
    }
}

/// A large sample: 100,000 persons from one generator, no identifier twice.
#[test]
fn a_hundred_thousand_persons_have_distinct_identifiers() {
    let all = persons(2026, 100_000);
    assert_eq!(all.len(), 100_000);
    let rnokpps: HashSet<Rnokpp> = all.iter().map(|person| person.rnokpp).collect();
    let unzrs: HashSet<Unzr> = all.iter().map(|person| person.unzr).collect();
    let passports: Vec<&PassportNumber> = all.iter().filter_map(|person| person.passport.as_ref()).collect();
    let distinct_passports: HashSet<&PassportNumber> = passports.iter().copied().collect();
    assert_eq!(rnokpps.len(), all.len());
    assert_eq!(unzrs.len(), all.len());
    assert_eq!(distinct_passports.len(), passports.len());
}

/// Birth dates shared by several persons of one sex still give distinct
/// numbers: the per-day serials, not chance, keep them apart.
#[test]
fn crowded_birth_dates_still_get_distinct_numbers() {
    let all = persons(7, 60_000);
    let mut per_day_and_sex = std::collections::HashMap::new();
    for person in &all {
        *per_day_and_sex.entry((person.birth_date, person.sex == Sex::Male)).or_insert(0u32) += 1;
    }
    let busiest = per_day_and_sex.values().copied().max().unwrap_or(0);
    assert!(busiest >= 5, "{busiest}");
    let rnokpps: HashSet<Rnokpp> = all.iter().map(|person| person.rnokpp).collect();
    assert_eq!(rnokpps.len(), all.len());
}
