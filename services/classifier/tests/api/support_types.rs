use esocial_proto::classifier::v1 as pb;
use tonic::Code;

use crate::harness::{TestApp, date, money, new_request_id, open_from, violated_fields};

fn get(code: &str, as_of: &str) -> pb::GetSupportTypeRequest {
    pb::GetSupportTypeRequest { code: code.to_owned(), as_of: Some(date(as_of)) }
}

fn social_service_content(name: &str) -> pb::SupportTypeContent {
    pb::SupportTypeContent {
        name_uk: format!("Послуга {name}"),
        name_en: format!("Service {name}"),
        category: pb::SupportCategory::SocialService.into(),
        legal_basis: "Закон України «Про соціальні послуги»".to_owned(),
        payment_rule: None,
        decisive_date: pb::DecisiveDate::ApplicationDate.into(),
        thresholds: vec![],
        eligibility_notes: String::new(),
    }
}

fn create(
    code: &str,
    from: &str,
    content: pb::SupportTypeContent,
    expected: u32,
) -> pb::CreateSupportTypeVersionRequest {
    pb::CreateSupportTypeVersionRequest {
        request_id: new_request_id(),
        code: code.to_owned(),
        validity: Some(open_from(from)),
        content: Some(content),
        change_reason: "test".to_owned(),
        expected_latest_version: expected,
    }
}

#[tokio::test]
async fn birth_assistance_answers_by_birth_date_across_the_2026_change() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;

    let before = client.get_support_type(get("BIRTH_ASSISTANCE", "2025-12-31")).await.expect("in force").into_inner();
    let version = before.support_type.expect("version");
    assert_eq!(version.version, 1);
    let rule = version.content.as_ref().and_then(|content| content.payment_rule.clone()).expect("paid");
    let Some(pb::payment_rule::Kind::Instalments(schedule)) = rule.kind else {
        panic!("expected a schedule: {rule:?}")
    };
    assert_eq!(schedule.first_payment, money(1_032_000));
    assert_eq!(schedule.monthly_payment, money(86_000));
    assert_eq!(schedule.months, 36);
    assert_eq!(rule.total, money(4_128_000), "10,320 + 36 × 860 = 41,280 UAH");
    assert_eq!(version.validity.as_ref().and_then(|validity| validity.valid_to), Some(date("2025-12-31")));
    assert_eq!(version.status, i32::from(pb::VersionStatus::InForce));

    let after = client.get_support_type(get("BIRTH_ASSISTANCE", "2026-01-01")).await.expect("in force").into_inner();
    let version = after.support_type.expect("version");
    assert_eq!(version.version, 2);
    let rule = version.content.and_then(|content| content.payment_rule).expect("paid");
    assert_eq!(rule.kind, Some(pb::payment_rule::Kind::OneOff(pb::OneOffPayment { amount: money(5_000_000) })));
    assert_eq!(rule.total, money(5_000_000));

    let before_2014 = client.get_support_type(get("BIRTH_ASSISTANCE", "2014-06-30")).await.expect_err("not in force");
    assert_eq!(before_2014.code(), Code::NotFound);
    assert!(before_2014.message().contains("no version in force on 2014-06-30"), "{}", before_2014.message());
}

#[tokio::test]
async fn baby_package_and_idp_allowance_follow_their_dated_rules() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let amount_on = async |client: &mut crate::harness::Client, day: &str| {
        let version = client.get_support_type(get("BABY_PACKAGE_COMPENSATION", day)).await.expect("in force");
        version.into_inner().support_type.and_then(|version| version.content).and_then(|content| content.payment_rule)
    };
    assert_eq!(amount_on(&mut client, "2021-05-01").await.and_then(|rule| rule.total), money(500_000));
    assert_eq!(amount_on(&mut client, "2025-06-01").await.and_then(|rule| rule.total), money(768_900));
    assert_eq!(amount_on(&mut client, "2026-03-01").await.and_then(|rule| rule.total), money(845_100));

    let idp = client.get_support_type(get("IDP_LIVING_ALLOWANCE", "2024-03-01")).await.expect("in force").into_inner();
    let content = idp.support_type.and_then(|version| version.content).expect("content");
    let thresholds: Vec<(String, i64)> = content
        .thresholds
        .iter()
        .map(|threshold| (threshold.name.clone(), threshold.amount.map_or(0, |amount| amount.kopiykas)))
        .collect();
    assert!(thresholds.contains(&("per_capita_income_max".to_owned(), 944_400)), "{thresholds:?}");
    let Some(pb::payment_rule::Kind::Monthly(monthly)) = content.payment_rule.and_then(|rule| rule.kind) else {
        panic!("monthly payment expected")
    };
    assert_eq!(monthly.grant_period_months, 6);
    let per_child =
        monthly.amounts.iter().find(|amount| amount.recipient_category == "child").and_then(|amount| amount.amount);
    assert_eq!(per_child, money(300_000));
}

#[tokio::test]
async fn list_pages_through_the_types_in_force_by_code() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let mut codes = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_support_types(pb::ListSupportTypesRequest {
                as_of: Some(date("2026-01-01")),
                category: 0,
                page: Some(esocial_proto::common::v1::PageRequest { page_size: 3, page_token: token.clone() }),
            })
            .await
            .expect("lists")
            .into_inner();
        pages += 1;
        assert!(page.support_types.len() <= 3);
        codes.extend(page.support_types.into_iter().map(|version| version.code));
        token = page.page.map(|page| page.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        codes,
        ["BABY_PACKAGE_COMPENSATION", "BIRTH_ASSISTANCE", "IDP_LIVING_ALLOWANCE", "LARGE_FAMILY_CHILD_ASSISTANCE"]
    );
    assert_eq!(pages, 2);

    // Before the IDP allowance and the large family assistance existed.
    let in_2018 = client
        .list_support_types(pb::ListSupportTypesRequest { as_of: Some(date("2018-01-01")), category: 0, page: None })
        .await
        .expect("lists")
        .into_inner();
    let codes_2018: Vec<_> = in_2018.support_types.iter().map(|version| version.code.as_str()).collect();
    assert_eq!(codes_2018, ["BIRTH_ASSISTANCE"]);

    let bad_token = client
        .list_support_types(pb::ListSupportTypesRequest {
            as_of: None,
            category: 0,
            page: Some(esocial_proto::common::v1::PageRequest { page_size: 1000, page_token: "garbage".to_owned() }),
        })
        .await
        .expect_err("refused");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad_token), ["page.page_size", "page.page_token"]);
}

#[tokio::test]
async fn a_new_version_end_dates_the_previous_and_history_keeps_both() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut admin = app.admin().await;
    let first = admin
        .create_support_type_version(create("HOME_CARE", "2024-01-01", social_service_content("v1"), 0))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(first.created.as_ref().map(|version| version.version), Some(1));
    assert_eq!(first.end_dated_version, None);

    let second = admin
        .create_support_type_version(create("HOME_CARE", "2025-04-01", social_service_content("v2"), 1))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(second.end_dated_version, Some(1));

    let history = admin
        .list_support_type_versions(pb::ListSupportTypeVersionsRequest { code: "HOME_CARE".to_owned() })
        .await
        .expect("history")
        .into_inner()
        .versions;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].validity.as_ref().and_then(|validity| validity.valid_to), Some(date("2025-03-31")));
    assert_eq!(history[0].content.as_ref().map(|content| content.name_uk.as_str()), Some("Послуга v1"));
    assert_eq!(history[1].validity.as_ref().and_then(|validity| validity.valid_to), None);
    assert_eq!(history[0].recorded_by.as_ref().map(|actor| actor.subject.as_str()), Some("test-account"));

    let mut reader = app.reader().await;
    let on_last_day = reader.get_support_type(get("HOME_CARE", "2025-03-31")).await.expect("v1").into_inner();
    assert_eq!(on_last_day.support_type.map(|version| version.version), Some(1));

    // The stored content of version 1 cannot be changed behind the API either.
    let tampering = sqlx::query(
        "UPDATE classifier.support_type_versions SET name_uk = 'змінено' WHERE code = 'HOME_CARE' AND version = 1",
    )
    .execute(&app.pool)
    .await;
    assert!(tampering.is_err(), "the database refuses to overwrite a version");
}

#[tokio::test]
async fn retirement_ends_validity_and_later_dates_find_nothing() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut admin = app.admin().await;
    admin
        .create_support_type_version(create("RESPITE_CARE", "2024-01-01", social_service_content("v1"), 0))
        .await
        .expect("created");
    let retired = admin
        .retire_support_type(pb::RetireSupportTypeRequest {
            request_id: new_request_id(),
            code: "RESPITE_CARE".to_owned(),
            effective_from: Some(date("2025-01-01")),
            reason: "programme ended".to_owned(),
        })
        .await
        .expect("retired")
        .into_inner();
    let end_dated = retired.end_dated.expect("version");
    assert_eq!(end_dated.validity.and_then(|validity| validity.valid_to), Some(date("2024-12-31")));

    let mut reader = app.reader().await;
    assert!(reader.get_support_type(get("RESPITE_CARE", "2024-12-31")).await.is_ok());
    let gone = reader.get_support_type(get("RESPITE_CARE", "2025-01-01")).await.expect_err("retired");
    assert_eq!(gone.code(), Code::NotFound);

    let again = admin
        .retire_support_type(pb::RetireSupportTypeRequest {
            request_id: new_request_id(),
            code: "RESPITE_CARE".to_owned(),
            effective_from: Some(date("2026-01-01")),
            reason: "again".to_owned(),
        })
        .await
        .expect_err("already ends");
    assert_eq!(again.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn overlapping_or_retroactive_periods_and_stale_versions_are_refused() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut admin = app.admin().await;
    let mut closed = create("DAY_CARE", "2024-01-01", social_service_content("v1"), 0);
    closed.validity = Some(esocial_proto::common::v1::ValidityPeriod {
        valid_from: Some(date("2024-01-01")),
        valid_to: Some(date("2024-12-31")),
    });
    admin.create_support_type_version(closed).await.expect("created");

    let overlapping = admin
        .create_support_type_version(create("DAY_CARE", "2024-06-01", social_service_content("v2"), 1))
        .await
        .expect_err("overlaps");
    assert_eq!(overlapping.code(), Code::FailedPrecondition);
    assert!(overlapping.message().contains("overlaps version 1"), "{}", overlapping.message());

    let retroactive = admin
        .create_support_type_version(create("DAY_CARE", "2023-01-01", social_service_content("v0"), 1))
        .await
        .expect_err("before the latest");
    assert_eq!(retroactive.code(), Code::FailedPrecondition);

    let stale = admin
        .create_support_type_version(create("DAY_CARE", "2025-06-01", social_service_content("v2"), 0))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);

    let after_gap = admin
        .create_support_type_version(create("DAY_CARE", "2025-06-01", social_service_content("v2"), 1))
        .await
        .expect("a later period after a gap is fine")
        .into_inner();
    assert_eq!(after_gap.end_dated_version, None);
    let mut reader = app.reader().await;
    let in_gap = reader.get_support_type(get("DAY_CARE", "2025-03-01")).await.expect_err("gap");
    assert_eq!(in_gap.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_input_names_every_offending_field_and_writes_nothing() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut admin = app.admin().await;
    let mut content = social_service_content("x");
    content.name_uk = "   ".to_owned();
    content.category = 0;
    content.payment_rule = Some(pb::PaymentRule {
        kind: Some(pb::payment_rule::Kind::Instalments(pb::InstalmentSchedule {
            first_payment: money(-5),
            monthly_payment: money(86_000),
            months: 0,
        })),
        total: None,
    });
    let request = pb::CreateSupportTypeVersionRequest {
        request_id: "not-a-uuid".to_owned(),
        code: "birth assistance".to_owned(),
        validity: Some(esocial_proto::common::v1::ValidityPeriod {
            valid_from: Some(date("2025-02-01")),
            valid_to: Some(esocial_proto::common::v1::Date { year: 2025, month: 2, day: 30 }),
        }),
        content: Some(content),
        change_reason: String::new(),
        expected_latest_version: 0,
    };
    let status = admin.create_support_type_version(request).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violated_fields(&status);
    for field in [
        "request_id",
        "code",
        "validity.valid_to",
        "content.name_uk",
        "content.category",
        "content.payment_rule.instalments.first_payment.kopiykas",
        "content.payment_rule.instalments.months",
        "change_reason",
    ] {
        assert!(fields.contains(&field.to_owned()), "{field} not named in {fields:?}");
    }
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM classifier.support_types").fetch_one(&app.pool).await.expect("count");
    assert_eq!(rows, 0, "nothing written");

    let mut reader = app.reader().await;
    let malformed = reader.get_support_type(get("birth-assistance", "2025-01-01")).await.expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["code"]);
    let unknown = reader.get_support_type(get("NO_SUCH_SUPPORT", "2025-01-01")).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("does not exist"), "{}", unknown.message());
}

#[tokio::test]
async fn a_retried_request_id_returns_the_first_result_and_a_reused_one_is_refused() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut admin = app.admin().await;
    let request = create("TRANSPORT_SERVICE", "2024-01-01", social_service_content("v1"), 0);
    let first = admin.create_support_type_version(request.clone()).await.expect("created").into_inner();
    let retry = admin.create_support_type_version(request.clone()).await.expect("replayed").into_inner();
    assert_eq!(retry, first, "the retry gets the stored response");
    let versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM classifier.support_type_versions WHERE code = 'TRANSPORT_SERVICE'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(versions, 1);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM classifier.outbox WHERE subject_id = 'TRANSPORT_SERVICE'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(events, 1, "one change, one event");

    let mut different = request;
    different.content = Some(social_service_content("something else"));
    let reused = admin.create_support_type_version(different).await.expect_err("reused id");
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&reused), ["request_id"]);
}

#[tokio::test]
async fn concurrent_creations_of_a_new_code_give_one_version_and_one_aborted() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut first_client = app.admin().await;
    let mut second_client = app.admin().await;
    let first = create("RACE_SERVICE", "2024-01-01", social_service_content("a"), 0);
    let second = create("RACE_SERVICE", "2024-01-01", social_service_content("b"), 0);
    let (first, second) = tokio::join!(
        first_client.create_support_type_version(first),
        second_client.create_support_type_version(second)
    );
    let outcomes = [
        first.map(|_| Code::Ok).unwrap_or_else(|status| status.code()),
        second.map(|_| Code::Ok).unwrap_or_else(|status| status.code()),
    ];
    assert!(outcomes.contains(&Code::Ok), "{outcomes:?}");
    assert!(outcomes.contains(&Code::Aborted), "{outcomes:?}");
    let versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM classifier.support_type_versions WHERE code = 'RACE_SERVICE'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn concurrent_changes_to_an_existing_code_never_fail_internally() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let admin = app.admin().await;
    for round in 0..12 {
        let code = format!("CONTESTED_{round}");
        admin
            .clone()
            .create_support_type_version(create(&code, "2024-01-01", social_service_content("v1"), 0))
            .await
            .expect("created");
        let retire = |effective: &str| pb::RetireSupportTypeRequest {
            request_id: new_request_id(),
            code: code.clone(),
            effective_from: Some(date(effective)),
            reason: "race".to_owned(),
        };
        let (mut creator, mut first_retirer, mut second_retirer) = (admin.clone(), admin.clone(), admin.clone());
        let (created, first, second) = tokio::join!(
            creator.create_support_type_version(create(&code, "2025-01-01", social_service_content("v2"), 1)),
            first_retirer.retire_support_type(retire("2025-06-01")),
            second_retirer.retire_support_type(retire("2025-07-01")),
        );
        for outcome in [created.map(drop), first.map(drop), second.map(drop)] {
            if let Err(status) = outcome {
                assert!(
                    matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                    "round {round}: a concurrent change must be refused as a conflict, got {status:?}"
                );
            }
        }
        // Whatever order they ran in, the history is consistent.
        let history = admin
            .clone()
            .list_support_type_versions(pb::ListSupportTypeVersionsRequest { code: code.clone() })
            .await
            .expect("history")
            .into_inner()
            .versions;
        let last_days: Vec<Option<esocial_proto::common::v1::Date>> =
            history.iter().map(|version| version.validity.as_ref().and_then(|validity| validity.valid_to)).collect();
        assert!(last_days[..last_days.len() - 1].iter().all(Option::is_some), "only the last version may be open");
    }
}

#[tokio::test]
async fn every_violation_is_reported_even_next_to_a_broken_payment_rule() {
    let app = TestApp::spawn_with(crate::harness::Options::default()).await;
    let mut content = social_service_content("x");
    content.payment_rule = Some(pb::PaymentRule { kind: None, total: None });
    content.decisive_date = 0;
    content.thresholds = vec![pb::Threshold { name: String::new(), amount: money(-1) }];
    let status = app
        .admin()
        .await
        .create_support_type_version(create("BROKEN_RULE", "2026-01-01", content, 0))
        .await
        .expect_err("invalid");
    let fields = violated_fields(&status);
    for field in [
        "content.payment_rule",
        "content.decisive_date",
        "content.thresholds[0].name",
        "content.thresholds[0].amount.kopiykas",
    ] {
        assert!(fields.contains(&field.to_owned()), "{field} missing from {fields:?}");
    }
}

#[tokio::test]
async fn control_characters_in_queries_and_page_tokens_are_refused_not_sent_to_the_database() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let mut reader = app.reader().await;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("after:A\0");
    let status = reader
        .list_support_types(pb::ListSupportTypesRequest {
            as_of: None,
            category: 0,
            page: Some(esocial_proto::common::v1::PageRequest { page_size: 10, page_token: token }),
        })
        .await
        .expect_err("forged token");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page.page_token"]);

    let status = reader
        .search_reference_entries(pb::SearchReferenceEntriesRequest {
            book: pb::ReferenceBook::TerritorialUnits.into(),
            query: "ab\0".to_owned(),
            as_of: None,
            page: None,
        })
        .await
        .expect_err("NUL in query");
    assert_eq!(violated_fields(&status), ["query"]);
}
