//! Every SQL statement of kodo-access, one file per table or aggregate.
//!
//! Functions here take an executor (`&mut PgConnection`, a transaction or the pool) and
//! do one thing; transactions are begun and committed by the caller, in one function.
//! Nothing outside `store/` writes SQL.

pub mod alerts;
pub mod audit;
pub mod checks;
pub mod credentials;
pub mod housekeeping;
pub mod job_runs;
pub mod organizations;
pub mod rotations;

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{ConfigError, DatabaseSettings};

/// SQL statements sent by the check path (for `bench sweep`'s statements per organization).
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts `n` statements about to be sent.
pub fn count_statements(n: u64) {
    STATEMENTS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

pub fn statements_sent() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options from the settings, with the password read from its secret source.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, ConfigError> {
    let mut options = PgConnectOptions::from_str(settings.url.as_str())
        .map_err(|error| ConfigError(format!("invalid configuration key database.url: {error}")))?
        .application_name("kodo-access");
    if let Some(source) = &settings.password {
        let password = source.read()?;
        options = options.password(password.expose_secret());
    }
    Ok(options)
}

/// A pool that connects on first use, so the daemon can start while PostgreSQL is down.
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, ConfigError> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
        .connect_lazy_with(connect_options(settings)?))
}

/// A pool for a one-shot command: fails at once when the database cannot be reached.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = lazy_pool(settings)?;
    ping(&pool).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot reach the database at {}: {error}",
            redacted_url(settings)
        )
    })?;
    Ok(pool)
}

pub fn redacted_url(settings: &DatabaseSettings) -> String {
    let mut url = settings.url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    url.to_string()
}

pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// How the schema in the database compares with the migrations this binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    Current,
    /// Migrations this binary has that the database has not applied yet.
    Behind {
        pending: usize,
    },
    /// The database has migrations this binary does not know: a newer version migrated it.
    Ahead {
        unknown: Vec<i64>,
    },
    /// An applied migration differs from this binary's copy (it was edited).
    Modified {
        version: i64,
    },
}

pub async fn schema_status(pool: &PgPool) -> Result<SchemaStatus, sqlx::Error> {
    let table_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    let applied: Vec<(i64, Vec<u8>, bool)> = if table_exists {
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let known: Vec<&sqlx::migrate::Migration> = MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .collect();
    let unknown: Vec<i64> = applied
        .iter()
        .filter(|(version, _, _)| !known.iter().any(|migration| migration.version == *version))
        .map(|(version, _, _)| *version)
        .collect();
    if !unknown.is_empty() {
        return Ok(SchemaStatus::Ahead { unknown });
    }
    let mut pending = 0;
    for migration in known {
        match applied
            .iter()
            .find(|(version, _, _)| *version == migration.version)
        {
            Some((_, checksum, true)) if checksum[..] == migration.checksum[..] => {}
            Some((version, _, true)) => return Ok(SchemaStatus::Modified { version: *version }),
            _ => pending += 1,
        }
    }
    Ok(if pending == 0 {
        SchemaStatus::Current
    } else {
        SchemaStatus::Behind { pending }
    })
}

/// Applies pending migrations (sqlx takes an advisory lock, so concurrent runs are safe).
/// Data a migration cannot take is named first, and nothing is changed: organization names
/// that differ only by case (migration 8 makes names unique ignoring case).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let clashes = {
        let mut connection = pool.acquire().await?;
        organizations::names_clashing_by_case(&mut connection).await?
    };
    if !clashes.is_empty() {
        let listed: Vec<String> = clashes.iter().map(|names| names.join(" and ")).collect();
        return Err(crate::domain::input_error(format!(
            "organization names must be unique ignoring case, and these differ only by case: {}; remove one of each (kodo-access org remove NAME --yes) or register it again under another name, then migrate; nothing was changed",
            listed.join("; ")
        ))
        .into());
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The name of the unique constraint a statement violated, if that is why it failed.
pub fn unique_violation(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database_error) if database_error.is_unique_violation() => {
            Some(database_error.constraint().unwrap_or_default().to_string())
        }
        _ => None,
    }
}
