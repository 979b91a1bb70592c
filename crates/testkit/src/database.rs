use sqlx::Executor as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{clean_up_in_background, database_server_url, unique_suffix};

/// A database of its own for one test, dropped with the handle.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server: PgConnectOptions,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        let server: PgConnectOptions = database_server_url().parse()?;
        let name = format!("esocial_test_{}", unique_suffix());
        let mut connection = server.clone().database("postgres").connect().await?;
        connection.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
        connection.close().await?;
        let url = server.clone().database(&name).to_url_lossy().to_string();
        Ok(Self { name, url, server })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same database reached through another host and port (a proxy).
    pub fn url_via(&self, address: std::net::SocketAddr) -> String {
        self.server
            .clone()
            .database(&self.name)
            .host(&address.ip().to_string())
            .port(address.port())
            .to_url_lossy()
            .to_string()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        clean_up_in_background(async move {
            if let Ok(mut connection) = server.database("postgres").connect().await {
                let _ = connection
                    .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .await;
            }
        });
    }
}
