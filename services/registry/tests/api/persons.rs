use esocial_auth::Role;
use esocial_identifiers::Sex;
use esocial_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn a_registered_person_is_found_by_id_rnokpp_and_unzr_with_a_latin_name() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let data = person("Шевченко", "Тарас", "1990-03-09", Sex::Male, 17, BUZHANKA);
    let registered = register(&mut client, data.clone()).await;
    assert_eq!(registered.version, 1);
    let latin = registered.latin_name.clone().expect("latin name");
    assert_eq!((latin.last_name.as_str(), latin.first_name.as_str()), ("Shevchenko", "Taras"));

    for key in [
        pb::get_person_request::Key::PersonId(registered.id.clone()),
        pb::get_person_request::Key::Rnokpp(data.rnokpp.clone()),
        pb::get_person_request::Key::Unzr(data.unzr.clone()),
    ] {
        let found = client
            .get_person(pb::GetPersonRequest {
                key: Some(key),
                as_of: None,
                purpose: "checking an application".to_owned(),
            })
            .await
            .expect("found")
            .into_inner();
        assert_eq!(found.person.expect("person").id, registered.id);
    }
    assert_eq!(app.count("access_log").await, 3, "every read is recorded");

    // person.registered reaches JetStream once, as a CloudEvent with the person.
    let received = app.events.messages("registry.person.>", std::time::Duration::from_secs(3)).await.expect("messages");
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.subject.as_str(), format!("{}.registry.person.registered", app.events.settings.subject_prefix));
    let header = |name: &str| {
        message.headers.as_ref().and_then(|headers| headers.get(name)).map(|value| value.as_str().to_owned())
    };
    assert_eq!(header("ce-type").as_deref(), Some("ua.gov.esocial.registry.person.registered.v1"));
    assert_eq!(header("ce-subject").as_deref(), Some(registered.id.as_str()));
    let payload = <pb::PersonChanged as prost::Message>::decode(message.payload.as_ref()).expect("payload");
    assert_eq!(payload.person.expect("person").id, registered.id);
}

#[tokio::test]
async fn a_bad_identifier_in_each_field_is_refused_naming_it_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let good = person("Коваленко", "Олена", "1985-07-21", Sex::Female, 5, BUZHANKA);
    let mut cases: Vec<(&str, pb::PersonData)> = Vec::new();
    let mut bad_rnokpp = good.clone();
    bad_rnokpp.rnokpp = format!("{}{}", &good.rnokpp[..9], (good.rnokpp.as_bytes()[9] - b'0' + 1) % 10);
    cases.push(("data.rnokpp", bad_rnokpp));
    let mut bad_unzr = good.clone();
    bad_unzr.unzr = format!("{}{}", &good.unzr[..13], (good.unzr.as_bytes()[13] - b'0' + 1) % 10);
    cases.push(("data.unzr", bad_unzr));
    let mut bad_passport = good.clone();
    bad_passport.passport_number = "AB12345".to_owned();
    cases.push(("data.passport_number", bad_passport));
    let mut unknown_territory = good.clone();
    unknown_territory.registered_address =
        Some(pb::Address { territory: "UA71020010010048768".to_owned(), line: String::new() });
    cases.push(("data.registered_address.territory", unknown_territory));
    let mut malformed_territory = good.clone();
    malformed_territory.actual_address = Some(pb::Address { territory: "UA123".to_owned(), line: String::new() });
    cases.push(("data.actual_address.territory", malformed_territory));
    let mut other_birth_date = good.clone();
    other_birth_date.birth_date = Some(date("1985-07-22"));
    cases.push(("data.rnokpp", other_birth_date));
    let mut other_sex = good.clone();
    other_sex.sex = pb::Sex::Male.into();
    cases.push(("data.sex", other_sex));
    let mut bad_phone = good.clone();
    bad_phone.contacts = Some(pb::Contacts { phone: "0501234567".to_owned(), email: String::new() });
    cases.push(("data.contacts.phone", bad_phone));

    for (field, data) in cases {
        let status = client
            .register_person(pb::RegisterPersonRequest {
                request_id: new_request_id(),
                data: Some(data),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            violated_fields(&status).contains(&field.to_owned()),
            "{field} named in {:?}",
            violated_fields(&status)
        );
    }
    assert_eq!(app.count("persons").await, 0);
    assert_eq!(app.count("person_versions").await, 0);
    assert_eq!(app.count("outbox").await, 0);
}

#[tokio::test]
async fn an_rnokpp_already_registered_is_refused_with_the_existing_id_and_look_alikes_are_candidates() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let first = register(&mut client, person("Мар’яненко", "Олена", "1979-11-02", Sex::Female, 40, BUZHANKA)).await;

    let mut same_rnokpp = person("Інша", "Людина", "1979-11-02", Sex::Female, 40, BUZHANKA);
    same_rnokpp.unzr = String::new();
    let status = client
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(same_rnokpp),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::AlreadyExists);
    let info = tonic_types::StatusExt::get_details_error_info(&status).expect("error info");
    assert_eq!(info.metadata.get("existing_person_id"), Some(&first.id));

    // Apostrophe variant, a Latin "O" and "a" inside the Cyrillic name, another RNOKPP: a probable duplicate.
    let look_alike = person("МАР'ЯНЕНКО", "Oлeна", "1979-11-02", Sex::Female, 41, BUZHANKA);
    let response = client
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(look_alike),
            ..Default::default()
        })
        .await
        .expect("registered")
        .into_inner();
    let candidate = response.probable_duplicates.first().expect("a candidate");
    assert_eq!(candidate.person_id, first.id);
    assert!(candidate.score > 0.9, "{candidate:?}");
    assert!(candidate.reasons.contains(&"name and birth date".to_owned()));

    // A different birth date is not a candidate.
    let other = client
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(person("Мар’яненко", "Олена", "1980-11-02", Sex::Female, 42, BUZHANKA)),
            ..Default::default()
        })
        .await
        .expect("registered")
        .into_inner();
    assert!(other.probable_duplicates.is_empty(), "{:?}", other.probable_duplicates);
}

#[tokio::test]
async fn every_change_is_a_version_and_reads_answer_as_of_a_date() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let mut data = person("Бондар", "Ірина", "1992-01-15", Sex::Female, 3, BUZHANKA);
    let registered = client
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(data.clone()),
            valid_from: Some(date("2020-01-01")),
            reason: "first registration".to_owned(),
            source_document: "application 1".to_owned(),
        })
        .await
        .expect("registered")
        .into_inner()
        .person
        .expect("person");
    data.name.as_mut().expect("name").last_name = "Коваль".to_owned();
    data.registered_address =
        Some(pb::Address { territory: ZVENYHORODKA.to_owned(), line: "вул. Миру, 2".to_owned() });
    let updated = client
        .update_person(pb::UpdatePersonRequest {
            request_id: new_request_id(),
            person_id: registered.id.clone(),
            expected_version: 1,
            data: Some(data.clone()),
            valid_from: Some(date("2024-06-01")),
            reason: "marriage".to_owned(),
            source_document: "marriage certificate 1-АБ 123456".to_owned(),
        })
        .await
        .expect("updated")
        .into_inner()
        .person
        .expect("person");
    assert_eq!(updated.version, 2);

    let stale = client
        .update_person(pb::UpdatePersonRequest {
            request_id: new_request_id(),
            person_id: registered.id.clone(),
            expected_version: 1,
            data: Some(data),
            valid_from: None,
            reason: "a stale edit".to_owned(),
            source_document: String::new(),
        })
        .await
        .expect_err("stale version refused");
    assert_eq!(stale.code(), Code::Aborted);

    let as_of = |day: &str| {
        let mut request = get_by_id(&registered.id);
        request.as_of = Some(date(day));
        request
    };
    let before = client.get_person(as_of("2023-12-31")).await.expect("read").into_inner().person.expect("person");
    assert_eq!(before.data.expect("data").name.expect("name").last_name, "Бондар");
    let after = client.get_person(as_of("2024-06-01")).await.expect("read").into_inner().person.expect("person");
    assert_eq!(after.data.expect("data").name.expect("name").last_name, "Коваль");
    let too_early = client.get_person(as_of("2019-12-31")).await.expect_err("no data yet");
    assert_eq!(too_early.code(), Code::NotFound);

    let history = client
        .get_person_history(pb::GetPersonHistoryRequest {
            person_id: registered.id.clone(),
            purpose: "audit of a decision".to_owned(),
        })
        .await
        .expect("history")
        .into_inner();
    let reasons: Vec<&str> = history.versions.iter().map(|version| version.reason.as_str()).collect();
    assert_eq!(reasons, ["first registration", "marriage"]);
    assert_eq!(history.versions[1].source_document, "marriage certificate 1-АБ 123456");
    assert_eq!(history.versions[1].recorded_by.as_ref().expect("actor").subject, "cherkasy-specialist");
}

#[tokio::test]
async fn a_merge_keeps_both_histories_and_the_merged_id_redirects() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let surviving = register(&mut client, person("Ткаченко", "Андрій", "1970-05-05", Sex::Male, 11, BUZHANKA)).await;
    let mut twin = person("Tкаченко", "Андрiй", "1970-05-05", Sex::Male, 12, BUZHANKA);
    twin.unzr = String::new();
    let merged = register(&mut client, twin).await;

    let candidates = client
        .find_duplicates(pb::FindDuplicatesRequest { person_id: surviving.id.clone() })
        .await
        .expect("candidates")
        .into_inner()
        .candidates;
    assert_eq!(candidates.first().map(|candidate| candidate.person_id.as_str()), Some(merged.id.as_str()));

    client
        .merge_persons(pb::MergePersonsRequest {
            request_id: new_request_id(),
            surviving_person_id: surviving.id.clone(),
            merged_person_id: merged.id.clone(),
            reason: "the same person registered twice".to_owned(),
        })
        .await
        .expect("merged");

    let redirected = client.get_person(get_by_id(&merged.id)).await.expect("read").into_inner();
    assert_eq!(redirected.person.expect("person").id, surviving.id);
    assert_eq!(redirected.redirected_from, merged.id);

    let history = client
        .get_person_history(pb::GetPersonHistoryRequest {
            person_id: surviving.id.clone(),
            purpose: "checking a merge".to_owned(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.merged_ids, std::slice::from_ref(&merged.id));
    let owners: Vec<&str> = history.versions.iter().map(|version| version.person_id.as_str()).collect();
    assert!(owners.contains(&surviving.id.as_str()) && owners.contains(&merged.id.as_str()), "{owners:?}");

    let again = client
        .merge_persons(pb::MergePersonsRequest {
            request_id: new_request_id(),
            surviving_person_id: surviving.id.clone(),
            merged_person_id: merged.id.clone(),
            reason: "again".to_owned(),
        })
        .await
        .expect_err("already merged");
    assert_eq!(again.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn persons_marked_distinct_are_no_longer_candidates() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let one = register(&mut client, person("Лисенко", "Марія", "2001-02-03", Sex::Female, 1, BUZHANKA)).await;
    let other = register(&mut client, person("Лисенко", "Марія", "2001-02-03", Sex::Female, 2, BUZHANKA)).await;
    let before =
        client.find_duplicates(pb::FindDuplicatesRequest { person_id: one.id.clone() }).await.expect("candidates");
    assert_eq!(before.into_inner().candidates.len(), 1);
    client
        .mark_distinct(pb::MarkDistinctRequest {
            request_id: new_request_id(),
            person_id: one.id.clone(),
            other_person_id: other.id.clone(),
            reason: "namesakes born the same day, different parents".to_owned(),
        })
        .await
        .expect("marked");
    let after =
        client.find_duplicates(pb::FindDuplicatesRequest { person_id: one.id.clone() }).await.expect("candidates");
    assert!(after.into_inner().candidates.is_empty());
}

#[tokio::test]
async fn an_operator_of_one_oblast_cannot_read_a_person_of_another() {
    let app = TestApp::spawn().await;
    let mut cherkasy = app.cherkasy().await;
    let mut lviv = app.lviv().await;
    let data = person("Гнатюк", "Петро", "1965-09-30", Sex::Male, 8, BUZHANKA);
    let registered = register(&mut cherkasy, data.clone()).await;

    let refused = lviv.get_person(get_by_id(&registered.id)).await.expect_err("another oblast");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let by_rnokpp = lviv
        .get_person(pb::GetPersonRequest {
            key: Some(pb::get_person_request::Key::Rnokpp(data.rnokpp.clone())),
            as_of: None,
            purpose: "looking".to_owned(),
        })
        .await
        .expect_err("another oblast");
    assert_eq!(by_rnokpp.code(), Code::PermissionDenied);
    let registering_elsewhere = lviv
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(person("Гнатюк", "Павло", "1966-09-30", Sex::Male, 9, BUZHANKA)),
            ..Default::default()
        })
        .await
        .expect_err("outside Lviv");
    assert_eq!(registering_elsewhere.code(), Code::PermissionDenied);
    let found = lviv
        .search_persons(pb::SearchPersonsRequest {
            query: Some(pb::search_persons_request::Query::NameAndBirthDate(pb::NameAndBirthDate {
                name: "Гнатюк Петро".to_owned(),
                birth_date: Some(date("1965-09-30")),
            })),
            purpose: "looking".to_owned(),
            page: None,
        })
        .await
        .expect("search")
        .into_inner();
    assert!(found.matches.is_empty(), "another oblast's persons are not found");

    // A national auditor reads anywhere; the log shows who read and why.
    let mut auditor = app.auditor().await;
    auditor.get_person(get_by_id(&registered.id)).await.expect("national role");
    let log = auditor
        .list_access_log(pb::ListAccessLogRequest { person_id: registered.id.clone(), page: None })
        .await
        .expect("log")
        .into_inner();
    let readers: Vec<(String, String)> = log
        .entries
        .iter()
        .map(|entry| (entry.reader.as_ref().expect("reader").subject.clone(), entry.method.clone()))
        .collect();
    assert_eq!(readers, [("auditor".to_owned(), "GetPerson".to_owned())], "refused reads read nothing");
    assert_eq!(log.entries[0].purpose, "checking an application");

    let no_purpose = auditor
        .get_person(pb::GetPersonRequest {
            key: Some(pb::get_person_request::Key::PersonId(registered.id.clone())),
            as_of: None,
            purpose: " ".to_owned(),
        })
        .await
        .expect_err("purpose required");
    assert_eq!(violated_fields(&no_purpose), ["purpose"]);
    let specialist_log = cherkasy
        .list_access_log(pb::ListAccessLogRequest { person_id: registered.id.clone(), page: None })
        .await
        .expect_err("auditors only");
    assert_eq!(specialist_log.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn names_are_found_with_spelling_variants_and_transliteration() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let registered =
        register(&mut client, person("Ковальчук", "Наталія", "1988-08-08", Sex::Female, 21, BUZHANKA)).await;
    register(&mut client, person("Ковальчук", "Наталія", "1988-08-09", Sex::Female, 22, BUZHANKA)).await;
    for name in ["Ковальчук Наталія", "КОВАЛЬЧУК наталiя", "Kovalchuk Nataliia", "Natalia Kovalchuk"]
    {
        let found = client
            .search_persons(pb::SearchPersonsRequest {
                query: Some(pb::search_persons_request::Query::NameAndBirthDate(pb::NameAndBirthDate {
                    name: name.to_owned(),
                    birth_date: Some(date("1988-08-08")),
                })),
                purpose: "finding an applicant".to_owned(),
                page: None,
            })
            .await
            .expect("search")
            .into_inner();
        let ids: Vec<&str> =
            found.matches.iter().filter_map(|found| found.person.as_ref()).map(|person| person.id.as_str()).collect();
        assert_eq!(ids, [registered.id.as_str()], "{name}");
    }
    let by_rnokpp = client
        .search_persons(pb::SearchPersonsRequest {
            query: Some(pb::search_persons_request::Query::Rnokpp("123".to_owned())),
            purpose: "x".to_owned(),
            page: None,
        })
        .await
        .expect_err("malformed");
    assert_eq!(violated_fields(&by_rnokpp), ["rnokpp"]);
}

#[tokio::test]
async fn family_links_are_recorded_both_ways() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let mother = register(&mut client, person("Савчук", "Оксана", "1990-04-04", Sex::Female, 31, BUZHANKA)).await;
    let child = register(&mut client, person("Савчук", "Дмитро", "2020-10-10", Sex::Male, 32, BUZHANKA)).await;
    let linked = client
        .link_family(pb::LinkFamilyRequest {
            request_id: new_request_id(),
            person_id: child.id.clone(),
            related_person_id: mother.id.clone(),
            relation: pb::FamilyRelation::Parent.into(),
            valid_from: Some(date("2020-10-10")),
        })
        .await
        .expect("linked")
        .into_inner()
        .person
        .expect("person");
    assert_eq!(linked.family.len(), 1);
    assert_eq!(linked.family[0].related_person_id, mother.id);
    let mother_now = client.get_person(get_by_id(&mother.id)).await.expect("read").into_inner().person.expect("person");
    assert_eq!(mother_now.family[0].relation, i32::from(pb::FamilyRelation::Child));
}

#[tokio::test]
async fn roles_without_personal_data_access_are_refused_and_a_retry_replays() {
    let app = TestApp::spawn().await;
    let mut classifier_admin = app.persons_with(app.token("admin", &[Role::ClassifierAdmin], &[])).await;
    let refused = classifier_admin.get_person(get_by_id(&uuid::Uuid::now_v7().to_string())).await.expect_err("no role");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut anonymous = app.persons_with(None).await;
    let unauthenticated =
        anonymous.get_person(get_by_id(&uuid::Uuid::now_v7().to_string())).await.expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let mut client = app.cherkasy().await;
    let request = pb::RegisterPersonRequest {
        request_id: new_request_id(),
        data: Some(person("Руденко", "Віра", "1975-12-12", Sex::Female, 77, BUZHANKA)),
        ..Default::default()
    };
    let first = client.register_person(request.clone()).await.expect("registered").into_inner();
    let retry = client.register_person(request.clone()).await.expect("replayed").into_inner();
    assert_eq!(first, retry);
    assert_eq!(app.count("persons").await, 1);
    // Someone else's request id is not theirs to replay.
    let mut other_specialist =
        app.persons_with(app.token("someone-else", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await;
    let stolen = other_specialist.register_person(request).await.expect_err("another caller's request id");
    assert_eq!(violated_fields(&stolen), ["request_id"]);
    assert_eq!(app.count("persons").await, 1);
}
