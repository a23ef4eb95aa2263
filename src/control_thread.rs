//! The one thread the control plane's heavy work runs on: compiling
//! snapshots, freeing the dataplanes they replace, and planning the status
//! writer's writes (Kubernetes mode).
//!
//! A compile allocates the whole next dataplane and status (tens of MiB at
//! thousands of routes) while the previous one still serves. glibc's
//! malloc gives each thread an arena of its own and keeps the pages a
//! thread freed for that arena. Run on tokio's blocking pool, successive
//! compiles and drops landed on whichever pool thread was idle, so each of
//! several arenas kept the peak of a reload it once ran. On this one thread
//! every compile and every replaced dataplane share one arena: the next
//! compile reuses what the previous reload freed. The status writer's
//! plans (every object with status read at each snapshot) run here for the
//! same reason: on the blocking pool they took an arena of their own (6 MiB
//! more after the k8s_scale changes). The thread keeps the async workers,
//! which serve traffic, free of all of it.
//!
//! A job that panics is caught: its caller sees [`Gone`], and the thread
//! stays up for the next job.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the control thread; the thread ends when the last handle is
/// dropped.
#[derive(Clone)]
pub struct ControlThread {
    jobs: mpsc::Sender<Job>,
}

/// A job did not give its result: it panicked, or the thread is gone.
#[derive(Debug, thiserror::Error)]
#[error("the control thread did not finish the job (it panicked)")]
pub struct Gone;

impl ControlThread {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("portcullis-control".into())
            .spawn(move || {
                for job in queue {
                    if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a control-thread job panicked; the thread goes on");
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread and gives its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Gone> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        self.jobs.send(job).map_err(|_| Gone)?;
        result.await.map_err(|_| Gone)
    }

    /// Frees `value` on the thread, in the arena its kind was built in.
    pub fn drop_later<T: Send + 'static>(&self, value: T) {
        // A thread that is gone has dropped the job, and `value` with it.
        let _ = self.jobs.send(Box::new(move || drop(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test]
    async fn jobs_run_on_the_one_named_thread_in_order() {
        let control = ControlThread::spawn().expect("spawn");
        let first = control.run(thread_name).await.expect("first");
        let second = control.run(|| 2 + 2).await.expect("second");
        assert_eq!(first.as_deref(), Some("portcullis-control"));
        assert_eq!(second, 4);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_goes_on() {
        let control = ControlThread::spawn().expect("spawn");
        let failed = control.run(|| -> u8 { panic!("compile bug") }).await;
        assert!(failed.is_err());
        assert_eq!(control.run(|| 7).await.expect("after the panic"), 7);
    }

    #[tokio::test]
    async fn dropped_values_are_freed_on_the_thread() {
        struct Probe(std::sync::mpsc::Sender<Option<String>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let _ = self.0.send(thread_name());
            }
        }
        let control = ControlThread::spawn().expect("spawn");
        let (tx, rx) = std::sync::mpsc::channel();
        control.drop_later(Probe(tx));
        let dropped_on = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some("portcullis-control"));
    }
}
