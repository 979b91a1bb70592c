//! A deterministic generator of realistic synthetic persons, in households,
//! for tests, the sandbox and benchmarks.
//!
//! The same seed, territories and reference date give the same households,
//! person for person, on every run of the same build (the random source is
//! `rand`'s `StdRng`, whose stream may change with a new `rand` version).
//!
//! A household lives at one address in one territory (drawn from the list
//! given) and is one of:
//!
//! | share | who |
//! | --- | --- |
//! | 30 % | one adult, 60 % of them 60 or older (of those, 70 % women) |
//! | 27 % | a couple without children under 18, the husband 55 or older in 65 % of them; two in five of those where he is 42 or older have 1–2 grown children (18–35) at home |
//! | 32 % | a couple with 1–4 children under 18 (1: 60 %, 2: 30 %, 3: 7 %, 4: 3 %) |
//! | 11 % | a mother (85 %) or a father with 1–4 children under 18 |
//!
//! Couples are a man and a woman, the wife from six years younger to two
//! years older; 85 % share the husband's surname (in its feminine form:
//! `Ковальський`/`Ковальська`), the others keep their own. Children bear the
//! father's surname (in a tenth of the couples with two surnames, the
//! mother's), in the form for their sex, and a patronymic from the father's
//! first name; a single mother's children have her surname and the
//! patronymic of an absent father. A mother is 18–45 at each birth, a father
//! at least 18, and siblings are born 400–1,500 days apart. Ages are counted
//! on the reference date: adults 18–90, children 0–17 (grown children
//! 18–35). The resulting age mix (measured over a million persons: 28 %
//! under 18, 52 % 18–59, 20 % 60 or older) is younger than Ukraine's, as
//! households of three generations are not generated.
//!
//! Every person has an RNOKPP and a UNZR that agree with the birth date (and
//! the sex), unique within the run (how: the crate documentation), an ID
//! card from the age of 14 (when it becomes mandatory; none before), a mobile
//! phone from the age of 10 (and not for a quarter of those over 75), and the
//! household's territory and address line.

use chrono::{Datelike, Months, NaiveDate, TimeDelta};
use esocial_identifiers::{IdentifierError, Katottg, PassportNumber, Rnokpp, Sex, Unzr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::allocation::{Allocator, day_number};
use crate::names::{FEMALE_FIRST_NAMES, MALE_FIRST_NAMES, SURNAMES, patronymic, surname_for};
use crate::places::{address_line, mobile_phone};

/// The date ages are counted on unless another is given: 2026-01-01.
pub const DEFAULT_REFERENCE_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2026, 1, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};
/// The youngest age of an adult.
pub const ADULT_AGE: u32 = 18;
/// The oldest age generated.
pub const MAX_AGE: u32 = 90;
/// The age from which a citizen must have a passport (an ID card).
pub const ID_CARD_AGE: u32 = 14;

/// The oldest age of a grown child living with the parents.
const GROWN_CHILD_MAX_AGE: u32 = 35;
/// Couples where the husband is at least this old may have grown children at
/// home.
const GROWN_CHILDREN_FATHER_AGE: u32 = 42;

/// The last day the RNOKPP's 5-digit day count can encode (day 99,999).
const LAST_RNOKPP_DAY: i64 = 99_999;

/// Why the generator cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorError {
    #[error("the generator needs at least one territory")]
    NoTerritories,
    #[error(
        "reference date {0} is outside 1990-12-30..=2173-10-14, the dates whose last {MAX_AGE} years an RNOKPP can encode"
    )]
    ReferenceDateOutOfRange(NaiveDate),
    #[error("every RNOKPP for {sex:?} persons born between {from} and {to} is taken")]
    Exhausted { sex: Sex, from: NaiveDate, to: NaiveDate },
    #[error("all 1,000,000,000 ID-card numbers are taken")]
    PassportsExhausted,
    #[error("a date fell outside the calendar")]
    DateOutOfRange,
    #[error("an identifier could not be built: {0}")]
    Identifier(#[from] IdentifierError),
}

/// One synthetic person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The surname in the form for the person's sex.
    pub last_name: String,
    pub first_name: String,
    pub patronymic: String,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub rnokpp: Rnokpp,
    pub unzr: Unzr,
    /// The ID card; `None` under [`ID_CARD_AGE`].
    pub passport: Option<PassportNumber>,
    pub territory: Katottg,
    /// The street address line (`вул. Шевченка, буд. 12, кв. 45`); the
    /// settlement is the territory.
    pub address: String,
    /// `+380` and 9 digits; `None` for young children and some of the old.
    pub phone: Option<String>,
}

impl Person {
    /// `Прізвище Ім’я По батькові`.
    pub fn full_name(&self) -> String {
        format!("{} {} {}", self.last_name, self.first_name, self.patronymic)
    }

    /// The age in completed years on a date (0 before the birth date).
    pub fn age_on(&self, date: NaiveDate) -> u32 {
        completed_years(self.birth_date, date)
    }
}

/// How a relative is related to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Spouse,
    Parent,
    Child,
}

/// A family link within a household: `relative` is `person`'s `relation`
/// (both are indexes into [`Household::members`]). Every link is stored in
/// both directions: a child's `Parent` link has the parent's `Child` link
/// beside it, and spouses link each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Link {
    pub person: usize,
    pub relative: usize,
    pub relation: Relation,
}

/// People living together at one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Household {
    /// 1 for the first household of a generator run, then 2, 3, …
    pub id: u64,
    pub territory: Katottg,
    pub address: String,
    /// Adults first (husband before wife), then children, eldest first.
    pub members: Vec<Person>,
    pub links: Vec<Link>,
}

impl Household {
    /// The members that are `person`'s `relation` (its spouse, its parents,
    /// its children).
    pub fn relatives(&self, person: usize, relation: Relation) -> impl Iterator<Item = usize> + '_ {
        self.links
            .iter()
            .filter(move |link| link.person == person && link.relation == relation)
            .map(|link| link.relative)
    }

    fn link_both_ways(&mut self, person: usize, relative: usize, relation: Relation) {
        let inverse = match relation {
            Relation::Spouse => Relation::Spouse,
            Relation::Parent => Relation::Child,
            Relation::Child => Relation::Parent,
        };
        self.links.push(Link { person, relative, relation });
        self.links.push(Link { person: relative, relative: person, relation: inverse });
    }
}

/// The age in completed years on `on` of a person born on `birth`.
pub(crate) fn completed_years(birth: NaiveDate, on: NaiveDate) -> u32 {
    let before_birthday = (on.month(), on.day()) < (birth.month(), birth.day());
    u32::try_from(on.year() - birth.year() - i32::from(before_birthday)).unwrap_or(0)
}

/// The birth dates of persons who are `age` on `reference`.
fn year_window(reference: NaiveDate, age: u32) -> Result<(NaiveDate, NaiveDate), GeneratorError> {
    let latest = years_before(reference, age)?;
    let earliest = years_before(reference, age + 1)?.succ_opt().ok_or(GeneratorError::DateOutOfRange)?;
    Ok((earliest, latest))
}

fn years_before(date: NaiveDate, years: u32) -> Result<NaiveDate, GeneratorError> {
    date.checked_sub_months(Months::new(years * 12)).ok_or(GeneratorError::DateOutOfRange)
}

fn years_after(date: NaiveDate, years: u32) -> Result<NaiveDate, GeneratorError> {
    date.checked_add_months(Months::new(years * 12)).ok_or(GeneratorError::DateOutOfRange)
}

fn days_after(date: NaiveDate, days: i64) -> Result<NaiveDate, GeneratorError> {
    date.checked_add_signed(TimeDelta::days(days)).ok_or(GeneratorError::DateOutOfRange)
}

/// When a person to be generated was born: at an age (any day of that year
/// of age), or on about a given day.
#[derive(Clone, Copy)]
enum Birth {
    Age(u32),
    On(NaiveDate),
}

/// The children a household has at home: under 18, or grown (18–35).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Children {
    Minors,
    Grown,
}

/// What is decided about a member before identifiers are allocated.
#[derive(Clone, Copy)]
struct Member {
    /// The masculine form of the surname.
    family: &'static str,
    sex: Sex,
    first_name: &'static str,
    /// The first name the patronymic comes from.
    father: &'static str,
    birth: Birth,
}

/// The couple at the head of a household.
struct Couple {
    husband: usize,
    wife: usize,
    husband_age: u32,
    husband_name: &'static str,
    family: &'static str,
    wife_family: &'static str,
}

/// The generator of households; see the module documentation.
pub struct Generator {
    rng: StdRng,
    territories: Vec<Katottg>,
    reference_date: NaiveDate,
    allocator: Allocator,
    households: u64,
    persons: u64,
}

impl Generator {
    /// A generator with ages counted on [`DEFAULT_REFERENCE_DATE`].
    /// Fails when `territories` is empty.
    pub fn new(seed: u64, territories: Vec<Katottg>) -> Result<Self, GeneratorError> {
        Self::with_reference_date(seed, territories, DEFAULT_REFERENCE_DATE)
    }

    /// A generator with ages counted on `reference_date`. Fails when
    /// `territories` is empty or when birth dates up to [`MAX_AGE`] years
    /// before the date cannot be encoded in an RNOKPP (the reference date
    /// must be within 1990-12-30..=2173-10-14).
    pub fn with_reference_date(
        seed: u64,
        territories: Vec<Katottg>,
        reference_date: NaiveDate,
    ) -> Result<Self, GeneratorError> {
        if territories.is_empty() {
            return Err(GeneratorError::NoTerritories);
        }
        let out_of_range = GeneratorError::ReferenceDateOutOfRange(reference_date);
        let (earliest, _) = year_window(reference_date, MAX_AGE).map_err(|_| out_of_range.clone())?;
        if day_number(earliest) < 0 || day_number(reference_date) > LAST_RNOKPP_DAY {
            return Err(out_of_range);
        }
        Ok(Self {
            rng: StdRng::seed_from_u64(seed),
            territories,
            reference_date,
            allocator: Allocator::new(seed, earliest, reference_date),
            households: 0,
            persons: 0,
        })
    }

    /// The date ages are counted on.
    pub fn reference_date(&self) -> NaiveDate {
        self.reference_date
    }

    /// How many households have been generated.
    pub fn households_generated(&self) -> u64 {
        self.households
    }

    /// How many persons have been generated.
    pub fn persons_generated(&self) -> u64 {
        self.persons
    }

    /// The persons of the following households, one by one.
    pub fn persons(&mut self) -> impl Iterator<Item = Person> + '_ {
        self.flat_map(|household| household.members)
    }

    /// The next household. An error means the identifiers ran out (see
    /// [`GeneratorError::Exhausted`]); no identifier is ever repeated.
    pub fn next_household(&mut self) -> Result<Household, GeneratorError> {
        let territory = self.territories[self.rng.gen_range(0..self.territories.len())];
        let mut household = Household {
            id: self.households + 1,
            territory,
            address: address_line(&mut self.rng),
            members: Vec::new(),
            links: Vec::new(),
        };
        match self.rng.gen_range(0..100) {
            0..30 => self.add_alone(&mut household)?,
            30..57 => {
                let couple = self.add_couple(&mut household, false)?;
                if couple.husband_age >= GROWN_CHILDREN_FATHER_AGE && self.rng.gen_bool(0.4) {
                    self.add_couples_children(&mut household, &couple, Children::Grown)?;
                }
            }
            57..89 => {
                let couple = self.add_couple(&mut household, true)?;
                self.add_couples_children(&mut household, &couple, Children::Minors)?;
            }
            _ => self.add_single_parent(&mut household)?,
        }
        self.households += 1;
        Ok(household)
    }

    fn add_alone(&mut self, household: &mut Household) -> Result<(), GeneratorError> {
        let age = match self.rng.gen_range(0..100) {
            0..12 => self.rng.gen_range(18..=29),
            12..24 => self.rng.gen_range(30..=44),
            24..40 => self.rng.gen_range(45..=59),
            40..75 => self.rng.gen_range(60..=74),
            _ => self.rng.gen_range(75..=MAX_AGE),
        };
        let female_share = if age >= 60 { 0.7 } else { 0.5 };
        let sex = if self.rng.gen_bool(female_share) { Sex::Female } else { Sex::Male };
        let member = Member {
            family: self.surname(),
            sex,
            first_name: self.first_name(sex),
            father: self.first_name(Sex::Male),
            birth: Birth::Age(age),
        };
        self.add_member(household, member)?;
        Ok(())
    }

    fn add_couple(&mut self, household: &mut Household, with_children: bool) -> Result<Couple, GeneratorError> {
        let (husband_age, wife_age) = if with_children {
            let wife: u32 = self.rng.gen_range(20..=50);
            let husband = (wife + self.rng.gen_range(0..=8)).saturating_sub(2).clamp(19, MAX_AGE);
            (husband, wife)
        } else {
            let husband: u32 = match self.rng.gen_range(0..100) {
                0..15 => self.rng.gen_range(20..=34),
                15..35 => self.rng.gen_range(35..=54),
                _ => self.rng.gen_range(55..=88),
            };
            let wife = (husband + self.rng.gen_range(0..=8)).saturating_sub(6).clamp(ADULT_AGE, MAX_AGE);
            (husband, wife)
        };
        let family = self.surname();
        let wife_family = if self.rng.gen_bool(0.85) { family } else { self.surname() };
        let husband_name = self.first_name(Sex::Male);
        let husband_father = self.first_name(Sex::Male);
        let husband = self.add_member(
            household,
            Member {
                family,
                sex: Sex::Male,
                first_name: husband_name,
                father: husband_father,
                birth: Birth::Age(husband_age),
            },
        )?;
        let wife_name = self.first_name(Sex::Female);
        let wife_father = self.first_name(Sex::Male);
        let wife = self.add_member(
            household,
            Member {
                family: wife_family,
                sex: Sex::Female,
                first_name: wife_name,
                father: wife_father,
                birth: Birth::Age(wife_age),
            },
        )?;
        household.link_both_ways(husband, wife, Relation::Spouse);
        Ok(Couple { husband, wife, husband_age, husband_name, family, wife_family })
    }

    /// Adds a couple's children: the husband's surname (in a tenth of the
    /// couples with two surnames, the wife's) and his name as patronymic.
    fn add_couples_children(
        &mut self,
        household: &mut Household,
        couple: &Couple,
        children: Children,
    ) -> Result<(), GeneratorError> {
        let family = if couple.wife_family != couple.family && self.rng.gen_bool(0.1) {
            couple.wife_family
        } else {
            couple.family
        };
        self.add_children(household, &[couple.husband, couple.wife], family, couple.husband_name, children)
    }

    fn add_single_parent(&mut self, household: &mut Household) -> Result<(), GeneratorError> {
        let sex = if self.rng.gen_bool(0.85) { Sex::Female } else { Sex::Male };
        let age = match sex {
            Sex::Female => self.rng.gen_range(20..=50),
            Sex::Male => self.rng.gen_range(22..=55),
        };
        let family = self.surname();
        let first_name = self.first_name(sex);
        let father = self.first_name(Sex::Male);
        let parent = self.add_member(household, Member { family, sex, first_name, father, birth: Birth::Age(age) })?;
        // A single mother's children are named after their absent father.
        let children_father = match sex {
            Sex::Male => first_name,
            Sex::Female => self.first_name(Sex::Male),
        };
        self.add_children(household, &[parent], family, children_father, Children::Minors)
    }

    /// Adds children of `parents` (as many as planned and the parents' ages
    /// allow), with the surname `family` and a patronymic from `father`.
    fn add_children(
        &mut self,
        household: &mut Household,
        parents: &[usize],
        family: &'static str,
        father: &'static str,
        children: Children,
    ) -> Result<(), GeneratorError> {
        let births = self.birth_dates_of_children(household, parents, children)?;
        let mut names: Vec<&'static str> = Vec::with_capacity(births.len());
        for birth in births {
            let sex = if self.rng.gen_bool(0.51) { Sex::Male } else { Sex::Female };
            let first_name = self.sibling_name(sex, &names);
            names.push(first_name);
            let child =
                self.add_member(household, Member { family, sex, first_name, father, birth: Birth::On(birth) })?;
            for &parent in parents {
                household.link_both_ways(child, parent, Relation::Parent);
            }
        }
        Ok(())
    }

    /// Planned birth dates of the children, eldest first: each after every
    /// parent's 18th birthday, before the mother's 46th, at the ages of
    /// `children`, and 400–1,500 days apart.
    fn birth_dates_of_children(
        &mut self,
        household: &Household,
        parents: &[usize],
        children: Children,
    ) -> Result<Vec<NaiveDate>, GeneratorError> {
        let (wanted, youngest, oldest) = match children {
            Children::Minors => {
                let wanted = match self.rng.gen_range(0..100) {
                    0..60 => 1,
                    60..90 => 2,
                    90..97 => 3,
                    _ => 4,
                };
                (wanted, 0, ADULT_AGE - 1)
            }
            Children::Grown => (if self.rng.gen_bool(0.7) { 1 } else { 2 }, ADULT_AGE, GROWN_CHILD_MAX_AGE),
        };
        let (mut earliest, _) = year_window(self.reference_date, oldest)?;
        let (_, mut latest) = year_window(self.reference_date, youngest)?;
        for person in parents.iter().filter_map(|&index| household.members.get(index)) {
            earliest = earliest.max(years_after(person.birth_date, ADULT_AGE)?);
            if person.sex == Sex::Female {
                latest = latest.min(years_after(person.birth_date, 46)?.pred_opt().unwrap_or(latest));
            }
        }
        if earliest > latest {
            return Ok(Vec::new());
        }
        let gaps: Vec<i64> = (1..wanted).map(|_| self.rng.gen_range(400..=1500)).collect();
        let last_eldest = days_after(latest, -gaps.iter().sum::<i64>())?.max(earliest);
        let mut birth = days_after(earliest, self.rng.gen_range(0..=(last_eldest - earliest).num_days()))?;
        let mut births = vec![birth];
        for gap in gaps {
            birth = days_after(birth, gap)?;
            if birth > latest {
                break;
            }
            births.push(birth);
        }
        Ok(births)
    }

    /// Allocates a member's identifiers, adds the member and returns its index.
    fn add_member(&mut self, household: &mut Household, member: Member) -> Result<usize, GeneratorError> {
        let (wanted, window) = match member.birth {
            Birth::Age(age) => {
                let window = year_window(self.reference_date, age)?;
                let offset = self.rng.gen_range(0..=(window.1 - window.0).num_days());
                (days_after(window.0, offset)?, window)
            }
            Birth::On(date) => (date, year_window(self.reference_date, completed_years(date, self.reference_date))?),
        };
        let identity = self.allocator.identity(wanted, window, member.sex)?;
        let age = completed_years(identity.birth_date, self.reference_date);
        let passport = if age >= ID_CARD_AGE { Some(self.allocator.passport()?) } else { None };
        let phone = self.phone(age);
        household.members.push(Person {
            last_name: surname_for(member.family, member.sex),
            first_name: member.first_name.to_owned(),
            patronymic: patronymic(member.father, member.sex),
            sex: member.sex,
            birth_date: identity.birth_date,
            rnokpp: identity.rnokpp,
            unzr: identity.unzr,
            passport,
            territory: household.territory,
            address: household.address.clone(),
            phone,
        });
        self.persons += 1;
        Ok(household.members.len() - 1)
    }

    fn phone(&mut self, age: u32) -> Option<String> {
        let has_one = age >= 10 && (age < 75 || self.rng.gen_bool(0.75));
        has_one.then(|| mobile_phone(&mut self.rng))
    }

    /// A name from a list, the earlier ones more often (the smaller of two
    /// uniform picks: the first is chosen about 2/n of the time, the last
    /// 1/n²).
    fn pick(&mut self, list: &[&'static str]) -> &'static str {
        let index = self.rng.gen_range(0..list.len()).min(self.rng.gen_range(0..list.len()));
        list[index]
    }

    fn first_name(&mut self, sex: Sex) -> &'static str {
        match sex {
            Sex::Male => self.pick(MALE_FIRST_NAMES),
            Sex::Female => self.pick(FEMALE_FIRST_NAMES),
        }
    }

    fn surname(&mut self) -> &'static str {
        self.pick(SURNAMES)
    }

    /// A first name that no sibling has.
    fn sibling_name(&mut self, sex: Sex, taken: &[&'static str]) -> &'static str {
        let list = match sex {
            Sex::Male => MALE_FIRST_NAMES,
            Sex::Female => FEMALE_FIRST_NAMES,
        };
        let name = self.pick(list);
        if !taken.contains(&name) {
            return name;
        }
        // At most three names are taken, so one of the first four is free.
        list.iter().copied().find(|candidate| !taken.contains(candidate)).unwrap_or(name)
    }
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Generator")
            .field("reference_date", &self.reference_date)
            .field("territories", &self.territories.len())
            .field("households", &self.households)
            .field("persons", &self.persons)
            .finish_non_exhaustive()
    }
}

/// Households until the identifiers run out.
impl Iterator for Generator {
    type Item = Household;

    fn next(&mut self) -> Option<Household> {
        self.next_household().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn territories() -> Vec<Katottg> {
        ["UA71020010000037786", "UA80000000000093317", "UA46060250010015970"]
            .iter()
            .map(|code| code.parse().expect("valid KATOTTG"))
            .collect()
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
    }

    fn households(seed: u64, count: usize) -> Vec<Household> {
        Generator::new(seed, territories()).expect("generator").take(count).collect()
    }

    #[test]
    fn refuses_no_territories_and_reference_dates_rnokpp_cannot_cover() {
        assert_eq!(Generator::new(1, Vec::new()).err(), Some(GeneratorError::NoTerritories));
        for reference in [date(1980, 1, 1), date(2200, 1, 1)] {
            assert_eq!(
                Generator::with_reference_date(1, territories(), reference).err(),
                Some(GeneratorError::ReferenceDateOutOfRange(reference))
            );
        }
        for reference in [date(1990, 12, 29), date(2173, 10, 15)] {
            assert!(Generator::with_reference_date(1, territories(), reference).is_err(), "{reference}");
        }
        for reference in [date(1990, 12, 30), date(2000, 6, 1), date(2173, 10, 14)] {
            let mut generator = Generator::with_reference_date(1, territories(), reference).expect("in range");
            assert_eq!(generator.reference_date(), reference);
            assert_eq!(generator.by_ref().take(300).count(), 300, "{reference}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_households_and_another_seed_others() {
        assert_eq!(households(42, 200), households(42, 200));
        assert_ne!(households(42, 20), households(43, 20));
    }

    #[test]
    fn ages_are_within_the_bands_on_the_reference_date() {
        let mut grown_children = 0;
        for household in households(1, 5000) {
            let mut children_ages = Vec::new();
            for (index, person) in household.members.iter().enumerate() {
                let age = person.age_on(DEFAULT_REFERENCE_DATE);
                let is_child = household.relatives(index, Relation::Parent).next().is_some();
                if is_child {
                    assert!(age <= GROWN_CHILD_MAX_AGE, "{age}");
                    children_ages.push(age);
                } else {
                    assert!((ADULT_AGE..=MAX_AGE).contains(&age), "{age}");
                }
            }
            // Children at home are all minors or all grown.
            let minors = children_ages.iter().filter(|&&age| age < ADULT_AGE).count();
            assert!(minors == 0 || minors == children_ages.len(), "{children_ages:?}");
            grown_children += children_ages.len() - minors;
        }
        assert!(grown_children > 200, "{grown_children}");
    }

    #[test]
    fn links_are_stored_both_ways_and_fit_the_members() {
        for household in households(2, 3000) {
            for link in &household.links {
                assert!(link.person < household.members.len() && link.relative < household.members.len());
                assert_ne!(link.person, link.relative);
                let inverse = match link.relation {
                    Relation::Spouse => Relation::Spouse,
                    Relation::Parent => Relation::Child,
                    Relation::Child => Relation::Parent,
                };
                let back = Link { person: link.relative, relative: link.person, relation: inverse };
                assert!(household.links.contains(&back), "{link:?}");
            }
            for (index, person) in household.members.iter().enumerate() {
                if let Some(spouse) = household.relatives(index, Relation::Spouse).next() {
                    assert_ne!(household.members[spouse].sex, person.sex);
                    assert_eq!(household.relatives(index, Relation::Spouse).count(), 1);
                }
                assert!(household.relatives(index, Relation::Parent).count() <= 2);
            }
        }
    }

    /// True when two persons bear one surname, each in the form for their sex.
    fn same_surname(first: &Person, second: &Person) -> bool {
        match (first.sex, second.sex) {
            (Sex::Male, Sex::Female) => surname_for(&first.last_name, Sex::Female) == second.last_name,
            (Sex::Female, Sex::Male) => surname_for(&second.last_name, Sex::Female) == first.last_name,
            _ => first.last_name == second.last_name,
        }
    }

    #[test]
    fn children_take_a_parents_surname_and_the_fathers_name_and_are_born_when_parents_can_be_parents() {
        let mut children = 0;
        for household in households(3, 5000) {
            let mut sibling_names = Vec::new();
            let mut sibling_births: Vec<NaiveDate> = Vec::new();
            for (index, child) in household.members.iter().enumerate() {
                let parents: Vec<&Person> =
                    household.relatives(index, Relation::Parent).map(|parent| &household.members[parent]).collect();
                if parents.is_empty() {
                    continue;
                }
                children += 1;
                assert!(parents.iter().any(|parent| same_surname(parent, child)), "{}", child.full_name());
                for parent in &parents {
                    let age_at_birth = completed_years(parent.birth_date, child.birth_date);
                    assert!(age_at_birth >= ADULT_AGE, "{age_at_birth}");
                    if parent.sex == Sex::Female {
                        assert!(age_at_birth <= 45, "{age_at_birth}");
                    } else {
                        assert_eq!(child.patronymic, patronymic(&parent.first_name, child.sex));
                    }
                }
                assert!(!sibling_names.contains(&child.first_name), "two siblings named {}", child.first_name);
                sibling_names.push(child.first_name.clone());
                if let Some(previous) = sibling_births.last() {
                    assert!((child.birth_date - *previous).num_days() >= 400);
                }
                sibling_births.push(child.birth_date);
            }
        }
        assert!(children > 3000, "{children}");
    }

    #[test]
    fn spouses_mostly_share_the_surname_and_some_do_not() {
        let (mut same, mut different) = (0, 0);
        for household in households(4, 5000) {
            if let Some(link) = household.links.iter().find(|link| link.relation == Relation::Spouse) {
                if same_surname(&household.members[link.person], &household.members[link.relative]) {
                    same += 1;
                } else {
                    different += 1;
                }
            }
        }
        let share = f64::from(same) / f64::from(same + different);
        assert!((0.8..0.92).contains(&share), "{share}");
    }

    #[test]
    fn the_household_shapes_occur_in_their_proportions() {
        let all = households(5, 10_000);
        let count = |shape: fn(&Household) -> bool| all.iter().filter(|household| shape(household)).count();
        let has_child = |household: &Household, minor: bool| {
            household.links.iter().any(|link| {
                let age = household.members[link.relative].age_on(DEFAULT_REFERENCE_DATE);
                link.relation == Relation::Child && (age < ADULT_AGE) == minor
            })
        };
        let alone = count(|household| household.members.len() == 1);
        let couples = count(|household| household.links.iter().any(|link| link.relation == Relation::Spouse));
        let with_minors = all.iter().filter(|household| has_child(household, true)).count();
        let with_grown = all.iter().filter(|household| has_child(household, false)).count();
        assert!((2700..3300).contains(&alone), "{alone}");
        assert!((5600..6200).contains(&couples), "{couples}");
        assert!((3900..4700).contains(&with_minors), "{with_minors}");
        assert!((600..1100).contains(&with_grown), "{with_grown}");
        let largest = all.iter().map(|household| household.members.len()).max();
        assert_eq!(largest, Some(6));
    }

    #[test]
    fn id_cards_from_fourteen_and_phones_from_ten() {
        for person in households(6, 3000).into_iter().flat_map(|household| household.members) {
            let age = person.age_on(DEFAULT_REFERENCE_DATE);
            assert_eq!(person.passport.is_some(), age >= ID_CARD_AGE, "{age}");
            assert!(person.passport.as_ref().is_none_or(PassportNumber::is_id_card));
            if age < 10 {
                assert_eq!(person.phone, None);
            }
            if let Some(phone) = &person.phone {
                assert!(phone.starts_with("+380") && phone.len() == 13, "{phone}");
            }
        }
    }

    #[test]
    fn members_share_the_households_territory_and_address() {
        let codes = territories();
        let mut used = std::collections::HashSet::new();
        for household in households(7, 1000) {
            assert!(codes.contains(&household.territory));
            used.insert(household.territory);
            for person in &household.members {
                assert_eq!(person.territory, household.territory);
                assert_eq!(person.address, household.address);
            }
        }
        assert_eq!(used.len(), codes.len());
    }

    #[test]
    fn surnames_agree_with_sex_in_the_output() {
        let persons: Vec<Person> = households(8, 5000).into_iter().flat_map(|household| household.members).collect();
        let women_in_ska =
            persons.iter().filter(|person| person.sex == Sex::Female && person.last_name.ends_with("ська"));
        assert!(women_in_ska.count() > 20);
        assert!(!persons.iter().any(|person| person.sex == Sex::Female && person.last_name.ends_with("ський")));
        assert!(!persons.iter().any(|person| person.sex == Sex::Male && person.last_name.ends_with("ська")));
    }

    #[test]
    fn counters_and_ids_follow_the_households() {
        let mut generator = Generator::new(9, territories()).expect("generator");
        let first = generator.next_household().expect("household");
        let second = generator.next_household().expect("household");
        assert_eq!((first.id, second.id), (1, 2));
        assert_eq!(generator.households_generated(), 2);
        assert_eq!(
            generator.persons_generated(),
            u64::try_from(first.members.len() + second.members.len()).expect("small")
        );
        let persons: Vec<Person> = generator.persons().take(10).collect();
        assert_eq!(persons.len(), 10);
        assert!(persons[0].full_name().split(' ').count() == 3);
    }

    #[test]
    fn debug_output_is_a_short_summary() {
        let mut generator = Generator::new(10, territories()).expect("generator");
        generator.next_household().expect("household");
        let text = format!("{generator:?}");
        assert!(
            text.starts_with("Generator { reference_date: 2026-01-01, territories: 3, households: 1, persons: "),
            "{text}"
        );
        assert!(text.len() < 120, "{text}");
    }

    #[test]
    fn completed_years_counts_birthdays() {
        assert_eq!(completed_years(date(2000, 5, 17), date(2026, 5, 16)), 25);
        assert_eq!(completed_years(date(2000, 5, 17), date(2026, 5, 17)), 26);
        assert_eq!(completed_years(date(2024, 2, 29), date(2025, 2, 28)), 0);
        assert_eq!(completed_years(date(2024, 2, 29), date(2025, 3, 1)), 1);
        assert_eq!(completed_years(date(2026, 1, 2), date(2026, 1, 1)), 0);
    }

    #[test]
    fn year_windows_hold_exactly_the_persons_of_that_age() {
        for reference in [date(2026, 1, 1), date(2028, 2, 29), date(2025, 2, 28)] {
            for age in [0, 1, 17, 18, 90] {
                let (earliest, latest) = year_window(reference, age).expect("window");
                assert_eq!(completed_years(earliest, reference), age);
                assert_eq!(completed_years(latest, reference), age);
                assert_eq!(completed_years(earliest.pred_opt().expect("date"), reference), age + 1);
                if let Some(after) = latest.succ_opt().filter(|_| age > 0) {
                    assert_eq!(completed_years(after, reference), age - 1);
                }
            }
        }
    }
}
