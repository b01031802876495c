import Testing
@testable import Queue

@Suite struct DatabaseURLTests {
    @Test func tcpURL() throws {
        let u = try DatabaseURL("postgres://fp:s%40cret@db.example:5433/frames")
        #expect(u.user == "fp" && u.password == "s@cret" && u.host == "db.example" && u.port == 5433 && u.database == "frames")
        #expect(u.socketDirectory == nil)
        #expect(u.description == "postgres://fp:***@db.example:5433/frames")
    }

    @Test func socketURL() throws {
        let u = try DatabaseURL("postgresql://fp@/frames?host=/run/postgresql&port=5444")
        #expect(u.host == nil && u.socketDirectory == "/run/postgresql" && u.port == 5444)
        #expect(u.configuration.unixSocketPath == "/run/postgresql/.s.PGSQL.5444")
    }

    @Test(arguments: [
        ("mysql://a@b/c", "must start with postgres://"),
        ("postgres://db.example/frames", "no user name"),
        ("postgres://fp@db.example/", "no database name"),
        ("postgres://fp@/frames", "no host"),
        ("postgres://fp@db.example/frames?sslmode=require", "sslmode=require is not supported"),
        ("postgres://fp@db.example/frames?application_name=x", "unknown parameter `application_name`"),
        ("postgres://fp@db.example/frames?host=relative", "absolute socket folder"),
    ])
    func rejected(text: String, message: String) {
        #expect {
            try DatabaseURL(text)
        } throws: { error in
            "\(error)".contains(message) && "\(error)".hasPrefix("database URL ")
        }
    }

    @Test func passwordNeverInErrors() {
        #expect {
            try DatabaseURL("postgres://fp:topsecret@db.example/frames?bogus=1")
        } throws: { error in
            !"\(error)".contains("topsecret") && "\(error)".contains("fp:***@")
        }
    }
}
