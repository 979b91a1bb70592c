//! A bank: account checks and payment registers.

use std::future::Future;

use esocial_identifiers::{Iban, Money, Rnokpp};

use crate::Error;

/// The most payments one register may hold.
pub const PAYMENTS_PER_REGISTER_MAX: usize = 10_000;
/// The longest register id or payment id.
pub const PAYMENT_ID_LENGTH_MAX: usize = 64;
/// The longest payment purpose, in characters.
pub const PURPOSE_LENGTH_MAX: usize = 160;

/// What the bank says about an account and a would-be holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// Open, and the holder is the given person.
    Open,
    /// Closed: nothing can be credited.
    Closed,
    /// The account belongs to someone else.
    HolderMismatch,
    /// The bank has no such account.
    Unknown,
}

/// One payment of a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInstruction {
    /// The payer's id, unique within the register.
    pub payment_id: String,
    pub iban: Iban,
    /// The recipient, who must hold the account.
    pub rnokpp: Rnokpp,
    /// Positive.
    pub amount: Money,
    /// At most [`PURPOSE_LENGTH_MAX`] characters.
    pub purpose: String,
}

/// A register of payments sent to the bank at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRegister {
    /// The payer's id: letters, digits, `-` and `_`, at most
    /// [`PAYMENT_ID_LENGTH_MAX`]; submitting the same id again is a retry.
    pub register_id: String,
    pub payments: Vec<PaymentInstruction>,
}

/// Why a payment was not credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    AccountClosed,
    AccountUnknown,
    HolderMismatch,
    /// A reason this version does not know.
    Other,
}

/// What became of one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Not processed yet.
    Pending,
    Credited,
    Rejected {
        reason: RejectionReason,
        message: String,
    },
}

/// One payment's outcome, by the payer's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentResult {
    pub payment_id: String,
    pub outcome: PaymentOutcome,
}

/// Where a register stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterStatus {
    /// Received; outcomes not known yet.
    Accepted,
    /// Every payment credited or rejected.
    Processed,
}

/// The bank's report on a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReport {
    pub register_id: String,
    pub status: RegisterStatus,
    /// One per payment, in the order submitted.
    pub results: Vec<PaymentResult>,
    pub credited_total: Money,
    pub rejected_total: Money,
}

/// A bank, as esocial uses it.
pub trait Bank: Send + Sync {
    /// Whether `iban` is open and held by `holder`.
    fn verify_account(&self, iban: Iban, holder: Rnokpp) -> impl Future<Output = Result<AccountStatus, Error>> + Send;

    /// Many accounts over one streaming call (before a payment run): one
    /// status per `(account, would-be holder)`, in order. The adapter checks
    /// that every account got exactly one answer.
    fn verify_accounts(
        &self,
        accounts: &[(Iban, Rnokpp)],
    ) -> impl Future<Output = Result<Vec<AccountStatus>, Error>> + Send;

    /// Submits a register; a retry with the same register returns the first
    /// report, the same id with other payments is [`Error::AlreadyExists`].
    /// The adapter checks that the report has one result per payment.
    fn submit_payment_register(
        &self,
        register: &PaymentRegister,
    ) -> impl Future<Output = Result<RegisterReport, Error>> + Send;

    /// The report on a submitted register; [`Error::NotFound`] for an
    /// unknown id.
    fn payment_register(&self, register_id: &str) -> impl Future<Output = Result<RegisterReport, Error>> + Send;
}
