import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process of the load generator (redis-server, a worker, the fake backend). Its output
/// goes to a log file of its own, never to the generator's terminal. Waiting for its exit happens
/// in Foundation's termination handler, off the cooperative pool.
final class ChildProcess: @unchecked Sendable {
    let name: String
    let process: Process
    let logPath: String
    private let lock = NSLock()
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    private var hasExited = false
    private var signalled = false
    private var exitDescription = ""

    /// Starts `executable` with `arguments`; stdout and stderr go to `logPath`.
    init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], logPath: String)
        throws
    {
        self.name = name
        self.logPath = logPath
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.process = process
        process.terminationHandler = { [weak self] _ in self?.markExited() }
        try process.run()
        try? log.close()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { lock.withLock { !hasExited } }

    private func markExited() {
        let reason = process.terminationReason == .uncaughtSignal ? "signal" : "exit status"
        let description = "\(reason) \(process.terminationStatus)"
        let waiters = lock.withLock {
            hasExited = true
            exitDescription = description
            defer { exitWaiters = [] }
            return exitWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits for the exit without blocking a thread.
    func waitForExit() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = lock.withLock {
                if hasExited { return true }
                exitWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Sends `signal`; does nothing once the process has exited.
    func send(_ signal: Int32) {
        lock.withLock { signalled = true }
        if isRunning { kill(pid, signal) }
    }

    /// How the process ended when nobody asked it to (a crash), or `nil`.
    var unexpectedExit: String? {
        lock.withLock { hasExited && !signalled ? exitDescription : nil }
    }

    /// SIGTERM, then SIGKILL after `grace` if it is still there.
    func stop(grace: Duration = .seconds(5)) async {
        guard isRunning else { return }
        send(SIGTERM)
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.waitForExit()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await group.next() ?? false
            if !first { self.send(SIGKILL) }
            await group.waitForAll()
            return first
        }
        _ = finished
    }

    /// User + system CPU time so far, from `/proc/PID/stat` (clock ticks), in seconds.
    func cpuSeconds() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident set size in bytes, from `/proc/PID/status`.
    func residentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0 and reading what the kernel chose.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LoadError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Int32 in
            guard bind(fd, raw, length) == 0 else { return -1 }
            return getsockname(fd, raw, &length)
        }
    }
    guard bound == 0 else { throw LoadError("bind() on 127.0.0.1 failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func isListening(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
func waitUntil(_ what: String, timeout: Duration, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        if ContinuousClock.now > deadline { throw LoadError("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

struct LoadError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
