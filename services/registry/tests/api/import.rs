use chrono::NaiveDate;
use esocial_auth::Role;
use esocial_identifiers::{Rnokpp, Sex};
use esocial_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

fn chunks(request_id: &str, format: pb::ImportFormat, text: &str, size: usize) -> Vec<pb::ImportPersonsChunk> {
    text.as_bytes()
        .chunks(size)
        .enumerate()
        .map(|(index, data)| pb::ImportPersonsChunk {
            request_id: if index == 0 { request_id.to_owned() } else { String::new() },
            format: format.into(),
            source_document: if index == 0 { "list from the hromada".to_owned() } else { String::new() },
            data: data.to_vec(),
        })
        .collect()
}

fn rnokpp(birth: &str, serial: u16, sex: Sex) -> String {
    Rnokpp::compose(birth.parse::<NaiveDate>().expect("date"), serial, sex).expect("rnokpp").to_string()
}

#[tokio::test]
async fn a_file_with_good_bad_and_duplicate_rows_gives_a_row_by_row_report_and_writes_only_the_good_rows() {
    let app = TestApp::spawn().await;
    let mut client = app.cherkasy().await;
    let existing = register(&mut client, person("Олійник", "Богдан", "1980-01-01", Sex::Male, 1, BUZHANKA)).await;
    let existing_rnokpp = rnokpp("1980-01-01", 1, Sex::Male);
    let good_one = rnokpp("1991-02-02", 2, Sex::Female);
    let good_two = rnokpp("2005-03-03", 3, Sex::Male);
    let csv = format!(
        "last_name,first_name,patronymic,birth_date,sex,rnokpp,citizenship,registered_territory,registered_address\n\
         Петренко,Олена,Іванівна,1991-02-02,female,{good_one},UA,{BUZHANKA},\"вул. Садова, 3\"\n\
         Олійник,Богдан,,1980-01-01,male,{existing_rnokpp},UA,{BUZHANKA},\n\
         Сидоренко,Іван,,1991-13-40,male,1234567890,UA,{BUZHANKA},\n\
         Мельник,Андрій,,2005-03-03,male,{good_two},UA,{BUZHANKA},\n\
         Мельник,Андрій,,2005-03-03,male,{good_two},UA,{BUZHANKA},\n\
         Гуменюк,Ольга,,1970-05-05,female,{},UA,{LVIV_HROMADA},\n\
         only,three,fields\n",
        rnokpp("1970-05-05", 4, Sex::Female)
    );
    let request_id = new_request_id();
    // Chunks of 37 bytes: rows span chunks.
    let response = client
        .import_persons(tokio_stream_of(chunks(&request_id, pb::ImportFormat::Csv, &csv, 37)))
        .await
        .expect("imported")
        .into_inner();
    assert_eq!(
        (response.rows, response.accepted, response.rejected, response.duplicates),
        (7, 2, 3, 2),
        "{response:?}"
    );
    let problems: Vec<(u64, i32, String)> =
        response.problems.iter().map(|row| (row.row, row.outcome, row.person_id.clone())).collect();
    let duplicate = i32::from(pb::RowOutcome::Duplicate);
    let rejected = i32::from(pb::RowOutcome::Rejected);
    assert_eq!(problems[0], (2, duplicate, existing.id.clone()));
    assert_eq!((problems[1].0, problems[1].1), (3, rejected));
    assert!(response.problems[1].reason.contains("birth_date"), "{}", response.problems[1].reason);
    assert_eq!((problems[2].0, problems[2].1), (5, duplicate), "the second copy of a row duplicates the first");
    assert_eq!((problems[3].0, problems[3].1), (6, rejected), "Lviv is outside the caller's territory");
    assert!(response.problems[3].reason.contains("registered_territory"));
    assert_eq!((problems[4].0, problems[4].1), (7, rejected));
    assert_eq!(app.count("persons").await, 3, "the existing person and two good rows");

    let report = client
        .get_import_report(pb::GetImportReportRequest {
            import_id: response.import_id.clone(),
            problems_only: false,
            page: None,
        })
        .await
        .expect("report")
        .into_inner();
    let outcomes: Vec<(u64, i32)> = report.rows.iter().map(|row| (row.row, row.outcome)).collect();
    let accepted = i32::from(pb::RowOutcome::Accepted);
    assert_eq!(
        outcomes,
        [(1, accepted), (2, duplicate), (3, rejected), (4, accepted), (5, duplicate), (6, rejected), (7, rejected)]
    );
    let imported = report.rows[0].person_id.clone();
    let person =
        client.get_person(get_by_id(&imported)).await.expect("imported person").into_inner().person.expect("person");
    assert_eq!(person.data.expect("data").registered_address.expect("address").line, "вул. Садова, 3");
    assert_eq!(report.rows[4].person_id, report.rows[3].person_id, "the duplicate names the row it repeats");

    // The same request id again: the same outcome, nothing imported twice.
    let again = client
        .import_persons(tokio_stream_of(chunks(&request_id, pb::ImportFormat::Csv, &csv, 1000)))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!((again.import_id, again.accepted), (response.import_id.clone(), 2));
    assert_eq!(app.count("persons").await, 3);

    // Somebody else does not see the report.
    let mut other =
        app.persons_with(app.token("another-importer", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await;
    let hidden = other
        .get_import_report(pb::GetImportReportRequest {
            import_id: response.import_id,
            problems_only: true,
            page: None,
        })
        .await
        .expect_err("not theirs");
    assert_eq!(hidden.code(), Code::NotFound);
}

#[tokio::test]
async fn ndjson_rows_are_imported_and_an_unknown_csv_column_is_named() {
    let app = TestApp::spawn().await;
    let mut client = app.persons_with(app.token("gateway", &[Role::Service], &[])).await;
    let lines: String = (0..1200u16)
        .map(|serial| {
            format!(
                "{{\"last_name\":\"Бойко\",\"first_name\":\"Марко\",\"birth_date\":\"1999-09-09\",\"sex\":\"male\",\"rnokpp\":\"{}\",\"citizenship\":\"UA\",\"registered_territory\":\"{}\"}}\n",
                rnokpp("1999-09-09", serial % 1000, Sex::Male),
                if serial % 2 == 0 { BUZHANKA } else { LVIV_HROMADA }
            )
        })
        .collect();
    let response = client
        .import_persons(tokio_stream_of(chunks(&new_request_id(), pb::ImportFormat::Ndjson, &lines, 4096)))
        .await
        .expect("imported")
        .into_inner();
    assert_eq!((response.rows, response.accepted, response.duplicates, response.rejected), (1200, 1000, 200, 0));
    assert_eq!(app.count("persons").await, 1000);

    let bad_header = "surname,first_name\nБойко,Марко\n";
    let status = client
        .import_persons(tokio_stream_of(chunks(&new_request_id(), pb::ImportFormat::Csv, bad_header, 100)))
        .await
        .expect_err("unknown column");
    assert_eq!(violated_fields(&status), ["data"]);
    assert!(status.message().contains("surname"), "{}", status.message());
}

fn tokio_stream_of(
    chunks: Vec<pb::ImportPersonsChunk>,
) -> impl futures_util::Stream<Item = pb::ImportPersonsChunk> + Send + 'static {
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn two_imports_of_the_same_file_at_once_register_each_person_once() {
    let app = TestApp::spawn().await;
    let csv: String =
        std::iter::once("last_name,first_name,birth_date,sex,rnokpp,citizenship,registered_territory\n".to_owned())
            .chain((0..3000u16).map(|serial| {
                let birth = format!("19{:02}-0{}-1{}", 50 + serial % 40, 1 + serial % 9, serial % 10);
                let sex = if serial % 2 == 0 { Sex::Female } else { Sex::Male };
                format!(
                    "Кравець,Марія,{birth},{},{},UA,{BUZHANKA}\n",
                    if serial % 2 == 0 { "female" } else { "male" },
                    rnokpp(&birth, serial % 1000, sex)
                )
            }))
            .collect();
    let import = |csv: String| {
        let app = &app;
        async move {
            let mut client = app.persons_with(app.token("gateway", &[Role::Service], &[])).await;
            client
                .import_persons(tokio_stream_of(chunks(&new_request_id(), pb::ImportFormat::Csv, &csv, 64 * 1024)))
                .await
                .expect("imported")
                .into_inner()
        }
    };
    let (first, second) = tokio::join!(import(csv.clone()), import(csv));
    let unique: i64 = sqlx::query_scalar("SELECT count(DISTINCT rnokpp) FROM registry.persons")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(app.count("persons").await, unique, "no RNOKPP twice");
    assert_eq!(first.accepted + second.accepted, u64::try_from(unique).expect("count"));
    assert_eq!(first.rows, 3000);
    assert_eq!(first.accepted + first.duplicates, 3000 - first.rejected);
    assert_eq!(second.accepted + second.duplicates, 3000 - second.rejected);
    assert_eq!(app.count("person_versions").await, unique, "a first version for each person, none for duplicates");
}
