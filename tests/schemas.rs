//! Two services' migrations coexist in one database: each has its own
//! schema, its own migrations table, and tables of the same name do not
//! collide.

use esocial_kit::config::Env;
use esocial_testkit::{TestDatabase, TestEvents, TestTokens};

static LEDGER_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./fixtures/ledger_migrations");

#[tokio::test]
async fn two_services_migrate_into_one_database_without_touching_each_other() {
    let database = TestDatabase::create().await.expect("database");
    let tokens = TestTokens::start().await.expect("tokens");
    let events = TestEvents::new();
    let env = Env::from_pairs([
        ("DATABASE_URL", database.url().to_owned()),
        ("ESOCIAL_IDENTITY_URL", tokens.identity_url()),
        ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.clone()),
        ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.clone()),
    ]);
    let settings = esocial_classifier::Settings::from_env(&env).expect("settings");
    let classifier = esocial_classifier::Classifier::build(settings.clone()).await.expect("classifier migrates");

    let ledger = esocial_kit::db::pool(database.url(), "ledger", "ledger-test", 2).expect("pool");
    esocial_kit::db::migrate(&ledger, "ledger", &LEDGER_MIGRATIONS).await.expect("ledger migrates");
    // Running both again is a no-op.
    esocial_kit::db::migrate(&ledger, "ledger", &LEDGER_MIGRATIONS).await.expect("ledger again");
    esocial_classifier::Classifier::build(settings).await.expect("classifier again");

    let admin = sqlx::PgPool::connect(database.url()).await.expect("admin pool");
    let versions = async |schema: &str| -> Vec<i64> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {schema}._sqlx_migrations ORDER BY version"
        )))
        .fetch_all(&admin)
        .await
        .expect("migrations table")
    };
    assert_eq!(versions("classifier").await, [1, 2, 3, 100, 101], "kit tables, then the classifier's");
    assert_eq!(versions("ledger").await, [1, 2, 3, 100, 101], "kit tables, then the ledger's");
    let unqualified: bool = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
        .fetch_one(&admin)
        .await
        .expect("query");
    assert!(!unqualified, "no shared migrations table in public");

    // Same table name, two schemas, two different tables.
    let classifier_columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'classifier' AND table_name = 'support_types' ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .expect("columns");
    assert!(classifier_columns.contains(&"latest_version".to_owned()));
    let ledger_columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'ledger' AND table_name = 'support_types' ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .expect("columns");
    assert_eq!(ledger_columns, ["id", "note"]);

    // Each pool sees its own service's tables first.
    let seen_by_ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM support_types").fetch_one(&ledger).await.expect("query");
    assert_eq!(seen_by_ledger, 0);
    classifier.seed().await.expect("seed");
    let seen_by_classifier: i64 =
        sqlx::query_scalar("SELECT count(*) FROM support_types").fetch_one(classifier.pool()).await.expect("query");
    assert_eq!(seen_by_classifier, 4);
}

#[tokio::test]
async fn a_service_migration_may_not_use_the_kits_version_range() {
    let database = TestDatabase::create().await.expect("database");
    let pool = esocial_kit::db::pool(database.url(), "intruder", "test", 1).expect("pool");
    let reserved = sqlx::migrate::Migrator::with_migrations(vec![sqlx::migrate::Migration::new(
        3,
        "clash".into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str("SELECT 1"),
        false,
    )]);
    let error = esocial_kit::db::migrate(&pool, "intruder", &reserved).await.expect_err("reserved version");
    assert!(error.to_string().contains("reserved for the kit"), "{error}");
}
