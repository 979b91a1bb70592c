//! [`TaxRegister`] over gRPC, and its proto conversions.

use esocial_identifiers::{Rnokpp, Unzr};
use esocial_kit::Violations;
use esocial_proto::external::tax::v1 as pb;
use esocial_proto::external::tax::v1::tax_register_service_client::TaxRegisterServiceClient;
use tonic::transport::Channel;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::tax::{MonthlyIncome, RnokppAssignment, TaxRegister, Taxpayer, YearMonth};

const SYSTEM: &str = "tax register";

/// The tax register through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcTaxRegister {
    gateway: Gateway,
}

impl GrpcTaxRegister {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> TaxRegisterServiceClient<Channel> {
        TaxRegisterServiceClient::new(self.gateway.channel.clone())
    }
}

impl TaxRegister for GrpcTaxRegister {
    async fn assign_newborn_rnokpp(&self, unzr: Unzr) -> Result<RnokppAssignment, Error> {
        let request = self.gateway.request(pb::AssignNewbornRnokppRequest { unzr: unzr.as_str().to_owned() }).await?;
        let response = self.client().assign_newborn_rnokpp(request).await?.into_inner();
        let taxpayer = convert::response(SYSTEM, |violations| {
            taxpayer_from_proto(violations, "taxpayer", response.taxpayer.as_ref())
        })?;
        if taxpayer.unzr != Some(unzr) {
            return Err(Error::invalid_response(SYSTEM, "taxpayer.unzr", "is not the UNZR the number was asked for"));
        }
        if taxpayer.rnokpp.birth_date() != taxpayer.birth_date || taxpayer.rnokpp.sex() != taxpayer.sex {
            return Err(Error::invalid_response(
                SYSTEM,
                "taxpayer.rnokpp",
                "does not encode the taxpayer's birth date and sex",
            ));
        }
        Ok(RnokppAssignment { taxpayer, newly_assigned: response.newly_assigned })
    }

    async fn taxpayer(&self, rnokpp: Rnokpp) -> Result<Taxpayer, Error> {
        let request = self.gateway.request(pb::GetTaxpayerRequest { rnokpp: rnokpp.as_str().to_owned() }).await?;
        let response = self.client().get_taxpayer(request).await?.into_inner();
        let taxpayer = convert::response(SYSTEM, |violations| {
            taxpayer_from_proto(violations, "taxpayer", response.taxpayer.as_ref())
        })?;
        if taxpayer.rnokpp != rnokpp {
            return Err(Error::invalid_response(SYSTEM, "taxpayer.rnokpp", "is not the taxpayer asked for"));
        }
        Ok(taxpayer)
    }

    async fn monthly_income(
        &self,
        rnokpp: Rnokpp,
        first: YearMonth,
        last: YearMonth,
    ) -> Result<Vec<MonthlyIncome>, Error> {
        let request = self
            .gateway
            .request(pb::GetMonthlyIncomeRequest {
                rnokpp: rnokpp.as_str().to_owned(),
                first_month: Some(month_to_proto(first)),
                last_month: Some(month_to_proto(last)),
            })
            .await?;
        let response = self.client().get_monthly_income(request).await?.into_inner();
        let months = convert::response(SYSTEM, |violations| {
            let months: Vec<Option<MonthlyIncome>> = response
                .months
                .iter()
                .enumerate()
                .map(|(index, entry)| monthly_income_from_proto(violations, &format!("months[{index}]"), entry))
                .collect();
            months.into_iter().collect::<Option<Vec<_>>>()
        })?;
        let mut expected = first;
        for (index, entry) in months.iter().enumerate() {
            if entry.month != expected {
                return Err(Error::invalid_response(
                    SYSTEM,
                    format!("months[{index}].month"),
                    format!("should be {expected}"),
                ));
            }
            expected = expected.next();
        }
        if months.len() != usize::try_from(first.months_through(last)).unwrap_or(usize::MAX) {
            return Err(Error::invalid_response(SYSTEM, "months", format!("do not cover {first} to {last}")));
        }
        Ok(months)
    }
}

pub(crate) fn month_to_proto(month: YearMonth) -> pb::Month {
    pb::Month { year: month.year(), month: i32::try_from(month.month()).unwrap_or_default() }
}

pub(crate) fn month_from_proto(
    violations: &mut Violations,
    field: &str,
    month: Option<&pb::Month>,
) -> Option<YearMonth> {
    let month = convert::required(violations, field, month)?;
    let parsed = u32::try_from(month.month).ok().and_then(|number| YearMonth::new(month.year, number));
    if parsed.is_none() {
        violations.add(field, "is not a month between 1900 and 2999");
    }
    parsed
}

fn monthly_income_from_proto(
    violations: &mut Violations,
    field: &str,
    entry: &pb::MonthlyIncome,
) -> Option<MonthlyIncome> {
    let month = month_from_proto(violations, &path(field, "month"), entry.month.as_ref());
    let amount = convert::money(violations, &path(field, "amount"), entry.amount.as_ref());
    if amount.is_some_and(|amount| amount.is_negative()) {
        violations.add(path(field, "amount"), "must not be negative");
    }
    Some(MonthlyIncome { month: month?, amount: amount? })
}

pub(crate) fn taxpayer_to_proto(taxpayer: &Taxpayer) -> pb::Taxpayer {
    pb::Taxpayer {
        rnokpp: taxpayer.rnokpp.as_str().to_owned(),
        unzr: taxpayer.unzr.map(|unzr| unzr.as_str().to_owned()).unwrap_or_default(),
        last_name: taxpayer.name.last_name.clone(),
        first_name: taxpayer.name.first_name.clone(),
        patronymic: taxpayer.name.patronymic.clone(),
        birth_date: Some(convert::date_to_proto(taxpayer.birth_date)),
        sex: convert::sex_to_proto(taxpayer.sex),
        registered_on: Some(convert::date_to_proto(taxpayer.registered_on)),
    }
}

fn taxpayer_from_proto(violations: &mut Violations, field: &str, taxpayer: Option<&pb::Taxpayer>) -> Option<Taxpayer> {
    let taxpayer = convert::required(violations, field, taxpayer)?;
    let rnokpp: Option<Rnokpp> = convert::identifier(violations, &path(field, "rnokpp"), &taxpayer.rnokpp);
    let unzr: Option<Option<Unzr>> = convert::optional_identifier(violations, &path(field, "unzr"), &taxpayer.unzr);
    let name = convert::person_name(
        violations,
        [&path(field, "last_name"), &path(field, "first_name"), &path(field, "patronymic")],
        [&taxpayer.last_name, &taxpayer.first_name, &taxpayer.patronymic],
    );
    let birth_date = convert::date(violations, &path(field, "birth_date"), taxpayer.birth_date.as_ref());
    let sex = convert::sex(violations, &path(field, "sex"), taxpayer.sex);
    let registered_on = convert::date(violations, &path(field, "registered_on"), taxpayer.registered_on.as_ref());
    if let (Some(Some(unzr)), Some(birth_date)) = (unzr, birth_date)
        && unzr.birth_date() != birth_date
    {
        violations.add(path(field, "unzr"), "does not carry the birth date");
    }
    Some(Taxpayer {
        rnokpp: rnokpp?,
        unzr: unzr?,
        name,
        birth_date: birth_date?,
        sex: sex?,
        registered_on: registered_on?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_outside_the_calendar_are_refused() {
        let mut violations = Violations::new();
        assert!(month_from_proto(&mut violations, "first_month", Some(&pb::Month { year: 2025, month: 13 })).is_none());
        assert!(month_from_proto(&mut violations, "last_month", None).is_none());
        assert!(!violations.is_empty());
        let mut violations = Violations::new();
        let month = month_from_proto(&mut violations, "first_month", Some(&pb::Month { year: 2025, month: 2 }));
        assert_eq!(month, YearMonth::new(2025, 2));
        assert_eq!(month.map(month_to_proto), Some(pb::Month { year: 2025, month: 2 }));
    }

    #[test]
    fn negative_income_is_an_invalid_response() {
        let entry = pb::MonthlyIncome {
            month: Some(pb::Month { year: 2025, month: 2 }),
            amount: Some(esocial_proto::common::v1::Money { kopiykas: -1 }),
        };
        let parsed = convert::response(SYSTEM, |violations| monthly_income_from_proto(violations, "months[0]", &entry));
        assert!(matches!(parsed, Err(Error::InvalidResponse { .. })));
    }
}
