//! The queue between the source and the sinks, bounded by bytes.
//!
//! A count-bounded channel would let a few huge transactions take gigabytes; a byte bound makes
//! memory predictable. `send` waits for room, and that wait is the backpressure that reaches the
//! replication socket: the source stops reading, the server stops sending (ARCHITECTURE.md).
//!
//! An item larger than the whole bound takes the whole bound (it passes alone rather than never).

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Sending half.
pub struct QueueSender<T> {
    tx: mpsc::Sender<(T, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    max_bytes: u32,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            max_bytes: self.max_bytes,
        }
    }
}

/// Receiving half. The permit travels with the item: room is given back when the caller drops
/// the [`Queued`] after the sinks are done with it.
pub struct QueueReceiver<T> {
    rx: mpsc::Receiver<(T, OwnedSemaphorePermit)>,
}

/// An item and the bytes of budget it holds.
pub struct Queued<T> {
    pub item: T,
    _permit: OwnedSemaphorePermit,
}

/// The receiver is gone: the engine stopped.
#[derive(Debug, thiserror::Error)]
#[error("the engine stopped; the queue is closed")]
pub struct QueueClosed;

/// A queue holding at most `max_bytes` (clamped to `u32::MAX`) of items.
pub fn channel<T>(max_bytes: u64) -> (QueueSender<T>, QueueReceiver<T>) {
    let max_bytes = max_bytes.clamp(1, u64::from(u32::MAX >> 3)) as u32;
    // The count bound only keeps tiny items from piling up without limit in the mpsc itself.
    let (tx, rx) = mpsc::channel(4096);
    let budget = Arc::new(Semaphore::new(max_bytes as usize));
    (
        QueueSender {
            tx,
            budget,
            max_bytes,
        },
        QueueReceiver { rx },
    )
}

impl<T> QueueSender<T> {
    /// Waits until `bytes` of room are free, then enqueues.
    pub async fn send(&self, item: T, bytes: u64) -> Result<(), QueueClosed> {
        let want = bytes.clamp(1, u64::from(self.max_bytes)) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| QueueClosed)?;
        self.tx.send((item, permit)).await.map_err(|_| QueueClosed)
    }

    /// Bytes of room left.
    pub fn available_bytes(&self) -> usize {
        self.budget.available_permits()
    }
}

impl<T> QueueReceiver<T> {
    /// The next item, or `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<Queued<T>> {
        self.rx.recv().await.map(|(item, permit)| Queued {
            item,
            _permit: permit,
        })
    }

    /// The next item if one is queued now, without waiting.
    pub fn try_recv(&mut self) -> Option<Queued<T>> {
        self.rx.try_recv().ok().map(|(item, permit)| Queued {
            item,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_blocks_the_sender_until_room_is_given_back() {
        let (tx, mut rx) = channel::<u32>(100);
        tx.send(1, 60).await.unwrap();
        // 60 + 60 > 100: the second send must wait.
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.send(2, 60)).await;
        assert!(blocked.is_err(), "second send should wait for room");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.item, 1);
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), tx.send(2, 60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().item, 2);
    }

    #[tokio::test]
    async fn an_item_larger_than_the_bound_still_passes() {
        let (tx, mut rx) = channel::<u32>(10);
        tx.send(7, 1_000_000).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().item, 7);
    }
}
