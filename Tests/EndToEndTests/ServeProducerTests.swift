import Foundation
import Testing
import TestSupport

/// The producers route of docs/serve.md (systemd/producers.conf), as far as this machine allows
/// without systemd as PID 1: the service runs as a user of its own (as DynamicUser gives it) with
/// the producers' group as a supplementary group (SupplementaryGroups=), inside a user namespace
/// where that group is unmapped (PrivateUsers=yes shows it as nogroup); a producer of the group
/// drops files into a root:GROUP 2770 inbox. Without the group the service cannot use the inbox and
/// says so.
@Suite(.serialized, .enabled(if: TestEnv.hasAssets && ProducerIDs.canSwitchUsers)) struct ServeProducerTests {
    static let group = ProducerIDs.group, producer = ProducerIDs.producer, service = ProducerIDs.service

    func layout() throws -> (ServeHarness, spool: String) {
        let h = try ServeHarness()
        chmod(h.root.path, 0o755)
        // The socket systemd would own: writable by the service's user.
        chmod(h.notify.path, 0o666)
        let spool = h.root.path + "/spool"
        try FileManager.default.createDirectory(atPath: spool + "/inbox", withIntermediateDirectories: true)
        chmod(spool, 0o755)
        chown(spool + "/inbox", 0, gid_t(Self.group))
        chmod(spool + "/inbox", 0o2770)
        // StateDirectory=: systemd gives it to the service's user.
        for d in [h.state, h.outbox, h.streams] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            chown(d, uid_t(Self.service), gid_t(Self.service))
        }
        return (h, spool)
    }

    func config(_ h: ServeHarness, inbox: String) -> String {
        h.config(top: "settle_time = 1\nretries = 0\n", output: "emit = [\"labels\"]")
            .replacingOccurrences(of: "inbox = \"\(h.inbox)\"", with: "inbox = \"\(inbox)\"")
    }

    @Test func aProducerInTheGroupDropsFilesTheServiceProcesses() throws {
        let (h, spool) = try layout()
        defer { h.cleanup() }
        try h.writeConfig(config(h, inbox: spool + "/inbox"))
        try h.start(wrapper: ["/usr/bin/setpriv", "--reuid=\(Self.service)", "--regid=\(Self.service)", "--groups=\(Self.group)",
                              "/usr/bin/unshare", "--user", "--map-current-user"])
        #expect(h.waitReady(), "log:\n\(h.log)")
        let clip = TestEnv.asset("videos/carphone_pristine.mp4")
        // The producer: not root, in the group, umask 022; one file moved in, one written in place.
        let drop = try shell("""
            setpriv --reuid=\(Self.producer) --regid=\(Self.producer) --groups=\(Self.group) sh -c \
            "umask 022; cp '\(clip)' '\(spool)/inbox/.moved.tmp' && mv '\(spool)/inbox/.moved.tmp' '\(spool)/inbox/moved.mp4' && cp '\(clip)' '\(spool)/inbox/inplace.mp4'"
            """, timeout: 60)
        #expect(drop.status == 0, "\(drop.stderrText)")
        #expect(eventually(timeout: 120) { h.exists(spool + "/inbox/done/moved.mp4") && h.exists(spool + "/inbox/done/inplace.mp4") },
                "log:\n\(h.log)")
        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0, "log:\n\(h.log)")
        #expect(lineCount(h.outbox + "/moved.jsonl") == 120 && lineCount(h.outbox + "/inplace.jsonl") == 120)
        // The outputs belong to the service's user, the inbox keeps its group.
        var st = stat()
        stat(h.outbox + "/moved.jsonl", &st)
        #expect(st.st_uid == uid_t(Self.service))
        stat(spool + "/inbox/done", &st)
        #expect(st.st_gid == gid_t(Self.group))  // setgid inbox: done/ keeps the producers' group
        // The producer cannot read the service's outputs through the inbox's done/ (UMask=0027 in the unit).
        let peek = try shell("setpriv --reuid=\(Self.producer) --regid=\(Self.producer) --clear-groups ls '\(spool)/inbox' 2>&1", timeout: 30)
        #expect(peek.status != 0)
    }

    @Test func withoutTheGroupTheServiceSaysWhichFolderItCannotUse() throws {
        let (h, spool) = try layout()
        defer { h.cleanup() }
        try h.writeConfig(config(h, inbox: spool + "/inbox"))
        try h.start(wrapper: ["/usr/bin/setpriv", "--reuid=\(Self.service)", "--regid=\(Self.service)", "--clear-groups",
                              "/usr/bin/unshare", "--user", "--map-current-user"])
        let exit = h.waitExit(timeout: 90)
        #expect(exit != nil && exit?.status != 0, "log:\n\(h.log)")
        #expect(h.log.contains(spool + "/inbox"), "log:\n\(h.log)")
        #expect(h.log.contains("Permission denied") || h.log.contains("permission"), "log:\n\(h.log)")
        #expect(!h.notify.messages.contains { $0.contains("READY=1") })
    }
}

/// Numeric ids with no names (nothing is added to /etc/passwd or /etc/group).
enum ProducerIDs {
    static let group = 64_999, producer = 64_998, service = 64_997

    /// Root, with setpriv and unprivileged user namespaces.
    static var canSwitchUsers: Bool {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return false }
        let r = try? shell("setpriv --reuid=\(service) --regid=\(service) --groups=\(group) unshare --user --map-current-user true", timeout: 30)
        return r?.status == 0
    }
}
