//! Reading a child's stdout and stderr: quiet (drained without the reactor when the child
//! exits) until it has run a little while, then live.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use forge_events::OutputStream;
use tokio::io::AsyncReadExt;

use super::lines::LineSplitter;
use super::log::LogFile;

/// Most bytes one pipe is read for in one go outside the reactor (a group member may still be
/// writing when the leader exits); the rest is read live.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Size of the buffers pipes are read into.
const READ_CHUNK: usize = 16 * 1024;

/// Where lines go: the attempt's log and the caller's handler.
pub(super) struct Sink<'a> {
    pub(super) log: LogFile<'a>,
    pub(super) on_line: &'a mut (dyn FnMut(OutputStream, &str) + Send),
}

impl Sink<'_> {
    pub(super) fn line(&mut self, stream: OutputStream, line: &str) {
        self.log.line(line);
        (self.on_line)(stream, line);
    }
}

/// One output stream of the child: the read end of its pipe and the line splitter.
pub(super) struct Stream {
    source: Source,
    split: LineSplitter,
}

enum Source {
    /// Not registered with the reactor: read without blocking when the child exits.
    Quiet(OwnedFd),
    /// Registered with the reactor, read as output arrives.
    Live {
        reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        buf: Vec<u8>,
    },
    /// End-of-file (or a read error, which ends the stream the same way).
    Closed,
}

impl Stream {
    pub(super) fn new(stream: OutputStream, pipe: std::io::PipeReader, max_line: usize) -> Self {
        Self {
            source: Source::Quiet(OwnedFd::from(pipe)),
            split: LineSplitter::new(stream, max_line),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        !matches!(self.source, Source::Closed)
    }

    pub(super) fn is_live(&self) -> bool {
        matches!(self.source, Source::Live { .. })
    }

    pub(super) fn close(&mut self, sink: &mut Sink<'_>) {
        self.source = Source::Closed;
        if let Some(rest) = self.split.finish() {
            sink.line(self.split.stream, &rest);
        }
    }

    /// Reads a quiet pipe until it is empty (or at end-of-file, which closes the stream), up to
    /// [`DRAIN_LIMIT`] bytes.
    pub(super) fn drain(&mut self, sink: &mut Sink<'_>) {
        let Source::Quiet(fd) = &self.source else {
            return;
        };
        let eof = DRAIN_BUF.with(|buf| {
            let mut own;
            let mut shared = buf.try_borrow_mut();
            let buf: &mut [u8] = match shared.as_deref_mut() {
                Ok(buf) => buf,
                Err(_) => {
                    own = vec![0; READ_CHUNK];
                    &mut own
                }
            };
            let mut total = 0;
            loop {
                match read_nowait(fd, buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        total += n;
                        self.split.feed(&buf[..n], |s, l| sink.line(s, l));
                        if total >= DRAIN_LIMIT {
                            break false;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break false,
                    Err(_) => break true,
                }
            }
        });
        if eof {
            self.close(sink);
        }
    }

    /// Registers a quiet pipe with the reactor.
    pub(super) fn go_live(&mut self, sink: &mut Sink<'_>) {
        let fd = match std::mem::replace(&mut self.source, Source::Closed) {
            Source::Quiet(fd) => fd,
            other => {
                self.source = other;
                return;
            }
        };
        // tokio's wrappers for a child's pipes take any pipe read end.
        let reader: std::io::Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>> =
            match self.split.stream {
                OutputStream::Stdout => {
                    tokio::process::ChildStdout::from_std(std::process::ChildStdout::from(fd))
                        .map(|r| Box::new(r) as _)
                }
                OutputStream::Stderr => {
                    tokio::process::ChildStderr::from_std(std::process::ChildStderr::from(fd))
                        .map(|r| Box::new(r) as _)
                }
            };
        match reader {
            Ok(reader) => {
                self.source = Source::Live {
                    reader,
                    buf: vec![0; READ_CHUNK],
                };
            }
            // Like a read error: the stream ends (and the child gets EPIPE if it writes on).
            Err(_) => self.close(sink),
        }
    }

    /// The next chunk of a live pipe (into its buffer); never ready for other sources.
    pub(super) async fn read_live(&mut self) -> std::io::Result<usize> {
        match &mut self.source {
            Source::Live { reader, buf } => reader.read(buf).await,
            Source::Quiet(_) | Source::Closed => std::future::pending().await,
        }
    }

    pub(super) fn on_read(&mut self, n: std::io::Result<usize>, sink: &mut Sink<'_>) {
        match (n, &self.source) {
            (Ok(n), Source::Live { buf, .. }) if n > 0 => {
                self.split.feed(&buf[..n], |s, l| sink.line(s, l));
                // A running agent's log is followed live (`forge logs --follow`, the
                // dashboard): what was read is on disk before the next read.
                sink.log.flush_now();
            }
            _ => self.close(sink),
        }
    }
}

thread_local! {
    /// The buffer quiet pipes are drained into (one per thread: draining never awaits).
    static DRAIN_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what is in a pipe now without blocking and without a system call to make the pipe
/// non-blocking: `preadv2(RWF_NOWAIT)` (pipes support it since Linux 5.8). Where the kernel
/// does not, the pipe is made non-blocking (tokio keeps it so if it goes live) and read plainly.
fn read_nowait(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, rustix::io::Errno> {
    static NO_NOWAIT: AtomicBool = AtomicBool::new(false);
    if !NO_NOWAIT.load(Ordering::Relaxed) {
        match rustix::io::preadv2(
            fd,
            &mut [std::io::IoSliceMut::new(buf)],
            u64::MAX,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS,
            ) => {
                NO_NOWAIT.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    rustix::io::ioctl_fionbio(fd, true)?;
    rustix::io::read(fd, buf)
}
