/// Where a job is in its life.
///
/// `queued → active → succeeded | failed | canceled`; `active → delayed → queued` on a retryable
/// error; `→ dead` when attempts or crash recoveries run out.
public enum JobState: String, Codable, Sendable, CaseIterable {
    case queued
    case delayed
    case active
    case succeeded
    case failed
    case canceled
    case dead

    /// Whether the job has ended for good (only a dead job can be requeued, by an operator).
    public var isFinished: Bool {
        switch self {
        case .succeeded, .failed, .canceled, .dead: return true
        case .queued, .delayed, .active: return false
        }
    }
}

/// What can happen to a job. The Redis functions implement exactly these transitions;
/// ``JobLifecycle`` is the same table as pure code, for tests and the in-memory driver.
public enum JobTransition: Sendable, Equatable {
    case claim
    case complete
    /// A retryable error; `attemptsLeft` false makes the job dead.
    case retry(attemptsLeft: Bool)
    case failTerminal
    /// The worker vanished; `recoveriesLeft` false makes the job dead (`poisoned`).
    case recover(recoveriesLeft: Bool)
    /// Handed back on shutdown, untouched.
    case release
    /// A delayed job fell due.
    case due
    case cancel
    /// An operator requeued a dead job.
    case requeueDead
}

/// The job lifecycle as a pure function.
public enum JobLifecycle {
    /// The state after `transition`, or `nil` when the transition is not allowed from `state`.
    public static func next(_ state: JobState, _ transition: JobTransition) -> JobState? {
        switch (state, transition) {
        case (.queued, .claim): return .active
        case (.active, .complete): return .succeeded
        case (.active, .retry(let attemptsLeft)): return attemptsLeft ? .delayed : .dead
        case (.active, .failTerminal): return .failed
        case (.active, .recover(let recoveriesLeft)): return recoveriesLeft ? .queued : .dead
        case (.active, .release): return .queued
        case (.delayed, .due): return .queued
        case (.queued, .cancel), (.delayed, .cancel), (.active, .cancel): return .canceled
        case (.dead, .requeueDead): return .queued
        default: return nil
        }
    }
}
