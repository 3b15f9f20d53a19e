//! When a request really left. The rate gate lets a request go at its start slot, but the
//! HTTP client writes it from a connection task of its own, which can wait behind a busy
//! thread for tens of milliseconds; the API's window counts arrivals, so the gate needs
//! the moment the request's head went to the socket. A body that notes its first poll
//! gives that moment: the client polls the body in the same pass that writes the head.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

pub(crate) use crate::clock::now_ms;

/// `bytes` as a request body, and the instant (ms since the epoch) it is first asked for.
/// The receiver errs when the body was never polled (the connection failed first).
pub(crate) fn stamped(bytes: Bytes) -> (reqwest::Body, oneshot::Receiver<i64>) {
    let (tx, rx) = oneshot::channel();
    let body = StampedBody {
        data: Some(bytes),
        first_poll: Some(tx),
    };
    (reqwest::Body::wrap(body), rx)
}

struct StampedBody {
    data: Option<Bytes>,
    first_poll: Option<oneshot::Sender<i64>>,
}

impl http_body::Body for StampedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(tx) = this.first_poll.take() {
            let _ = tx.send(now_ms());
        }
        Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    // Exact, so hyper writes a Content-Length instead of going chunked.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_first_poll_is_stamped_and_the_bytes_pass_unchanged() {
        let (tx, mut rx) = oneshot::channel();
        let mut body = StampedBody {
            data: Some(Bytes::from_static(b"{\"records\":[]}")),
            first_poll: Some(tx),
        };
        assert_eq!(body.size_hint().exact(), Some(14));
        assert!(rx.try_recv().is_err(), "not stamped before anyone asks");
        let before = now_ms();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(
            frame.into_data().unwrap(),
            Bytes::from_static(b"{\"records\":[]}")
        );
        let at = rx.await.unwrap();
        assert!(at >= before && at <= now_ms());
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }
}
