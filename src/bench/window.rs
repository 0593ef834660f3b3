//! The measured window of a run, the same for every client thread.
//!
//! CPU figures are only honest if they cover exactly the time they are
//! divided by: connection set-up before the window and the drain after it
//! are not part of it. So all threads meet at a barrier once their
//! connections are open, one of them samples the server's CPU clock and
//! starts the clock; at the end all meet again and the server's CPU clock
//! and the elapsed time are read once more. Each thread reads its own CPU
//! clock at both points, so the client's figure leaves out the progress
//! display and set-up, and a pinned thread's share can never pass 100%.

use std::sync::{Barrier, Mutex};
use std::time::Instant;

/// Samples taken at the window's edges.
#[derive(Debug, Default, Clone, Copy)]
struct Edges {
    start: Option<Instant>,
    server_start: Option<f64>,
    seconds: f64,
    server_cpu: Option<f64>,
}

/// The shared window; each thread passes [`Window::open`] and
/// [`Window::close`] exactly once (a [`Turn`] guarantees it, even on an
/// early error, so no thread waits forever for another).
pub struct Window {
    barrier: Barrier,
    /// Threads meet once more before the window, to start a warm-up together.
    warmup: bool,
    server_pids: Vec<u32>,
    edges: Mutex<Edges>,
}

impl Window {
    /// A window for `threads` client threads, reading the CPU clocks of
    /// `server_pids` (summed) if any are given.
    pub fn new(threads: usize, server_pids: &[u32]) -> Window {
        Window {
            barrier: Barrier::new(threads.max(1)),
            warmup: false,
            server_pids: server_pids.to_vec(),
            edges: Mutex::new(Edges::default()),
        }
    }

    /// The servers' CPU seconds so far, summed; None if any cannot be read.
    fn server_cpu(&self) -> Option<f64> {
        if self.server_pids.is_empty() {
            return None;
        }
        self.server_pids.iter().map(|&p| super::pid_cpu_seconds(p)).sum()
    }

    /// The same, with threads that warm up before the window opens: they
    /// meet before the warm-up too ([`Turn::sync`]).
    pub fn with_warmup(mut self, warmup: bool) -> Window {
        self.warmup = warmup;
        self
    }

    /// Window length in seconds, and the server's CPU seconds within it.
    pub fn result(&self) -> (f64, Option<f64>) {
        let e = self.edges.lock().expect("window lock");
        (e.seconds, e.server_cpu)
    }

    fn open(&self) -> Instant {
        if self.barrier.wait().is_leader() {
            let mut e = self.edges.lock().expect("window lock");
            e.server_start = self.server_cpu();
            e.start = Some(Instant::now());
        }
        // Everyone sees the leader's start.
        self.barrier.wait();
        self.edges.lock().expect("window lock").start.expect("set by the leader")
    }

    fn close(&self) {
        if self.barrier.wait().is_leader() {
            let mut e = self.edges.lock().expect("window lock");
            e.seconds = e.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            let end = self.server_cpu();
            e.server_cpu = e.server_start.zip(end).map(|(a, b)| b - a);
        }
    }
}

/// One thread's passage through the window.
pub struct Turn<'a> {
    window: &'a Window,
    synced: bool,
    cpu_start: Option<f64>,
    cpu: f64,
    closed: bool,
}

impl<'a> Turn<'a> {
    /// A thread's turn; call [`Turn::open`] when its connections are ready.
    pub fn new(window: &'a Window) -> Turn<'a> {
        Turn { window, synced: false, cpu_start: None, cpu: 0.0, closed: false }
    }

    /// With a warm-up: waits for every thread, so that all start warming up
    /// together. Once per thread; [`Turn::open`] (and a thread that fails
    /// before it) passes here too, so every thread meets the others equally often.
    pub fn sync(&mut self) {
        if self.window.warmup && !self.synced {
            self.synced = true;
            self.window.barrier.wait();
        }
    }

    /// Waits for every thread, then returns the window's start.
    pub fn open(&mut self) -> Instant {
        self.sync();
        let t0 = self.window.open();
        self.cpu_start = Some(thread_cpu_seconds());
        t0
    }

    /// Ends this thread's part of the window and waits for every thread.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        if let Some(s) = self.cpu_start {
            self.cpu = thread_cpu_seconds() - s;
        }
        self.closed = true;
        self.window.close();
    }

    /// This thread's CPU seconds within the window.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // A thread that failed early still takes part, so the others go on.
        if self.cpu_start.is_none() {
            self.open();
        }
        self.close();
    }
}

/// CPU time of the calling thread (nanosecond clock).
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct passed.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three threads, one failing before its turn, one failing midway
    /// (while warming up, or after opening without a warm-up): the third
    /// still gets through its window.
    fn a_thread_that_fails_early_does_not_hold_the_others(warmup: bool) {
        let w = Window::new(3, &[]).with_warmup(warmup);
        std::thread::scope(|s| {
            s.spawn(|| drop(Turn::new(&w))); // fails before starting
            s.spawn(|| {
                let mut t = Turn::new(&w);
                t.sync();
                if !warmup {
                    t.open();
                }
                // fails in the middle: the drop does the rest
            });
            s.spawn(|| {
                let mut t = Turn::new(&w);
                t.sync();
                t.open();
                let spin = Instant::now();
                while spin.elapsed().as_millis() < 50 {}
                t.close();
                // Some CPU, not a fixed amount: on a loaded machine a 50 ms
                // spin may get little of it.
                assert!(t.cpu_seconds() > 0.0 && t.cpu_seconds() < 1.0, "{}", t.cpu_seconds());
            });
        });
        let (seconds, server) = w.result();
        assert!(seconds >= 0.05, "{seconds}");
        assert_eq!(server, None);
    }

    #[test]
    fn a_thread_that_fails_early_holds_no_other() {
        a_thread_that_fails_early_does_not_hold_the_others(false);
    }

    #[test]
    fn with_a_warmup_a_thread_that_fails_early_holds_no_other() {
        a_thread_that_fails_early_does_not_hold_the_others(true);
    }

    #[test]
    fn the_server_cpu_clock_is_read_at_both_edges() {
        // A busy single-threaded "server": its CPU within the window is
        // above zero and never above the window.
        let mut child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        let w = Window::new(1, &[child.id()]);
        let mut t = Turn::new(&w);
        t.open();
        std::thread::sleep(std::time::Duration::from_millis(100));
        t.close();
        let _ = child.kill();
        let _ = child.wait();
        let (seconds, server) = w.result();
        let server = server.expect("the child's CPU clock");
        assert!(server > 0.0 && server <= seconds * 1.05 + 0.002, "{server} of {seconds}");
    }
}
