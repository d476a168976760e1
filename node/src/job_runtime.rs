//! The runtime the lakehouse jobs run on, apart from ingest.

use crate::error::NodeError;

/// The lakehouse jobs' own runtime: their CPU-heavy queries run on its
/// threads, so they never hold the threads partition actors run on; and at a
/// lower priority, so that when the cores are busy the scheduler gives them
/// to ingest (and to a broker on the same machine) first.
pub struct JobRuntime(Option<tokio::runtime::Runtime>);

/// How much nicer the job threads are than the thread that starts them. At
/// +10 a busy job thread gets about a tenth of the CPU an ingest thread gets
/// when both want the same core: a silver run slows down instead of ingest.
const JOB_NICENESS_ABOVE_INGEST: i32 = 10;

/// The largest nice value Linux has.
const NICEST: i32 = 19;

impl JobRuntime {
    /// Starts the runtime; call it from a thread at ingest's priority.
    pub fn start(threads: usize) -> Result<JobRuntime, NodeError> {
        let niceness = (this_threads_niceness() + JOB_NICENESS_ABOVE_INGEST).min(NICEST);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("streamreel-jobs")
            // Absolute, not relative: blocking threads are spawned by job
            // threads, and must not end up nicer still.
            .on_thread_start(move || set_this_threads_niceness(niceness))
            .enable_all()
            .build()
            .map_err(|source| NodeError::Io {
                path: "the lakehouse job runtime".into(),
                source,
            })?;
        Ok(JobRuntime(Some(runtime)))
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("running until dropped")
            .handle()
            .clone()
    }
}

impl Drop for JobRuntime {
    // Dropping a runtime blocks, which an async context forbids; jobs still
    // running were already aborted with the coordinator.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

// Linux keeps a nice value per thread, and `who = 0` names the calling thread;
// elsewhere it would be the whole process, so nothing is read or changed there.

#[cfg(target_os = "linux")]
fn this_threads_niceness() -> i32 {
    // SAFETY: reads the calling thread's nice value. It cannot fail for the
    // calling thread; -1 is then a real value.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(target_os = "linux")]
fn set_this_threads_niceness(niceness: i32) {
    // SAFETY: a system call on the calling thread. Raising one's own nice
    // value is always permitted; a failure only leaves the inherited one.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, niceness) };
}

#[cfg(not(target_os = "linux"))]
fn this_threads_niceness() -> i32 {
    0
}

#[cfg(not(target_os = "linux"))]
fn set_this_threads_niceness(_niceness: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn job_threads_run_nicer_than_the_thread_that_started_them() {
        let caller = this_threads_niceness();
        let runtime = JobRuntime::start(1).expect("runtime");
        let (worker, blocking) = runtime.handle().block_on(async {
            let worker = tokio::spawn(async { this_threads_niceness() }).await;
            let blocking = tokio::task::spawn_blocking(this_threads_niceness).await;
            (worker.expect("worker"), blocking.expect("blocking"))
        });
        let expected = (caller + JOB_NICENESS_ABOVE_INGEST).min(NICEST);
        assert_eq!(worker, expected);
        assert_eq!(blocking, expected);
        assert_eq!(this_threads_niceness(), caller, "the caller keeps its own");
    }
}
