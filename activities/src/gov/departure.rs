//! When a request really left. The rate gate lets a request go at its start slot, but the
//! HTTP client writes it from a connection task of its own, after any connect and TLS
//! handshake, and on a loaded host that task can lose the CPU for tens of ms anywhere,
//! including between deciding to write the request and the write itself; the API's window
//! counts arrivals, so the gate needs a time the request's head was already in the socket
//! by. Every request carries a body that tracks it:
//!
//! - A request with a body (batch POST, token POST) holds its bytes back at hyper's first
//!   poll. hyper has buffered the head by then, flushes it (through TLS into the socket)
//!   in that same pass and polls the body again once the flush is done: that second poll
//!   is stamped as the departure, after the head's write returned. (The head of a request
//!   on an idle connection always fits the socket's buffer, so that flush completes.)
//! - A GET has no body for hyper to poll: an empty body answers `is_end_stream` at once,
//!   so the GET goes without `Content-Length` or chunking, as it would without a body. It
//!   left by the time its answer (or its failure) came back, and that is what is
//!   reported: later than it left, by the answer's latency, but never earlier.
//!
//! Either way `is_end_stream`, which hyper's HTTP/1 connection task asks right before it
//! writes the head (once the connection is up, and only for a request not cancelled by
//! then), marks the request as taken: past that, it may leave; before it, it never will.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use crate::clock::now_ms;

use super::rate_gate::{Departure, Granted, RateGate};

/// Where a stamped request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Not taken by a connection yet.
    Waiting,
    /// Taken: its head is being written.
    Taken,
    /// Its head was in the socket by then (ms since the epoch on this host's clock).
    Left(i64),
    /// Gone without being taken: it never left.
    Unsent,
}

/// `bytes` (empty for a GET) as a request body, and what it will say about its departure.
pub(crate) fn stamped(bytes: Bytes) -> (reqwest::Body, Stamp) {
    let (body, stamp) = stamped_body(bytes);
    (reqwest::Body::wrap(body), stamp)
}

fn stamped_body(bytes: Bytes) -> (StampedBody, Stamp) {
    let progress = Arc::new(watch::channel(Progress::Waiting).0);
    let body = StampedBody {
        data: (!bytes.is_empty()).then_some(bytes),
        held_back: false,
        progress: progress.clone(),
    };
    let stamp = Stamp {
        rx: progress.subscribe(),
        progress,
    };
    (body, stamp)
}

/// What a stamped request says about its departure.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    progress: Arc<watch::Sender<Progress>>,
    rx: watch::Receiver<Progress>,
}

impl Stamp {
    /// The request's answer, or its failure, is in: a request taken by a connection left
    /// by now at the latest (a GET's departure, or a body's whose connection broke).
    pub(crate) fn answered(&self) {
        let now = now_ms();
        self.progress.send_if_modified(|p| {
            let taken = *p == Progress::Taken;
            if taken {
                *p = Progress::Left(now);
            }
            taken
        });
    }

    /// When the request left, once that is known; `None` once it is gone without leaving.
    pub(crate) async fn settled(&mut self) -> Option<i64> {
        let settled = self
            .rx
            .wait_for(|p| matches!(p, Progress::Left(_) | Progress::Unsent))
            .await
            .map(|p| *p);
        match settled {
            Ok(Progress::Left(at)) => Some(at),
            _ => None,
        }
    }

    /// Whether a connection took the request by `deadline`; `false` as soon as it is past
    /// and none has (or once the request is gone unsent, at the deadline).
    pub(crate) async fn taken_by(&mut self, deadline: Instant) -> bool {
        let taken = self.rx.wait_for(|p| *p != Progress::Waiting);
        let progress = tokio::time::timeout_at(deadline, taken)
            .await
            .map(|p| p.map(|p| *p));
        match progress {
            Ok(Ok(p)) if p != Progress::Unsent => true,
            Ok(_) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => !matches!(*self.rx.borrow(), Progress::Waiting | Progress::Unsent),
        }
    }
}

/// Tells `gate` what became of the request `granted` was for, as soon as its stamp says.
/// Silent when nothing is known by the request's deadline: the gate then counts it as
/// leaving at the deadline, which the caller made sure it does not pass.
pub(crate) async fn report(gate: Arc<dyn RateGate>, granted: Granted, mut stamp: Stamp) {
    let departure = match tokio::time::timeout_at(granted.leave_by, stamp.settled()).await {
        Ok(Some(at_ms)) => Departure::Left { at_ms },
        Ok(None) => Departure::NotSent,
        Err(_) => {
            tracing::debug!(
                lane = granted.lane,
                "a request's departure is still unknown at its deadline; its lane counts it as leaving then"
            );
            return;
        }
    };
    gate.departed(granted, departure).await;
}

struct StampedBody {
    /// `None` for an empty body.
    data: Option<Bytes>,
    /// Whether the bytes were held back once, for hyper to flush the head first.
    held_back: bool,
    progress: Arc<watch::Sender<Progress>>,
}

impl StampedBody {
    fn mark(&self, to: Progress) {
        self.progress.send_if_modified(|p| {
            let forward = matches!(
                (*p, to),
                (Progress::Waiting, _) | (Progress::Taken, Progress::Left(_))
            );
            if forward {
                *p = to;
            }
            forward
        });
    }
}

impl http_body::Body for StampedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_some() && !this.held_back {
            // hyper flushes the head it buffered, then polls again (woken here should it
            // not): the next poll comes after the head's write.
            this.held_back = true;
            this.mark(Progress::Taken);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.data.is_some() {
            this.mark(Progress::Left(now_ms()));
        }
        Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d))))
    }

    // hyper asks this just before it writes the head (and leaves an empty body unpolled).
    fn is_end_stream(&self) -> bool {
        self.mark(Progress::Taken);
        self.data.is_none()
    }

    // Exact, so hyper writes a Content-Length instead of going chunked.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl Drop for StampedBody {
    fn drop(&mut self) {
        // A request dropped before a connection took it never left.
        self.progress.send_if_modified(|p| {
            let waiting = *p == Progress::Waiting;
            if waiting {
                *p = Progress::Unsent;
            }
            waiting
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use futures::FutureExt;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_body_holds_its_bytes_back_once_and_is_stamped_when_it_gives_them() {
        let (mut body, stamp) = stamped_body(Bytes::from_static(b"{\"records\":[]}"));
        assert_eq!(body.size_hint().exact(), Some(14));
        assert_eq!(*stamp.rx.borrow(), Progress::Waiting);
        assert!(!body.is_end_stream());
        assert_eq!(*stamp.rx.borrow(), Progress::Taken, "taken when asked");
        // The first poll gives nothing and asks to be polled again.
        assert!(body.frame().now_or_never().is_none());
        assert_eq!(*stamp.rx.borrow(), Progress::Taken);
        let before = now_ms();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(
            frame.into_data().unwrap(),
            Bytes::from_static(b"{\"records\":[]}")
        );
        let Progress::Left(at) = *stamp.rx.borrow() else {
            panic!("stamped when it gave its bytes");
        };
        assert!(at >= before && at <= now_ms());
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn an_empty_body_says_so_and_its_request_left_by_its_answer() {
        let (body, mut stamp) = stamped_body(Bytes::new());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.is_end_stream());
        assert_eq!(*stamp.rx.borrow(), Progress::Taken);
        drop(body);
        let before = now_ms();
        stamp.answered();
        let at = stamp.settled().await.expect("left by its answer");
        assert!(at >= before && at <= now_ms());
    }

    #[tokio::test]
    async fn a_body_dropped_untaken_never_left() {
        let (body, mut stamp) = stamped_body(Bytes::from_static(b"x"));
        drop(body);
        stamp.answered();
        assert_eq!(stamp.settled().await, None);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!stamp.taken_by(deadline).await);
        assert!(Instant::now() >= deadline);
    }

    /// Writes through `inner`, noting when each write returned.
    struct NotedWrites<T> {
        inner: T,
        writes: Arc<std::sync::Mutex<Vec<(i64, usize)>>>,
    }

    impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for NotedWrites<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for NotedWrites<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = written {
                self.writes.lock().unwrap().push((now_ms(), n));
            }
            written
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// hyper's HTTP/1 client writes a stamped POST's head, alone, before the body is
    /// stamped: the stamp is no earlier than the write that put the head in the socket.
    #[tokio::test]
    async fn hyper_writes_the_head_before_the_body_is_stamped() {
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let io = hyper_util::rt::TokioIo::new(NotedWrites {
            inner: client_io,
            writes: writes.clone(),
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&seen).ends_with("\r\n\r\n{}") {
                let n = server_io.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            server_io
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(seen).unwrap().to_ascii_lowercase()
        });
        let (body, mut stamp) = stamped_body(Bytes::from_static(b"{}"));
        let request = hyper::Request::post("/v1/grade-batches")
            .header("host", "gov.test")
            .body(body)
            .unwrap();
        let answer = sender.send_request(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        let seen = server.await.unwrap();
        assert!(seen.contains("content-length: 2\r\n"), "{seen}");
        let at = stamp.settled().await.expect("stamped");
        let writes = writes.lock().unwrap().clone();
        assert!(writes.len() >= 2, "the head went alone: {writes:?}");
        let (head_written, head_bytes) = writes[0];
        assert!(head_bytes > 2 && head_written <= at, "{writes:?} vs {at}");
    }

    /// What reqwest and hyper put on the wire for a stamped GET: no length, no chunking.
    #[tokio::test]
    async fn a_stamped_get_goes_without_a_length() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let http = crate::http::client_builder().build().unwrap();
        let (body, mut stamp) = stamped(Bytes::new());
        let answer = http
            .get(format!("http://{addr}/v1/x"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let head = server.await.unwrap();
        assert!(head.starts_with("get /v1/x "), "{head}");
        assert!(
            !head.contains("content-length") && !head.contains("transfer-encoding"),
            "a GET goes without a body's headers: {head}"
        );
        stamp.answered();
        assert!(stamp.settled().await.is_some());
    }

    /// A request that waits for its connection is taken when the connection is up, not
    /// when it was handed to the client: after a slow name lookup (standing in for a slow
    /// TCP or TLS handshake, which reqwest runs in the same connect step).
    #[tokio::test]
    async fn a_request_that_waits_for_its_connection_leaves_when_it_is_up() {
        #[derive(Clone)]
        struct SlowDns(std::net::SocketAddr);
        impl reqwest::dns::Resolve for SlowDns {
            fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
                let addr = self.0;
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
                    Ok(addrs)
                })
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let http = crate::http::client_builder()
            .dns_resolver(Arc::new(SlowDns(addr)))
            .build()
            .unwrap();
        let (body, mut stamp) = stamped(Bytes::from_static(b"{}"));
        let handed = now_ms();
        let send = http
            .post(format!("http://gov.test:{}/", addr.port()))
            .body(body)
            .send();
        let mut watch = stamp.clone();
        let (answer, taken) = tokio::join!(
            send,
            watch.taken_by(Instant::now() + Duration::from_millis(200))
        );
        assert!(!taken, "not taken while its connection was not up");
        assert_eq!(answer.unwrap().status(), 200);
        let at = stamp.settled().await.expect("stamped");
        assert!(at >= handed + 290, "left at +{} ms", at - handed);
    }
}
