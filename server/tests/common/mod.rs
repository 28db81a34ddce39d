//! What the tests that run the `atiende` binary share.

use sqlx::PgPool;

/// The URL of the test's database, for the binary's `DATABASE_URL`.
pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let host = o.get_host();
    let user = o.get_username();
    let db = o.get_database().unwrap_or("postgres");
    if host.starts_with('/') {
        format!(
            "postgres:///{db}?host={host}&user={user}&port={}",
            o.get_port()
        )
    } else {
        format!("postgres://{user}@{host}:{}/{db}", o.get_port())
    }
}
