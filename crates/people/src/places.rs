//! Address lines and phone numbers for synthetic persons.

use rand::Rng;

/// Streets as they are written in Ukrainian addresses: the kind abbreviated
/// (вул., просп., бульв., пров., пл.) and the name in the genitive where it
/// honours a person.
pub(crate) const STREETS: &[&str] = &[
    "вул. Шевченка",
    "вул. Івана Франка",
    "вул. Лесі Українки",
    "вул. Грушевського",
    "просп. Незалежності",
    "вул. Соборна",
    "вул. Центральна",
    "вул. Садова",
    "вул. Миру",
    "вул. Молодіжна",
    "вул. Польова",
    "вул. Зелена",
    "вул. Лісова",
    "вул. Шкільна",
    "вул. Київська",
    "вул. Богдана Хмельницького",
    "вул. Героїв Майдану",
    "вул. Січових Стрільців",
    "вул. Гетьмана Мазепи",
    "просп. Свободи",
    "бульв. Тараса Шевченка",
    "вул. Михайла Коцюбинського",
    "вул. Григорія Сковороди",
    "вул. Котляревського",
    "пров. Квітковий",
    "вул. Вишнева",
    "вул. Українська",
    "вул. Ярослава Мудрого",
    "вул. Князя Володимира Великого",
    "просп. Перемоги",
    "вул. Героїв Небесної Сотні",
    "вул. Олени Теліги",
    "вул. Василя Стуса",
    "вул. Пилипа Орлика",
    "вул. Данила Галицького",
    "вул. Митрополита Шептицького",
    "вул. Замкова",
    "вул. Набережна",
    "вул. Привокзальна",
    "вул. Козацька",
    "пров. Шкільний",
    "вул. Степана Бандери",
    "вул. Героїв України",
    "пл. Ринок",
    "вул. Весняна",
    "вул. Каштанова",
];

/// Two-digit mobile operator codes after +380 with a weight each, roughly by
/// subscribers: Kyivstar (67 68 96 97 98 77), Vodafone (50 66 95 99 75),
/// lifecell (63 73 93).
const MOBILE_CODES: &[(u8, u32)] = &[
    (67, 16),
    (97, 14),
    (68, 8),
    (96, 7),
    (98, 6),
    (77, 2),
    (50, 11),
    (66, 9),
    (95, 8),
    (99, 5),
    (75, 1),
    (63, 6),
    (93, 5),
    (73, 2),
];

/// A street address line: `вул. Шевченка, буд. 12, кв. 45` for a flat in an
/// apartment block (about two in three), `вул. Садова, буд. 7а` for a house.
pub(crate) fn address_line(rng: &mut impl Rng) -> String {
    let street = STREETS[rng.gen_range(0..STREETS.len())];
    let in_a_block = rng.gen_bool(0.65);
    let house: u64 = if in_a_block { rng.gen_range(1..=120) } else { rng.gen_range(1..=250) };
    let letter = if rng.gen_bool(0.05) { ["а", "б", "в"][rng.gen_range(0..3)] } else { "" };
    // Written piece by piece: this runs for every household, and `format!`
    // costs several times more.
    let mut line = String::with_capacity(street.len() + 32);
    line.push_str(street);
    line.push_str(", буд. ");
    push_number(&mut line, house, 1);
    line.push_str(letter);
    if in_a_block {
        line.push_str(", кв. ");
        push_number(&mut line, rng.gen_range(1..=240), 1);
    }
    line
}

/// A mobile number in international form, `+380671234567`.
pub(crate) fn mobile_phone(rng: &mut impl Rng) -> String {
    let total: u32 = MOBILE_CODES.iter().map(|(_, weight)| weight).sum();
    let mut pick = rng.gen_range(0..total);
    let mut code = MOBILE_CODES[0].0;
    for &(candidate, weight) in MOBILE_CODES {
        if pick < weight {
            code = candidate;
            break;
        }
        pick -= weight;
    }
    let mut phone = String::with_capacity(13);
    phone.push_str("+380");
    push_number(&mut phone, u64::from(code), 2);
    push_number(&mut phone, rng.gen_range(0..10_000_000), 7);
    phone
}

/// Appends `value` in decimal with at least `width` digits (zeros in front).
pub(crate) fn push_number(text: &mut String, value: u64, width: usize) {
    let mut reversed = [b'0'; 20];
    let mut count = 0;
    let mut rest = value;
    while count < reversed.len() && (rest > 0 || count < width.max(1)) {
        reversed[count] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        count += 1;
    }
    text.extend(reversed[..count].iter().rev().map(|&digit| char::from(digit)));
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn address_lines_have_a_street_a_house_and_sometimes_a_flat() {
        let mut rng = StdRng::seed_from_u64(1);
        let lines: Vec<String> = (0..1000).map(|_| address_line(&mut rng)).collect();
        for line in &lines {
            assert!(STREETS.iter().any(|street| line.starts_with(&format!("{street}, буд. "))), "{line}");
        }
        let flats = lines.iter().filter(|line| line.contains(", кв. ")).count();
        assert!((500..800).contains(&flats), "{flats}");
    }

    #[test]
    fn numbers_are_written_with_their_padding() {
        let written = |value, width| {
            let mut text = String::from("#");
            push_number(&mut text, value, width);
            text
        };
        assert_eq!(written(0, 1), "#0");
        assert_eq!(written(0, 0), "#0");
        assert_eq!(written(42, 1), "#42");
        assert_eq!(written(42, 7), "#0000042");
        assert_eq!(written(1_234_567, 7), "#1234567");
        assert_eq!(written(u64::MAX, 1), format!("#{}", u64::MAX));
        assert_eq!(written(5, 40), format!("#{:020}", 5));
    }

    #[test]
    fn phones_are_ukrainian_mobiles() {
        let mut rng = StdRng::seed_from_u64(2);
        let codes: Vec<String> = MOBILE_CODES.iter().map(|(code, _)| code.to_string()).collect();
        for _ in 0..1000 {
            let phone = mobile_phone(&mut rng);
            assert_eq!(phone.len(), 13, "{phone}");
            assert!(phone.starts_with("+380"), "{phone}");
            assert!(phone[1..].bytes().all(|byte| byte.is_ascii_digit()), "{phone}");
            assert!(codes.iter().any(|code| phone[4..6] == *code), "{phone}");
        }
    }
}
