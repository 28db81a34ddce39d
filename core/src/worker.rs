//! The one loop every background worker runs (deliveries of every channel, the deadline
//! scheduler, the sync projector, the purge): do a round, go again at once while work is waiting,
//! otherwise wait for the next tick; back off while rounds fail (the database is away); stop when
//! told, between rounds. Work that is one long session rather than rounds (a `LISTEN` connection)
//! runs on [`session`], the same loop with the session cut at stop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// What a round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// It did a full batch: more may be waiting, so the next round starts at once.
    More,
    /// The queue is drained: the next round waits for the interval.
    Idle,
}

impl Round {
    /// `More` when a round handled a whole batch of `limit`.
    pub fn after(handled: usize, limit: i64) -> Round {
        if i64::try_from(handled).unwrap_or(i64::MAX) >= limit {
            Round::More
        } else {
            Round::Idle
        }
    }
}

/// The longest a failing worker waits between rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `round` until `stop` completes: again at once after [`Round::More`], after `interval`
/// after [`Round::Idle`], and after a wait that doubles from `interval` (up to 30 s, or
/// `interval` if that is longer) while rounds fail. A round in progress is finished, never cut.
pub async fn run<F, Fut, E>(
    name: &'static str,
    interval: Duration,
    stop: impl Future<Output = ()>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Round, E>>,
    E: Display,
{
    tokio::pin!(stop);
    tracing::info!(worker = name, "background worker started");
    let mut failures: u32 = 0;
    loop {
        let wait = match round().await {
            Ok(Round::More) => {
                failures = 0;
                Duration::ZERO
            }
            Ok(Round::Idle) => {
                failures = 0;
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(interval, failures, MAX_BACKOFF);
                tracing::error!(worker = name, error = %e, retry_in = ?wait, "background worker round failed");
                wait
            }
        };
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = pause(wait) => {}
        }
    }
    tracing::info!(
        worker = name,
        reason = "shutting down",
        "background worker stopped"
    );
}

/// How a [`session`] ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It had nothing to do for now (another process holds the work): start it again later.
    Again,
    /// There is nothing more to do in this process (its database pool was closed): the worker
    /// stops, saying why.
    Finished(&'static str),
}

/// Runs `session` (work that lasts until its connection fails, such as a `LISTEN` connection)
/// until `stop` completes: after it ends or fails, again after a wait that doubles from `retry`
/// up to `most` while sessions keep ending early; the wait starts over once a session has lasted
/// `retry` or longer. A session is dropped where it is when `stop` completes, so it must hold
/// nothing half-written. Logs why it stopped.
pub async fn session<F, Fut, E>(
    name: &'static str,
    (retry, most): (Duration, Duration),
    stop: impl Future<Output = ()>,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Ended, E>>,
    E: Display,
{
    tokio::pin!(stop);
    tracing::info!(worker = name, "background worker started");
    // Sessions in a row that ended sooner than `retry`.
    let mut early: u32 = 0;
    let why = loop {
        let started = tokio::time::Instant::now();
        let ended = tokio::select! {
            biased;
            () = &mut stop => break "shutting down",
            ended = session() => ended,
        };
        if started.elapsed() >= retry {
            early = 0;
        }
        let wait = backoff(retry, early, most);
        early = early.saturating_add(1);
        match ended {
            Ok(Ended::Finished(why)) => break why,
            Ok(Ended::Again) => {
                tracing::debug!(worker = name, retry_in = ?wait, "background session ended")
            }
            Err(e) => {
                tracing::warn!(worker = name, error = %e, retry_in = ?wait, "background session failed")
            }
        }
        tokio::select! {
            biased;
            () = &mut stop => break "shutting down",
            () = tokio::time::sleep(wait) => {}
        }
    };
    tracing::info!(worker = name, reason = why, "background worker stopped");
}

async fn pause(wait: Duration) {
    if wait.is_zero() {
        // Let shutdown and other tasks in between the rounds of a long queue.
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(wait).await;
    }
}

/// `interval` doubled per failure in a row, at most `most` (or `interval`, if longer).
fn backoff(interval: Duration, failures: u32, most: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval.saturating_mul(factor).min(most.max(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn failures_back_off_up_to_a_ceiling() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(200), 1, MAX_BACKOFF), ms(400));
        assert_eq!(backoff(ms(200), 3, MAX_BACKOFF), ms(1600));
        assert_eq!(backoff(ms(200), 40, MAX_BACKOFF), MAX_BACKOFF);
        assert_eq!(
            backoff(Duration::from_secs(3600), 2, MAX_BACKOFF),
            Duration::from_secs(3600),
            "a slow worker never waits less than its interval"
        );
        assert_eq!(Round::after(64, 64), Round::More);
        assert_eq!(Round::after(3, 64), Round::Idle);
    }

    /// Runs a worker whose rounds answer `script` in turn (then `Idle`), until it has done
    /// `rounds` of them; returns how many it did by the time it stopped.
    async fn rounds_until_stopped(
        script: Vec<Result<Round, &'static str>>,
        rounds: usize,
    ) -> usize {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let counted = done.clone();
        let script = Arc::new(script);
        let worker = tokio::spawn(run(
            "test",
            Duration::from_secs(3600),
            async move {
                let _ = rx.await;
            },
            move || {
                let (counted, script) = (counted.clone(), script.clone());
                async move {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    script.get(n).copied().unwrap_or(Ok(Round::Idle))
                }
            },
        ));
        for _ in 0..1000 {
            if done.load(Ordering::SeqCst) >= rounds {
                break;
            }
            tokio::task::yield_now().await;
        }
        // A worker that went on at once would do more rounds meanwhile.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let _ = tx.send(());
        worker.await.expect("the worker stops when told");
        done.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn full_batches_go_on_at_once_an_empty_queue_waits() {
        let script = vec![Ok(Round::More), Ok(Round::More), Ok(Round::Idle)];
        assert_eq!(rounds_until_stopped(script, 3).await, 3);
    }

    #[tokio::test]
    async fn a_failed_round_waits_before_the_next() {
        let script = vec![Err("the database is away"), Ok(Round::More)];
        assert_eq!(rounds_until_stopped(script, 1).await, 1);
    }

    #[tokio::test]
    async fn a_session_starts_again_until_it_finishes() {
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let ms = Duration::from_millis;
        session("test", (ms(5), ms(20)), std::future::pending(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err("the database is away"),
                    1 => Ok(Ended::Again),
                    _ => Ok(Ended::Finished("the pool was closed")),
                }
            }
        })
        .await;
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stopping_cuts_a_session_that_never_ends() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ms = Duration::from_millis;
        let worker = tokio::spawn(session(
            "test",
            (ms(5), ms(20)),
            async move {
                let _ = rx.await;
            },
            std::future::pending::<Result<Ended, &'static str>>,
        ));
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .expect("the worker stops when told")
            .expect("the worker does not panic");
    }
}
