/// A person's name as the registers keep it: surname, first name and
/// patronymic, in Ukrainian. The patronymic may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PersonName {
    pub last_name: String,
    pub first_name: String,
    pub patronymic: String,
}

impl PersonName {
    pub fn new(last_name: impl Into<String>, first_name: impl Into<String>, patronymic: impl Into<String>) -> Self {
        Self { last_name: last_name.into(), first_name: first_name.into(), patronymic: patronymic.into() }
    }

    /// `Прізвище Ім’я По батькові`, without a trailing space when there is no
    /// patronymic.
    pub fn full_name(&self) -> String {
        [self.last_name.as_str(), self.first_name.as_str(), self.patronymic.as_str()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_name_skips_an_empty_patronymic() {
        assert_eq!(PersonName::new("Шевченко", "Тарас", "Григорович").full_name(), "Шевченко Тарас Григорович");
        assert_eq!(PersonName::new("Шевченко", "Марія", "").full_name(), "Шевченко Марія");
    }
}
