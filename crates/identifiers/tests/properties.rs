//! Property tests: generated identifiers round-trip, single-digit mutations
//! are caught (exactly where each check scheme can catch them), and no input
//! string makes a parser panic.

use chrono::{Days, NaiveDate};
use esocial_identifiers::{Edrpou, Iban, Katottg, Money, PassportNumber, Rnokpp, Sex, Unzr};
use proptest::prelude::*;

fn birth_date() -> impl Strategy<Value = NaiveDate> {
    // 1900-01-01 ..= 2026-12-31
    (0u64..46_385).prop_map(|offset| {
        NaiveDate::from_ymd_opt(1900, 1, 1)
            .and_then(|start| start.checked_add_days(Days::new(offset)))
            .unwrap_or(NaiveDate::MIN)
    })
}

/// Replaces the digit at `position` with a different digit chosen by `shift`.
fn mutate_digit(text: &str, position: usize, shift: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let original = bytes[position] - b'0';
    bytes[position] = b'0' + (original + 1 + shift % 9) % 10;
    String::from_utf8(bytes).unwrap_or_default()
}

/// The RNOKPP weighted sum modulo 11, before it is folded into a digit.
fn rnokpp_residue(text: &str) -> i64 {
    const WEIGHTS: [i64; 9] = [-1, 5, 7, 9, 4, 6, 10, 5, 7];
    text.bytes()
        .take(9)
        .zip(WEIGHTS)
        .map(|(digit, weight)| i64::from(digit - b'0') * weight)
        .sum::<i64>()
        .rem_euclid(11)
}

/// Whether an EDRPOU code takes the weights 7, 1, 2, … (else 1, 2, 3, …).
fn edrpou_uses_shifted_weights(text: &str) -> bool {
    let value: u32 = text.parse().unwrap_or(0);
    value > 30_000_000 && value < 60_000_000
}

/// The EDRPOU weighted sum modulo 11 with the primary weights.
fn edrpou_primary_residue(text: &str) -> i64 {
    let weights: [i64; 7] =
        if edrpou_uses_shifted_weights(text) { [7, 1, 2, 3, 4, 5, 6] } else { [1, 2, 3, 4, 5, 6, 7] };
    text.bytes().take(7).zip(weights).map(|(digit, weight)| i64::from(digit - b'0') * weight).sum::<i64>() % 11
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn rnokpp_round_trips_with_birth_date_and_sex(date in birth_date(), serial in 0u16..1000, male in any::<bool>()) {
        let sex = if male { Sex::Male } else { Sex::Female };
        let number = Rnokpp::compose(date, serial, sex).expect("dates from 1900 fit");
        let parsed: Rnokpp = number.to_string().parse().expect("composed numbers are valid");
        prop_assert_eq!(parsed, number);
        prop_assert_eq!(parsed.birth_date(), date);
        prop_assert_eq!(parsed.sex(), sex);
    }

    /// The RNOKPP check digit is the residue mod 11 folded mod 10, so 10 and 0
    /// both give digit 0: that one collision is the only mutation that can
    /// pass, and every other one must be refused.
    #[test]
    fn rnokpp_refuses_single_digit_mutations_except_the_ten_to_zero_fold(
        date in birth_date(), serial in 0u16..1000, position in 0usize..10, shift in 0u8..9,
    ) {
        let number = Rnokpp::compose(date, serial, Sex::Male).expect("fits").to_string();
        let mutated = mutate_digit(&number, position, shift);
        let folds_together = position < 9
            && matches!((rnokpp_residue(&number), rnokpp_residue(&mutated)), (0, 10) | (10, 0));
        prop_assert_eq!(mutated.parse::<Rnokpp>().is_ok(), folds_together, "{} -> {}", number, mutated);
    }

    #[test]
    fn unzr_round_trips_and_refuses_every_single_digit_mutation(
        date in birth_date(), serial in 1u16..10_000, position in 0usize..13, shift in 0u8..9,
    ) {
        let record = Unzr::compose(date, serial).expect("valid serial");
        prop_assert_eq!(record.to_string().parse::<Unzr>(), Ok(record));
        prop_assert_eq!(record.birth_date(), date);
        // Weights 7, 3, 1 are coprime with 10: every change of one digit
        // changes the check, or breaks the date or the serial.
        let compact = record.to_string().replace('-', "");
        let mutated = mutate_digit(&compact, position, shift);
        prop_assert!(mutated.parse::<Unzr>().is_err(), "{} -> {}", compact, mutated);
    }

    /// A data-digit mutation between two codes that use the same weight set
    /// and both stay on the primary weights is always caught; a mutation of
    /// the check digit itself always is. (A mutation of the first digit can
    /// move a code across 30000000/60000000 into the other weight set, where
    /// the scheme gives no guarantee.)
    #[test]
    fn edrpou_refuses_single_digit_mutations_on_the_primary_weights(
        first_seven in 0u32..10_000_000, position in 0usize..8, shift in 0u8..9,
    ) {
        let code = Edrpou::compose(first_seven).expect("composable").to_string();
        prop_assert_eq!(code.parse::<Edrpou>().map(|parsed| parsed.to_string()), Ok(code.clone()));
        let mutated = mutate_digit(&code, position, shift);
        let same_weights = edrpou_uses_shifted_weights(&code) == edrpou_uses_shifted_weights(&mutated);
        let both_primary = edrpou_primary_residue(&code) < 10 && edrpou_primary_residue(&mutated) < 10;
        if position == 7 || (same_weights && both_primary) {
            prop_assert!(mutated.parse::<Edrpou>().is_err(), "{} -> {}", code, mutated);
        }
    }

    /// MOD 97-10 catches every single-digit substitution.
    #[test]
    fn iban_round_trips_and_refuses_every_single_digit_mutation(
        bank in 300_000u32..400_000, account in "[0-9]{19}", position in 2usize..29, shift in 0u8..9,
    ) {
        let iban = Iban::compose(&bank.to_string(), &account).expect("valid parts");
        prop_assert_eq!(iban.to_string().parse::<Iban>(), Ok(iban));
        prop_assert_eq!(iban.bank_code(), bank.to_string());
        let mutated = mutate_digit(iban.as_str(), position, shift);
        prop_assert!(mutated.parse::<Iban>().is_err(), "{} -> {}", iban, mutated);
    }

    #[test]
    fn money_round_trips_through_its_decimal_form(kopiykas in any::<i64>()) {
        let money = Money::from_kopiykas(kopiykas);
        let printed = money.to_string();
        let decimal = printed.trim_end_matches(" UAH");
        prop_assert_eq!(decimal.parse::<Money>(), Ok(money));
    }

    /// Arbitrary text never panics a parser, and whatever is accepted prints
    /// to a form that parses to the same value.
    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in any::<String>()) {
        if let Ok(value) = text.parse::<Rnokpp>() { prop_assert_eq!(value.to_string().parse::<Rnokpp>(), Ok(value)); }
        if let Ok(value) = text.parse::<Unzr>() { prop_assert_eq!(value.to_string().parse::<Unzr>(), Ok(value)); }
        if let Ok(value) = text.parse::<Edrpou>() { prop_assert_eq!(value.to_string().parse::<Edrpou>(), Ok(value)); }
        if let Ok(value) = text.parse::<Iban>() { prop_assert_eq!(value.to_string().parse::<Iban>(), Ok(value)); }
        if let Ok(value) = text.parse::<Katottg>() { prop_assert_eq!(value.to_string().parse::<Katottg>(), Ok(value)); }
        if let Ok(value) = text.parse::<PassportNumber>() {
            prop_assert_eq!(value.to_string().parse::<PassportNumber>(), Ok(value));
        }
        let _ = text.parse::<Money>();
    }

    /// The same with text shaped like the identifiers (digits, `UA`, hyphens,
    /// Cyrillic), which reaches deeper into the parsers than random Unicode.
    #[test]
    fn parsers_never_panic_on_identifier_shaped_text(text in "(UA|ua|МК|MK)?[0-9 \\-ЄІЇҐ.,]{0,32}") {
        let _ = text.parse::<Rnokpp>();
        let _ = text.parse::<Unzr>();
        let _ = text.parse::<Edrpou>();
        let _ = text.parse::<Iban>();
        let _ = text.parse::<Katottg>();
        let _ = text.parse::<PassportNumber>();
        let _ = text.parse::<Money>();
    }
}

#[test]
fn serde_refuses_invalid_identifiers() {
    let valid: Rnokpp = serde_json::from_str("\"3652504575\"").expect("valid");
    assert_eq!(serde_json::to_string(&valid).expect("serializes"), "\"3652504575\"");
    let error = serde_json::from_str::<Rnokpp>("\"1759013770\"").expect_err("bad check digit");
    assert!(error.to_string().contains("check digit"), "{error}");
}
