//! Spawned tasks with an owner: an [`Owned`] handle aborts its task when dropped, so a task
//! never outlives the thing it works for. Every task carries a tracing span.

use std::future::Future;

use tracing::Instrument;

#[must_use = "dropping the handle aborts the task"]
pub struct Owned(tokio::task::JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn spawn<F>(span: tracing::Span, fut: F) -> Owned
where
    F: Future<Output = ()> + Send + 'static,
{
    Owned(tokio::spawn(fut.instrument(span)))
}

/// A task that lives until it ends on its own (it must end: it owns nothing that keeps it
/// alive forever), e.g. the supervisor of a child process.
pub fn detach<F>(span: tracing::Span, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut.instrument(span));
}
