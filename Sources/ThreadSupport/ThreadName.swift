import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Names the calling thread, as `top -H`, `perf` and debuggers show it; Linux keeps the first 15
/// bytes.
///
/// Foundation's `Thread.name` is not enough on Linux: a name set before `start()` never reaches the
/// system, and one set from inside the thread can go to the wrong thread while `start()` has not
/// yet recorded the new thread's handle.
package func nameCurrentThread(_ name: String) {
    #if canImport(Darwin)
        pthread_setname_np(name)
    #else
        // pthread_setname_np is not visible to Swift here; a thread may rename itself through procfs.
        let descriptor = open("/proc/thread-self/comm", O_WRONLY)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    #endif
}

/// Starts a thread of the project's own that runs `body` under `name` (see
/// ``nameCurrentThread(_:)``), so that `top -H` and `perf` tell it apart from the cooperative
/// pool's threads.
@discardableResult
package func startThread(named name: String, _ body: @escaping @Sendable () -> Void) -> Thread {
    let thread = Thread {
        nameCurrentThread(name)
        body()
    }
    thread.start()
    return thread
}
