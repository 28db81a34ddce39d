//! The one loop every background worker runs (deliveries of every channel, the deadline
//! scheduler, the sync projector, the purge): do a round, go again at once while work is waiting,
//! otherwise wait for the next tick; back off while rounds fail (the database is away); stop when
//! told, between rounds.

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
                let wait = backoff(interval, failures);
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
    tracing::info!(worker = name, "background worker stopped");
}

async fn pause(wait: Duration) {
    if wait.is_zero() {
        // Let shutdown and other tasks in between the rounds of a long queue.
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(wait).await;
    }
}

/// `interval` doubled per failure in a row, at most [`MAX_BACKOFF`] (or `interval`, if longer).
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn failures_back_off_up_to_a_ceiling() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(200), 1), ms(400));
        assert_eq!(backoff(ms(200), 3), ms(1600));
        assert_eq!(backoff(ms(200), 40), MAX_BACKOFF);
        assert_eq!(
            backoff(Duration::from_secs(3600), 2),
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
}
