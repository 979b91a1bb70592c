//! The tax register simulator: taxpayers, newborns' RNOKPP from the
//! demographic register's records, and monthly incomes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use esocial_identifiers::{Money, Rnokpp, Sex, Unzr};
use esocial_proto::external::tax::v1 as pb;
use esocial_proto::external::tax::v1::tax_register_service_server::TaxRegisterService;
use tonic::{Request, Response, Status};

use super::{World, lock};
use crate::grpc::convert;
use crate::grpc::{month_from_proto, month_to_proto, taxpayer_to_proto};
use crate::sandbox::{SandboxAdult, tax_registration_date};
use crate::tax::{INCOME_PERIOD_MONTHS_MAX, Taxpayer, YearMonth};

/// The most taxpayers the simulator keeps.
const TAXPAYERS_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct TaxState {
    taxpayers: BTreeMap<Rnokpp, Taxpayer>,
    by_unzr: HashMap<Unzr, Rnokpp>,
    incomes: HashMap<Rnokpp, BTreeMap<YearMonth, Money>>,
}

impl TaxState {
    pub(super) fn add_adult(&mut self, adult: &SandboxAdult) {
        self.insert(Taxpayer {
            rnokpp: adult.rnokpp,
            unzr: Some(adult.unzr),
            name: adult.name.clone(),
            birth_date: adult.birth_date,
            sex: adult.sex,
            registered_on: tax_registration_date(adult),
        });
        let (first, last) = SandboxAdult::income_months();
        let mut month = first;
        let incomes = self.incomes.entry(adult.rnokpp).or_default();
        while month <= last {
            let income = adult.income_in(month);
            if income > Money::ZERO {
                incomes.insert(month, income);
            }
            month = month.next();
        }
    }

    fn insert(&mut self, taxpayer: Taxpayer) {
        if let Some(unzr) = taxpayer.unzr {
            self.by_unzr.insert(unzr, taxpayer.rnokpp);
        }
        self.taxpayers.insert(taxpayer.rnokpp, taxpayer);
    }

    fn by_unzr(&self, unzr: Unzr) -> Option<&Taxpayer> {
        self.by_unzr.get(&unzr).and_then(|rnokpp| self.taxpayers.get(rnokpp))
    }

    /// The first number of a birth date and sex that nobody has: serials
    /// from 0 up.
    fn free_rnokpp(&self, birth_date: NaiveDate, sex: Sex) -> Option<Rnokpp> {
        (0..=999)
            .filter_map(|serial| Rnokpp::compose(birth_date, serial, sex).ok())
            .find(|rnokpp| !self.taxpayers.contains_key(rnokpp))
    }

    /// Income per month of the period, zero where nothing was reported.
    fn monthly_income(&self, rnokpp: Rnokpp, first: YearMonth, last: YearMonth) -> Vec<(YearMonth, Money)> {
        let reported = self.incomes.get(&rnokpp);
        let mut months = Vec::new();
        let mut month = first;
        while month <= last {
            let amount = reported.and_then(|incomes| incomes.get(&month)).copied().unwrap_or(Money::ZERO);
            months.push((month, amount));
            month = month.next();
        }
        months
    }
}

/// The tax register's gRPC service.
#[derive(Debug, Clone)]
pub struct TaxRegisterSimulator {
    world: Arc<World>,
}

impl TaxRegisterSimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

fn assigned(taxpayer: &Taxpayer, newly_assigned: bool) -> Response<pb::AssignNewbornRnokppResponse> {
    Response::new(pb::AssignNewbornRnokppResponse { taxpayer: Some(taxpayer_to_proto(taxpayer)), newly_assigned })
}

#[tonic::async_trait]
impl TaxRegisterService for TaxRegisterSimulator {
    async fn assign_newborn_rnokpp(
        &self,
        request: Request<pb::AssignNewbornRnokppRequest>,
    ) -> Result<Response<pb::AssignNewbornRnokppResponse>, Status> {
        let request = request.into_inner();
        let unzr: Unzr = convert::request(|violations| convert::identifier(violations, "unzr", &request.unzr))?;
        if let Some(taxpayer) = lock(&self.world.tax).by_unzr(unzr) {
            return Ok(assigned(taxpayer, false));
        }
        let person = lock(&self.world.demographic)
            .record(unzr)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("the demographic register has no record {unzr}")))?;
        if person.rnokpp.is_some() {
            return Err(Status::failed_precondition(format!(
                "the person with UNZR {unzr} has an RNOKPP already; it is not assigned twice"
            )));
        }

        let taxpayer = {
            let mut state = lock(&self.world.tax);
            // Another request may have registered the child since the check above.
            if let Some(taxpayer) = state.by_unzr(unzr) {
                return Ok(assigned(taxpayer, false));
            }
            if state.taxpayers.len() >= TAXPAYERS_MAX {
                return Err(Status::resource_exhausted("the simulated tax register is full"));
            }
            let rnokpp = state.free_rnokpp(person.birth_date, person.sex).ok_or_else(|| {
                Status::resource_exhausted(format!("every RNOKPP of {} for that sex is taken", person.birth_date))
            })?;
            let taxpayer = Taxpayer {
                rnokpp,
                unzr: Some(unzr),
                name: person.name,
                birth_date: person.birth_date,
                sex: person.sex,
                registered_on: esocial_kit::time::kyiv_today(),
            };
            state.insert(taxpayer.clone());
            taxpayer
        };
        // The demographic register learns the number, as it does from the
        // tax service's data exchange.
        lock(&self.world.demographic).set_rnokpp(unzr, taxpayer.rnokpp);
        tracing::info!(%unzr, "simulated tax register: newborn registered");
        Ok(assigned(&taxpayer, true))
    }

    async fn get_taxpayer(
        &self,
        request: Request<pb::GetTaxpayerRequest>,
    ) -> Result<Response<pb::GetTaxpayerResponse>, Status> {
        let request = request.into_inner();
        let rnokpp: Rnokpp = convert::request(|violations| convert::identifier(violations, "rnokpp", &request.rnokpp))?;
        let state = lock(&self.world.tax);
        let taxpayer = state.taxpayers.get(&rnokpp).ok_or_else(|| Status::not_found("no taxpayer with that RNOKPP"))?;
        Ok(Response::new(pb::GetTaxpayerResponse { taxpayer: Some(taxpayer_to_proto(taxpayer)) }))
    }

    async fn get_monthly_income(
        &self,
        request: Request<pb::GetMonthlyIncomeRequest>,
    ) -> Result<Response<pb::GetMonthlyIncomeResponse>, Status> {
        let request = request.into_inner();
        let (rnokpp, first, last) = convert::request(|violations| {
            let rnokpp: Option<Rnokpp> = convert::identifier(violations, "rnokpp", &request.rnokpp);
            let first = month_from_proto(violations, "first_month", request.first_month.as_ref());
            let last = month_from_proto(violations, "last_month", request.last_month.as_ref());
            if let (Some(first), Some(last)) = (first, last) {
                let months = first.months_through(last);
                if months == 0 {
                    violations.add("last_month", "must not be before first_month");
                } else if months > INCOME_PERIOD_MONTHS_MAX {
                    violations
                        .add("last_month", format!("the period must be at most {INCOME_PERIOD_MONTHS_MAX} months"));
                }
            }
            Some((rnokpp?, first?, last?))
        })?;
        let state = lock(&self.world.tax);
        if !state.taxpayers.contains_key(&rnokpp) {
            return Err(Status::not_found("no taxpayer with that RNOKPP"));
        }
        let months = state
            .monthly_income(rnokpp, first, last)
            .into_iter()
            .map(|(month, amount)| pb::MonthlyIncome {
                month: Some(month_to_proto(month)),
                amount: Some(convert::money_to_proto(amount)),
            })
            .collect();
        Ok(Response::new(pb::GetMonthlyIncomeResponse { months }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_numbers_encode_the_date_and_sex_and_skip_those_taken() {
        let mut state = TaxState::default();
        let date = NaiveDate::from_ymd_opt(2026, 1, 10).expect("date");
        let first = state.free_rnokpp(date, Sex::Female).expect("free");
        assert_eq!((first.birth_date(), first.sex()), (date, Sex::Female));
        state.insert(Taxpayer {
            rnokpp: first,
            unzr: None,
            name: crate::PersonName::new("Мельник", "Софія", "Андріївна"),
            birth_date: date,
            sex: Sex::Female,
            registered_on: date,
        });
        let second = state.free_rnokpp(date, Sex::Female).expect("free");
        assert_ne!(second, first);
        assert_eq!((second.birth_date(), second.sex()), (date, Sex::Female));
    }

    #[test]
    fn income_has_every_month_of_the_period_with_zero_where_none_was_reported() {
        let mut state = TaxState::default();
        let adult = crate::sandbox_adults()
            .iter()
            .find(|adult| adult.usual_monthly_income > Money::ZERO)
            .expect("an adult with income");
        state.add_adult(adult);
        let first = YearMonth::new(2022, 11).expect("month");
        let last = YearMonth::new(2023, 2).expect("month");
        let months = state.monthly_income(adult.rnokpp, first, last);
        assert_eq!(months.len(), 4);
        assert_eq!(months[0], (first, Money::ZERO));
        assert_eq!(months[1].1, Money::ZERO);
        assert_eq!(
            months[2],
            (YearMonth::new(2023, 1).expect("month"), adult.income_in(YearMonth::new(2023, 1).expect("month")))
        );
        assert!(months[3].1 >= adult.usual_monthly_income);
    }
}
