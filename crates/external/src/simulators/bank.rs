//! The bank simulator: accounts of the sandbox adults, payment registers
//! processed at once and remembered by id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use esocial_identifiers::{Iban, Money, Rnokpp};
use esocial_proto::external::bank::v1 as pb;
use esocial_proto::external::bank::v1::bank_service_server::BankService;
use tonic::{Code, Request, Response, Status};

use super::{World, lock, status_with_info};
use crate::bank::{
    AccountStatus, PAYMENT_ID_LENGTH_MAX, PAYMENTS_PER_REGISTER_MAX, PaymentInstruction, PaymentOutcome, PaymentResult,
    RegisterReport, RegisterStatus, RejectionReason,
};
use crate::grpc::convert;
use crate::grpc::{payment_from_proto, report_to_proto};
use crate::sandbox::SandboxAdult;

/// The most registers the simulator remembers.
const REGISTERS_MAX: usize = 10_000;

#[derive(Debug)]
struct Account {
    holder: Rnokpp,
    open: bool,
    balance: Money,
}

#[derive(Debug)]
struct SubmittedRegister {
    payments: Vec<PaymentInstruction>,
    report: RegisterReport,
}

#[derive(Debug, Default)]
pub(super) struct BankState {
    accounts: HashMap<Iban, Account>,
    registers: HashMap<String, SubmittedRegister>,
}

impl BankState {
    pub(super) fn add_adult(&mut self, adult: &SandboxAdult) {
        self.accounts
            .insert(adult.iban, Account { holder: adult.rnokpp, open: adult.account_open, balance: Money::ZERO });
    }

    fn account_status(&self, iban: Iban, holder: Rnokpp) -> AccountStatus {
        match self.accounts.get(&iban) {
            None => AccountStatus::Unknown,
            Some(account) if account.holder != holder => AccountStatus::HolderMismatch,
            Some(account) if !account.open => AccountStatus::Closed,
            Some(_) => AccountStatus::Open,
        }
    }

    /// Adds the amount to an open account's balance.
    fn credit(&mut self, iban: Iban, amount: Money) -> PaymentOutcome {
        let Some(account) = self.accounts.get_mut(&iban) else {
            return rejection(RejectionReason::AccountUnknown, "the bank has no such account");
        };
        match account.balance.checked_add(amount) {
            Ok(balance) => {
                account.balance = balance;
                PaymentOutcome::Credited
            }
            Err(_) => rejection(RejectionReason::Other, "the account's balance would overflow"),
        }
    }

    /// Credits what can be credited; the rest is rejected with the reason.
    fn process(&mut self, register_id: String, payments: Vec<PaymentInstruction>) -> RegisterReport {
        let mut results = Vec::with_capacity(payments.len());
        let mut credited = Vec::new();
        let mut rejected = Vec::new();
        for payment in &payments {
            let outcome = match self.account_status(payment.iban, payment.rnokpp) {
                AccountStatus::Open => self.credit(payment.iban, payment.amount),
                AccountStatus::Closed => rejection(RejectionReason::AccountClosed, "the account is closed"),
                AccountStatus::Unknown => rejection(RejectionReason::AccountUnknown, "the bank has no such account"),
                AccountStatus::HolderMismatch => {
                    rejection(RejectionReason::HolderMismatch, "the account belongs to someone else")
                }
            };
            match outcome {
                PaymentOutcome::Credited => credited.push(payment.amount),
                PaymentOutcome::Rejected { .. } => rejected.push(payment.amount),
                PaymentOutcome::Pending => {}
            }
            results.push(PaymentResult { payment_id: payment.payment_id.clone(), outcome });
        }
        // Validation checked that the register's total fits, so its parts do.
        let report = RegisterReport {
            register_id: register_id.clone(),
            status: RegisterStatus::Processed,
            results,
            credited_total: Money::checked_sum(credited).unwrap_or(Money::ZERO),
            rejected_total: Money::checked_sum(rejected).unwrap_or(Money::ZERO),
        };
        self.registers.insert(register_id, SubmittedRegister { payments, report: report.clone() });
        report
    }
}

fn rejection(reason: RejectionReason, message: &str) -> PaymentOutcome {
    PaymentOutcome::Rejected { reason, message: message.to_owned() }
}

/// Letters, digits, `-` and `_`, at most [`PAYMENT_ID_LENGTH_MAX`].
fn register_id_problem(register_id: &str) -> Option<String> {
    if register_id.is_empty() {
        Some("is required".to_owned())
    } else if register_id.chars().count() > PAYMENT_ID_LENGTH_MAX {
        Some(format!("must have at most {PAYMENT_ID_LENGTH_MAX} characters"))
    } else if !register_id.chars().all(|character| character.is_ascii_alphanumeric() || "-_".contains(character)) {
        Some("may contain only letters, digits, '-' and '_'".to_owned())
    } else {
        None
    }
}

/// The bank's answer on one account; `field` prefixes the names of the
/// fields in problems.
fn verify_one(
    world: &World,
    request: &pb::VerifyAccountRequest,
    field: &str,
) -> Result<pb::VerifyAccountResponse, Status> {
    let (iban, holder) = convert::request(|violations| {
        let iban: Option<Iban> = convert::identifier(violations, &convert::path(field, "iban"), &request.iban);
        let holder: Option<Rnokpp> =
            convert::identifier(violations, &convert::path(field, "holder_rnokpp"), &request.holder_rnokpp);
        Some((iban?, holder?))
    })?;
    let status = match lock(&world.bank).account_status(iban, holder) {
        AccountStatus::Open => pb::AccountStatus::Open,
        AccountStatus::Closed => pb::AccountStatus::Closed,
        AccountStatus::HolderMismatch => pb::AccountStatus::HolderMismatch,
        AccountStatus::Unknown => pb::AccountStatus::Unknown,
    };
    Ok(pb::VerifyAccountResponse { status: status.into() })
}

/// The bank's gRPC service.
#[derive(Debug, Clone)]
pub struct BankSimulator {
    world: Arc<World>,
}

impl BankSimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

#[tonic::async_trait]
impl BankService for BankSimulator {
    type StreamPaymentOutcomesStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::PaymentOutcome, Status>> + Send + 'static>>;

    async fn stream_payment_outcomes(
        &self,
        request: Request<pb::StreamPaymentOutcomesRequest>,
    ) -> Result<Response<Self::StreamPaymentOutcomesStream>, Status> {
        let register_id = request.into_inner().register_id.trim().to_owned();
        convert::request(|violations| {
            if let Some(problem) = register_id_problem(&register_id) {
                violations.add("register_id", problem);
            }
            Some(())
        })?;
        let outcomes = {
            let state = lock(&self.world.bank);
            let submitted = state
                .registers
                .get(&register_id)
                .ok_or_else(|| Status::not_found(format!("no register {register_id}")))?;
            report_to_proto(&submitted.report).outcomes
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(outcomes.into_iter().map(Ok)))))
    }

    async fn verify_account(
        &self,
        request: Request<pb::VerifyAccountRequest>,
    ) -> Result<Response<pb::VerifyAccountResponse>, Status> {
        Ok(Response::new(verify_one(&self.world, &request.into_inner(), "")?))
    }

    type VerifyAccountsStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::VerifyAccountResponse, Status>> + Send + 'static>>;

    async fn verify_accounts(
        &self,
        request: Request<tonic::Streaming<pb::VerifyAccountRequest>>,
    ) -> Result<Response<Self::VerifyAccountsStream>, Status> {
        let world = self.world.clone();
        let requests = request.into_inner();
        // Each request is answered as it arrives; the first error ends the call.
        let answers = futures_util::stream::unfold(Some((requests, 0usize)), move |state| {
            let world = world.clone();
            async move {
                let (mut requests, index) = state?;
                let answer = match requests.message().await {
                    Ok(Some(request)) => verify_one(&world, &request, &format!("requests[{index}]")),
                    Ok(None) => return None,
                    Err(status) => Err(status),
                };
                let next = answer.is_ok().then_some((requests, index + 1));
                Some((answer, next))
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn submit_payment_register(
        &self,
        request: Request<pb::SubmitPaymentRegisterRequest>,
    ) -> Result<Response<pb::SubmitPaymentRegisterResponse>, Status> {
        let request = request.into_inner();
        let register_id = request.register_id.trim().to_owned();
        let payments = convert::request(|violations| {
            if let Some(problem) = register_id_problem(&register_id) {
                violations.add("register_id", problem);
            }
            if request.payments.is_empty() || request.payments.len() > PAYMENTS_PER_REGISTER_MAX {
                violations.add("payments", format!("must hold 1 to {PAYMENTS_PER_REGISTER_MAX} payments"));
                return None;
            }
            let mut payment_ids = HashSet::new();
            let mut payments = Vec::with_capacity(request.payments.len());
            for (index, payment) in request.payments.iter().enumerate() {
                let field = format!("payments[{index}]");
                if !payment_ids.insert(payment.payment_id.trim()) {
                    violations.add(format!("{field}.payment_id"), "repeats an earlier payment's id");
                }
                payments.push(payment_from_proto(violations, &field, payment));
            }
            let payments = payments.into_iter().collect::<Option<Vec<_>>>()?;
            if Money::checked_sum(payments.iter().map(|payment| payment.amount)).is_err() {
                violations.add("payments", "the total amount is out of range");
            }
            Some(payments)
        })?;

        let mut state = lock(&self.world.bank);
        if let Some(submitted) = state.registers.get(&register_id) {
            if submitted.payments != payments {
                return Err(status_with_info(
                    Code::AlreadyExists,
                    format!("register {register_id} was submitted already with other payments"),
                    "REGISTER_ID_REUSED",
                    &[("register_id", register_id.as_str())],
                ));
            }
            return Ok(Response::new(pb::SubmitPaymentRegisterResponse {
                report: Some(report_to_proto(&submitted.report)),
            }));
        }
        if state.registers.len() >= REGISTERS_MAX {
            return Err(Status::resource_exhausted("the simulated bank remembers no more registers"));
        }
        let report = state.process(register_id, payments);
        tracing::info!(
            register_id = %report.register_id,
            payments = report.results.len(),
            "simulated bank: register processed"
        );
        Ok(Response::new(pb::SubmitPaymentRegisterResponse { report: Some(report_to_proto(&report)) }))
    }

    async fn get_payment_register(
        &self,
        request: Request<pb::GetPaymentRegisterRequest>,
    ) -> Result<Response<pb::GetPaymentRegisterResponse>, Status> {
        let register_id = request.into_inner().register_id.trim().to_owned();
        convert::request(|violations| {
            if let Some(problem) = register_id_problem(&register_id) {
                violations.add("register_id", problem);
            }
            Some(())
        })?;
        let state = lock(&self.world.bank);
        let submitted =
            state.registers.get(&register_id).ok_or_else(|| Status::not_found(format!("no register {register_id}")))?;
        Ok(Response::new(pb::GetPaymentRegisterResponse { report: Some(report_to_proto(&submitted.report)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_ids_are_checked() {
        assert_eq!(register_id_problem("2026-01_idp-allowance"), None);
        assert!(register_id_problem("").is_some());
        assert!(register_id_problem("реєстр").is_some());
        assert!(register_id_problem(&"x".repeat(65)).is_some());
    }

    #[test]
    fn account_status_checks_existence_then_holder_then_openness() {
        let mut state = BankState::default();
        let adults = crate::sandbox_adults();
        let closed = adults.iter().find(|adult| !adult.account_open).expect("a closed account");
        let open = adults.iter().find(|adult| adult.account_open).expect("an open account");
        state.add_adult(closed);
        state.add_adult(open);
        assert_eq!(state.account_status(open.iban, open.rnokpp), AccountStatus::Open);
        assert_eq!(state.account_status(closed.iban, closed.rnokpp), AccountStatus::Closed);
        assert_eq!(state.account_status(closed.iban, open.rnokpp), AccountStatus::HolderMismatch);
        let unknown = Iban::compose("305299", "1").expect("iban");
        assert_eq!(state.account_status(unknown, open.rnokpp), AccountStatus::Unknown);
    }
}
