import ThreadSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Decodes the rows of a ``RowDecoder`` on a thread of its own, a few batches ahead of the reader,
/// so that decompression (inflate, entropy decoding) runs on one core while the resampler runs on
/// another.
///
/// The reader asks for rows once each, in increasing order (``row(_:)``), then calls ``finish()``.
/// ``stop()`` must be called before the decoder's input buffer goes away, whatever happened: it
/// returns once the decoding thread has stopped touching the decoder.
final class RowPrefetcher: @unchecked Sendable {
    private struct Batch {
        var buffer: UnsafeMutableRawPointer
        var start: Int
        var count: Int
    }

    private let decoder: RowDecoder
    private let convert: ((UnsafeMutableRawPointer, Int) throws(IngestError) -> Void)?
    private let batchRows: Int
    private let rowBytes: Int
    private let buffers: [UnsafeMutableRawPointer]
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var free: [UnsafeMutableRawPointer]
    private var filled: [Batch] = []
    private var failure: IngestError?
    private var producerDone = false
    private var stopping = false
    // Used by the reader only.
    private var current: Batch?

    /// - Parameters:
    ///   - convert: runs on the decoding thread on each batch (`buffer`, row count) after it is
    ///     decoded, e.g. CMYK to RGB.
    init(
        decoder: RowDecoder, batchRows: Int = 16, batches: Int = 4,
        convert: ((UnsafeMutableRawPointer, Int) throws(IngestError) -> Void)? = nil
    ) {
        self.decoder = decoder
        self.convert = convert
        self.batchRows = max(1, batchRows)
        self.rowBytes = decoder.width * 4
        self.buffers = (0..<max(2, batches)).map { _ in
            UnsafeMutableRawPointer.allocate(byteCount: max(1, batchRows) * decoder.width * 4, alignment: 16)
        }
        self.free = buffers
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    /// Starts the decoding thread.
    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
            var thread: pthread_t? = nil
        #else
            var thread = pthread_t()
        #endif
        let result = pthread_create(
            &thread, nil,
            { argument in
                #if canImport(Darwin)
                    let prefetcher = Unmanaged<RowPrefetcher>.fromOpaque(argument).takeRetainedValue()
                #else
                    let prefetcher = Unmanaged<RowPrefetcher>.fromOpaque(argument!).takeRetainedValue()
                #endif
                nameCurrentThread("row-prefetch")
                prefetcher.produce()
                return nil
            }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        #if canImport(Darwin)
            pthread_detach(thread!)
        #else
            pthread_detach(thread)
        #endif
    }

    private func produce() {
        var next = decoder.rowsRead
        let height = decoder.height
        while next < height {
            lock.lock()
            while free.isEmpty && !stopping { lock.wait() }
            if stopping {
                lock.unlock()
                break
            }
            let buffer = free.removeLast()
            lock.unlock()

            let count = min(batchRows, height - next)
            do throws(IngestError) {
                try decoder.read(into: buffer, rows: count)
                try convert?(buffer, count)
            } catch {
                lock.withLock {
                    failure = error
                    free.append(buffer)
                    lock.broadcast()
                }
                break
            }
            lock.withLock {
                filled.append(Batch(buffer: buffer, start: next, count: count))
                lock.broadcast()
            }
            next += count
        }
        lock.withLock {
            producerDone = true
            lock.broadcast()
        }
    }

    /// Input row `y`, valid until the next call. Rows must be asked for in increasing order.
    func row(_ y: Int) throws(IngestError) -> UnsafeRawPointer {
        if let current, y >= current.start, y < current.start + current.count {
            return UnsafeRawPointer(current.buffer + (y - current.start) * rowBytes)
        }
        let batch = try nextBatch()
        precondition(y >= batch.start && y < batch.start + batch.count, "rows asked for out of order")
        return UnsafeRawPointer(batch.buffer + (y - batch.start) * rowBytes)
    }

    /// Hands the current batch back and waits for the next one.
    private func nextBatch() throws(IngestError) -> Batch {
        lock.lock()
        defer { lock.unlock() }
        if let current {
            free.append(current.buffer)
            lock.broadcast()
            self.current = nil
        }
        while filled.isEmpty && failure == nil && !producerDone { lock.wait() }
        guard !filled.isEmpty else {
            throw failure ?? IngestError(.truncated, "the image has fewer rows than its header declares")
        }
        let batch = filled.removeFirst()
        current = batch
        return batch
    }

    /// Waits for the rows nobody asked for to be decoded (so damage at the end of the file is still
    /// found) and throws the decoding error, if any.
    func finish() throws(IngestError) {
        while true {
            lock.lock()
            let done = producerDone && filled.isEmpty
            let error = failure
            lock.unlock()
            if let error { throw error }
            if done { return }
            _ = try? nextBatch()
        }
    }

    /// Stops the decoding thread and waits until it no longer touches the decoder.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
            while !producerDone { lock.wait() }
        }
    }
}
