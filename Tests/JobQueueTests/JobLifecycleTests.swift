import JobQueue
import Testing

@Suite("Job lifecycle")
struct JobLifecycleTests {
    @Test("the allowed transitions")
    func allowed() {
        #expect(JobLifecycle.next(.queued, .claim) == .active)
        #expect(JobLifecycle.next(.active, .complete) == .succeeded)
        #expect(JobLifecycle.next(.active, .retry(attemptsLeft: true)) == .delayed)
        #expect(JobLifecycle.next(.active, .retry(attemptsLeft: false)) == .dead)
        #expect(JobLifecycle.next(.active, .failTerminal) == .failed)
        #expect(JobLifecycle.next(.active, .recover(recoveriesLeft: true)) == .queued)
        #expect(JobLifecycle.next(.active, .recover(recoveriesLeft: false)) == .dead)
        #expect(JobLifecycle.next(.active, .release) == .queued)
        #expect(JobLifecycle.next(.delayed, .due) == .queued)
        #expect(JobLifecycle.next(.dead, .requeueDead) == .queued)
        for state in [JobState.queued, .delayed, .active] { #expect(JobLifecycle.next(state, .cancel) == .canceled) }
    }

    @Test("finished jobs change only by an operator's requeue of a dead job", arguments: JobState.allCases)
    func finishedStatesAreFinal(state: JobState) {
        let transitions: [JobTransition] = [
            .claim, .complete, .retry(attemptsLeft: true), .failTerminal, .recover(recoveriesLeft: true), .release,
            .due, .cancel,
        ]
        guard state.isFinished else { return }
        for transition in transitions { #expect(JobLifecycle.next(state, transition) == nil) }
    }

    @Test("only a lease holder's transitions apply to an active job")
    func activeOnly() {
        for transition in [JobTransition.complete, .failTerminal, .release, .retry(attemptsLeft: true)] {
            #expect(JobLifecycle.next(.queued, transition) == nil)
            #expect(JobLifecycle.next(.delayed, transition) == nil)
        }
        #expect(JobLifecycle.next(.active, .claim) == nil)
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test("the ceiling doubles per attempt up to the maximum")
    func ceilings() {
        let policy = RetryPolicy(baseDelay: .seconds(2), maxDelay: .seconds(60))
        #expect(policy.ceiling(afterAttempt: 1) == .seconds(2))
        #expect(policy.ceiling(afterAttempt: 2) == .seconds(4))
        #expect(policy.ceiling(afterAttempt: 5) == .seconds(32))
        #expect(policy.ceiling(afterAttempt: 6) == .seconds(60))
        #expect(policy.ceiling(afterAttempt: 100) == .seconds(60))
    }

    @Test("full jitter: delays spread over the whole range and never go below the provider's Retry-After")
    func jitter() {
        let policy = RetryPolicy(baseDelay: .seconds(1), maxDelay: .seconds(10))
        var generator = SystemRandomNumberGenerator()
        let delays = (0..<2000).map { _ in policy.delay(afterAttempt: 3, using: &generator) }
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .seconds(4) })
        #expect(delays.contains { $0 < .seconds(1) })
        #expect(delays.contains { $0 > .seconds(3) })
        // The ceiling is 4 s, so every draw is below the 7 s the provider asked for.
        for _ in 0..<100 {
            #expect(policy.delay(afterAttempt: 3, minimum: .seconds(7), using: &generator) == .seconds(7))
        }
    }
}

@Suite("Job spec")
struct JobSpecTests {
    @Test("valid jobs pass; each broken rule names its field")
    func validation() throws {
        try JobSpec(user: "user@example.com", prompt: "a cat").validate()
        try JobSpec(user: "u", kind: .edit, prompt: "x", inputs: ["upload:1"]).validate()
        let broken: [(JobSpec, String)] = [
            (JobSpec(user: "", prompt: "x"), "user"),
            (JobSpec(user: "has space", prompt: "x"), "user"),
            (JobSpec(user: String(repeating: "u", count: 129), prompt: "x"), "user"),
            (JobSpec(user: "u", prompt: ""), "prompt"),
            (JobSpec(user: "u", prompt: "x", n: 11), "n"),
            (JobSpec(user: "u", prompt: "x", size: "big"), "size"),
            (JobSpec(user: "u", kind: .edit, prompt: "x"), "inputs"),
        ]
        for (spec, field) in broken {
            #expect {
                try spec.validate()
            } throws: { error in
                (error as? QueueError)?.code == .invalidJob && (error as? QueueError)?.message.hasPrefix(field) == true
            }
        }
    }

    @Test("size parses into dimensions; auto and absent mean 1024x1024")
    func dimensions() {
        #expect(JobSpec(user: "u", prompt: "x", size: "640x480").dimensions == (640, 480))
        #expect(JobSpec(user: "u", prompt: "x", size: "auto").dimensions == (1024, 1024))
        #expect(JobSpec(user: "u", prompt: "x").dimensions == (1024, 1024))
    }

    @Test("user hashes are stable, salted and never the raw id")
    func userHash() {
        let hasher = UserHasher(salt: "pepper")
        #expect(hasher.hash("alice") == hasher.hash("alice"))
        #expect(hasher.hash("alice") != hasher.hash("bob"))
        #expect(hasher.hash("alice") != UserHasher(salt: "other").hash("alice"))
        #expect(hasher.hash("alice").count == 16)
        #expect(!hasher.hash("alice").contains("alice"))
    }
}
