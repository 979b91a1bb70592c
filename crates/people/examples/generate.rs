//! Generates synthetic persons and reports the speed.
//!
//! ```text
//! cargo run --release -p esocial-people --example generate -- [PERSONS] [--check]
//! ```
//!
//! `PERSONS` defaults to 1,000,000. With `--check` it also collects every
//! RNOKPP, UNZR and ID-card number, sorts them and counts repeats, and prints
//! the age mix and the largest share of persons of one sex and year of age
//! (the generator can serve 365,000 persons per such cell).
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Instant;

use esocial_identifiers::Katottg;
use esocial_people::{DEFAULT_REFERENCE_DATE, Generator, MAX_AGE, Person, Sex};

const TERRITORIES: &[&str] =
    &["UA71020010000037786", "UA80000000000093317", "UA46060250010015970", "UA12020010010092950"];

/// What `--check` collects.
#[derive(Default)]
struct Collected {
    rnokpps: Vec<u64>,
    unzrs: Vec<u64>,
    passports: Vec<u64>,
    /// Persons per year of age, women then men.
    cells: Vec<[u64; 2]>,
}

impl Collected {
    fn add(&mut self, person: &Person) -> Result<(), Box<dyn Error>> {
        self.rnokpps.push(person.rnokpp.as_str().parse()?);
        self.unzrs.push(person.unzr.as_str().replace('-', "").parse()?);
        if let Some(passport) = &person.passport {
            self.passports.push(passport.as_str().parse()?);
        }
        let age = usize::try_from(person.age_on(DEFAULT_REFERENCE_DATE))?;
        let sex = usize::from(person.sex == Sex::Male);
        if self.cells.is_empty() {
            self.cells = vec![[0, 0]; usize::try_from(MAX_AGE)? + 1];
        }
        self.cells[age][sex] += 1;
        Ok(())
    }

    fn report(mut self, persons: u64) {
        for (name, numbers) in
            [("RNOKPP", &mut self.rnokpps), ("UNZR", &mut self.unzrs), ("ID card", &mut self.passports)]
        {
            let total = numbers.len();
            numbers.sort_unstable();
            numbers.dedup();
            println!("{name}: {total} numbers, {} repeated", total - numbers.len());
        }
        let in_ages = |ages: std::ops::Range<usize>| {
            let count: u64 = self.cells.get(ages).unwrap_or_default().iter().flatten().sum();
            count as f64 / persons as f64 * 100.0
        };
        println!("ages 0–17: {:.1} %, 18–59: {:.1} %, 60+: {:.1} %", in_ages(0..18), in_ages(18..60), in_ages(60..91));
        let fullest = self.cells.iter().flatten().copied().max().unwrap_or(0);
        let share = fullest as f64 / persons as f64;
        println!(
            "fullest (age, sex) cell: {fullest} persons, {:.3} % of all; at 365,000 per cell that allows about {:.0} million persons",
            share * 100.0,
            365_000.0 / share / 1e6
        );
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let check = arguments.iter().any(|argument| argument == "--check");
    let wanted: u64 =
        arguments.iter().find(|argument| *argument != "--check").map_or(Ok(1_000_000), |count| count.parse())?;
    let territories = TERRITORIES.iter().map(|code| code.parse()).collect::<Result<Vec<Katottg>, _>>()?;

    let mut generator = Generator::new(42, territories)?;
    let mut collected = check.then(Collected::default);
    let started = Instant::now();
    let mut checksum = 0usize;
    while generator.persons_generated() < wanted {
        let household = generator.next_household()?;
        checksum = checksum.wrapping_add(household.members.len());
        if let Some(collected) = collected.as_mut() {
            for person in &household.members {
                collected.add(person)?;
            }
        }
    }
    let elapsed = started.elapsed();
    let persons = generator.persons_generated();
    println!(
        "{persons} persons in {} households in {:.3} s: {:.0} persons/s{}",
        generator.households_generated(),
        elapsed.as_secs_f64(),
        persons as f64 / elapsed.as_secs_f64(),
        if check { " (with --check collecting)" } else { "" }
    );
    debug_assert_eq!(u64::try_from(checksum)?, persons);
    if let Some(collected) = collected {
        collected.report(persons);
    }
    Ok(())
}
