//! Ukrainian personal names for the person register.
//!
//! - [`transliterate`]: Ukrainian → Latin by the Cabinet of Ministers of
//!   Ukraine resolution No. 55 of 27 January 2010, as in passports.
//! - [`normalize_name`] and [`comparable_key`]: normal forms for finding
//!   duplicates; the key is one Latin string for a Cyrillic name and its
//!   transliterations.
//! - [`similarity`] (and [`NameKey`] to score one name against many): a
//!   trigram score in `0..=1` over comparable keys.
//! - [`names`]: first names, surnames, and the rules for the feminine
//!   surname and the patronymic.
//! - [`Generator`]: deterministic synthetic persons in households, with
//!   valid and consistent RNOKPP, UNZR and ID-card numbers.
//!
//! None of the text functions panics, whatever the input.
//!
//! # Uniqueness of the generated identifiers
//!
//! Within one [`Generator`] no two persons share an RNOKPP, a UNZR or an
//! ID-card number, by construction rather than by checking:
//!
//! - **RNOKPP**: [`Rnokpp::compose`](esocial_identifiers::Rnokpp::compose)
//!   encodes the birth date (days since 1899-12-31, 5 digits), a serial
//!   `0..=999` and the sex as digit 9 (1 or 0), so a birth date and sex have
//!   1,000 numbers. The generator counts, per day and sex, the numbers given
//!   out (`n`) and gives serial `(n·379 + offset) mod 1000` (379 is prime to
//!   1000: a permutation, so serials look random and never repeat). A day
//!   that is full for a sex moves the person to the next day with room in
//!   the same year of age; a full year of age for a sex (365,000 persons of
//!   one sex and age) ends the generator with [`GeneratorError::Exhausted`]
//!   rather than repeat a number.
//! - **UNZR**: the `m`-th person born on a day gets serial
//!   `(m·7919 + offset) mod 9999 + 1` (7919 is prime to 9999); a day holds at
//!   most 2,000 persons, so serials never run out.
//! - **ID card**: the `k`-th card is `(k·3¹⁸ + offset) mod 10⁹`, 9 digits;
//!   3¹⁸ is prime to 10⁹, so the first 10⁹ cards differ.
//!
//! The capacity is therefore 365,000 persons per sex and year of age (about
//! 66 million over ages 0–90 if they were spread evenly). With the
//! generator's age mix the fullest (age, sex) cell holds about 1.15 % of the
//! persons, so a run can go on to about 30 million persons before the first
//! cell is full; 10 million are checked by the crate's example
//! (`cargo run --release -p esocial-people --example generate -- 10000000 --check`).

mod allocation;
mod generator;
mod letters;
pub mod names;
mod normalize;
mod places;
mod similarity;
mod translit;

pub use esocial_identifiers::Sex;
pub use generator::{
    ADULT_AGE, DEFAULT_REFERENCE_DATE, Generator, GeneratorError, Household, ID_CARD_AGE, Link, MAX_AGE, Person,
    Relation,
};
pub use normalize::{comparable_key, normalize_name};
pub use similarity::{NameKey, similarity};
pub use translit::transliterate;
