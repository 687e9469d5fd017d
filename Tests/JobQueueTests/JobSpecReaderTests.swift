import Foundation
import Testing

@testable import JobQueue

@Suite("Job spec reader")
struct JobSpecReaderTests {
    /// Documents the fast reader takes itself: it must read exactly what JSONDecoder reads.
    static let read: [String] = [
        #"{"kind":"generate","prompt":"a cat","tier":"standard","user":"u1","version":1}"#,
        #"{ "version" : 1 , "user" : "u-2", "tier" : "pro", "kind" : "edit", "prompt" : "x", "inputs" : [ "a" , "b" ] }"#,
        "{\n\t\"version\": 1,\r\n \"user\": \"u\", \"tier\": \"free\", \"kind\": \"generate\", \"prompt\": \"p\"\n}",
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"quote \" back \\ slash \/ tab \t nl \n \b \f \r","n":3}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"\u00e9 \u6f22 \ud83d\ude42 \u0001 \u002F"}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"é 漢字 🙂","model":null,"n":null,"inputs":null}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","extra":"x","flag":true,"off":false,"none":null,"count":-12}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","metadata":{"b":"2","a":"\u00e9"},"inputs":[]}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","webhook_url":"https:\/\/h.example\/x","mask":"m","size":"1024x1024","quality":"high","output_format":"png","model":"m1"}"#,
    ]

    /// Documents the reader leaves to JSONDecoder, valid or not.
    static let deferred: [String] = [
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","n":2.0}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","extra":{"a":[1,2]}}"#,
        #"{"version":1,"user":"u","tier":"gold","kind":"generate","prompt":"p"}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate"}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p"} trailing"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p""#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"bad \x escape"}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"lone \ud83d surrogate"}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":5}"#,
        #"{"version":1,"user":"u","tier":"free","kind":"generate","prompt":"p","n":01}"#,
        #"[1,2]"#,
        #"{"user":"u","version":1,"prompt":"first","tier":"free","kind":"generate","prompt":"second"}"#,
        "",
    ]

    @Test("reads what JSONDecoder reads, the same spec", arguments: read)
    func sameAsJSONDecoder(json: String) throws {
        let expected = try JSONDecoder().decode(JobSpec.self, from: Data(json.utf8))
        let fast = try #require(JobSpecReader.read(Array(json.utf8)))
        #expect(fast == expected)
        #expect(try JobSpec.decode(json: Array(json.utf8)) == expected)
    }

    @Test("leaves the rest to JSONDecoder, which accepts or refuses it", arguments: deferred)
    func defersTheRest(json: String) {
        #expect(JobSpecReader.read(Array(json.utf8)) == nil)
        let expected = try? JSONDecoder().decode(JobSpec.self, from: Data(json.utf8))
        #expect((try? JobSpec.decode(json: Array(json.utf8))) == expected)
    }

    @Test("every canonical spec reads back itself", arguments: CanonicalSpecJSONTests.specs.indices)
    func canonicalRoundTrip(index: Int) throws {
        let spec = CanonicalSpecJSONTests.specs[index]
        #expect(JobSpecReader.read(spec.canonicalJSON()) == spec)
    }
}
