//! The simulator stands in for an API on machines of its own. On the bench's two cores it
//! shares the CPU with the worker and Temporal, and a simulator thread that wakes a few ms
//! late stamps an arrival late: two requests the gate spaced 1,015 ms apart and that left
//! on time (the worker checks when each batch really left) then look 995 ms apart, and the
//! next is refused for a jitter that no client could see. So the simulator gets a runtime
//! of its own whose threads the kernel runs first (nice -10); without the privilege to
//! raise priority it runs at the default one and says so.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

/// The simulator's runtime: two threads, created on first use.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Threads inherit their creator's priority, so build from a thread that raised its own.
        std::thread::spawn(|| {
            raise_priority();
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("gov-sim")
                .enable_all()
                .build()
                .expect("the simulator's runtime starts")
        })
        .join()
        .expect("the simulator's runtime starts")
    })
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn raise_priority() {
    // SAFETY: setpriority only changes the calling thread's scheduling weight (on Linux,
    // PRIO_PROCESS with id 0 applies to the calling thread).
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } != 0;
    if failed {
        println!(
            "  note: cannot raise the simulator's priority ({}); its arrival times share the CPU with the worker",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_priority() {}
