//! [`AckTracker`]: which source position is confirmed by the broker. Shared between the sink
//! (which registers each transaction's records before producing them) and librdkafka's delivery
//! callback (which runs on the producer's polling thread).
//!
//! ```text
//! write(txn): open(seq) ─ add(seq, bytes) × records ─ seal(seq, end)
//! delivery callback:      delivered(seq, bytes, Ok | Err)
//!                         └─ pops every sealed transaction at the front with nothing outstanding
//!                            → delivered_upto = its end (chunks of a long transaction: none)
//! ```
//!
//! # Invariants
//! - A position is reported only when every record of its transaction *and of every earlier
//!   transaction* was confirmed (acks=all): the queue is popped strictly from the front.
//! - In-flight bytes count keys + values of records produced and not yet confirmed; `write`
//!   waits on [`AckTracker::wait_below`] while they exceed the bound (backpressure).
//! - A failed delivery is kept as the first failure and never popped as delivered: nothing
//!   after it is acknowledged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tidemark_model::Position;
use tokio::sync::Notify;

/// A delivery the broker refused or that timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub topic: String,
    pub partition: i32,
    pub error: String,
    /// Whether producing again (after a restart from the checkpoint) may succeed.
    pub retriable: bool,
}

#[derive(Debug)]
struct PendingTxn {
    seq: u64,
    /// `None` for a chunk of a long transaction that is not its last.
    end: Option<Position>,
    outstanding: usize,
    sealed: bool,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    pending: VecDeque<PendingTxn>,
    delivered_upto: Option<Position>,
    in_flight_bytes: u64,
    in_flight_records: u64,
    failure: Option<DeliveryFailure>,
}

/// Tracks deliveries; cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct AckTracker {
    state: Mutex<State>,
    changed: Notify,
}

impl AckTracker {
    pub fn new() -> Arc<Self> {
        Arc::new(AckTracker::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // loses data (the worst case is a stale count), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a transaction; returns its sequence number (the records' delivery opaque).
    pub fn open(&self) -> u64 {
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.pending.push_back(PendingTxn {
            seq,
            end: None,
            outstanding: 0,
            sealed: false,
        });
        seq
    }

    /// One record of transaction `seq` is about to be produced.
    pub fn add(&self, seq: u64, bytes: u64) {
        let mut s = self.lock();
        s.in_flight_bytes += bytes;
        s.in_flight_records += 1;
        if let Some(t) = s.pending.iter_mut().rev().find(|t| t.seq == seq) {
            t.outstanding += 1;
        }
    }

    /// A record registered with [`AckTracker::add`] could not be handed to the producer at all.
    pub fn unadd(&self, seq: u64, bytes: u64) {
        let mut s = self.lock();
        s.in_flight_bytes = s.in_flight_bytes.saturating_sub(bytes);
        s.in_flight_records = s.in_flight_records.saturating_sub(1);
        if let Some(t) = s.pending.iter_mut().rev().find(|t| t.seq == seq) {
            t.outstanding = t.outstanding.saturating_sub(1);
        }
    }

    /// Every record of `seq` was produced; `end` is acknowledged once they are all delivered.
    pub fn seal(&self, seq: u64, end: Option<Position>) {
        let mut s = self.lock();
        if let Some(t) = s.pending.iter_mut().rev().find(|t| t.seq == seq) {
            t.end = end;
            t.sealed = true;
        }
        Self::advance(&mut s);
        drop(s);
        self.changed.notify_waiters();
    }

    /// The delivery report of one record (called from librdkafka's polling thread).
    pub fn delivered(&self, seq: u64, bytes: u64, result: Result<(), DeliveryFailure>) {
        let mut s = self.lock();
        s.in_flight_bytes = s.in_flight_bytes.saturating_sub(bytes);
        s.in_flight_records = s.in_flight_records.saturating_sub(1);
        match result {
            Ok(()) => {
                if let Some(t) = s.pending.iter_mut().find(|t| t.seq == seq) {
                    t.outstanding = t.outstanding.saturating_sub(1);
                }
                Self::advance(&mut s);
            }
            Err(f) => {
                if s.failure.is_none() {
                    s.failure = Some(f);
                }
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }

    fn advance(s: &mut State) {
        if s.failure.is_some() {
            return;
        }
        while let Some(front) = s.pending.front() {
            if !(front.sealed && front.outstanding == 0) {
                break;
            }
            if let Some(end) = front.end {
                s.delivered_upto = Some(end);
            }
            s.pending.pop_front();
        }
    }

    /// The highest position whose records (and all before) the broker confirmed.
    pub fn delivered_upto(&self) -> Option<Position> {
        self.lock().delivered_upto
    }

    /// The first delivery failure, if any.
    pub fn failure(&self) -> Option<DeliveryFailure> {
        self.lock().failure.clone()
    }

    /// Bytes and records produced and not yet confirmed.
    pub fn in_flight(&self) -> (u64, u64) {
        let s = self.lock();
        (s.in_flight_bytes, s.in_flight_records)
    }

    /// Forgets everything outstanding (after the producer was rebuilt or a Kafka transaction
    /// aborted: those records will be produced again).
    pub fn reset_outstanding(&self) {
        let mut s = self.lock();
        s.pending.clear();
        s.in_flight_bytes = 0;
        s.in_flight_records = 0;
        s.failure = None;
        drop(s);
        self.changed.notify_waiters();
    }

    /// Waits until in-flight bytes are at most `max`, a failure happened, or `timeout` passed.
    /// Returns false on timeout.
    pub async fn wait_below(&self, max: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.in_flight_bytes <= max || s.failure.is_some())
            .await
    }

    /// Waits until nothing is in flight (or a failure, or `timeout`). Returns false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.in_flight_records == 0 || s.failure.is_some())
            .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a notification between check and await is not lost.
            notified.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.lock());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tidemark_model::{Lsn, PgPosition};

    use super::*;

    fn end(n: u64) -> Option<Position> {
        Some(Position::from(PgPosition::end(Lsn(n), Lsn(n + 1))))
    }

    #[test]
    fn acks_in_order_only_when_everything_before_is_delivered() {
        let t = AckTracker::new();
        let a = t.open();
        t.add(a, 10);
        t.add(a, 10);
        t.seal(a, end(100));
        let b = t.open();
        t.add(b, 5);
        t.seal(b, end(200));
        // b's record is confirmed first: nothing is acknowledged while a is outstanding.
        t.delivered(b, 5, Ok(()));
        assert_eq!(t.delivered_upto(), None);
        t.delivered(a, 10, Ok(()));
        assert_eq!(t.delivered_upto(), None);
        assert_eq!(t.in_flight(), (10, 1));
        t.delivered(a, 10, Ok(()));
        assert_eq!(t.delivered_upto(), end(200));
        assert_eq!(t.in_flight(), (0, 0));
    }

    #[test]
    fn chunks_and_empty_transactions() {
        let t = AckTracker::new();
        let chunk = t.open();
        t.add(chunk, 1);
        t.seal(chunk, None);
        t.delivered(chunk, 1, Ok(()));
        assert_eq!(t.delivered_upto(), None, "an incomplete chunk acks nothing");
        let empty = t.open();
        t.seal(empty, end(300));
        assert_eq!(
            t.delivered_upto(),
            end(300),
            "a transaction without records"
        );
    }

    #[test]
    fn a_failure_stops_acknowledgement() {
        let t = AckTracker::new();
        let a = t.open();
        t.add(a, 1);
        t.seal(a, end(1));
        let b = t.open();
        t.add(b, 1);
        t.seal(b, end(2));
        let f = DeliveryFailure {
            topic: "x".into(),
            partition: 0,
            error: "MessageSizeTooLarge".into(),
            retriable: false,
        };
        t.delivered(a, 1, Err(f.clone()));
        t.delivered(b, 1, Ok(()));
        assert_eq!(t.delivered_upto(), None);
        assert_eq!(t.failure(), Some(f));
        t.reset_outstanding();
        assert_eq!(t.failure(), None);
    }

    #[tokio::test]
    async fn waiting_wakes_on_delivery() {
        let t = AckTracker::new();
        let a = t.open();
        t.add(a, 100);
        t.seal(a, end(5));
        assert!(!t.wait_idle(Duration::from_millis(20)).await);
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.wait_below(0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.delivered(a, 100, Ok(()));
        assert!(waiter.await.unwrap());
        assert!(t.wait_idle(Duration::from_millis(1)).await);
    }
}
