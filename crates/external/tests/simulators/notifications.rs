//! Diia notifications.

use std::collections::BTreeMap;

use esocial_external::Error;
use esocial_external::diia::{Diia, NotificationRequest};
use esocial_external::sandbox_adults;

use crate::Sandbox;

fn notification(request_id: &str, adult_index: usize, template_code: &str) -> NotificationRequest {
    NotificationRequest {
        request_id: request_id.to_owned(),
        rnokpp: sandbox_adults()[adult_index].rnokpp,
        template_code: template_code.to_owned(),
        parameters: BTreeMap::from([
            ("act_record_number".to_owned(), "2026-000001".to_owned()),
            ("child_name".to_owned(), "Олеся".to_owned()),
        ]),
    }
}

#[tokio::test]
async fn a_notification_sent_appears_in_the_persons_list_once_even_when_retried() {
    let sandbox = Sandbox::start().await;
    let diia = &sandbox.clients.diia;
    let sent = notification("req-1", 0, "birth_registered");
    let notification_id = diia.send_notification(&sent).await.expect("sent");
    let retried = diia.send_notification(&sent).await.expect("sent again");
    assert_eq!(retried, notification_id, "a retry returns the first id");

    let page = diia.notifications(sent.rnokpp, 0, "").await.expect("listed");
    assert_eq!(page.notifications.len(), 1, "the retry sent nothing");
    let listed = &page.notifications[0];
    assert_eq!(listed.notification_id, notification_id);
    assert_eq!((listed.rnokpp, listed.template_code.as_str()), (sent.rnokpp, "birth_registered"));
    assert_eq!(listed.parameters, sent.parameters);
    let age = chrono::Utc::now() - listed.sent_at;
    assert!(age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(1), "{age}");
    assert_eq!(page.next_page_token, None);

    let someone_else = diia.notifications(sandbox_adults()[1].rnokpp, 0, "").await.expect("listed");
    assert!(someone_else.notifications.is_empty());
    sandbox.stop().await;
}

#[tokio::test]
async fn notifications_are_listed_newest_first_page_by_page() {
    let sandbox = Sandbox::start().await;
    let diia = &sandbox.clients.diia;
    let mut ids = Vec::new();
    for (index, template) in ["birth_registered", "unzr_assigned", "rnokpp_assigned"].iter().enumerate() {
        ids.push(diia.send_notification(&notification(&format!("req-{index}"), 2, template)).await.expect("sent"));
    }
    diia.send_notification(&notification("other", 3, "birth_registered")).await.expect("sent");
    let rnokpp = sandbox_adults()[2].rnokpp;

    let first = diia.notifications(rnokpp, 2, "").await.expect("first page");
    let templates: Vec<&str> =
        first.notifications.iter().map(|notification| notification.template_code.as_str()).collect();
    assert_eq!(templates, ["rnokpp_assigned", "unzr_assigned"]);
    let token = first.next_page_token.expect("a second page");
    let second = diia.notifications(rnokpp, 2, &token).await.expect("second page");
    assert_eq!(second.notifications.len(), 1);
    assert_eq!(second.notifications[0].notification_id, ids[0]);
    assert_eq!(second.next_page_token, None);
    sandbox.stop().await;
}

#[tokio::test]
async fn malformed_notifications_and_pages_are_refused() {
    let sandbox = Sandbox::start().await;
    let diia = &sandbox.clients.diia;
    let mut bad = notification("", 0, "Birth Registered");
    bad.parameters.insert("bad key".to_owned(), "x".to_owned());
    match diia.send_notification(&bad).await {
        Err(Error::InvalidRequest { problems, .. }) => {
            let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
            assert_eq!(fields, ["request_id", "template_code", "parameters[bad key]"]);
        }
        other => panic!("must be refused, got {other:?}"),
    }
    let rnokpp = sandbox_adults()[0].rnokpp;
    assert!(matches!(diia.notifications(rnokpp, 201, "").await, Err(Error::InvalidRequest { .. })));
    assert!(matches!(diia.notifications(rnokpp, 10, "not-a-token").await, Err(Error::InvalidRequest { .. })));
    sandbox.stop().await;
}
