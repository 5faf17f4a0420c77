//! The Tokio runtime of the example gateway and of the bench's raw proxy.

/// A runtime sized to the cores this process may use (`taskset`, a container's CPU
/// quota): on one core the current-thread scheduler, which runs the same tasks without
/// the multi-thread one's work-stealing queues and cross-thread wake-ups (2 % less CPU
/// per gateway request pinned to one core, benches/README.md).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}
