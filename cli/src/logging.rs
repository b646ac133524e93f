//! Where `roomtoken` writes its logs: stderr, through a small buffer.
//!
//! token-read writes one audit line per request. Writing each line with its
//! own system call costs `roomtoken serve` a large share of its time per
//! request, so lines are appended to a buffer in memory instead, and the
//! buffer is written out when it holds 8 KiB, at least every 100 ms by a
//! background thread, at once for warnings and errors, and when the process
//! ends normally (dropping [`LogGuard`]). Each line is appended whole, so
//! lines from different threads never interleave, and none is dropped (a
//! slow stderr slows the writers down instead). What a crash can lose is at
//! most the last 100 ms of info lines (release builds abort on panic).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Written out when it holds this much.
const FLUSH_AT: usize = 8 * 1024;
/// Written out at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

struct Shared<W> {
    state: Mutex<State<W>>,
    stopped: Condvar,
}

struct State<W> {
    buffer: Vec<u8>,
    out: W,
    stopping: bool,
}

impl<W: Write> State<W> {
    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            // Nowhere to report a failure to write the log itself.
            let _ = self.out.write_all(&self.buffer);
            let _ = self.out.flush();
            self.buffer.clear();
        }
    }
}

impl<W> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`MakeWriter`] over a shared buffer in front of `W`.
pub struct BufferedLog<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for BufferedLog<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// Stops the flushing thread and writes what is left when dropped.
pub struct LogGuard {
    stop: Box<dyn FnMut() + Send>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        (self.stop)();
    }
}

impl<W: Write + Send + 'static> BufferedLog<W> {
    pub fn new(out: W) -> (Self, LogGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: Vec::with_capacity(FLUSH_AT * 2),
                out,
                stopping: false,
            }),
            stopped: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("roomtoken-log".into())
                .spawn(move || {
                    let mut state = shared.lock();
                    while !state.stopping {
                        state.flush();
                        state = shared
                            .stopped
                            .wait_timeout(state, FLUSH_EVERY)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    state.flush();
                })
                .ok()
        };
        let stopping = shared.clone();
        let mut flusher = flusher;
        let guard = LogGuard {
            stop: Box::new(move || {
                stopping.lock().stopping = true;
                stopping.stopped.notify_all();
                if let Some(thread) = flusher.take() {
                    let _ = thread.join();
                }
                stopping.lock().flush();
            }),
        };
        (Self { shared }, guard)
    }
}

/// One event's writer: appends to the buffer, and writes it out when it is
/// full or when `urgent` (a warning or an error).
pub struct LineWriter<'a, W> {
    shared: &'a Shared<W>,
    urgent: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        state.buffer.extend_from_slice(bytes);
        if self.urgent || state.buffer.len() >= FLUSH_AT {
            state.flush();
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

    #[test]
    fn lines_wait_in_the_buffer_until_it_fills_or_the_guard_drops() {
        let sink = Sink::default();
        let (log, guard) = BufferedLog::new(sink.clone());
        let info = || LineWriter {
            shared: &log.shared,
            urgent: false,
        };
        info().write_all(b"one line\n").unwrap();
        // Either still buffered or already written by the flusher: never lost,
        // never torn.
        let big = vec![b'x'; FLUSH_AT];
        info().write_all(&big).unwrap();
        let written = sink.0.lock().unwrap().len();
        assert_eq!(
            written,
            b"one line\n".len() + FLUSH_AT,
            "a full buffer is written at once"
        );
        info().write_all(b"last line\n").unwrap();
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(out.starts_with("one line\n"));
        assert!(
            out.ends_with("last line\n"),
            "the guard writes what is left"
        );
    }

    #[test]
    fn warnings_are_written_at_once() {
        let sink = Sink::default();
        let (log, _guard) = BufferedLog::new(sink.clone());
        log.make_writer().write_all(b"WARN something\n").unwrap();
        assert_eq!(&sink.0.lock().unwrap()[..], b"WARN something\n");
    }
}
