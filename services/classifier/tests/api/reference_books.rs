use esocial_proto::classifier::v1 as pb;
use esocial_proto::common::v1::PageRequest;
use tonic::Code;

use crate::harness::{TestApp, date, new_request_id, open_from, violated_fields};

const TERRITORIES: i32 = pb::ReferenceBook::TerritorialUnits as i32;

fn search(query: &str, page_size: u32, token: &str) -> pb::SearchReferenceEntriesRequest {
    pb::SearchReferenceEntriesRequest {
        book: TERRITORIES,
        query: query.to_owned(),
        as_of: Some(date("2026-01-01")),
        page: Some(PageRequest { page_size, page_token: token.to_owned() }),
    }
}

fn unit(
    code: &str,
    parent: &str,
    level: pb::TerritorialLevel,
    category: &str,
    name: &str,
) -> pb::CreateReferenceEntryVersionRequest {
    pb::CreateReferenceEntryVersionRequest {
        request_id: new_request_id(),
        book: TERRITORIES,
        code: code.to_owned(),
        validity: Some(open_from("2026-01-01")),
        content: Some(pb::ReferenceEntryContent {
            name_uk: name.to_owned(),
            name_en: String::new(),
            parent_code: parent.to_owned(),
            details: Some(pb::reference_entry_content::Details::TerritorialUnit(pb::TerritorialUnitDetails {
                level: level.into(),
                category: category.to_owned(),
            })),
        }),
        change_reason: "test".to_owned(),
        expected_latest_version: 0,
    }
}

#[tokio::test]
async fn a_territorial_unit_is_found_by_code_with_its_place_in_the_hierarchy() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let entry = client
        .get_reference_entry(pb::GetReferenceEntryRequest {
            book: TERRITORIES,
            code: "UA71020010000037786".to_owned(),
            as_of: Some(date("2026-01-01")),
        })
        .await
        .expect("known unit")
        .into_inner()
        .entry
        .expect("entry");
    let content = entry.content.expect("content");
    assert_eq!(content.name_uk, "Бужанська");
    assert_eq!(content.parent_code, "UA71020000000057292", "Звенигородський raion");
    let Some(pb::reference_entry_content::Details::TerritorialUnit(details)) = content.details else {
        panic!("details")
    };
    assert_eq!(details.level, i32::from(pb::TerritorialLevel::Hromada));
    assert_eq!(details.category, "H");

    let unknown = client
        .get_reference_entry(pb::GetReferenceEntryRequest {
            book: TERRITORIES,
            code: "UA99999999999999999".to_owned(),
            as_of: None,
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = client
        .get_reference_entry(pb::GetReferenceEntryRequest {
            book: TERRITORIES,
            code: "71020010000037786".to_owned(),
            as_of: None,
        })
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["code"]);
    let no_book = client
        .get_reference_entry(pb::GetReferenceEntryRequest { book: 0, code: "305299".to_owned(), as_of: None })
        .await
        .expect_err("no book");
    assert_eq!(violated_fields(&no_book), ["book"]);
}

#[tokio::test]
async fn children_of_a_unit_are_listed_in_code_order_and_paged() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let children = client
        .list_reference_entries(pb::ListReferenceEntriesRequest {
            book: TERRITORIES,
            as_of: Some(date("2026-01-01")),
            parent_code: "UA71020010000037786".to_owned(),
            page: None,
        })
        .await
        .expect("children")
        .into_inner();
    let names: Vec<_> = children
        .entries
        .iter()
        .filter_map(|entry| entry.content.as_ref())
        .map(|content| content.name_uk.as_str())
        .collect();
    assert_eq!(names, ["Бужанка", "Жаб’янка", "Кам’яний Брід", "Дубина"]);

    let mut token = String::new();
    let mut districts = Vec::new();
    loop {
        let page = client
            .list_reference_entries(pb::ListReferenceEntriesRequest {
                book: TERRITORIES,
                as_of: Some(date("2026-01-01")),
                parent_code: "UA80000000000093317".to_owned(),
                page: Some(PageRequest { page_size: 2, page_token: token.clone() }),
            })
            .await
            .expect("districts of Kyiv")
            .into_inner();
        districts.extend(page.entries.into_iter().map(|entry| entry.code));
        token = page.page.map(|page| page.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(districts.len(), 5);
    assert!(districts.windows(2).all(|pair| pair[0] < pair[1]), "{districts:?}");
}

#[tokio::test]
async fn search_ignores_case_and_apostrophe_variants() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let mut results = Vec::new();
    for query in ["кам’ян", "КАМ'ЯН", "КамʼЯн", "кам`ян"] {
        let found = client.search_reference_entries(search(query, 50, "")).await.expect("search").into_inner();
        let mut codes: Vec<String> = found.entries.into_iter().map(|entry| entry.code).collect();
        codes.sort();
        results.push(codes);
    }
    assert!(results.windows(2).all(|pair| pair[0] == pair[1]), "{results:?}");
    // Кам’яний Брід (Cherkasy) and the Кам’янець-Подільський raion (Khmelnytskyi).
    assert_eq!(results[0], ["UA68020000000016021", "UA71020010030087573"]);

    // Names starting with the query come first.
    let found = client.search_reference_entries(search("львів", 50, "")).await.expect("search").into_inner();
    let names: Vec<_> = found
        .entries
        .iter()
        .filter_map(|entry| entry.content.as_ref())
        .map(|content| content.name_uk.clone())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("Львів"));
    assert!(names.contains(&"Львівська".to_owned()));

    let short = client.search_reference_entries(search("к", 10, "")).await.expect_err("too short");
    assert_eq!(violated_fields(&short), ["query"]);
}

#[tokio::test]
async fn search_results_page_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let everything = client.search_reference_entries(search("ка", 500, "")).await.expect("search").into_inner().entries;
    assert!(everything.len() > 5, "sample has many names with «ка»");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client.search_reference_entries(search("ка", 4, &token)).await.expect("page").into_inner();
        paged.extend(page.entries);
        token = page.page.map(|page| page.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, everything);
}

#[tokio::test]
async fn banks_and_document_types_are_versioned_reference_books() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let bank = client
        .get_reference_entry(pb::GetReferenceEntryRequest {
            book: pb::ReferenceBook::Banks.into(),
            code: "305299".to_owned(),
            as_of: None,
        })
        .await
        .expect("PrivatBank")
        .into_inner()
        .entry
        .and_then(|entry| entry.content)
        .expect("content");
    assert_eq!(bank.name_uk, "АТ КБ «ПриватБанк»");

    let mut admin = app.admin().await;
    let renamed = admin
        .create_reference_entry_version(pb::CreateReferenceEntryVersionRequest {
            request_id: new_request_id(),
            book: pb::ReferenceBook::DocumentTypes.into(),
            code: "BIRTH_CERTIFICATE".to_owned(),
            validity: Some(open_from("2026-06-01")),
            content: Some(pb::ReferenceEntryContent {
                name_uk: "Свідоцтво про народження (нового зразка)".to_owned(),
                name_en: "Birth certificate (new form)".to_owned(),
                parent_code: String::new(),
                details: None,
            }),
            change_reason: "new form".to_owned(),
            expected_latest_version: 1,
        })
        .await
        .expect("new version")
        .into_inner();
    assert_eq!(renamed.end_dated_version, Some(1));
    let name_on = async |client: &mut crate::harness::Client, day: &str| {
        client
            .get_reference_entry(pb::GetReferenceEntryRequest {
                book: pb::ReferenceBook::DocumentTypes.into(),
                code: "BIRTH_CERTIFICATE".to_owned(),
                as_of: Some(date(day)),
            })
            .await
            .expect("in force")
            .into_inner()
            .entry
            .and_then(|entry| entry.content)
            .map(|content| content.name_uk)
            .unwrap_or_default()
    };
    assert_eq!(name_on(&mut client, "2026-05-31").await, "Свідоцтво про народження");
    assert_eq!(name_on(&mut client, "2026-06-01").await, "Свідоцтво про народження (нового зразка)");

    let versions = client
        .list_reference_entry_versions(pb::ListReferenceEntryVersionsRequest {
            book: pb::ReferenceBook::DocumentTypes.into(),
            code: "BIRTH_CERTIFICATE".to_owned(),
        })
        .await
        .expect("history")
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 2);
}

#[tokio::test]
async fn a_territorial_unit_needs_a_parent_in_force_above_it_in_the_same_oblast() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin().await;

    let orphan = admin
        .create_reference_entry_version(unit(
            "UA71020010990000001",
            "UA71020019990000000",
            pb::TerritorialLevel::Settlement,
            "C",
            "Нове",
        ))
        .await
        .expect_err("unknown parent");
    assert_eq!(orphan.code(), Code::FailedPrecondition);
    assert!(orphan.message().contains("not in force"), "{}", orphan.message());

    let other_oblast = admin
        .create_reference_entry_version(unit(
            "UA46020010990000001",
            "UA71020010000037786",
            pb::TerritorialLevel::Settlement,
            "C",
            "Нове",
        ))
        .await
        .expect_err("parent in another oblast");
    assert_eq!(violated_fields(&other_oblast), ["content.parent_code"]);

    let above_its_parent = admin
        .create_reference_entry_version(unit(
            "UA71020010990000001",
            "UA71020010010048767",
            pb::TerritorialLevel::Hromada,
            "H",
            "Нова",
        ))
        .await
        .expect_err("a hromada under a village");
    assert_eq!(violated_fields(&above_its_parent), ["content.parent_code"]);

    let wrong_category = admin
        .create_reference_entry_version(unit(
            "UA71020010990000001",
            "UA71020010000037786",
            pb::TerritorialLevel::Settlement,
            "P",
            "Нове",
        ))
        .await
        .expect_err("P is for raions");
    assert_eq!(violated_fields(&wrong_category), ["content.territorial_unit.category"]);

    let created = admin
        .create_reference_entry_version(unit(
            "UA71020010990000001",
            "UA71020010000037786",
            pb::TerritorialLevel::Settlement,
            "C",
            "Нове",
        ))
        .await
        .expect("valid settlement")
        .into_inner()
        .created
        .expect("entry");
    assert_eq!(created.version, 1);

    let not_territorial = admin
        .create_reference_entry_version(pb::CreateReferenceEntryVersionRequest {
            request_id: new_request_id(),
            book: pb::ReferenceBook::Banks.into(),
            code: "12345".to_owned(),
            validity: Some(open_from("2026-01-01")),
            content: Some(pb::ReferenceEntryContent {
                name_uk: "Банк".to_owned(),
                name_en: String::new(),
                parent_code: "UA71020010000037786".to_owned(),
                details: None,
            }),
            change_reason: "test".to_owned(),
            expected_latest_version: 0,
        })
        .await
        .expect_err("bad bank");
    let fields = violated_fields(&not_territorial);
    assert_eq!(fields, ["code", "content.parent_code"]);
}

#[tokio::test]
async fn retiring_a_unit_removes_it_from_later_lists() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin().await;
    admin
        .retire_reference_entry(pb::RetireReferenceEntryRequest {
            request_id: new_request_id(),
            book: TERRITORIES,
            code: "UA71020010080041215".to_owned(),
            effective_from: Some(date("2026-03-01")),
            reason: "merged into Бужанка".to_owned(),
        })
        .await
        .expect("retired");
    let mut reader = app.reader().await;
    let count_on = async |client: &mut crate::harness::Client, day: &str| {
        client
            .list_reference_entries(pb::ListReferenceEntriesRequest {
                book: TERRITORIES,
                as_of: Some(date(day)),
                parent_code: "UA71020010000037786".to_owned(),
                page: None,
            })
            .await
            .expect("children")
            .into_inner()
            .entries
            .len()
    };
    assert_eq!(count_on(&mut reader, "2026-02-28").await, 4);
    assert_eq!(count_on(&mut reader, "2026-03-01").await, 3);
}
