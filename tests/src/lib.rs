//! Test support: start the real server in-process on port 0 against a test database, and talk to
//! it over real HTTP as the apps do.

pub mod dovecot;

use std::net::SocketAddr;

use atiende_core::auth::Password;
use atiende_core::types::Role;
use atiende_server::{Settings, admin};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PASSWORD: &str = "a long enough password";

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Starts the whole HTTP application on an ephemeral port, using `pool`'s database.
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, test_settings()).await
}

/// The defaults, except that the scheduler opens no semestral survey campaign by itself: in June
/// and December it would, and a test that makes customers active as it starts could find them
/// invited. The campaign tests turn it on.
pub fn test_settings() -> Settings {
    Settings {
        survey_campaign_months: Vec::new(),
        ..Settings::default()
    }
}

/// The same, with the given settings.
pub async fn spawn_app_with(pool: PgPool, settings: Settings) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = oneshot::channel::<()>();
    let server_pool = pool.clone();
    let server = tokio::spawn(async move {
        atiende_server::run(listener, server_pool, &settings, async move {
            let _ = rx.await;
        })
        .await
    });
    TestApp {
        addr,
        pool,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A response as the app sees it: status, headers and the body parsed as JSON (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The stable machine code of a problem response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("read the body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut req = self.client.put(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// The one number a counting query gives.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    /// The id of the user with this e-mail.
    pub async fn user_id(&self, email: &str) -> uuid::Uuid {
        sqlx::query_scalar("select id from users where email = $1")
            .bind(email)
            .fetch_one(&self.pool)
            .await
            .expect("user")
    }

    pub async fn login(&self, email: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login of {email}: {}", r.body);
        r.body["token"].as_str().expect("a token").to_owned()
    }

    /// Creates a staff user the way an admin does (the CLI's code path) and logs them in over HTTP.
    pub async fn staff(
        &self,
        email: &str,
        role: Role,
        process: Option<&str>,
    ) -> (uuid::Uuid, String) {
        let req = admin::UserAdd {
            email: email.into(),
            name: format!("{role} {email}"),
            role,
            process: process.map(Into::into),
            language: "es".into(),
        };
        let user = admin::add_user(
            &self.pool,
            &atiende_core::auth::Hashing::default(),
            req,
            Password::parse(PASSWORD.into()).expect("password"),
        )
        .await
        .expect("add staff user");
        (user.id, self.login(email).await)
    }

    /// Adds the process, unless the schema has it already (the commercial process is seeded).
    pub async fn process(&self, code: &str) {
        let exists = atiende_core::processes::find(&self.pool, code)
            .await
            .expect("find process")
            .is_some();
        if !exists {
            admin::add_process(&self.pool, code, code, None)
                .await
                .expect("add process");
        }
    }

    /// Registers a customer over HTTP and returns their token.
    pub async fn customer(&self, email: &str, document: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Cliente de prueba", "phone": "+57 300 123 4567",
                       "document_type": "CC", "document_number": document, "accept_data_policy": true}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "register {email}: {}",
            r.body
        );
        r.body["token"].as_str().expect("a token").to_owned()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl TestApp {
    /// Moves a case's filing and clock starts back in time, as if it had been filed `days` ago
    /// (the clock events are append-only, so the test lifts that rule for a moment).
    pub async fn backdate(&self, id: &str, days: i32) {
        let id: uuid::Uuid = id.parse().expect("uuid");
        let mut tx = self.pool.begin().await.expect("tx");
        for sql in [
            "alter table case_clock_events disable trigger case_clock_events_no_update",
            "update case_clock_events set at = at - make_interval(days => $2) where case_id = $1",
            "update cases set created_at = created_at - make_interval(days => $2), received_at = received_at - make_interval(days => $2) where id = $1",
            "alter table case_clock_events enable trigger case_clock_events_no_update",
        ] {
            let q = sqlx::query(sql);
            let q = if sql.contains("$1") {
                q.bind(id).bind(days)
            } else {
                q
            };
            q.execute(&mut *tx).await.expect(sql);
        }
        tx.commit().await.expect("commit");
    }
}

/// The whole staff of one process plus the director, as the lifecycle tests need them.
pub struct Org {
    pub director: String,
    pub leader: String,
    pub collaborator: String,
    pub collaborator_id: uuid::Uuid,
    pub other_collaborator: String,
    pub other_leader: String,
    pub technician: String,
    pub admin: String,
}

impl TestApp {
    pub async fn org(&self) -> Org {
        self.process("OPERATIVO").await;
        self.process("COMERCIAL").await;
        let (_, director) = self
            .staff("director@test.co", Role::QualityDirector, None)
            .await;
        let (_, leader) = self
            .staff("lider@test.co", Role::ProcessLeader, Some("OPERATIVO"))
            .await;
        let (collaborator_id, collaborator) = self
            .staff("colab@test.co", Role::Collaborator, Some("OPERATIVO"))
            .await;
        let (_, other_collaborator) = self
            .staff(
                "colab.comercial@test.co",
                Role::Collaborator,
                Some("COMERCIAL"),
            )
            .await;
        let (_, other_leader) = self
            .staff(
                "lider.comercial@test.co",
                Role::ProcessLeader,
                Some("COMERCIAL"),
            )
            .await;
        let (_, technician) = self.staff("tecnico@test.co", Role::Technician, None).await;
        let (_, admin) = self.staff("admin@test.co", Role::Admin, None).await;
        Org {
            director,
            leader,
            collaborator,
            collaborator_id,
            other_collaborator,
            other_leader,
            technician,
            admin,
        }
    }

    /// Takes a case through assignment, draft, approval and closing, as each role does.
    pub async fn answer(&self, org: &Org, id: &str, answer: &str) {
        for (token, action, body) in [
            (
                &org.director,
                "assign",
                json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"}),
            ),
            (&org.collaborator, "draft", json!({"answer": answer})),
            (&org.leader, "approve", json!({})),
            (
                &org.director,
                "close",
                json!({"in_favor_of_customer": true}),
            ),
        ] {
            let r = self
                .post(
                    &format!("/api/v1/staff/cases/{id}/{action}"),
                    Some(token),
                    body,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
        }
    }

    /// Files a case as the customer and returns its JSON.
    pub async fn file(&self, token: &str, case_type: &str) -> Value {
        let r = self
            .post(
                "/api/v1/cases",
                Some(token),
                json!({"id": uuid::Uuid::new_v4(), "type": case_type, "subject": "El servicio no se prestó", "description": "Nadie vino a la visita programada."}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

/// A case view's messages as (from_staff, body), oldest first.
pub fn message_bodies(case: &Value) -> Vec<(Value, Value)> {
    case["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["from_staff"].clone(), m["body"].clone()))
        .collect()
}

/// The year and number of a radicado `PQRS-YYYY-NNNNNN`.
pub fn radicado_parts(radicado: &str) -> (i32, u32) {
    let mut parts = radicado.splitn(3, '-');
    let (Some("PQRS"), Some(year), Some(number)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a radicado: {radicado}");
    };
    match (year.parse(), number.parse()) {
        (Ok(y), Ok(n)) if year.len() == 4 && number.len() == 6 => (y, n),
        _ => panic!("not a radicado: {radicado}"),
    }
}

/// Whether `next` is the radicado filed right after `previous`. Numbers restart every year (in
/// Bogotá), so a test running across New Year's midnight sees the count start again at 1.
pub fn follows(previous: &str, next: &str) -> bool {
    let (year, number) = radicado_parts(previous);
    match radicado_parts(next) {
        (y, n) if y == year => n == number + 1,
        (y, n) => y == year + 1 && n == 1,
    }
}

/// How long a chat test waits for the bot: generous, for a busy machine.
pub const CHAT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until every stored chat update is handled and every due message has left (a message
/// held back on purpose, such as a rating prompt an hour after the answer, is not waited for).
pub async fn chats_settled(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + CHAT_PATIENCE;
    loop {
        let busy: i64 = sqlx::query_scalar(
            "select (select count(*) from bot_updates where processed_at is null)
                  + (select count(*) from deliveries where state = 'pending'
                       and (attempts > 0 or next_attempt_at <= now()))",
        )
        .fetch_one(pool)
        .await
        .expect("pending work");
        if busy == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{busy} still pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// WhatsApp's webhook signature of `body`: `sha256=` and the hex HMAC-SHA256 under the app secret.
pub fn whatsapp_signature(app_secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

impl TestApp {
    /// The case's deliveries of notification `kind` on `channel`, as staff see them, once one
    /// satisfies `done`.
    pub async fn staff_sees_delivery(
        &self,
        token: &str,
        case_id: uuid::Uuid,
        kind: &str,
        channel: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + CHAT_PATIENCE;
        loop {
            let r = self
                .get(
                    &format!("/api/v1/staff/cases/{case_id}/notifications"),
                    Some(token),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let found = r.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["kind"] == kind)
                .flat_map(|n| n["deliveries"].as_array().cloned().unwrap_or_default())
                .find(|d| d["channel"] == channel && done(d));
            if let Some(d) = found {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such {kind} delivery on {channel}: {}",
                r.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A benchmark's scratch database `name` on `server_url` (a server address with no database
/// name): dropped if it is there, created and migrated. Returns a connection to the server's
/// `postgres` database, to drop it again at the end ([`drop_scratch_database`]), and a pool on it.
pub async fn scratch_database(
    server_url: &str,
    name: &str,
    max_connections: u32,
) -> Result<(sqlx::PgConnection, PgPool), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&format!("{server_url}/postgres")).await?;
    drop_scratch_database(&mut admin, name).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(&format!("{server_url}/{name}"))
        .await?;
    atiende_core::MIGRATOR.run(&pool).await?;
    Ok((admin, pool))
}

/// Drops a benchmark's scratch database, closing whatever still uses it.
pub async fn drop_scratch_database(
    admin: &mut sqlx::PgConnection,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(admin)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{follows, radicado_parts};

    #[test]
    fn radicado_numbers_restart_at_new_year() {
        assert_eq!(radicado_parts("PQRS-2026-000042"), (2026, 42));
        assert!(follows("PQRS-2026-000041", "PQRS-2026-000042"));
        assert!(follows("PQRS-2026-000041", "PQRS-2027-000001"));
        assert!(!follows("PQRS-2026-000041", "PQRS-2026-000043"));
        assert!(!follows("PQRS-2026-000041", "PQRS-2027-000002"));
        assert!(!follows("PQRS-2026-000041", "PQRS-2028-000001"));
    }
}
