//! A bounded in-memory stdout/stderr: keeps the first `capacity` bytes and
//! drops the rest, so a chatty tool is truncated rather than killed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    truncated: bool,
}

/// One captured stream of a call.
#[derive(Clone)]
pub(crate) struct LogPipe {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl LogPipe {
    pub(crate) fn new(capacity: usize) -> LogPipe {
        LogPipe { capacity, buffer: Arc::default() }
    }

    fn append(&self, data: &[u8]) {
        if let Ok(mut b) = self.buffer.lock() {
            let room = self.capacity.saturating_sub(b.bytes.len());
            if data.len() > room {
                b.truncated = true;
            }
            b.bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// What was captured, and whether anything was dropped.
    pub(crate) fn contents(&self) -> (Vec<u8>, bool) {
        self.buffer.lock().map(|b| (b.bytes.clone(), b.truncated)).unwrap_or_default()
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
