//! Ukrainian first names, surnames and patronymics: the lists the generator
//! draws from and the rules that give a surname and a patronymic their
//! masculine or feminine form.
//!
//! The lists are in Ukrainian spelling with the typographic apostrophe `’`
//! and roughly in order of frequency (the generator favours the start of
//! each list).

use esocial_identifiers::Sex;

/// Men's first names.
pub const MALE_FIRST_NAMES: &[&str] = &[
    "Олександр",
    "Сергій",
    "Андрій",
    "Володимир",
    "Олексій",
    "Дмитро",
    "Іван",
    "Михайло",
    "Микола",
    "Юрій",
    "Віктор",
    "Василь",
    "Петро",
    "Максим",
    "Павло",
    "Богдан",
    "Артем",
    "Роман",
    "Тарас",
    "Ігор",
    "Олег",
    "Ярослав",
    "Віталій",
    "Євген",
    "Денис",
    "Анатолій",
    "Валерій",
    "Вадим",
    "Степан",
    "Назар",
    "Данило",
    "Кирило",
    "Владислав",
    "Станіслав",
    "Руслан",
    "Григорій",
    "Костянтин",
    "Леонід",
    "Борис",
    "Антон",
    "Валентин",
    "Геннадій",
    "Мирослав",
    "Святослав",
    "В’ячеслав",
    "Ростислав",
    "Остап",
    "Орест",
    "Любомир",
    "Марко",
    "Матвій",
    "Тимофій",
    "Захар",
    "Арсен",
    "Давид",
    "Микита",
    "Ілля",
    "Федір",
    "Семен",
    "Яків",
    "Йосип",
    "Лев",
    "Георгій",
    "Аркадій",
    "Зиновій",
    "Всеволод",
    "Гліб",
    "Лук’ян",
    "Платон",
    "Едуард",
    "Панас",
    "Омелян",
    "Нестор",
    "Устим",
    "Яромир",
    "Прокіп",
    "Кузьма",
    "Лука",
];

/// Women's first names.
pub const FEMALE_FIRST_NAMES: &[&str] = &[
    "Олена",
    "Наталія",
    "Тетяна",
    "Ольга",
    "Ірина",
    "Світлана",
    "Оксана",
    "Юлія",
    "Марія",
    "Анна",
    "Катерина",
    "Людмила",
    "Галина",
    "Надія",
    "Валентина",
    "Вікторія",
    "Лариса",
    "Алла",
    "Інна",
    "Яна",
    "Христина",
    "Софія",
    "Анастасія",
    "Дарина",
    "Олександра",
    "Ганна",
    "Віра",
    "Любов",
    "Соломія",
    "Уляна",
    "Зоряна",
    "Мирослава",
    "Ярослава",
    "Богдана",
    "Леся",
    "Лілія",
    "Мар’яна",
    "Роксолана",
    "Таїсія",
    "Тамара",
    "Зінаїда",
    "Ніна",
    "Раїса",
    "Лідія",
    "Євгенія",
    "Валерія",
    "Діана",
    "Аліна",
    "Вероніка",
    "Злата",
    "Поліна",
    "Єва",
    "Мілана",
    "Василина",
    "Стефанія",
    "Емілія",
    "Олеся",
    "Антоніна",
    "Жанна",
    "Ксенія",
    "Маргарита",
    "Орися",
    "Зоя",
    "Євдокія",
    "Ангеліна",
    "Кіра",
    "Дарія",
    "Віталіна",
    "Ярина",
    "Устина",
];

/// Surnames in their masculine form; [`surname_for`] gives the feminine.
pub const SURNAMES: &[&str] = &[
    // Forms the same for men and women.
    "Коваленко",
    "Бондаренко",
    "Ткаченко",
    "Шевченко",
    "Кравченко",
    "Бойко",
    "Мельник",
    "Шевчук",
    "Поліщук",
    "Бондар",
    "Ткачук",
    "Олійник",
    "Лисенко",
    "Марченко",
    "Савченко",
    "Руденко",
    "Мороз",
    "Петренко",
    "Кравчук",
    "Коваль",
    "Ковальчук",
    "Левченко",
    "Гончаренко",
    "Литвиненко",
    "Павленко",
    "Карпенко",
    "Клименко",
    "Романенко",
    "Сидоренко",
    "Гаврилюк",
    "Мартинюк",
    "Костенко",
    "Пономаренко",
    "Кузьменко",
    "Харченко",
    "Захарченко",
    "Білоус",
    "Савчук",
    "Гриценко",
    "Лук’яненко",
    "Дем’яненко",
    "Кулик",
    "Яковенко",
    "Мазур",
    "Власенко",
    "Остапенко",
    "Головко",
    "Тимошенко",
    "Давиденко",
    "Панченко",
    "Ярошенко",
    "Стеценко",
    "Онищенко",
    "Іващенко",
    "Гаращенко",
    "Михайленко",
    "Борисенко",
    "Кириленко",
    "Приходько",
    "Семенюк",
    "Іванчук",
    "Федорчук",
    "Вакуленко",
    "Гуменюк",
    "Юрченко",
    "Дяченко",
    "Дорошенко",
    "Зінченко",
    "Кучер",
    "Мельничук",
    "Пилипенко",
    "Прокопенко",
    "Тарасенко",
    "Фесенко",
    "Хоменко",
    "Шаповал",
    "Юхименко",
    "Степаненко",
    "Нестеренко",
    "Назаренко",
    "Максименко",
    "Білик",
    "Гнатюк",
    "Дмитренко",
    "Ігнатенко",
    "Пасічник",
    "Різник",
    "Рибак",
    "Самойленко",
    "Слюсар",
    "Сорока",
    "Сушко",
    "Ткач",
    "Федоренко",
    "Філіпчук",
    "Цимбал",
    "Чумак",
    "Щербак",
    "Яремчук",
    "Костюк",
    "Гончарук",
    "Паламарчук",
    "Данилюк",
    "Олексюк",
    "Климчук",
    "Стасюк",
    "Зайченко",
    "Вовк",
    "Кушнір",
    "Бабенко",
    "Бабич",
    "Винник",
    "Гайдай",
    "Гордієнко",
    "Грищенко",
    "Довженко",
    "Жук",
    "Заїка",
    "Зозуля",
    "Кондратюк",
    "Лук’янчук",
    "Нечипорук",
    "Остапчук",
    "Пархоменко",
    "Петрук",
    "Присяжнюк",
    "Середа",
    "Сидорук",
    "Симоненко",
    "Скиба",
    "Собко",
    "Стельмах",
    "Чабан",
    "Черненко",
    "Яценко",
    "Ящук",
    "Юрків",
    "Петрів",
    "Іванів",
    "Гаєвич",
    "Маринич",
    "Казимирчук",
    "Ґалаґан",
    "Троць",
    "Дідух",
    "Гуцул",
    "Кобзар",
    "Ґудзь",
    "Щур",
    "Дзюба",
    "Ковтун",
    "Вдовиченко",
    "Левчук",
    "Коцюба",
    "Прокопчук",
    "Андрійчук",
    "Бабій",
    "Гордійчук",
    "Шпак",
    "Марчук",
    "Онищук",
    // Adjectival: -ий becomes -а.
    "Ковальський",
    "Ковалевський",
    "Лозинський",
    "Левицький",
    "Рибчинський",
    "Згурський",
    "Вишневський",
    "Яворський",
    "Грушевський",
    "Городецький",
    "Вербицький",
    "Козловський",
    "Садовський",
    "Соколовський",
    "Томашевський",
    "Яновський",
    "Полянський",
    "Чайковський",
    "Добровольський",
    "Березовський",
    "Липовецький",
    "Заболотний",
    "Нагорний",
    "Бережний",
    "Сагайдачний",
    "Мирний",
    "Лозовий",
    "Осадчий",
    "Білий",
    "Гладкий",
    // Possessive: -ов, -ев, -єв, -ін, -ин take -а.
    "Іванов",
    "Ковальов",
    "Бондарев",
    "Кузьмін",
    "Соловйов",
    "Стефанишин",
];

/// The form of a surname for a person of the given sex, from its masculine
/// form (as a man bears it):
///
/// - adjectival surnames in `-ий` take `-а`: `Ковальський` → `Ковальська`,
///   `Білий` → `Біла`, `Осадчий` → `Осадча`;
/// - possessive surnames in `-ов`, `-ев`, `-єв`, `-ін`, `-їн`, `-ин` take `-а`:
///   `Іванов` → `Іванова`, `Кузьмін` → `Кузьміна`, `Стефанишин` →
///   `Стефанишина`;
/// - all others are the same for men and women: `Коваленко`, `Петрук`,
///   `Мельник`, `Петрів` (`-ів` does not change), `Бабій`.
///
/// Soft adjectival surnames in `-ій` (`Крайній` → `Крайня`) cannot be told
/// from nouns in `-ій` (`Бабій`, `Гордій`) by their ending and are left as
/// they are. A double surname takes the form part by part.
///
/// ```
/// use esocial_people::{Sex, names::surname_for};
/// assert_eq!(surname_for("Ковальський", Sex::Female), "Ковальська");
/// assert_eq!(surname_for("Коваленко", Sex::Female), "Коваленко");
/// assert_eq!(surname_for("Ковальський", Sex::Male), "Ковальський");
/// ```
pub fn surname_for(masculine: &str, sex: Sex) -> String {
    match sex {
        Sex::Male => masculine.to_owned(),
        Sex::Female if !masculine.contains('-') => feminine_surname(masculine),
        Sex::Female => masculine.split('-').map(feminine_surname).collect::<Vec<_>>().join("-"),
    }
}

/// The feminine form of one masculine surname (no hyphen).
fn feminine_surname(masculine: &str) -> String {
    if let Some(stem) = masculine.strip_suffix("ий") {
        return joined(stem, "а");
    }
    let possessive = ["ов", "ев", "єв", "ін", "їн", "ин"].iter().any(|ending| masculine.ends_with(ending));
    if possessive { joined(masculine, "а") } else { masculine.to_owned() }
}

/// `stem` followed by `suffix` (cheaper than `format!`, which matters to the
/// generator).
fn joined(stem: &str, suffix: &str) -> String {
    let mut word = String::with_capacity(stem.len() + suffix.len());
    word.push_str(stem);
    word.push_str(suffix);
    word
}

/// Patronymics that do not follow the rules of [`patronymic`]: the
/// masculine and the feminine form.
const IRREGULAR_PATRONYMICS: &[(&str, &str, &str)] = &[
    ("Микола", "Миколайович", "Миколаївна"),
    ("Ілля", "Ілліч", "Іллівна"),
    ("Кузьма", "Кузьмич", "Кузьмівна"),
    ("Хома", "Хомич", "Хомівна"),
    ("Лука", "Лукич", "Луківна"),
    ("Яків", "Якович", "Яківна"),
    ("Григорій", "Григорович", "Григорівна"),
    ("Лев", "Львович", "Львівна"),
    ("Федір", "Федорович", "Федорівна"),
    ("Сидір", "Сидорович", "Сидорівна"),
    ("Прокіп", "Прокопович", "Прокопівна"),
    ("Ничипір", "Ничипорович", "Ничипорівна"),
];

/// The patronymic a man's first name gives a son or a daughter.
///
/// The rules (the suffixes are -ович/-евич for a son, -івна/-ївна for a
/// daughter):
///
/// | the name ends in | son | daughter | e.g. |
/// | --- | --- | --- | --- |
/// | a consonant | + ович | + івна | Іван → Іванович, Іванівна |
/// | -о, -а | -о/-а → ович | → івна | Петро → Петрович, Петрівна; Микита → Микитович, Микитівна |
/// | -ь | + ович | -ь → івна | Василь → Васильович, Василівна |
/// | -й | + ович | -й → ївна | Олексій → Олексійович, Олексіївна |
///
/// and the traditional irregular forms: Микола → Миколайович, Миколаївна;
/// Ілля → Ілліч, Іллівна; Кузьма → Кузьмич; Хома → Хомич; Лука → Лукич;
/// Яків → Якович, Яківна; Григорій → Григорович, Григорівна; Лев → Львович;
/// Федір → Федорович; Сидір → Сидорович; Прокіп → Прокопович; Ничипір →
/// Ничипорович. The name is expected in its usual capitalisation; for an
/// empty name the patronymic is empty.
///
/// ```
/// use esocial_people::{Sex, names::patronymic};
/// assert_eq!(patronymic("Петро", Sex::Male), "Петрович");
/// assert_eq!(patronymic("Олексій", Sex::Female), "Олексіївна");
/// assert_eq!(patronymic("Ілля", Sex::Male), "Ілліч");
/// ```
pub fn patronymic(father: &str, sex: Sex) -> String {
    let father = father.trim();
    if father.is_empty() {
        return String::new();
    }
    if let Some(&(_, son, daughter)) = IRREGULAR_PATRONYMICS.iter().find(|(name, _, _)| *name == father) {
        return match sex {
            Sex::Male => son,
            Sex::Female => daughter,
        }
        .to_owned();
    }
    let (stem, son_suffix, daughter_stem, daughter_suffix) = if let Some(stem) = father.strip_suffix('й') {
        (father, "ович", stem, "ївна")
    } else if let Some(stem) = father.strip_suffix('ь') {
        (father, "ович", stem, "івна")
    } else if let Some(stem) = father.strip_suffix(['о', 'а', 'я']) {
        (stem, "ович", stem, "івна")
    } else {
        (father, "ович", father, "івна")
    };
    match sex {
        Sex::Male => joined(stem, son_suffix),
        Sex::Female => joined(daughter_stem, daughter_suffix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_are_large_enough_and_have_no_repeats() {
        for (list, minimum) in [(MALE_FIRST_NAMES, 60), (FEMALE_FIRST_NAMES, 60), (SURNAMES, 150)] {
            assert!(list.len() >= minimum, "{} < {minimum}", list.len());
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "a name is repeated");
        }
    }

    #[test]
    fn the_lists_are_in_ukrainian_spelling_with_the_typographic_apostrophe() {
        let ukrainian = |name: &str| {
            name.chars().all(|letter| {
                matches!(letter, 'а'..='я' | 'А'..='Я' | 'є' | 'і' | 'ї' | 'ґ' | 'Є' | 'І' | 'Ї' | 'Ґ' | '’')
                    && !matches!(letter, 'ъ' | 'ы' | 'э' | 'Ъ' | 'Ы' | 'Э')
            })
        };
        for name in MALE_FIRST_NAMES.iter().chain(FEMALE_FIRST_NAMES).chain(SURNAMES) {
            assert!(ukrainian(name), "{name}");
            assert!(name.chars().next().is_some_and(char::is_uppercase), "{name}");
        }
    }

    #[test]
    fn surnames_agree_with_sex() {
        let pairs = [
            ("Коваленко", "Коваленко"),
            ("Петрук", "Петрук"),
            ("Мельник", "Мельник"),
            ("Петрів", "Петрів"),
            ("Бабій", "Бабій"),
            ("Ґалаґан", "Ґалаґан"),
            ("Ковальський", "Ковальська"),
            ("Левицький", "Левицька"),
            ("Згурський", "Згурська"),
            ("Заболотний", "Заболотна"),
            ("Осадчий", "Осадча"),
            ("Білий", "Біла"),
            ("Іванов", "Іванова"),
            ("Ковальов", "Ковальова"),
            ("Бондарев", "Бондарева"),
            ("Кузьмін", "Кузьміна"),
            ("Стефанишин", "Стефанишина"),
            ("Коваленко-Ковальський", "Коваленко-Ковальська"),
        ];
        for (masculine, feminine) in pairs {
            assert_eq!(surname_for(masculine, Sex::Female), feminine, "{masculine}");
            assert_eq!(surname_for(masculine, Sex::Male), masculine);
        }
        assert_eq!(surname_for("", Sex::Female), "");
    }

    #[test]
    fn patronymics_by_the_rules() {
        let cases = [
            ("Іван", "Іванович", "Іванівна"),
            ("Петро", "Петрович", "Петрівна"),
            ("Олексій", "Олексійович", "Олексіївна"),
            ("Андрій", "Андрійович", "Андріївна"),
            ("Сергій", "Сергійович", "Сергіївна"),
            ("Юрій", "Юрійович", "Юріївна"),
            ("Матвій", "Матвійович", "Матвіївна"),
            ("Василь", "Васильович", "Василівна"),
            ("Ігор", "Ігорович", "Ігорівна"),
            ("Михайло", "Михайлович", "Михайлівна"),
            ("Павло", "Павлович", "Павлівна"),
            ("Дмитро", "Дмитрович", "Дмитрівна"),
            ("Данило", "Данилович", "Данилівна"),
            ("Марко", "Маркович", "Марківна"),
            ("Микита", "Микитович", "Микитівна"),
            ("Олександр", "Олександрович", "Олександрівна"),
            ("Ярослав", "Ярославович", "Ярославівна"),
            ("В’ячеслав", "В’ячеславович", "В’ячеславівна"),
            ("Лук’ян", "Лук’янович", "Лук’янівна"),
            ("Гліб", "Глібович", "Глібівна"),
            ("Олег", "Олегович", "Олегівна"),
        ];
        for (father, son, daughter) in cases {
            assert_eq!(patronymic(father, Sex::Male), son, "{father}");
            assert_eq!(patronymic(father, Sex::Female), daughter, "{father}");
        }
    }

    #[test]
    fn irregular_patronymics() {
        let cases = [
            ("Ілля", "Ілліч", "Іллівна"),
            ("Микола", "Миколайович", "Миколаївна"),
            ("Григорій", "Григорович", "Григорівна"),
            ("Яків", "Якович", "Яківна"),
            ("Лев", "Львович", "Львівна"),
            ("Федір", "Федорович", "Федорівна"),
            ("Кузьма", "Кузьмич", "Кузьмівна"),
            ("Лука", "Лукич", "Луківна"),
            ("Прокіп", "Прокопович", "Прокопівна"),
        ];
        for (father, son, daughter) in cases {
            assert_eq!(patronymic(father, Sex::Male), son);
            assert_eq!(patronymic(father, Sex::Female), daughter);
        }
    }

    #[test]
    fn every_listed_man_gives_a_patronymic_in_the_expected_suffixes() {
        for father in MALE_FIRST_NAMES {
            let son = patronymic(father, Sex::Male);
            let daughter = patronymic(father, Sex::Female);
            assert!(["ович", "ич", "іч"].iter().any(|suffix| son.ends_with(suffix)), "{son}");
            assert!(daughter.ends_with("івна") || daughter.ends_with("ївна"), "{daughter}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert_eq!(patronymic("", Sex::Male), "");
        assert_eq!(patronymic("  Петро ", Sex::Female), "Петрівна");
        assert_eq!(patronymic("й", Sex::Female), "ївна");
    }
}
