//! Throwaway databases for tests: each test gets a fresh, empty database on the server
//! named by `AUDITRAIL_TEST_DATABASE_URL`, dropped again when the test ends.

use tokio_postgres::NoTls;

use crate::error::Pg;
use crate::{Result, StoreError};

/// The server PostgreSQL tests run against (any database on it; tests make their own).
pub const URL_VAR: &str = "AUDITRAIL_TEST_DATABASE_URL";
/// When set, a missing or unreachable test server fails the tests instead of skipping.
pub const REQUIRE_VAR: &str = "AUDITRAIL_REQUIRE_POSTGRES";

/// The test server's URL, or `None` when PostgreSQL tests are to be skipped.
///
/// # Panics
/// When `AUDITRAIL_REQUIRE_POSTGRES` is set and `AUDITRAIL_TEST_DATABASE_URL` is not:
/// a run that must cover PostgreSQL cannot skip it silently.
pub fn server_url() -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var_os(REQUIRE_VAR).is_none(),
            "{REQUIRE_VAR} is set but {URL_VAR} is not: the PostgreSQL suite would be skipped"
        );
        eprintln!("skipped: set {URL_VAR} to run the PostgreSQL tests");
    }
    url
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database made for one test.
pub struct TestDb {
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    /// Creates an empty database on the server of `server_url`.
    pub async fn create(server_url: &str) -> Result<Self> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let name = format!("auditrail_test_{}", hex::encode(b));
        admin(server_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            url: with_database(server_url, &name),
            name,
            server: server_url.to_owned(),
        })
    }
}

async fn admin(server_url: &str, sql: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(server_url, NoTls)
        .await
        .pg("connect to the test server")?;
    let task = tokio::spawn(conn);
    let r = client.batch_execute(sql).await.pg("manage test database");
    drop(client);
    let _ = task.await;
    r
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, sql) = (
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Drop runs inside the test's runtime; the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt
                && let Err(e) = rt.block_on(admin(&server, &sql))
            {
                eprintln!("could not drop a test database: {e}");
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/test", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://127.0.0.1", "x"),
            "postgresql://127.0.0.1/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
