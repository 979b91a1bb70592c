//! [`Bank`] over gRPC, and its proto conversions.

use esocial_identifiers::{Iban, Money, Rnokpp};
use esocial_kit::Violations;
use esocial_proto::external::bank::v1 as pb;
use esocial_proto::external::bank::v1::bank_service_client::BankServiceClient;
use tonic::transport::Channel;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::bank::{
    AccountStatus, Bank, PAYMENT_ID_LENGTH_MAX, PURPOSE_LENGTH_MAX, PaymentInstruction, PaymentOutcome,
    PaymentRegister, PaymentResult, RegisterReport, RegisterStatus, RejectionReason,
};

const SYSTEM: &str = "bank";
const MESSAGE_LENGTH_MAX: usize = 500;

/// A bank through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcBank {
    gateway: Gateway,
}

impl GrpcBank {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> BankServiceClient<Channel> {
        BankServiceClient::new(self.gateway.channel.clone())
    }
}

impl Bank for GrpcBank {
    async fn verify_account(&self, iban: Iban, holder: Rnokpp) -> Result<AccountStatus, Error> {
        let request = self
            .gateway
            .request(pb::VerifyAccountRequest {
                iban: iban.as_str().to_owned(),
                holder_rnokpp: holder.as_str().to_owned(),
            })
            .await?;
        let response = self.client().verify_account(request).await?.into_inner();
        account_status_from_proto(response.status, "status")
    }

    async fn verify_accounts(&self, accounts: &[(Iban, Rnokpp)]) -> Result<Vec<AccountStatus>, Error> {
        let requests: Vec<pb::VerifyAccountRequest> = accounts
            .iter()
            .map(|(iban, holder)| pb::VerifyAccountRequest {
                iban: iban.as_str().to_owned(),
                holder_rnokpp: holder.as_str().to_owned(),
            })
            .collect();
        let request = self.gateway.request(futures_util::stream::iter(requests)).await?;
        let mut answers = self.client().verify_accounts(request).await?.into_inner();
        let mut statuses = Vec::with_capacity(accounts.len());
        while let Some(answer) = answers.message().await? {
            if statuses.len() == accounts.len() {
                return Err(Error::invalid_response(SYSTEM, "status", "more answers than accounts sent"));
            }
            let field = format!("answers[{}].status", statuses.len());
            statuses.push(account_status_from_proto(answer.status, &field)?);
        }
        if statuses.len() != accounts.len() {
            return Err(Error::invalid_response(
                SYSTEM,
                "status",
                format!("{} answers to {} accounts", statuses.len(), accounts.len()),
            ));
        }
        Ok(statuses)
    }

    async fn submit_payment_register(&self, register: &PaymentRegister) -> Result<RegisterReport, Error> {
        let request = self
            .gateway
            .request(pb::SubmitPaymentRegisterRequest {
                register_id: register.register_id.clone(),
                payments: register.payments.iter().map(payment_to_proto).collect(),
            })
            .await?;
        let response = self.client().submit_payment_register(request).await?.into_inner();
        let report =
            convert::response(SYSTEM, |violations| report_from_proto(violations, "report", response.report.as_ref()))?;
        check_report_answers(&report, &register.register_id)?;
        let submitted = register.payments.iter().map(|payment| payment.payment_id.as_str());
        if !report.results.iter().map(|result| result.payment_id.as_str()).eq(submitted) {
            return Err(Error::invalid_response(
                SYSTEM,
                "report.outcomes",
                "do not answer the submitted payments one by one in order",
            ));
        }
        Ok(report)
    }

    async fn payment_register(&self, register_id: &str) -> Result<RegisterReport, Error> {
        let request =
            self.gateway.request(pb::GetPaymentRegisterRequest { register_id: register_id.to_owned() }).await?;
        let response = self.client().get_payment_register(request).await?.into_inner();
        let report =
            convert::response(SYSTEM, |violations| report_from_proto(violations, "report", response.report.as_ref()))?;
        check_report_answers(&report, register_id)?;
        Ok(report)
    }
}

fn account_status_from_proto(status: i32, field: &str) -> Result<AccountStatus, Error> {
    match pb::AccountStatus::try_from(status) {
        Ok(pb::AccountStatus::Open) => Ok(AccountStatus::Open),
        Ok(pb::AccountStatus::Closed) => Ok(AccountStatus::Closed),
        Ok(pb::AccountStatus::HolderMismatch) => Ok(AccountStatus::HolderMismatch),
        Ok(pb::AccountStatus::Unknown) => Ok(AccountStatus::Unknown),
        Ok(pb::AccountStatus::Unspecified) | Err(_) => {
            Err(Error::invalid_response(SYSTEM, field, format!("{status} is not an account status")))
        }
    }
}

/// The report is on the register asked about.
fn check_report_answers(report: &RegisterReport, register_id: &str) -> Result<(), Error> {
    if report.register_id != register_id {
        return Err(Error::invalid_response(SYSTEM, "report.register_id", "is not the register asked about"));
    }
    Ok(())
}

pub(crate) fn payment_to_proto(payment: &PaymentInstruction) -> pb::Payment {
    pb::Payment {
        payment_id: payment.payment_id.clone(),
        iban: payment.iban.as_str().to_owned(),
        rnokpp: payment.rnokpp.as_str().to_owned(),
        amount: Some(convert::money_to_proto(payment.amount)),
        purpose: payment.purpose.clone(),
    }
}

/// A payment of a submitted register, with every field checked.
pub(crate) fn payment_from_proto(
    violations: &mut Violations,
    field: &str,
    payment: &pb::Payment,
) -> Option<PaymentInstruction> {
    let payment_id =
        convert::text(violations, &path(field, "payment_id"), &payment.payment_id, true, PAYMENT_ID_LENGTH_MAX);
    let iban: Option<Iban> = convert::identifier(violations, &path(field, "iban"), &payment.iban);
    let rnokpp: Option<Rnokpp> = convert::identifier(violations, &path(field, "rnokpp"), &payment.rnokpp);
    let amount = convert::money(violations, &path(field, "amount"), payment.amount.as_ref());
    if amount.is_some_and(|amount| amount <= Money::ZERO) {
        violations.add(path(field, "amount"), "must be positive");
    }
    let purpose = convert::text(violations, &path(field, "purpose"), &payment.purpose, true, PURPOSE_LENGTH_MAX);
    Some(PaymentInstruction { payment_id, iban: iban?, rnokpp: rnokpp?, amount: amount?, purpose })
}

pub(crate) fn report_to_proto(report: &RegisterReport) -> pb::PaymentRegisterReport {
    pb::PaymentRegisterReport {
        register_id: report.register_id.clone(),
        status: match report.status {
            RegisterStatus::Accepted => pb::RegisterStatus::Accepted,
            RegisterStatus::Processed => pb::RegisterStatus::Processed,
        }
        .into(),
        outcomes: report.results.iter().map(outcome_to_proto).collect(),
        credited_total: Some(convert::money_to_proto(report.credited_total)),
        rejected_total: Some(convert::money_to_proto(report.rejected_total)),
    }
}

fn outcome_to_proto(result: &PaymentResult) -> pb::PaymentOutcome {
    let (status, reason, message) = match &result.outcome {
        PaymentOutcome::Pending => (pb::PaymentStatus::Pending, pb::RejectionReason::Unspecified, String::new()),
        PaymentOutcome::Credited => (pb::PaymentStatus::Credited, pb::RejectionReason::Unspecified, String::new()),
        PaymentOutcome::Rejected { reason, message } => {
            let reason = match reason {
                RejectionReason::AccountClosed => pb::RejectionReason::AccountClosed,
                RejectionReason::AccountUnknown => pb::RejectionReason::AccountUnknown,
                RejectionReason::HolderMismatch => pb::RejectionReason::HolderMismatch,
                RejectionReason::Other => pb::RejectionReason::Unspecified,
            };
            (pb::PaymentStatus::Rejected, reason, message.clone())
        }
    };
    pb::PaymentOutcome {
        payment_id: result.payment_id.clone(),
        status: status.into(),
        rejection_reason: reason.into(),
        message,
    }
}

fn outcome_from_proto(violations: &mut Violations, field: &str, outcome: &pb::PaymentOutcome) -> Option<PaymentResult> {
    let payment_id =
        convert::text(violations, &path(field, "payment_id"), &outcome.payment_id, true, PAYMENT_ID_LENGTH_MAX);
    let message = convert::text(violations, &path(field, "message"), &outcome.message, false, MESSAGE_LENGTH_MAX);
    let outcome = match pb::PaymentStatus::try_from(outcome.status) {
        Ok(pb::PaymentStatus::Pending) => PaymentOutcome::Pending,
        Ok(pb::PaymentStatus::Credited) => PaymentOutcome::Credited,
        Ok(pb::PaymentStatus::Rejected) => {
            let reason = match pb::RejectionReason::try_from(outcome.rejection_reason) {
                Ok(pb::RejectionReason::AccountClosed) => RejectionReason::AccountClosed,
                Ok(pb::RejectionReason::AccountUnknown) => RejectionReason::AccountUnknown,
                Ok(pb::RejectionReason::HolderMismatch) => RejectionReason::HolderMismatch,
                Ok(pb::RejectionReason::Unspecified) | Err(_) => RejectionReason::Other,
            };
            PaymentOutcome::Rejected { reason, message }
        }
        Ok(pb::PaymentStatus::Unspecified) | Err(_) => {
            violations.add(path(field, "status"), "is not a payment status");
            return None;
        }
    };
    Some(PaymentResult { payment_id, outcome })
}

/// A report with known statuses and totals present and not negative; a
/// processed register has no pending payment. (Outcomes do not repeat the
/// amounts, so the totals are checked by the caller, who knows them.)
fn report_from_proto(
    violations: &mut Violations,
    field: &str,
    report: Option<&pb::PaymentRegisterReport>,
) -> Option<RegisterReport> {
    let report = convert::required(violations, field, report)?;
    let status = match pb::RegisterStatus::try_from(report.status) {
        Ok(pb::RegisterStatus::Accepted) => Some(RegisterStatus::Accepted),
        Ok(pb::RegisterStatus::Processed) => Some(RegisterStatus::Processed),
        Ok(pb::RegisterStatus::Unspecified) | Err(_) => {
            violations.add(path(field, "status"), "is not a register status");
            None
        }
    };
    let results: Vec<Option<PaymentResult>> = report
        .outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| outcome_from_proto(violations, &format!("{field}.outcomes[{index}]"), outcome))
        .collect();
    let credited_total = convert::money(violations, &path(field, "credited_total"), report.credited_total.as_ref());
    let rejected_total = convert::money(violations, &path(field, "rejected_total"), report.rejected_total.as_ref());
    for (name, total) in [("credited_total", credited_total), ("rejected_total", rejected_total)] {
        if total.is_some_and(|total| total.is_negative()) {
            violations.add(path(field, name), "must not be negative");
        }
    }
    if status == Some(RegisterStatus::Processed)
        && results.iter().flatten().any(|result| result.outcome == PaymentOutcome::Pending)
    {
        violations.add(path(field, "outcomes"), "has pending payments in a processed register");
    }
    Some(RegisterReport {
        register_id: report.register_id.clone(),
        status: status?,
        results: results.into_iter().collect::<Option<Vec<_>>>()?,
        credited_total: credited_total?,
        rejected_total: rejected_total?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RegisterReport {
        RegisterReport {
            register_id: "R-1".to_owned(),
            status: RegisterStatus::Processed,
            results: vec![
                PaymentResult { payment_id: "1".to_owned(), outcome: PaymentOutcome::Credited },
                PaymentResult {
                    payment_id: "2".to_owned(),
                    outcome: PaymentOutcome::Rejected {
                        reason: RejectionReason::AccountClosed,
                        message: "closed".to_owned(),
                    },
                },
            ],
            credited_total: Money::from_kopiykas(100),
            rejected_total: Money::from_kopiykas(200),
        }
    }

    #[test]
    fn a_report_survives_the_round_trip() {
        let proto = report_to_proto(&report());
        let parsed = convert::response(SYSTEM, |violations| report_from_proto(violations, "report", Some(&proto)));
        assert_eq!(parsed.expect("valid"), report());
    }

    #[test]
    fn a_processed_report_with_pending_payments_is_invalid() {
        let mut proto = report_to_proto(&report());
        proto.outcomes[0].status = pb::PaymentStatus::Pending.into();
        let parsed = convert::response(SYSTEM, |violations| report_from_proto(violations, "report", Some(&proto)));
        assert!(matches!(parsed, Err(Error::InvalidResponse { .. })));
    }

    #[test]
    fn payments_need_a_positive_amount_and_a_valid_iban() {
        let payment = pb::Payment {
            payment_id: "1".to_owned(),
            iban: "UA583808050000026009702978806".to_owned(),
            rnokpp: "3652504575".to_owned(),
            amount: Some(esocial_proto::common::v1::Money { kopiykas: 0 }),
            purpose: "допомога".to_owned(),
        };
        let parsed = convert::response(SYSTEM, |violations| payment_from_proto(violations, "payments[0]", &payment));
        match parsed {
            Err(Error::InvalidResponse { problems, .. }) => {
                let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
                assert_eq!(fields, ["payments[0].iban", "payments[0].amount"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
