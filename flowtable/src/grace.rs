//! Freeing a replaced snapshot on the thread that replaced it, not on a forwarding thread.
//!
//! Readers hold a published snapshot through an `arc_swap` guard for one burst of packets.
//! When a publish swaps the snapshot while a reader is in the middle of a burst, arc-swap
//! turns that reader's guard into a counted reference; whoever lets go last frees the old
//! snapshot. Without a wait that is often the reader: under load a forwarding thread is
//! nearly always inside a burst. After a batch of 10k changes into a large table, freeing
//! the old snapshot's own nodes takes milliseconds, and the forwarding thread would forward
//! nothing meanwhile.
//!
//! [`drop_after_readers`] is the grace period of read-copy-update: the publishing thread
//! waits (yielding its CPU, which may be the reader's) until it holds the only reference,
//! then frees the snapshot itself. A reader holds a snapshot for one burst, so the wait is
//! that long at most; a reader that holds it past `patience` (a stopped thread, a snapshot kept
//! on purpose) frees it later itself, as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a publish waits for the readers of the snapshot it replaced.
pub const PATIENCE: Duration = Duration::from_millis(20);

/// Drops `old` here once nobody else holds it, waiting up to `patience`; returns true when
/// this call freed it.
pub fn drop_after_readers<T>(old: Arc<T>, patience: Duration) -> bool {
    let start = Instant::now();
    // A plain load each turn; readers only ever let go (the snapshot is no longer published).
    while Arc::strong_count(&old) > 1 {
        if start.elapsed() >= patience {
            return false;
        }
        std::thread::yield_now();
    }
    drop(old);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    /// Records the name of the thread that dropped it.
    struct Tracked(DroppedOn);

    impl Drop for Tracked {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_owned);
            *self.0.lock().expect("lock") = Some(name.unwrap_or_default());
        }
    }

    type DroppedOn = Arc<Mutex<Option<String>>>;

    /// A published snapshot and a thread "reader" that holds it (a guard) for 5 ms; returns
    /// once the reader holds it.
    fn published_with_a_reader_inside() -> (
        Arc<ArcSwap<Tracked>>,
        DroppedOn,
        std::thread::JoinHandle<()>,
    ) {
        let dropped_on = Arc::new(Mutex::new(None));
        let published = Arc::new(ArcSwap::from_pointee(Tracked(dropped_on.clone())));
        let (held_tx, held_rx) = channel();
        let reader = {
            let published = published.clone();
            std::thread::Builder::new()
                .name("reader".into())
                .spawn(move || {
                    let guard = published.load();
                    held_tx.send(()).expect("send");
                    std::thread::sleep(Duration::from_millis(5));
                    drop(guard);
                })
                .expect("spawn")
        };
        held_rx.recv().expect("reader holds the snapshot");
        (published, dropped_on, reader)
    }

    /// A reader inside its burst when the snapshot is swapped: the publishing thread waits for
    /// it and frees the old snapshot itself.
    #[test]
    fn the_publisher_frees_a_snapshot_a_reader_held_during_the_swap() {
        let (published, dropped_on, reader) = published_with_a_reader_inside();
        let old = published.swap(Arc::new(Tracked(Arc::new(Mutex::new(None)))));
        let publisher = std::thread::current().name().map(str::to_owned);
        assert!(drop_after_readers(old, Duration::from_secs(5)));
        assert_eq!(*dropped_on.lock().expect("lock"), publisher);
        reader.join().expect("join");
    }

    /// Without the wait the reader frees it: what this module prevents.
    #[test]
    fn without_the_wait_the_reader_frees_it() {
        let (published, dropped_on, reader) = published_with_a_reader_inside();
        drop(published.swap(Arc::new(Tracked(Arc::new(Mutex::new(None))))));
        reader.join().expect("join");
        assert_eq!(dropped_on.lock().expect("lock").as_deref(), Some("reader"));
    }

    /// A reader that keeps the snapshot past the patience frees it itself; the wait is bounded.
    #[test]
    fn the_wait_is_bounded() {
        let old = Arc::new(1u8);
        let kept = old.clone();
        let t = Instant::now();
        assert!(!drop_after_readers(old, Duration::from_millis(10)));
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(Arc::strong_count(&kept), 1);
    }
}
