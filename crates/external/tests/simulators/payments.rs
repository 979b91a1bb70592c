//! The bank: account checks and payment registers.

use esocial_external::Error;
use esocial_external::bank::{
    AccountStatus, Bank, PaymentInstruction, PaymentOutcome, PaymentRegister, RegisterStatus, RejectionReason,
};
use esocial_external::sandbox_adults;
use esocial_identifiers::{Iban, Money};

use crate::Sandbox;

fn payment(payment_id: &str, adult_index: usize, hryvnias: i64) -> PaymentInstruction {
    let adult = &sandbox_adults()[adult_index];
    PaymentInstruction {
        payment_id: payment_id.to_owned(),
        iban: adult.iban,
        rnokpp: adult.rnokpp,
        amount: Money::from_hryvnias(hryvnias).expect("amount"),
        purpose: "Допомога на проживання ВПО за січень 2026".to_owned(),
    }
}

#[tokio::test]
async fn accounts_are_open_closed_someone_elses_or_unknown() {
    let sandbox = Sandbox::start().await;
    let bank = &sandbox.clients.bank;
    let adults = sandbox_adults();
    let open = &adults[0];
    let closed = &adults[5];
    assert!(open.account_open && !closed.account_open);
    assert_eq!(bank.verify_account(open.iban, open.rnokpp).await.expect("checked"), AccountStatus::Open);
    assert_eq!(bank.verify_account(closed.iban, closed.rnokpp).await.expect("checked"), AccountStatus::Closed);
    assert_eq!(bank.verify_account(open.iban, closed.rnokpp).await.expect("checked"), AccountStatus::HolderMismatch);
    let unknown = Iban::compose("305299", "26209999999999999").expect("a valid IBAN nobody has");
    assert_eq!(bank.verify_account(unknown, open.rnokpp).await.expect("checked"), AccountStatus::Unknown);
    sandbox.stop().await;
}

#[tokio::test]
async fn many_accounts_are_checked_over_one_streaming_call_one_answer_each_in_order() {
    let sandbox = Sandbox::start().await;
    let bank = &sandbox.clients.bank;
    let adults = sandbox_adults();
    let (open, closed) = (&adults[0], &adults[5]);
    let unknown = Iban::compose("305299", "26209999999999999").expect("a valid IBAN nobody has");
    let accounts = [
        (open.iban, open.rnokpp),
        (closed.iban, closed.rnokpp),
        (open.iban, closed.rnokpp),
        (unknown, open.rnokpp),
        (open.iban, open.rnokpp),
    ];
    let statuses = bank.verify_accounts(&accounts).await.expect("checked");
    assert_eq!(
        statuses,
        [
            AccountStatus::Open,
            AccountStatus::Closed,
            AccountStatus::HolderMismatch,
            AccountStatus::Unknown,
            AccountStatus::Open
        ]
    );
    assert_eq!(bank.verify_accounts(&[]).await.expect("nothing to check"), []);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_payment_to_a_closed_account_is_rejected_and_the_rest_credited_once() {
    let sandbox = Sandbox::start().await;
    let bank = &sandbox.clients.bank;
    let register = PaymentRegister {
        register_id: "IDP-2026-01-001".to_owned(),
        payments: vec![payment("p-1", 0, 2_000), payment("p-2", 5, 3_000), payment("p-3", 1, 2_000)],
    };
    let report = bank.submit_payment_register(&register).await.expect("submitted");
    assert_eq!(report.register_id, "IDP-2026-01-001");
    assert_eq!(report.status, RegisterStatus::Processed);
    let outcomes: Vec<(&str, &PaymentOutcome)> =
        report.results.iter().map(|result| (result.payment_id.as_str(), &result.outcome)).collect();
    assert_eq!(outcomes[0], ("p-1", &PaymentOutcome::Credited));
    match outcomes[1] {
        ("p-2", PaymentOutcome::Rejected { reason: RejectionReason::AccountClosed, message }) => {
            assert!(!message.is_empty());
        }
        other => panic!("the payment to the closed account must be rejected, got {other:?}"),
    }
    assert_eq!(outcomes[2], ("p-3", &PaymentOutcome::Credited));
    assert_eq!(report.credited_total, Money::from_hryvnias(4_000).expect("amount"));
    assert_eq!(report.rejected_total, Money::from_hryvnias(3_000).expect("amount"));

    let retry = bank.submit_payment_register(&register).await.expect("submitted again");
    assert_eq!(retry, report, "a retry gets the first report");
    assert_eq!(bank.payment_register("IDP-2026-01-001").await.expect("status"), report);

    let mut changed = register.clone();
    changed.payments[0].amount = Money::from_hryvnias(2_500).expect("amount");
    match bank.submit_payment_register(&changed).await {
        Err(Error::AlreadyExists { existing_record, .. }) => {
            assert_eq!(existing_record.as_deref(), Some("IDP-2026-01-001"));
        }
        other => panic!("a reused register id must be refused, got {other:?}"),
    }
    assert!(matches!(bank.payment_register("IDP-2026-02-001").await, Err(Error::NotFound { .. })));
    sandbox.stop().await;
}

#[tokio::test]
async fn payments_to_someone_elses_or_an_unknown_account_are_rejected_with_their_reasons() {
    let sandbox = Sandbox::start().await;
    let bank = &sandbox.clients.bank;
    let mut wrong_holder = payment("p-1", 2, 100);
    wrong_holder.rnokpp = sandbox_adults()[3].rnokpp;
    let mut unknown = payment("p-2", 2, 100);
    unknown.iban = Iban::compose("300465", "1").expect("iban");
    let register = PaymentRegister { register_id: "R-2".to_owned(), payments: vec![wrong_holder, unknown] };
    let report = bank.submit_payment_register(&register).await.expect("submitted");
    let reasons: Vec<Option<RejectionReason>> = report
        .results
        .iter()
        .map(|result| match &result.outcome {
            PaymentOutcome::Rejected { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Some(RejectionReason::HolderMismatch), Some(RejectionReason::AccountUnknown)]);
    assert_eq!(report.credited_total, Money::ZERO);
    sandbox.stop().await;
}

#[tokio::test]
async fn an_invalid_register_is_refused_whole_with_every_problem_named() {
    let sandbox = Sandbox::start().await;
    let bank = &sandbox.clients.bank;
    let mut negative = payment("p-1", 0, 100);
    negative.amount = Money::from_kopiykas(-1);
    let mut long_purpose = payment("p-1", 1, 100);
    long_purpose.purpose = "я".repeat(161);
    let register = PaymentRegister {
        register_id: "реєстр 1".to_owned(),
        payments: vec![negative, long_purpose, payment("p-3", 2, 1)],
    };
    match bank.submit_payment_register(&register).await {
        Err(Error::InvalidRequest { problems, .. }) => {
            let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
            assert_eq!(fields, ["register_id", "payments[0].amount", "payments[1].payment_id", "payments[1].purpose"]);
        }
        other => panic!("the register must be refused, got {other:?}"),
    }
    let empty = PaymentRegister { register_id: "R-3".to_owned(), payments: Vec::new() };
    assert!(matches!(bank.submit_payment_register(&empty).await, Err(Error::InvalidRequest { .. })));
    // Nothing of the refused registers was kept.
    assert!(matches!(bank.payment_register("R-3").await, Err(Error::NotFound { .. })));
    sandbox.stop().await;
}
