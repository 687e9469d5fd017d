import ImageIngest
import Synchronization
import Testing

@Suite("Budget")
struct BudgetTests {
    /// Records the order in which things happen.
    final class Log: Sendable {
        private let entries = Mutex<[String]>([])
        func append(_ entry: String) { entries.withLock { $0.append(entry) } }
        var all: [String] { entries.withLock { $0 } }
    }

    @Test func aDecodeThatDoesNotFitWaitsForPixelsToComeBack() async throws {
        let budget = Budget(capacity: 100)
        let log = Log()
        let (firstHolds, firstHoldsContinuation) = AsyncStream<Void>.makeStream()
        let (releaseFirst, releaseFirstContinuation) = AsyncStream<Void>.makeStream()
        let first = Task {
            try await budget.withUnits(60) {
                log.append("first start")
                firstHoldsContinuation.yield()
                for await _ in releaseFirst { break }
                log.append("first end")
            }
        }
        for await _ in firstHolds { break }
        #expect(budget.available == 40)
        let second = Task {
            try await budget.withUnits(60) { log.append("second start") }
        }
        // A small one that fits must still queue behind the waiting one (first come, first served).
        let third = Task {
            try await budget.withUnits(10) { log.append("third start") }
        }
        // Let both reach the budget (not a timing assertion: starting late would only make the
        // order below easier to meet).
        try await Task.sleep(for: .milliseconds(50))
        #expect(log.all == ["first start"])
        releaseFirstContinuation.yield()
        try await first.value
        try await second.value
        try await third.value
        let entries = log.all
        #expect(entries.first == "first start")
        #expect(entries[1] == "first end")
        #expect(Set(entries[2...]) == ["second start", "third start"])
        #expect(entries.firstIndex(of: "second start")! > entries.firstIndex(of: "first end")!)
        #expect(entries.firstIndex(of: "third start")! > entries.firstIndex(of: "first end")!)
        #expect(budget.available == 100)
    }

    @Test func anImageLargerThanTheBudgetRunsAlone() async throws {
        let budget = Budget(capacity: 100)
        let seen = try await budget.withUnits(1_000_000) { budget.available }
        #expect(seen == 0)
        #expect(budget.available == 100)
    }

    @Test func aCanceledWaiterGivesUpItsPlace() async throws {
        let budget = Budget(capacity: 100)
        let (holding, holdingContinuation) = AsyncStream<Void>.makeStream()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await budget.withUnits(100) {
                holdingContinuation.yield()
                for await _ in release { break }
            }
        }
        for await _ in holding { break }
        let waiter = Task { try await budget.withUnits(50) { "ran" } }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        releaseContinuation.yield()
        try await holder.value
        #expect(budget.available == 100)
        #expect(try await budget.withUnits(100) { "ran" } == "ran")
    }

    @Test func errorsGiveThePixelsBack() async {
        let budget = Budget(capacity: 10)
        await #expect(throws: IngestError.self) {
            try await budget.withUnits(10) { throw IngestError(.corrupt, "bad") }
        }
        #expect(budget.available == 10)
    }

    @Test func aReservationHoldsItsUnitsUntilReleasedOnce() async throws {
        let budget = Budget(capacity: 100)
        let reservation = try await budget.reserve(70)
        #expect(reservation.units == 70)
        #expect(budget.available == 30)
        let waiter = Task { try await budget.reserve(50).units }
        try await Task.sleep(for: .milliseconds(20))
        #expect(budget.available == 30)
        reservation.release()
        reservation.release()
        #expect(try await waiter.value == 50)
        // The waiter's reservation was dropped with its task's result: its units came back.
        #expect(budget.available == 100)
    }

    @Test func aDroppedReservationGivesItsUnitsBack() async throws {
        let budget = Budget(capacity: 10)
        do {
            let reservation = try await budget.reserve(1_000)
            #expect(reservation.units == 10)
            #expect(budget.available == 0)
        }
        #expect(budget.available == 10)
    }
}
