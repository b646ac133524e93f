//! Where `roomtoken` writes its logs: stderr, through a small buffer.
//!
//! token-read writes one audit line per request. Writing each line with its
//! own system call costs `roomtoken serve` a large share of its time per
//! request, so a line is only appended to a buffer in memory. The buffer is
//! written out by the thread whose line fills it to 8 KiB, by a background
//! thread at least every 100 ms, at once for warnings and errors, and when
//! the process ends normally (dropping [`LogGuard`]). The write happens after
//! the buffer is swapped for an empty one, so other threads keep logging
//! meanwhile.
//!
//! Each line is appended whole, so lines never interleave, and they reach
//! stderr in order. None is dropped (a stderr that does not keep up slows
//! the loggers down). A crash loses at most the last 100 ms of info lines
//! (release builds abort on panic).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Written out when this much waits.
const FLUSH_AT: usize = 8 * 1024;
/// Written out at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    stopping: bool,
}

struct Shared<W> {
    pending: Mutex<Pending>,
    /// Taken before `pending` is released, so writes keep their order.
    out: Mutex<W>,
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both hold plain bytes or a writer: usable after a panic elsewhere.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Shared<W> {
    /// Takes what is pending and writes it, without holding up loggers.
    fn write_out(&self, mut pending: MutexGuard<'_, Pending>) {
        if pending.bytes.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut pending.bytes, Vec::with_capacity(2 * FLUSH_AT));
        let mut out = lock(&self.out);
        drop(pending);
        // Nowhere to report a failure to write the log itself.
        let _ = out.write_all(&bytes);
        let _ = out.flush();
    }
}

/// A [`MakeWriter`] over a shared buffer in front of `W`.
pub struct BufferedLog<W> {
    shared: Arc<Shared<W>>,
}

/// Stops the background thread, which writes what is left, when dropped.
pub struct LogGuard {
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl<W: Write + Send + 'static> BufferedLog<W> {
    pub fn new(out: W) -> (Self, LogGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(out),
            wake: Condvar::new(),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("roomtoken-log".into())
            .spawn(move || {
                loop {
                    let mut pending = lock(&writer.pending);
                    if !pending.stopping {
                        pending = writer
                            .wake
                            .wait_timeout(pending, FLUSH_EVERY)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    let stopping = pending.stopping;
                    writer.write_out(pending);
                    if stopping {
                        break;
                    }
                }
            });
        let stopper = shared.clone();
        let stop = move || {
            lock(&stopper.pending).stopping = true;
            stopper.wake.notify_all();
            match thread {
                Ok(thread) => {
                    let _ = thread.join();
                }
                // No background thread: write what is left here.
                Err(_) => stopper.write_out(lock(&stopper.pending)),
            }
        };
        let guard = LogGuard {
            stop: Some(Box::new(stop)),
        };
        (Self { shared }, guard)
    }
}

/// One event's writer: appends to the buffer; writes it out when it is
/// full or `urgent` (a warning or an error).
pub struct LineWriter<'a, W: Write> {
    shared: &'a Shared<W>,
    urgent: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.shared.pending);
        pending.bytes.extend_from_slice(bytes);
        if self.urgent || pending.bytes.len() >= FLUSH_AT {
            self.shared.write_out(pending);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BufferedLog<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose output the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn info<W: Write>(log: &BufferedLog<W>) -> LineWriter<'_, W> {
        LineWriter {
            shared: &log.shared,
            urgent: false,
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (log, guard) = BufferedLog::new(sink.clone());
        let mut expected = Vec::new();
        for n in 0..2_000 {
            let line = format!("line {n} {}\n", "x".repeat(n % 50));
            info(&log).write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert_eq!(*sink.0.lock().unwrap(), expected);
    }

    #[test]
    fn warnings_and_a_full_buffer_are_written_at_once() {
        let sink = Sink::default();
        let (log, _guard) = BufferedLog::new(sink.clone());
        log.make_writer().write_all(b"WARN something\n").unwrap();
        assert_eq!(&sink.0.lock().unwrap()[..], b"WARN something\n");
        let full = vec![b'x'; FLUSH_AT];
        info(&log).write_all(&full).unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), 15 + FLUSH_AT);
    }
}
