use esocial_auth::Role;
use esocial_proto::gateway::v1 as pb;
use tonic::Code;

use crate::harness::*;

/// Diia's registration with system client `client_id`, a new request id,
/// the default limits and the metadata log mode.
fn diia_registration(client_id: &str) -> pb::RegisterMemberRequest {
    pb::RegisterMemberRequest {
        request_id: new_request_id(),
        member_id: DIIA.to_owned(),
        name: "Портал Дія".to_owned(),
        client_id: client_id.to_owned(),
        contact: "support@diia.gov.ua".to_owned(),
        limits: None,
        log_mode: pb::LogMode::Metadata.into(),
        client_certificate_sha256: String::new(),
    }
}

/// Registers Diia with its system client `diia`: the member registered.
async fn register_diia(admin: &mut Admin) -> pb::Member {
    admin.register_member(diia_registration("diia")).await.expect("registered").into_inner().member.expect("member")
}

#[tokio::test]
async fn registrations_of_one_member_at_once_give_one_member_and_already_exists_for_the_others() {
    let gateway = TestGateway::spawn().await;
    gateway.register_client("diia").await;
    let admin = gateway.admin().await;
    let register = |index: usize| pb::RegisterMemberRequest {
        name: format!("Портал Дія {index}"),
        ..diia_registration("diia")
    };
    let calls = (0..6).map(|index| {
        let mut admin = admin.clone();
        let request = register(index);
        async move { admin.register_member(request).await.map(|_| ()).map_err(|status| status.code()) }
    });
    let results = futures_util::future::join_all(calls).await;
    let registered = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(registered, 1, "{results:?}");
    assert!(results.iter().all(|result| result.is_ok() || *result == Err(Code::AlreadyExists)), "{results:?}");
    assert_eq!(gateway.count("gateway.members").await, 1);
}

/// The changes recorded of `member_id`, oldest first.
async fn changes_of(admin: &mut Admin, member_id: &str) -> Vec<pb::AdminChange> {
    let asked = pb::ListAdminChangesRequest { member_id: member_id.to_owned(), page: None };
    admin.list_admin_changes(asked).await.expect("changes").into_inner().changes
}

/// `changes` are `actions`, in that order, each made by the test's
/// administrator.
fn assert_actions_by_the_administrator(changes: &[pb::AdminChange], actions: &[&str]) {
    let made: Vec<&str> = changes.iter().map(|change| change.action.as_str()).collect();
    assert_eq!(made, actions);
    assert!(
        changes.iter().all(|change| change.changed_by.as_ref().is_some_and(|actor| actor.subject == PERSON_ACCOUNT)),
        "{changes:?}"
    );
}

#[tokio::test]
async fn members_and_rights_are_administered_with_every_change_recorded_and_published() {
    let gateway = TestGateway::spawn().await;
    gateway.register_client("diia").await;
    let mut admin = gateway.admin().await;
    let request_id = new_request_id();
    let register = pb::RegisterMemberRequest {
        request_id: request_id.clone(),
        limits: Some(pb::Limits { requests_per_second: 50, burst: 100, message_bytes_max: 0 }),
        ..diia_registration("diia")
    };
    let member =
        admin.register_member(register.clone()).await.expect("registered").into_inner().member.expect("member");
    assert_eq!(member.status, i32::from(pb::MemberStatus::Active));
    // A retry returns the first result; the same id with other content is refused.
    let again = admin.register_member(register.clone()).await.expect("retry").into_inner().member.expect("member");
    assert_eq!(again, member);
    let changed = admin
        .register_member(pb::RegisterMemberRequest { name: "Інше".to_owned(), ..register.clone() })
        .await
        .expect_err("same request id, other content");
    assert_ne!(changed.code(), Code::Ok);
    let duplicate = admin
        .register_member(pb::RegisterMemberRequest { request_id: new_request_id(), ..register.clone() })
        .await
        .expect_err("registered already");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let same_client = admin
        .register_member(pb::RegisterMemberRequest {
            request_id: new_request_id(),
            member_id: BANK.to_owned(),
            ..register.clone()
        })
        .await
        .expect_err("client bound to another member");
    assert_eq!(same_client.code(), Code::AlreadyExists);
    assert!(same_client.message().contains(DIIA), "{}", same_client.message());

    for (method, granted) in [
        ("/esocial.registry.v1.IdpService/VerifyIdpCertificate", true),
        ("/esocial.registry.v1.ProviderService/*", true),
    ] {
        let right = admin
            .grant_access(pb::GrantAccessRequest {
                request_id: new_request_id(),
                member_id: DIIA.to_owned(),
                method: method.to_owned(),
            })
            .await
            .expect("granted")
            .into_inner()
            .right
            .expect("right");
        assert_eq!((right.method.as_str(), right.granted_by.as_str()), (method, PERSON_ACCOUNT));
        assert!(granted);
    }
    admin
        .revoke_access(pb::RevokeAccessRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            method: "/esocial.registry.v1.IdpService/VerifyIdpCertificate".to_owned(),
            reason: "no longer needed".to_owned(),
        })
        .await
        .expect("revoked");
    let rights = admin
        .list_access_rights(pb::ListAccessRightsRequest { member_id: DIIA.to_owned() })
        .await
        .expect("rights")
        .into_inner()
        .rights;
    let methods: Vec<&str> = rights.iter().map(|right| right.method.as_str()).collect();
    assert_eq!(methods, ["/esocial.registry.v1.ProviderService/*"]);

    // Every change, with its author.
    let changes = changes_of(&mut admin, DIIA).await;
    assert_actions_by_the_administrator(&changes, &["RegisterMember", "GrantAccess", "GrantAccess", "RevokeAccess"]);
    assert!(changes[3].details.contains("no longer needed"), "{}", changes[3].details);

    // And as events.
    let subjects: Vec<String> = gateway
        .events
        .messages("gateway.>", std::time::Duration::from_secs(3))
        .await
        .expect("events")
        .into_iter()
        .map(|message| message.subject.to_string())
        // Checkpoints of the message log come every second here.
        .filter(|subject| !subject.contains(".gateway.log."))
        .collect();
    let prefix = &gateway.events.settings.subject_prefix;
    assert_eq!(
        subjects,
        [
            format!("{prefix}.gateway.member.registered"),
            format!("{prefix}.gateway.access.granted"),
            format!("{prefix}.gateway.access.granted"),
            format!("{prefix}.gateway.access.revoked"),
        ]
    );
}

/// An update of a member and a change of its event entitlements are each
/// recorded with their author, what was before and after, and published
/// with what changed.
#[tokio::test]
async fn member_updates_and_entitlement_changes_are_recorded_and_published() {
    use prost::Message as _;
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[]).await;
    let mut admin = gateway.admin().await;
    let updated = admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            status: pb::MemberStatus::Suspended.into(),
            limits: Some(pb::Limits { requests_per_second: 7, burst: 9, message_bytes_max: 65_536 }),
            reason: "перевірка безпеки".to_owned(),
            ..pb::UpdateMemberRequest::default()
        })
        .await
        .expect("updated")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(updated.status, i32::from(pb::MemberStatus::Suspended));
    let entitled = admin
        .set_event_entitlements(pb::SetEventEntitlementsRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            event_types: vec!["registry.idp.certificate.revoked".to_owned()],
        })
        .await
        .expect("entitled")
        .into_inner()
        .event_types;
    assert_eq!(entitled, ["registry.idp.certificate.revoked"]);

    let changes = changes_of(&mut admin, DIIA).await;
    assert_actions_by_the_administrator(&changes, &["RegisterMember", "UpdateMember", "SetEventEntitlements"]);
    let details = |index: usize| -> serde_json::Value { serde_json::from_str(&changes[index].details).expect("JSON") };
    let update = details(1);
    assert_eq!(update["reason"], "перевірка безпеки");
    assert_eq!((&update["before"]["status"], &update["after"]["status"]), (&"active".into(), &"suspended".into()));
    assert_eq!(update["after"]["limits"], serde_json::json!([7, 9, 65_536]));
    let entitlements = details(2);
    assert_eq!(entitlements["before"], serde_json::json!([]));
    assert_eq!(entitlements["after"], serde_json::json!(["registry.idp.certificate.revoked"]));

    let prefix = &gateway.events.settings.subject_prefix;
    let events: Vec<_> = gateway
        .events
        .messages("gateway.>", std::time::Duration::from_secs(3))
        .await
        .expect("events")
        .into_iter()
        .filter(|message| !message.subject.contains(".gateway.log."))
        .collect();
    let subjects: Vec<String> = events.iter().map(|message| message.subject.to_string()).collect();
    assert_eq!(
        subjects,
        [
            format!("{prefix}.gateway.member.registered"),
            format!("{prefix}.gateway.member.updated"),
            format!("{prefix}.gateway.entitlements.changed"),
        ]
    );
    let member_changed = pb::MemberChanged::decode(events[1].payload.as_ref()).expect("MemberChanged");
    assert_eq!(member_changed.reason, "перевірка безпеки");
    assert_eq!(member_changed.member.as_ref().map(|member| member.status), Some(pb::MemberStatus::Suspended.into()));
    assert_eq!(member_changed.changed_by.map(|actor| actor.subject).as_deref(), Some(PERSON_ACCOUNT));
    let entitlements_changed =
        pb::EventEntitlementsChanged::decode(events[2].payload.as_ref()).expect("EventEntitlementsChanged");
    assert_eq!(
        (entitlements_changed.member_id.as_str(), entitlements_changed.event_types.as_slice()),
        (DIIA, ["registry.idp.certificate.revoked".to_owned()].as_slice())
    );
}

#[tokio::test]
async fn a_member_is_registered_only_with_a_system_client_identity_has() {
    let gateway = TestGateway::spawn().await;
    let mut admin = gateway.admin().await;
    let unknown =
        admin.register_member(diia_registration("no-such-client")).await.expect_err("a client identity has not");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), ["client_id"]);
    assert_eq!(gateway.count("gateway.members").await, 0, "nothing written");
    assert_eq!(gateway.count("gateway.admin_changes").await, 0, "nothing recorded");

    // A client the gateway has not heard of from identity's events (here:
    // heard of, then forgotten): it reads identity's list again.
    gateway.register_client("diia").await;
    let recorded = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM gateway.identity_clients WHERE client_id = 'diia'")
            .fetch_one(&gateway.pool)
            .await
            .expect("recorded clients")
    };
    eventually(std::time::Duration::from_secs(10), || async {
        if recorded().await == 1 { Ok(()) } else { Err("identity's event not yet recorded".to_owned()) }
    })
    .await;
    sqlx::query("DELETE FROM gateway.identity_clients WHERE client_id = 'diia'")
        .execute(&gateway.pool)
        .await
        .expect("forgotten");
    let member = register_diia(&mut admin).await;
    assert_eq!(recorded().await, 1, "recorded again from identity's list");
    assert_eq!((member.member_id.as_str(), member.client_id.as_str()), (DIIA, "diia"));
    assert_eq!(gateway.count("gateway.members").await, 1);
}

#[tokio::test]
async fn a_member_is_not_registered_while_identity_cannot_say_whether_it_has_the_client() {
    // The gateway reaches identity through a way the test can cut.
    let identity = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let way =
        esocial_testkit::TcpProxy::start(identity.local_addr().expect("address")).await.expect("a way to identity");
    let way_url = format!("http://{}", way.address());
    let gateway = TestGateway::spawn_with_identity_on(identity, &[("ESOCIAL_IDENTITY_URL", &way_url)]).await;
    let mut admin = gateway.admin().await;

    // Identity cannot be asked (the gateway has its keys already, so the
    // administrator's token still verifies).
    way.cut();
    let unavailable = admin.register_member(diia_registration("diia")).await.expect_err("identity cannot be asked");
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");
    assert!(unavailable.message().contains("retry later"), "{}", unavailable.message());
    assert_eq!(gateway.count("gateway.members").await, 0, "nothing written");
    assert_eq!(gateway.count("gateway.admin_changes").await, 0, "nothing recorded");

    // Once it can, the same request is answered by what identity has.
    way.restore();
    let unknown = admin.register_member(diia_registration("diia")).await.expect_err("identity has no such client");
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
    assert_eq!(violated_fields(&unknown), ["client_id"]);
    gateway.register_client("diia").await;
    let member = register_diia(&mut admin).await;
    assert_eq!((member.member_id.as_str(), member.client_id.as_str()), (DIIA, "diia"));
    assert_eq!(gateway.count("gateway.members").await, 1);
}

#[tokio::test]
async fn bad_input_names_its_field_and_only_security_administrators_administer() {
    let gateway = TestGateway::spawn().await;
    let mut admin = gateway.admin().await;
    let bad = admin
        .register_member(pb::RegisterMemberRequest {
            request_id: "not-a-uuid".to_owned(),
            member_id: "UA/GOV/32855968/diia".to_owned(),
            name: String::new(),
            client_id: "Diia Portal".to_owned(),
            contact: String::new(),
            limits: Some(pb::Limits { requests_per_second: 1_000_000, burst: 0, message_bytes_max: 10 }),
            log_mode: 9,
            client_certificate_sha256: "ab".repeat(31),
        })
        .await
        .expect_err("bad input");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "client_certificate_sha256",
            "client_id",
            "limits.message_bytes_max",
            "limits.requests_per_second",
            "log_mode",
            "member_id",
            "name",
            "request_id"
        ]
    );
    assert_eq!(gateway.count("gateway.members").await, 0, "nothing written");

    gateway.register_member(DIIA, "diia", None, &[]).await;
    let bad_update = admin
        .update_member(pb::UpdateMemberRequest {
            request_id: "not-a-uuid".to_owned(),
            member_id: "UA/GOV/1/diia".to_owned(),
            name: Some(String::new()),
            contact: Some("x".repeat(10_000)),
            status: 7,
            limits: Some(pb::Limits { requests_per_second: 0, burst: u32::MAX, message_bytes_max: 0 }),
            log_mode: 9,
            reason: String::new(),
            client_certificate_sha256: Some("zz".to_owned()),
        })
        .await
        .expect_err("bad input");
    assert_eq!(bad_update.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&bad_update);
    fields.sort();
    assert_eq!(
        fields,
        [
            "client_certificate_sha256",
            "contact",
            "limits.burst",
            "log_mode",
            "member_id",
            "name",
            "request_id",
            "status"
        ]
    );
    // A change of status says why.
    let no_reason = admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            status: pb::MemberStatus::Suspended.into(),
            ..pb::UpdateMemberRequest::default()
        })
        .await
        .expect_err("no reason");
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let unchanged = member(&mut admin, DIIA).await;
    assert_eq!(unchanged.status, i32::from(pb::MemberStatus::Active), "nothing written");
    let changes = changes_of(&mut admin, DIIA).await;
    assert_eq!(changes.len(), 1, "only the registration recorded: {changes:?}");
    for (method, problem) in [
        ("/esocial.registry.v1.RegistryService/NoSuchMethod", "no such"),
        ("/esocial.nothing.v1.Service/*", "no such"),
        ("esocial.registry.v1.RegistryService/GetPerson", "full method path"),
        ("/esocial.gateway.v1.GatewayAdminService/RegisterMember", "by role"),
    ] {
        let status = admin
            .grant_access(pb::GrantAccessRequest {
                request_id: new_request_id(),
                member_id: DIIA.to_owned(),
                method: method.to_owned(),
            })
            .await
            .expect_err(method);
        assert_eq!(violated_fields(&status), ["method"], "{method}");
        assert!(format!("{status:?}").contains(problem), "{method}: {status:?}");
    }
    let missing = admin
        .grant_access(pb::GrantAccessRequest {
            request_id: new_request_id(),
            member_id: BANK.to_owned(),
            method: "/esocial.registry.v1.RegistryService/GetPerson".to_owned(),
        })
        .await
        .expect_err("no such member");
    assert_eq!(missing.code(), Code::NotFound);

    // Roles: a member system, an auditor and no token cannot administer.
    for token in
        [Some(gateway.system_token("diia").await), Some(gateway.person_token(&[Role::RegistryAuditor]).await), None]
    {
        let mut client =
            esocial_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient::with_interceptor(
                gateway.channel().await,
                BearerToken(token.clone()),
            );
        let status = client.list_members(pb::ListMembersRequest::default()).await.expect_err("not an administrator");
        let expected = if token.is_some() { Code::PermissionDenied } else { Code::Unauthenticated };
        assert_eq!(status.code(), expected);
    }
}

#[tokio::test]
async fn a_member_lists_exactly_the_methods_it_may_call() {
    let gateway = TestGateway::spawn().await;
    gateway
        .register_member(
            DIIA,
            "diia",
            None,
            &["/esocial.registry.v1.IdpService/*", "/esocial.classifier.v1.ClassifierService/GetSupportType"],
        )
        .await;
    let mut meta = gateway.meta(Some(gateway.system_token("diia").await)).await;
    let services = meta.list_services(pb::ListServicesRequest {}).await.expect("services").into_inner().services;
    assert_eq!(services, ["esocial.classifier.v1.ClassifierService", "esocial.registry.v1.IdpService"]);
    let allowed =
        meta.list_allowed_methods(pb::ListAllowedMethodsRequest::default()).await.expect("methods").into_inner();
    assert_eq!(allowed.member_id, DIIA);
    let mut expected: Vec<String> = esocial_proto::method_paths("esocial.registry.v1")
        .into_iter()
        .filter(|path| path.starts_with("/esocial.registry.v1.IdpService/"))
        .collect();
    expected.insert(0, "/esocial.classifier.v1.ClassifierService/GetSupportType".to_owned());
    let mut listed: Vec<String> = allowed.methods.iter().map(|method| method.method.clone()).collect();
    listed.sort();
    assert_eq!(listed, expected);
    let only_classifier = meta
        .list_allowed_methods(pb::ListAllowedMethodsRequest {
            service: "esocial.classifier.v1.ClassifierService".to_owned(),
        })
        .await
        .expect("methods")
        .into_inner()
        .methods;
    assert_eq!(only_classifier.len(), 1);

    // Only member systems have metaservices.
    let mut person = gateway.meta(Some(gateway.person_token(&[Role::SecurityAdmin]).await)).await;
    let status = person.list_services(pb::ListServicesRequest {}).await.expect_err("a person");
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// A reader pages through the administrative changes while three are made:
/// one in a transaction still open when the other two are asked for. The
/// two wait for it, so no page ever passes a change that commits later.
#[tokio::test]
async fn a_reader_paging_through_the_changes_never_passes_one_that_commits_later() {
    use esocial_gateway::changes::{Author, grant_access};
    use esocial_gateway::domain::{MemberId, MethodRight};

    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[]).await;
    gateway.register_member(BANK, "bank", None, &[]).await;
    let mut admin = gateway.admin().await;
    let all = |admin: &mut Admin| {
        let mut admin = admin.clone();
        async move {
            admin
                .list_admin_changes(pb::ListAdminChangesRequest { member_id: String::new(), page: None })
                .await
                .expect("changes")
                .into_inner()
                .changes
        }
    };
    let before = all(&mut admin).await.len();
    let right = |service: &str| format!("/esocial.registry.v1.{service}/*");

    // The first change, in a transaction left open.
    let pool = gateway.gateway_pool().await;
    let mut open = pool.begin().await.expect("a transaction");
    let author = Author { subject: "an administrator's other session".to_owned(), organization_edrpou: String::new() };
    let member = MemberId::parse(DIIA).expect("member id");
    grant_access(&mut open, &author, &member, &MethodRight::parse(&right("IdpService")).expect("right"))
        .await
        .expect("granted, not committed");
    // Two more through the API, one after the other, of another member
    // (whose row the open transaction does not hold).
    let later = tokio::spawn({
        let mut admin = admin.clone();
        async move {
            for service in ["ProviderService", "RegistryService"] {
                admin
                    .grant_access(pb::GrantAccessRequest {
                        request_id: new_request_id(),
                        member_id: BANK.to_owned(),
                        method: format!("/esocial.registry.v1.{service}/*"),
                    })
                    .await
                    .expect("granted");
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!later.is_finished(), "a change was committed while an earlier one is still open");

    // A reader meanwhile finds what was there, and nothing after it.
    let page = |size: usize, page_token: String| pb::ListAdminChangesRequest {
        member_id: String::new(),
        page: Some(esocial_proto::common::v1::PageRequest {
            page_size: u32::try_from(size).expect("a page size"),
            page_token,
        }),
    };
    let first = admin.list_admin_changes(page(before, String::new())).await.expect("a page").into_inner();
    assert_eq!(first.changes.len(), before);
    assert_eq!(first.page.map(|page| page.next_page_token).unwrap_or_default(), "", "nothing after it yet");
    open.commit().await.expect("committed");
    later.await.expect("the later changes");

    // Then the three, in the order they committed, on the page after.
    let first = admin.list_admin_changes(page(before, String::new())).await.expect("a page").into_inner();
    let token = first.page.expect("a next page").next_page_token;
    let next = admin.list_admin_changes(page(10, token)).await.expect("the next page").into_inner().changes;
    let granted: Vec<serde_json::Value> = next
        .iter()
        .map(|change| serde_json::from_str::<serde_json::Value>(&change.details).expect("details")["method"].clone())
        .collect();
    assert_eq!(
        granted,
        ["IdpService", "ProviderService", "RegistryService"].map(|service| serde_json::Value::from(right(service)))
    );
    assert_eq!(all(&mut admin).await.len(), before + 3);
}

#[tokio::test]
async fn what_registering_and_updating_a_member_answer_says_whether_identity_deactivated_its_client() {
    let gateway = TestGateway::spawn().await;
    // The client is known at identity, which deactivates it before the
    // member is registered; the gateway hears of it by identity's event.
    gateway.system_token("bank").await;
    gateway.set_client_active("bank", false).await;
    eventually(std::time::Duration::from_secs(10), || async {
        let active: Option<bool> =
            sqlx::query_scalar("SELECT active FROM gateway.identity_clients WHERE client_id = 'bank'")
                .fetch_optional(&gateway.pool)
                .await
                .expect("client");
        if active == Some(false) { Ok(()) } else { Err(format!("the gateway has the client as {active:?}")) }
    })
    .await;
    let mut admin = gateway.admin().await;
    let registered = admin
        .register_member(pb::RegisterMemberRequest {
            request_id: new_request_id(),
            member_id: BANK.to_owned(),
            name: "Банк".to_owned(),
            client_id: "bank".to_owned(),
            contact: "ops@bank.example.ua".to_owned(),
            limits: None,
            log_mode: pb::LogMode::Metadata.into(),
            client_certificate_sha256: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .member
        .expect("member");
    assert!(registered.client_deactivated, "{registered:?}");
    assert_eq!(registered.status, i32::from(pb::MemberStatus::Active), "the member itself is not suspended");
    let update = |contact: &str| pb::UpdateMemberRequest {
        request_id: new_request_id(),
        member_id: BANK.to_owned(),
        contact: Some(contact.to_owned()),
        ..Default::default()
    };
    let updated = admin.update_member(update("it@bank.example.ua")).await.expect("updated").into_inner();
    assert!(updated.member.expect("member").client_deactivated);

    // Activated again, an update says so.
    gateway.set_client_active("bank", true).await;
    eventually(std::time::Duration::from_secs(10), || {
        let mut admin = admin.clone();
        async move {
            let updated = admin.update_member(update("ops@bank.example.ua")).await.expect("updated").into_inner();
            let member = updated.member.expect("member");
            if member.client_deactivated { Err("still deactivated".to_owned()) } else { Ok(()) }
        }
    })
    .await;
}
