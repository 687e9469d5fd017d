import Synchronization

/// A budget of units (pixels being decoded, bytes of answers held) shared by concurrent tasks.
///
/// A task takes its cost from the budget before it starts the expensive part and gives it back
/// when it ends, so a worker with many slots never holds many large images in memory at the same
/// time: ``ImageIngestor`` takes each image's pixel count while decoding it, and the OpenAI backend
/// takes each answer's size until the job's outputs are stored. A cost larger than the whole
/// budget takes all of it and runs alone. Waiters are served first come, first served, so a large
/// cost is not starved by a stream of small ones.
public final class Budget: Sendable {
    /// The units that may be taken at once.
    public let capacity: Int

    private struct Waiter {
        var id: UInt64
        var cost: Int
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var available: Int
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    /// Creates a budget of `capacity` units (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State(available: max(1, capacity)))
    }

    /// The units not taken at the moment.
    public var available: Int { state.withLock { $0.available } }

    /// Runs `body` holding `units` of the budget (at most the whole budget), waiting for them first.
    ///
    /// - Throws: `CancellationError` when the task is canceled while waiting, or what `body` throws.
    public func withUnits<T: Sendable>(_ units: Int, _ body: () async throws -> T) async throws -> T {
        let reservation = try await reserve(units)
        defer { reservation.release() }
        return try await body()
    }

    /// Takes `units` of the budget (at most the whole budget), waiting for them first, until the
    /// returned reservation is released (or dropped).
    ///
    /// - Throws: `CancellationError` when the task is canceled while waiting.
    public func reserve(_ units: Int) async throws -> Reservation {
        let cost = min(capacity, max(1, units))
        try await acquire(cost)
        return Reservation(budget: self, units: cost)
    }

    /// Units taken by ``Budget/reserve(_:)``, given back by ``release()`` or, at the latest, when the
    /// last reference goes.
    public final class Reservation: Sendable {
        /// The units held.
        public let units: Int
        private let budget: Budget
        private let released = Mutex(false)

        fileprivate init(budget: Budget, units: Int) {
            self.budget = budget
            self.units = units
        }

        /// Gives the units back; calls after the first do nothing.
        public func release() {
            let first = released.withLock { released in
                defer { released = true }
                return !released
            }
            if first { budget.release(units) }
        }

        deinit { release() }
    }

    private func acquire(_ cost: Int) async throws {
        let id: UInt64? = state.withLock { state in
            if state.waiters.isEmpty && state.available >= cost {
                state.available -= cost
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Units may have come back since the first look.
                let outcome = state.withLock { state -> Result<Bool, CancellationError> in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.waiters.isEmpty && state.available >= cost {
                        state.available -= cost
                        return .success(true)
                    }
                    state.waiters.append(Waiter(id: id, cost: cost, continuation: continuation))
                    return .success(false)
                }
                switch outcome {
                case .failure(let error): continuation.resume(throwing: error)
                case .success(true): continuation.resume()
                case .success(false): break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
            // It may have been the head, holding back the ones behind it.
            wakeWaiters()
        }
    }

    private func release(_ cost: Int) {
        state.withLock { $0.available += cost }
        wakeWaiters()
    }

    /// Hands units to waiters in arrival order while the first one fits.
    private func wakeWaiters() {
        let ready = state.withLock { state -> [Waiter] in
            var ready: [Waiter] = []
            while let first = state.waiters.first, first.cost <= state.available {
                state.available -= first.cost
                ready.append(state.waiters.removeFirst())
            }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }
}
