use esocial_auth::Role;
use esocial_identifiers::{Edrpou, Sex};
use esocial_proto::common::v1 as common;
use esocial_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

fn provider(section: pb::ProviderSection, edrpou: &str, rnokpp: &str, territory: &str) -> pb::ProviderData {
    pb::ProviderData {
        section: section.into(),
        name: "Управління соціального захисту населення".to_owned(),
        edrpou: edrpou.to_owned(),
        rnokpp: rnokpp.to_owned(),
        territory: territory.to_owned(),
        services: vec!["BIRTH_ASSISTANCE".to_owned()],
        status: pb::ProviderStatus::Active.into(),
    }
}

async fn register_provider(client: &mut Providers, data: pb::ProviderData) -> Result<pb::Provider, tonic::Status> {
    client
        .register_provider(pb::RegisterProviderRequest {
            request_id: new_request_id(),
            data: Some(data),
            valid_from: None,
            reason: String::new(),
        })
        .await
        .map(|response| response.into_inner().provider.expect("provider"))
}

#[tokio::test]
async fn providers_are_registered_in_three_sections_with_their_identifiers_checked() {
    let app = TestApp::spawn().await;
    let mut client =
        app.providers_with(app.token("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await;
    let edrpou = Edrpou::compose(3_285_596).expect("edrpou").to_string();
    let body =
        register_provider(&mut client, provider(pb::ProviderSection::SocialProtectionBody, &edrpou, "", BUZHANKA))
            .await
            .expect("body");
    assert_eq!(body.version, 1);

    let caregiver_rnokpp = person("Іваненко", "Галина", "1960-06-06", Sex::Female, 9, BUZHANKA).rnokpp;
    let caregiver = register_provider(
        &mut client,
        provider(pb::ProviderSection::IndividualCaregiver, "", &caregiver_rnokpp, ZVENYHORODKA),
    )
    .await
    .expect("caregiver");

    let without_rnokpp =
        register_provider(&mut client, provider(pb::ProviderSection::IndividualCaregiver, "", "", BUZHANKA))
            .await
            .expect_err("an individual needs an RNOKPP");
    assert_eq!(violated_fields(&without_rnokpp), ["data.rnokpp"]);
    let bad_edrpou =
        register_provider(&mut client, provider(pb::ProviderSection::SocialProtectionBody, "32855962", "", BUZHANKA))
            .await
            .expect_err("check digit");
    assert_eq!(violated_fields(&bad_edrpou), ["data.edrpou"]);
    let mut bad_service = provider(
        pb::ProviderSection::ServiceProvider,
        Edrpou::compose(1_234_567).expect("edrpou").as_str(),
        "",
        BUZHANKA,
    );
    bad_service.services = vec!["birth assistance".to_owned()];
    let refused = register_provider(&mut client, bad_service).await.expect_err("service code");
    assert_eq!(violated_fields(&refused), ["data.services[0]"]);
    let elsewhere = register_provider(
        &mut client,
        provider(
            pb::ProviderSection::SocialProtectionBody,
            Edrpou::compose(7_654_321).expect("edrpou").as_str(),
            "",
            LVIV_HROMADA,
        ),
    )
    .await
    .expect_err("outside the caller's oblast");
    assert_eq!(elsewhere.code(), Code::PermissionDenied);

    // A new version; the earlier one still answers for earlier dates.
    let mut suspended = provider(pb::ProviderSection::SocialProtectionBody, &edrpou, "", BUZHANKA);
    suspended.status = pb::ProviderStatus::Suspended.into();
    let tomorrow = esocial_kit::time::kyiv_today().succ_opt().expect("tomorrow");
    let updated = client
        .update_provider(pb::UpdateProviderRequest {
            request_id: new_request_id(),
            provider_id: body.id.clone(),
            expected_version: 1,
            data: Some(suspended),
            valid_from: Some(date(&tomorrow.to_string())),
            reason: "inspection".to_owned(),
        })
        .await
        .expect("updated")
        .into_inner()
        .provider
        .expect("provider");
    assert_eq!(updated.version, 2);
    let today = client
        .get_provider(pb::GetProviderRequest { provider_id: body.id.clone(), as_of: None })
        .await
        .expect("today")
        .into_inner()
        .provider
        .expect("provider");
    assert_eq!(today.data.expect("data").status, i32::from(pb::ProviderStatus::Active));

    // Listed by territory (the oblast includes its settlements); an
    // integrator does not see an individual's RNOKPP.
    let listed = client
        .list_providers(pb::ListProvidersRequest { section: 0, territory: CHERKASY_OBLAST.to_owned(), page: None })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.providers.len(), 2);
    let mut integrator = app.providers_with(app.token("integrator", &[Role::Integrator], &[])).await;
    let seen = integrator
        .get_provider(pb::GetProviderRequest { provider_id: caregiver.id.clone(), as_of: None })
        .await
        .expect("read")
        .into_inner()
        .provider
        .expect("provider");
    assert_eq!(seen.data.expect("data").rnokpp, "", "personal data hidden");
    assert_eq!(app.count("provider_versions").await, 3);
}

#[tokio::test]
async fn support_is_assigned_with_a_classifier_version_then_suspended_with_history_and_events() {
    let app = TestApp::spawn().await;
    let token = app.token("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST]);
    let mut providers = app.providers_with(token.clone()).await;
    let mut persons = app.persons_with(token).await;
    let recipient = register(&mut persons, person("Литвин", "Софія", "1995-05-05", Sex::Female, 55, BUZHANKA)).await;
    let body = register_provider(
        &mut providers,
        provider(
            pb::ProviderSection::SocialProtectionBody,
            Edrpou::compose(2_222_222).expect("edrpou").as_str(),
            "",
            BUZHANKA,
        ),
    )
    .await
    .expect("body");
    let period = common::ValidityPeriod { valid_from: Some(date("2025-12-20")), valid_to: None };
    let assign = |version: u32| pb::AssignSupportRequest {
        request_id: new_request_id(),
        person_id: recipient.id.clone(),
        support_type_code: "BIRTH_ASSISTANCE".to_owned(),
        support_type_version: version,
        provider_id: body.id.clone(),
        decision_number: "2025/123".to_owned(),
        decision_date: Some(date("2025-12-22")),
        period: Some(period),
    };
    let unknown_version = providers.assign_support(assign(99)).await.expect_err("no such version");
    assert_eq!(violated_fields(&unknown_version), ["support_type_version"]);
    let relation =
        providers.assign_support(assign(1)).await.expect("assigned").into_inner().relation.expect("relation");
    assert_eq!(relation.status, i32::from(pb::SupportStatus::Assigned));

    let changed = providers
        .change_support(pb::ChangeSupportRequest {
            request_id: new_request_id(),
            relation_id: relation.id.clone(),
            expected_version: 1,
            status: pb::SupportStatus::Suspended.into(),
            period: None,
            reason: "documents to be checked".to_owned(),
        })
        .await
        .expect("changed")
        .into_inner()
        .relation
        .expect("relation");
    assert_eq!((changed.status, changed.version), (i32::from(pb::SupportStatus::Suspended), 2));
    let listed = providers
        .list_support(pb::ListSupportRequest { person_id: recipient.id.clone(), purpose: "payment check".to_owned() })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.relations, [changed]);
    assert_eq!(app.count("support_relation_versions").await, 2);

    let types: Vec<String> = sqlx::query_scalar("SELECT event_type FROM registry.outbox ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("outbox");
    let expected = [
        "ua.gov.esocial.registry.person.registered.v1",
        "ua.gov.esocial.registry.provider.registered.v1",
        "ua.gov.esocial.registry.support.assigned.v1",
        "ua.gov.esocial.registry.support.changed.v1",
    ];
    assert_eq!(types, expected);
}
