//! A named background thread that runs a task every interval until it is
//! stopped: the stores' maintenance loops.

use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

/// A periodic task; at most one thread runs at a time.
#[derive(Default)]
pub struct Periodic {
    running: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Periodic {
    /// Not running.
    pub fn new() -> Periodic {
        Periodic::default()
    }

    /// Starts a thread `name` that calls `tick(owner)` every `interval`
    /// while `owner` lives (the thread holds it weakly, so it never keeps
    /// a store open) until [`Periodic::stop`]. Does nothing when running.
    pub fn start<T: Send + Sync + 'static>(
        &self,
        name: &str,
        interval: Duration,
        owner: &Arc<T>,
        tick: impl Fn(&T) + Send + 'static,
    ) {
        let mut slot = self.running.lock();
        if slot.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel::<()>();
        let weak: Weak<T> = Arc::downgrade(owner);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                match rx.recv_timeout(interval) {
                    // Woken early, or the interval passed.
                    Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let Some(owner) = weak.upgrade() else { return };
                tick(&owner);
            })
            .expect("spawning a thread");
        *slot = Some((tx, handle));
    }

    /// Runs the task as soon as the current tick (if any) ends, instead of
    /// at the end of the interval. Does nothing when not running.
    pub fn wake(&self) {
        if let Some((tx, _)) = self.running.lock().as_ref() {
            let _ = tx.send(());
        }
    }

    /// Stops the thread and waits for its current tick; later calls do
    /// nothing.
    pub fn stop(&self) {
        if let Some((tx, handle)) = self.running.lock().take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn ticks_until_stopped_or_dropped() {
        let owner = Arc::new(AtomicUsize::new(0));
        let p = Periodic::new();
        let tick = |n: &AtomicUsize| {
            n.fetch_add(1, Ordering::Relaxed);
        };
        p.start("test-periodic", Duration::from_millis(5), &owner, tick);
        p.start("test-periodic", Duration::from_millis(5), &owner, tick);
        let t = std::time::Instant::now();
        while owner.load(Ordering::Relaxed) < 3 {
            assert!(t.elapsed() < Duration::from_secs(10), "no ticks");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Woken: ticks long before its hour-long interval ends.
        let woken = Arc::new(AtomicUsize::new(0));
        let q = Periodic::new();
        q.start("test-periodic", Duration::from_secs(3600), &woken, tick);
        q.wake();
        let t = std::time::Instant::now();
        while woken.load(Ordering::Relaxed) < 1 {
            assert!(t.elapsed() < Duration::from_secs(10), "wake did not tick");
            std::thread::sleep(Duration::from_millis(5));
        }
        q.stop();
        p.stop();
        let n = owner.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(owner.load(Ordering::Relaxed), n, "stopped");
        p.stop();
        // A dropped owner ends the thread on its next tick.
        let p = Periodic::new();
        let owner = Arc::new(AtomicUsize::new(0));
        p.start("test-periodic", Duration::from_millis(5), &owner, tick);
        drop(owner);
        p.stop();
    }
}
