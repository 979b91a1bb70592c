//! єМалятко's calls: civil registry → demographic register → tax register →
//! e-health, with the identifiers each assigns.

use esocial_external::Error;
use esocial_external::civil_registry::{BirthBasis, BirthRegistration, CivilRegistry};
use esocial_external::demographic::{DemographicRegister, PersonKey};
use esocial_external::ehealth::{NewbornPatient, PatientRegister, REASON_BIRTH_ESTABLISHED_BY_COURT};
use esocial_external::tax::TaxRegister;
use esocial_external::{PersonName, sandbox_adults};
use esocial_identifiers::{Rnokpp, Sex, Unzr};

use crate::{Sandbox, parents, recent_birth_date};

fn newborn_registration(basis: BirthBasis, sex: Sex) -> BirthRegistration {
    let (mother, father) = parents();
    let place_of_birth = mother.declared_residence.as_ref().expect("residence").territory;
    BirthRegistration {
        child: PersonName::new(
            esocial_people::names::surname_for(&father.name.last_name, sex),
            if sex == Sex::Female { "Олеся" } else { "Богдан" },
            esocial_people::names::patronymic(&father.name.first_name, sex),
        ),
        birth_date: recent_birth_date(),
        sex,
        place_of_birth,
        mother: mother.rnokpp,
        father: Some(father.rnokpp),
        basis,
    }
}

#[tokio::test]
async fn a_birth_is_registered_once_and_a_second_registration_names_the_first_record() {
    let sandbox = Sandbox::start().await;
    let registry = &sandbox.clients.civil_registry;
    let registration = newborn_registration(BirthBasis::MedicalConclusion("МВН-2026-000731".to_owned()), Sex::Female);

    let before = registry.find_birth_record_by_medical_conclusion("МВН-2026-000731").await.expect("searched");
    assert_eq!(before, None, "the birth is not registered yet");

    let record = registry.register_birth(&registration).await.expect("registered");
    assert_eq!(record.registration, registration);
    assert_eq!(record.registration_date, esocial_kit::time::kyiv_today());
    assert!(record.act_record_number.as_str().ends_with("-000001"), "{}", record.act_record_number);

    let found = registry.find_birth_record_by_medical_conclusion("мвн-2026-000731").await.expect("searched");
    assert_eq!(found.as_ref(), Some(&record), "found by the conclusion number, whatever its case");
    assert_eq!(registry.birth_record(&record.act_record_number).await.expect("read"), record);

    let mut again = registration.clone();
    again.child.first_name = "Оксана".to_owned();
    match registry.register_birth(&again).await {
        Err(Error::AlreadyExists { existing_record, message }) => {
            assert_eq!(existing_record.as_deref(), Some(record.act_record_number.as_str()), "{message}");
        }
        other => panic!("a second registration must be refused, got {other:?}"),
    }

    let other_birth = newborn_registration(BirthBasis::MedicalConclusion("МВН-2026-000732".to_owned()), Sex::Male);
    let second = registry.register_birth(&other_birth).await.expect("another birth");
    assert_ne!(second.act_record_number, record.act_record_number);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_newborn_gets_a_unzr_and_an_rnokpp_that_carry_the_birth_date_and_sex_and_keep_them_on_a_retry() {
    let sandbox = Sandbox::start().await;
    let clients = &sandbox.clients;
    let registration = newborn_registration(BirthBasis::MedicalConclusion("103/о-55501".to_owned()), Sex::Male);
    let birth = clients.civil_registry.register_birth(&registration).await.expect("registered");

    let assignment = clients.demographic.assign_newborn_unzr(&birth.act_record_number).await.expect("UNZR");
    assert!(assignment.newly_assigned);
    let unzr = assignment.record.unzr;
    assert_eq!(unzr.as_str().parse::<Unzr>(), Ok(unzr), "the UNZR has a valid check digit");
    assert_eq!(unzr.birth_date(), registration.birth_date);
    assert_eq!(assignment.record.name, registration.child);
    assert_eq!((assignment.record.sex, assignment.record.rnokpp), (Sex::Male, None));
    assert_eq!(assignment.record.birth_act_record_number.as_ref(), Some(&birth.act_record_number));
    assert!(sandbox_adults().iter().all(|adult| adult.unzr != unzr), "the UNZR is nobody else's");

    let repeat = clients.demographic.assign_newborn_unzr(&birth.act_record_number).await.expect("UNZR again");
    assert!(!repeat.newly_assigned);
    assert_eq!(repeat.record.unzr, unzr, "the same act record gets the same UNZR");

    let tax = clients.tax.assign_newborn_rnokpp(unzr).await.expect("RNOKPP");
    assert!(tax.newly_assigned);
    let rnokpp = tax.taxpayer.rnokpp;
    assert_eq!(rnokpp.as_str().parse::<Rnokpp>(), Ok(rnokpp), "the RNOKPP has a valid check digit");
    assert_eq!(rnokpp.birth_date(), registration.birth_date, "digits 1–5 are the birth date");
    assert_eq!(rnokpp.sex(), Sex::Male, "digit 9 is odd for a boy");
    assert_eq!(tax.taxpayer.unzr, Some(unzr));
    assert!(sandbox_adults().iter().all(|adult| adult.rnokpp != rnokpp), "the RNOKPP is nobody else's");

    let repeat = clients.tax.assign_newborn_rnokpp(unzr).await.expect("RNOKPP again");
    assert!(!repeat.newly_assigned);
    assert_eq!(repeat.taxpayer, tax.taxpayer, "the same UNZR gets the same RNOKPP");
    assert_eq!(clients.tax.taxpayer(rnokpp).await.expect("taxpayer"), tax.taxpayer);

    let record = clients.demographic.person_record(unzr).await.expect("record");
    assert_eq!(record.rnokpp, Some(rnokpp), "the demographic register learned the RNOKPP");
    let by_rnokpp = clients.demographic.find_person(PersonKey::Rnokpp(rnokpp)).await.expect("found");
    assert_eq!(by_rnokpp, Some(record));

    let newborn = NewbornPatient {
        birth_act_record_number: birth.act_record_number.clone(),
        unzr: Some(unzr),
        rnokpp: Some(rnokpp),
    };
    let patient = clients.ehealth.add_newborn_patient(&newborn).await.expect("patient");
    assert!(patient.newly_added);
    assert_eq!(patient.patient.patient_id.get_version_num(), 4);
    assert_eq!((patient.patient.unzr, patient.patient.rnokpp), (Some(unzr), Some(rnokpp)));
    assert_eq!((patient.patient.birth_date, patient.patient.sex), (registration.birth_date, Sex::Male));
    let repeat = clients.ehealth.add_newborn_patient(&newborn).await.expect("patient again");
    assert!(!repeat.newly_added);
    assert_eq!(repeat.patient, patient.patient, "the same act record gives the same patient");
    assert_eq!(clients.ehealth.patient(patient.patient.patient_id).await.expect("read"), patient.patient);
    sandbox.stop().await;
}

#[tokio::test]
async fn twins_born_the_same_day_get_different_numbers_and_a_girl_an_even_ninth_digit() {
    let sandbox = Sandbox::start().await;
    let clients = &sandbox.clients;
    let mut numbers = Vec::new();
    for (conclusion, sex) in [("МВН-1", Sex::Female), ("МВН-2", Sex::Female)] {
        let birth = clients
            .civil_registry
            .register_birth(&newborn_registration(BirthBasis::MedicalConclusion(conclusion.to_owned()), sex))
            .await
            .expect("registered");
        let unzr = clients.demographic.assign_newborn_unzr(&birth.act_record_number).await.expect("UNZR").record.unzr;
        let rnokpp = clients.tax.assign_newborn_rnokpp(unzr).await.expect("RNOKPP").taxpayer.rnokpp;
        assert_eq!(rnokpp.sex(), Sex::Female);
        assert_eq!((rnokpp.as_str().as_bytes()[8] - b'0') % 2, 0, "digit 9 is even for a girl");
        numbers.push((unzr, rnokpp));
    }
    assert_ne!(numbers[0].0, numbers[1].0);
    assert_ne!(numbers[0].1, numbers[1].1);
    assert_eq!(numbers[0].0.birth_date(), numbers[1].0.birth_date());
    sandbox.stop().await;
}

#[tokio::test]
async fn a_birth_established_by_a_court_is_registered_but_refused_by_e_health() {
    let sandbox = Sandbox::start().await;
    let clients = &sandbox.clients;
    let registration = newborn_registration(BirthBasis::CourtDecision("757/12345/25-ц".to_owned()), Sex::Female);
    let birth = clients.civil_registry.register_birth(&registration).await.expect("registered");
    assert!(birth.registration.basis.established_by_court());
    let unzr = clients.demographic.assign_newborn_unzr(&birth.act_record_number).await.expect("UNZR").record.unzr;

    let refused = clients
        .ehealth
        .add_newborn_patient(&NewbornPatient {
            birth_act_record_number: birth.act_record_number.clone(),
            unzr: Some(unzr),
            rnokpp: None,
        })
        .await;
    match refused {
        Err(Error::Refused { reason, message }) => {
            assert_eq!(reason.as_deref(), Some(REASON_BIRTH_ESTABLISHED_BY_COURT), "{message}");
            assert!(message.contains(birth.act_record_number.as_str()), "{message}");
        }
        other => panic!("e-health must refuse a court-established birth, got {other:?}"),
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn invalid_and_unknown_requests_are_named_not_guessed() {
    let sandbox = Sandbox::start().await;
    let clients = &sandbox.clients;
    let (mother, father) = parents();

    let mut swapped = newborn_registration(BirthBasis::MedicalConclusion("МВН-9".to_owned()), Sex::Male);
    swapped.mother = father.rnokpp;
    swapped.father = Some(mother.rnokpp);
    match clients.civil_registry.register_birth(&swapped).await {
        Err(Error::InvalidRequest { problems, .. }) => {
            let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
            assert_eq!(fields, ["registration.mother_rnokpp", "registration.father_rnokpp"]);
        }
        other => panic!("parents swapped must be invalid, got {other:?}"),
    }

    let mut unborn = newborn_registration(BirthBasis::MedicalConclusion("МВН-10".to_owned()), Sex::Male);
    unborn.birth_date = esocial_kit::time::kyiv_today().succ_opt().expect("tomorrow");
    assert!(matches!(
        clients.civil_registry.register_birth(&unborn).await,
        Err(Error::InvalidRequest { problems, .. }) if problems[0].field == "registration.birth_date"
    ));

    let unknown_record = "2026-999999".parse().expect("act record number");
    assert!(matches!(clients.civil_registry.birth_record(&unknown_record).await, Err(Error::NotFound { .. })));
    assert!(matches!(clients.demographic.assign_newborn_unzr(&unknown_record).await, Err(Error::NotFound { .. })));
    let newborn = NewbornPatient { birth_act_record_number: unknown_record, unzr: None, rnokpp: None };
    assert!(matches!(clients.ehealth.add_newborn_patient(&newborn).await, Err(Error::NotFound { .. })));

    let nobody: Unzr = "20000101-12346".parse().expect("unzr");
    assert!(matches!(clients.demographic.person_record(nobody).await, Err(Error::NotFound { .. })));
    assert!(matches!(clients.tax.assign_newborn_rnokpp(nobody).await, Err(Error::NotFound { .. })));

    // An adult has an RNOKPP already; the tax register does not give a second.
    let adult = &sandbox_adults()[0];
    let repeat = clients.tax.assign_newborn_rnokpp(adult.unzr).await.expect("the adult's own number");
    assert_eq!((repeat.taxpayer.rnokpp, repeat.newly_assigned), (adult.rnokpp, false));
    sandbox.stop().await;
}
