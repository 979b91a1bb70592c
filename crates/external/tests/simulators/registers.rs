//! The sandbox adults in the demographic and tax registers: registration,
//! residence, citizenship, monthly income.

use esocial_external::Error;
use esocial_external::demographic::{DemographicRegister, PersonKey};
use esocial_external::sandbox::SANDBOX_ADULT_COUNT;
use esocial_external::sandbox_adults;
use esocial_external::tax::{TaxRegister, YearMonth};
use esocial_identifiers::{Money, Rnokpp, Sex};

use crate::Sandbox;

fn month(year: i32, month: u32) -> YearMonth {
    YearMonth::new(year, month).expect("month")
}

#[tokio::test]
async fn every_sandbox_adult_is_registered_with_the_residence_and_citizenship_of_the_seed() {
    let sandbox = Sandbox::start().await;
    let demographic = &sandbox.clients.demographic;
    let adults = sandbox_adults();
    assert_eq!(adults.len(), SANDBOX_ADULT_COUNT);
    for adult in adults {
        let by_rnokpp = demographic.find_person(PersonKey::Rnokpp(adult.rnokpp)).await.expect("checked");
        let record = by_rnokpp.expect("registered");
        assert_eq!(record.unzr, adult.unzr);
        assert_eq!((record.birth_date, record.sex), (adult.birth_date, adult.sex));
        assert_eq!(record.name, adult.name);
        assert_eq!(record.ukrainian_citizen, adult.ukrainian_citizen);
        assert_eq!(record.declared_residence, adult.declared_residence);
        let by_unzr = demographic.find_person(PersonKey::Unzr(adult.unzr)).await.expect("checked");
        assert_eq!(by_unzr.as_ref(), Some(&record));
        assert_eq!(demographic.person_record(adult.unzr).await.expect("record"), record);
    }
    assert!(!adults[11].ukrainian_citizen);
    assert_eq!(adults[23].declared_residence, None);

    // A valid number of someone the register does not know is an answer.
    let stranger =
        Rnokpp::compose(chrono::NaiveDate::from_ymd_opt(1977, 7, 7).expect("date"), 999, Sex::Male).expect("rnokpp");
    assert!(adults.iter().all(|adult| adult.rnokpp != stranger));
    assert_eq!(demographic.find_person(PersonKey::Rnokpp(stranger)).await.expect("checked"), None);
    sandbox.stop().await;
}

#[tokio::test]
async fn the_tax_register_knows_the_adults_and_their_income_month_by_month() {
    let sandbox = Sandbox::start().await;
    let tax = &sandbox.clients.tax;
    let adults = sandbox_adults();

    let earner = adults.iter().find(|adult| adult.usual_monthly_income > Money::ZERO).expect("an earner");
    let taxpayer = tax.taxpayer(earner.rnokpp).await.expect("taxpayer");
    assert_eq!((taxpayer.unzr, taxpayer.birth_date, taxpayer.sex), (Some(earner.unzr), earner.birth_date, earner.sex));
    assert!(taxpayer.registered_on > earner.birth_date);

    let incomes = tax.monthly_income(earner.rnokpp, month(2025, 7), month(2026, 6)).await.expect("income");
    assert_eq!(incomes.len(), 12);
    assert_eq!(incomes[0].month, month(2025, 7));
    assert_eq!(incomes[11].month, month(2026, 6));
    for income in &incomes {
        assert_eq!(income.amount, earner.income_in(income.month), "{}", income.month);
        assert!(income.amount >= earner.usual_monthly_income);
    }
    let total = Money::checked_sum(incomes.iter().map(|income| income.amount)).expect("total");
    assert!(total >= earner.usual_monthly_income.checked_mul(12).expect("year"));

    // Before the reported months: every month present, with nothing.
    let early = tax.monthly_income(earner.rnokpp, month(2022, 11), month(2023, 1)).await.expect("income");
    let amounts: Vec<Money> = early.iter().map(|income| income.amount).collect();
    assert_eq!(amounts, [Money::ZERO, Money::ZERO, earner.income_in(month(2023, 1))]);

    let without = adults.iter().find(|adult| adult.usual_monthly_income == Money::ZERO).expect("no income");
    let nothing = tax.monthly_income(without.rnokpp, month(2025, 1), month(2025, 6)).await.expect("income");
    assert_eq!(nothing.len(), 6);
    assert!(nothing.iter().all(|income| income.amount == Money::ZERO));
    sandbox.stop().await;
}

#[tokio::test]
async fn income_periods_must_run_forward_and_be_at_most_three_years() {
    let sandbox = Sandbox::start().await;
    let tax = &sandbox.clients.tax;
    let adult = &sandbox_adults()[1];
    for (first, last) in [(month(2025, 6), month(2025, 5)), (month(2022, 1), month(2025, 1))] {
        match tax.monthly_income(adult.rnokpp, first, last).await {
            Err(Error::InvalidRequest { problems, .. }) => assert_eq!(problems[0].field, "last_month"),
            other => panic!("{first}..{last} must be refused, got {other:?}"),
        }
    }
    let stranger =
        Rnokpp::compose(chrono::NaiveDate::from_ymd_opt(1977, 7, 7).expect("date"), 999, Sex::Male).expect("rnokpp");
    assert!(matches!(tax.monthly_income(stranger, month(2025, 1), month(2025, 2)).await, Err(Error::NotFound { .. })));
    assert!(matches!(tax.taxpayer(stranger).await, Err(Error::NotFound { .. })));
    sandbox.stop().await;
}
