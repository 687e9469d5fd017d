/// A job as `status` shows it.
public struct JobRecord: Sendable, Equatable {
    public var id: String
    public var state: JobState
    public var user: String
    public var tier: String
    public var kind: String
    /// Attempts spent on errors.
    public var attempts: Int
    /// Times a worker died holding the job.
    public var recoveries: Int
    public var createdMS: Int64
    public var updatedMS: Int64
    public var startedMS: Int64?
    public var finishedMS: Int64?
    /// The last progress stage (`validating`, `generating`, `storing`).
    public var stage: String?
    public var errorCode: String?
    public var errorMessage: String?
    /// Why a dead job died (`max_attempts`, `poisoned`).
    public var deadReason: String?
    public var result: JobResult?

    public init(
        id: String, state: JobState, user: String, tier: String, kind: String, attempts: Int, recoveries: Int,
        createdMS: Int64, updatedMS: Int64, startedMS: Int64? = nil, finishedMS: Int64? = nil, stage: String? = nil,
        errorCode: String? = nil, errorMessage: String? = nil, deadReason: String? = nil, result: JobResult? = nil
    ) {
        self.id = id
        self.state = state
        self.user = user
        self.tier = tier
        self.kind = kind
        self.attempts = attempts
        self.recoveries = recoveries
        self.createdMS = createdMS
        self.updatedMS = updatedMS
        self.startedMS = startedMS
        self.finishedMS = finishedMS
        self.stage = stage
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.deadReason = deadReason
        self.result = result
    }
}

/// One lifecycle event from the queue's stream.
public struct JobEvent: Sendable, Equatable {
    /// The stream entry id (`<ms>-<seq>`): pass it back to resume after it.
    public var id: String
    /// `queued`, `started`, `progress`, `retrying`, `succeeded`, `failed`, `canceled`, `dead`.
    public var type: String
    public var jobID: String
    public var user: String
    public var tier: String
    /// Server time of the event, in milliseconds since 1970.
    public var atMS: Int64
    /// The other fields of the event (`reason`, `stage`, `code`, `message`, `result`, …).
    public var fields: [String: String]

    public init(
        id: String, type: String, jobID: String, user: String, tier: String, atMS: Int64, fields: [String: String]
    ) {
        self.id = id
        self.type = type
        self.jobID = jobID
        self.user = user
        self.tier = tier
        self.atMS = atMS
        self.fields = fields
    }
}

/// Queue depth and health, as `imagegen stats` shows it.
public struct QueueStats: Sendable, Equatable, Codable {
    public var queuedByTier: [String: Int]
    public var delayed: Int
    public var active: Int
    public var dead: Int
    public var liveWorkers: Int
    public var oldestQueuedAgeMS: Int

    public init(
        queuedByTier: [String: Int], delayed: Int, active: Int, dead: Int, liveWorkers: Int, oldestQueuedAgeMS: Int
    ) {
        self.queuedByTier = queuedByTier
        self.delayed = delayed
        self.active = active
        self.dead = dead
        self.liveWorkers = liveWorkers
        self.oldestQueuedAgeMS = oldestQueuedAgeMS
    }

    enum CodingKeys: String, CodingKey {
        case queuedByTier = "queued_by_tier"
        case delayed, active, dead
        case liveWorkers = "live_workers"
        case oldestQueuedAgeMS = "oldest_queued_age_ms"
    }
}
