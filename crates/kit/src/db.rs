//! PostgreSQL: one pool and one schema per service.
//!
//! Each service owns a schema named after it. Its pool sets `search_path` to
//! that schema (then `public`, where extensions live), so unqualified names in
//! its SQL and migrations resolve to its own tables, and its migrations table
//! is `<schema>._sqlx_migrations`. Two services can therefore share one
//! database without seeing each other's tables or migration history.
//!
//! Migrations are the kit's platform tables (versions 1–99: outbox, processed
//! events, idempotency keys) followed by the service's own (versions from
//! 100), run as one ordered set.

use std::time::Duration;

use sqlx::migrate::{Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Executor as _};

static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The first version a service's own migrations may use.
pub const SERVICE_MIGRATION_VERSION_MIN: i64 = 100;

/// How long a statement may run before PostgreSQL cancels it.
const STATEMENT_TIMEOUT: &str = "60s";

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("schema name {0:?} must be lower-case letters, digits and `_`")]
    BadSchemaName(String),
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error(
        "migration {version} of schema {schema} uses a version below {SERVICE_MIGRATION_VERSION_MIN}, reserved for the kit"
    )]
    ReservedVersion { schema: String, version: i64 },
    #[error("migrating schema {schema} failed: {source}")]
    Migrate { schema: String, source: sqlx::migrate::MigrateError },
    #[error("creating database {name} failed: {source}")]
    CreateDatabase { name: String, source: sqlx::Error },
}

fn check_schema_name(schema: &str) -> Result<(), DatabaseError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|character: char| character.is_ascii_lowercase())
        && schema
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_');
    if valid { Ok(()) } else { Err(DatabaseError::BadSchemaName(schema.to_owned())) }
}

/// Connection options for a service's schema.
pub fn connect_options(database_url: &str, schema: &str, application: &str) -> Result<PgConnectOptions, DatabaseError> {
    check_schema_name(schema)?;
    let options: PgConnectOptions = database_url.parse().map_err(DatabaseError::BadUrl)?;
    Ok(options
        .application_name(application)
        .options([("search_path", format!("{schema},public")), ("statement_timeout", STATEMENT_TIMEOUT.to_owned())])
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

/// A pool whose connections see `schema` first. Connections are made lazily,
/// so a service starts while PostgreSQL is still coming up; its health stays
/// NOT_SERVING until the database answers.
pub fn pool(
    database_url: &str,
    schema: &str,
    application: &str,
    max_connections: u32,
) -> Result<PgPool, DatabaseError> {
    let options = connect_options(database_url, schema, application)?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Creates the schema if needed and applies the kit's and the service's
/// pending migrations, in version order, recording them in
/// `<schema>._sqlx_migrations`. Safe to run from several replicas at once
/// (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool, schema: &str, service_migrations: &Migrator) -> Result<(), DatabaseError> {
    check_schema_name(schema)?;
    let mut migrations: Vec<Migration> = PLATFORM_MIGRATIONS.iter().cloned().collect();
    for migration in service_migrations.iter() {
        if migration.version < SERVICE_MIGRATION_VERSION_MIN {
            return Err(DatabaseError::ReservedVersion { schema: schema.to_owned(), version: migration.version });
        }
        migrations.push(migration.clone());
    }
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.create_schema(schema.to_owned());
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    migrator.run(pool).await.map_err(|source| DatabaseError::Migrate { schema: schema.to_owned(), source })
}

/// Creates the database named in `database_url` if it does not exist, by
/// connecting to the `postgres` maintenance database of the same server.
pub async fn ensure_database_exists(database_url: &str) -> Result<(), DatabaseError> {
    let options: PgConnectOptions = database_url.parse().map_err(DatabaseError::BadUrl)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut maintenance = options.clone().database("postgres").connect().await.map_err(DatabaseError::Connect)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut maintenance)
        .await
        .map_err(DatabaseError::Connect)?;
    if !exists {
        // The name is quoted as an identifier; it comes from our own configuration.
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match maintenance.execute(sqlx::AssertSqlSafe(statement)).await {
            Ok(_) => {}
            // Another process created it meanwhile.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(source) => return Err(DatabaseError::CreateDatabase { name, source }),
        }
    }
    Ok(())
}

/// Whether an error is a violation of a constraint with this name.
pub fn is_constraint_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(database_error) if database_error.constraint() == Some(constraint))
}

/// Creates a service's schema and runs its migrations on a one-connection
/// pool, then closes it (`esocial migrate`).
pub async fn migrate_only(
    database_url: &str,
    schema: &str,
    service_migrations: &Migrator,
) -> Result<(), DatabaseError> {
    let pool = pool(database_url, schema, &format!("esocial-{schema}-migrate"), 1)?;
    let result = migrate(&pool, schema, service_migrations).await;
    pool.close().await;
    result
}
