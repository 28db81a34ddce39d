//! Connections follow the session they were opened with: when it ends (logout, expiry, the user
//! deactivated) every sync server closes them, with close code 4401. Logout and deactivation
//! arrive as notifications on the sync channel (see `listen.rs`), from whichever process did them;
//! expiry is checked by the janitor.

use std::sync::Arc;

use atiende_core::auth::SessionInfo;
use chrono::Utc;
use uuid::Uuid;

use crate::lock;
use crate::peers::{CloseReason, Control, Live};
use crate::state::SyncState;

/// Forgets the connection when its task ends.
pub(crate) struct Tracked {
    state: SyncState,
    conn: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.state.inner.live).remove(&self.conn);
    }
}

impl SyncState {
    pub(crate) fn track_session(
        &self,
        conn: u64,
        user_id: Uuid,
        session: SessionInfo,
        control: Arc<Control>,
    ) -> Tracked {
        lock(&self.inner.live).insert(
            conn,
            Live {
                user_id,
                session: session.digest,
                expires_at: session.expires_at,
                control,
            },
        );
        Tracked {
            state: self.clone(),
            conn,
        }
    }

    /// Closes the connections matching `ended`; returns how many.
    fn close_where(&self, ended: impl Fn(&Live) -> bool) -> usize {
        let live = lock(&self.inner.live);
        let mut closed = 0;
        for conn in live.values().filter(|l| ended(l)) {
            conn.control.close(CloseReason::SessionEnded);
            closed += 1;
        }
        closed
    }

    /// Closes the connections opened with the session whose token has this SHA-256 digest.
    pub fn end_session(&self, digest: &[u8]) -> usize {
        self.close_where(|l| l.session == digest)
    }

    /// Closes every connection of the user.
    pub fn end_user(&self, user_id: Uuid) -> usize {
        self.close_where(|l| l.user_id == user_id)
    }

    /// Closes the connections whose session has expired.
    pub fn close_expired_sessions(&self) -> usize {
        let now = Utc::now();
        self.close_where(|l| l.expires_at <= now)
    }

    /// Closes the connections whose session is no longer valid in the database: after the
    /// listener reconnects, as notifications sent meanwhile were lost.
    pub(crate) async fn recheck_sessions(&self) -> Result<usize, sqlx::Error> {
        let sessions: Vec<Vec<u8>> = {
            let live = lock(&self.inner.live);
            let mut all: Vec<Vec<u8>> = live.values().map(|l| l.session.clone()).collect();
            all.sort();
            all.dedup();
            all
        };
        if sessions.is_empty() {
            return Ok(0);
        }
        let valid = sqlx::query_scalar!(
            r#"select s.token_hash as "token_hash!" from sessions s join users u on u.id = s.user_id
             where s.token_hash = any($1) and s.revoked_at is null and s.expires_at > now()
               and u.active"#,
            &sessions[..],
        )
        .fetch_all(&self.inner.db)
        .await?;
        Ok(self.close_where(|l| !valid.contains(&l.session)))
    }
}
